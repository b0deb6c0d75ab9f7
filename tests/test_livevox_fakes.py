"""The in-memory fakes match their interfaces and behave as the real LiveVox is known to."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from lvgateway.config.secret import Secret
from lvgateway.livevox.aia import AiaClient, AiaRecord
from lvgateway.livevox.client import LiveVoxClient
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    LiveVoxServerError,
    LoginDeniedError,
    NotFoundError,
    SessionExpiredError,
)
from lvgateway.livevox.interfaces import IAiaAPI, ILiveVoxAgentAPI, ILiveVoxCallAPI
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.parsing import CallDetails
from lvgateway.livevox.testing import (
    FakeAia,
    FakeLiveVox,
    RecordingResource,
    failure_of,
    livevox_config,
    result_of,
    stub_http,
)
from tests.test_livevox_aia import aia_config

PW = Secret("pw", "test")


def test_real_client_provides_both_interfaces() -> None:
    """LiveVoxClient provides ILiveVoxAgentAPI and ILiveVoxCallAPI."""
    client = LiveVoxClient(
        livevox_config(),
        Clock(),
        stub_http(RecordingResource()).client,
        LiveVoxMetrics(CollectorRegistry()),
    )
    assert verifyObject(ILiveVoxAgentAPI, client)
    assert verifyObject(ILiveVoxCallAPI, client)
    assert verifyClass(ILiveVoxAgentAPI, LiveVoxClient)


def test_real_aia_client_provides_its_interface() -> None:
    """AiaClient provides IAiaAPI."""
    client = AiaClient(
        aia_config(),
        Clock(),
        stub_http(RecordingResource()).client,
        LiveVoxMetrics(CollectorRegistry()),
    )
    assert verifyObject(IAiaAPI, client)


def test_fakes_provide_the_interfaces() -> None:
    """FakeLiveVox and FakeAia are verified against the interfaces they stand in for."""
    fake = FakeLiveVox()
    assert verifyObject(ILiveVoxAgentAPI, fake)
    assert verifyObject(ILiveVoxCallAPI, fake)
    assert verifyObject(IAiaAPI, FakeAia())


def test_fake_lifecycle_and_wrap_up() -> None:
    """Login, join, ready, a call, its status, term code and the agent READY again."""
    fake = FakeLiveVox(passwords={"AIVA1": "pw"}, now_millis=lambda: 1000)
    fake.add_term_code("1234567", "101", "AI Completed")
    session = result_of(fake.login("AIVA1", PW))
    assert result_of(fake.login("AIVA1", PW)) == session
    assert isinstance(failure_of(fake.ready(session)), LiveVoxClientError)
    result_of(fake.join_service(session, "1234567", "+18990000001"))
    result_of(fake.ready(session))
    assert fake.agent("aiva1").state == "READY"
    fake.place_call("AIVA1", CallDetails("147516594361", "S1", phone_number="9195550100"))
    status = result_of(fake.agent_status(session))
    assert status.state == "INCALL" and status.find_call("s1") is not None
    catalogue = result_of(fake.term_codes(session, "1234567"))
    assert catalogue.find("AI Completed").id == "101"
    result_of(fake.end_call(session))
    assert fake.agent("AIVA1").state == "WRAPUP"
    wrong = fake.save_term_code(
        session,
        call_transaction_id="1",
        call_session_id="S1",
        term_code_id="101",
        phone_dialed=None,
        move_agent_to_not_ready=False,
    )
    assert isinstance(failure_of(wrong), LiveVoxClientError)
    result_of(
        fake.save_term_code(
            session,
            call_transaction_id="147516594361",
            call_session_id="S1",
            term_code_id="101",
            phone_dialed="9195550100",
            move_agent_to_not_ready=True,
        )
    )
    assert fake.agent("AIVA1").state == "NOTREADY"
    assert fake.saved_term_codes[0]["term_code_id"] == "101"
    assert result_of(fake.logout(session)) is True
    assert result_of(fake.validate(session)) is False
    assert isinstance(failure_of(fake.ready(session)), SessionExpiredError)


def test_fake_refuses_wrong_password_and_expires_sessions() -> None:
    """A wrong password is LoginDeniedError; expire() ends the session."""
    fake = FakeLiveVox(passwords={"AIVA1": "pw"})
    assert isinstance(failure_of(fake.login("AIVA1", Secret("no", "t"))), LoginDeniedError)
    session = result_of(fake.login("AIVA1", PW))
    fake.expire("AIVA1")
    assert isinstance(failure_of(fake.agent_status(session)), SessionExpiredError)
    assert result_of(fake.logout(session)) is False


def test_fake_failures_and_gates() -> None:
    """fail_next fails the next calls; a gate holds calls until fired; all are logged."""
    fake = FakeLiveVox()
    fake.fail_next("login", LiveVoxServerError("login", status=503), times=2)
    assert isinstance(failure_of(fake.login("A", PW)), LiveVoxServerError)
    assert isinstance(failure_of(fake.login("A", PW)), LiveVoxServerError)
    session = result_of(fake.login("A", PW))
    result_of(fake.join_service(session, "1", "2"))
    gate = fake.gate("ready")
    d = fake.ready(session)
    assert not d.called
    gate.callback(None)
    assert result_of(d) is None
    assert [name for name, _ in fake.log].count("login") == 3


def test_fake_contacts() -> None:
    """Contacts: create, exists, read, update, not found."""
    fake = FakeLiveVox()
    session = result_of(fake.login("A", PW))
    assert result_of(fake.create_contact({"account": "1", "city": "X"}, session)).account == "1"
    assert isinstance(
        failure_of(fake.create_contact({"account": "1"}, session)), ContactExistsError
    )
    result_of(fake.update_contact("1", {"city": "Y"}, session))
    assert result_of(fake.read_contact("1", session))["city"] == "Y"
    assert isinstance(failure_of(fake.read_contact("2", session)), NotFoundError)
    assert isinstance(failure_of(fake.update_contact("2", {}, session)), NotFoundError)


def test_fake_aia_records_and_fails() -> None:
    """FakeAia records posts and fails with queued failures."""
    aia = FakeAia()
    aia.failures.append(LiveVoxServerError("aia_post", status=500))
    assert isinstance(failure_of(aia.post(AiaRecord(ani="1"))), LiveVoxServerError)
    result_of(aia.post(AiaRecord(ani="2")))
    assert aia.posted == [AiaRecord(ani="2")]


def _parameters(function: object, keyword_only: bool = True) -> list[str]:
    """A function's parameter names, self left out, following ``__wrapped__``."""
    import inspect

    names = [
        p.name
        for p in inspect.signature(function).parameters.values()  # type: ignore[arg-type]
        if keyword_only or p.kind is not p.KEYWORD_ONLY
    ]
    return names[1:] if names and names[0] == "self" else names


def test_signatures_match_the_interfaces_exactly() -> None:
    """Implementations take the interface's parameters, and the fakes the real clients'."""
    for iface, (real, fake) in (
        (ILiveVoxAgentAPI, (LiveVoxClient, FakeLiveVox)),
        (ILiveVoxCallAPI, (LiveVoxClient, FakeLiveVox)),
        (IAiaAPI, (AiaClient, FakeAia)),
    ):
        for name in iface.names():
            expected = list(iface[name].getSignatureInfo()["positional"])
            assert _parameters(getattr(real, name), keyword_only=False) == expected, name
            assert _parameters(getattr(fake, name)) == _parameters(getattr(real, name)), name
