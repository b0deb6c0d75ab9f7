"""The LiveVox client over real HTTP on loopback against the LiveVox simulator.

The simulator listens on 127.0.0.1 (a free port) with the real reactor, but
runs on its own ``task.Clock``: the test advances it past 2 hours to expire
sessions, and its latency waits on it, so an answer "delayed" there never
comes unless the test advances it. The client runs on the real reactor, with
short timeouts and retry delays.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor as _reactor
from twisted.internet.task import Clock, deferLater
from twisted.web.client import HTTPConnectionPool

from lvgateway.config.model import AiaConfig
from lvgateway.config.secret import Secret
from lvgateway.livevox.aia import AiaClient, AiaRecord
from lvgateway.livevox.client import LiveVoxClient
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    LiveVoxConnectionError,
    LiveVoxError,
    LiveVoxServerError,
    LiveVoxTimeoutError,
    LoginDeniedError,
    NotFoundError,
    PermissionDeniedError,
    SessionExpiredError,
)
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.parsing import Session
from lvgateway.livevox.testing import livevox_config
from lvgateway.livevox.transport import http_client_for
from lvgateway.sandbox.journal import JournalEntry
from lvgateway.sandbox.livevox_web import RunningSimulator, start_simulator
from lvgateway.sandbox.testing import (
    AGENT_PASSWORD,
    AIA_HEADER,
    AIA_PATH,
    AIA_TOKEN,
    CLIENT_NAME,
    CONTACT_ACCOUNT,
    DONE_CODE,
    SERVICE_ID,
    TOKEN,
    TRANSFER_CODE,
    USER_NAME,
    USER_PASSWORD,
    agent_number,
    make_sandbox_config,
)

REACTOR: Any = _reactor
AGENT_PW = Secret(AGENT_PASSWORD, "test")


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait, polling on the reactor, until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = REACTOR.seconds() + timeout
    while not predicate():
        if REACTOR.seconds() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        await deferLater(REACTOR, 0.01, lambda: None)


@attrs.define
class Rig:
    """A simulator on loopback and a way to make clients for it."""

    running: RunningSimulator
    clock: Clock
    pool: HTTPConnectionPool
    registry: CollectorRegistry = attrs.field(factory=CollectorRegistry)
    metrics: LiveVoxMetrics | None = None

    @property
    def sim(self) -> Any:
        """The simulator itself."""
        return self.running.simulator

    def lv_metrics(self) -> LiveVoxMetrics:
        """The metrics shared by every client of this test."""
        if self.metrics is None:
            self.metrics = LiveVoxMetrics(self.registry)
        return self.metrics

    def client(self, **overrides: Any) -> LiveVoxClient:
        """A LiveVox client for the simulator; overrides go to its config."""
        values: dict[str, Any] = {
            "base_url": self.running.base_url,
            "client_name": CLIENT_NAME,
            "token": Secret(TOKEN, "test"),
            "request_timeout": 5.0,
            "max_retries": 2,
            "retry_base_delay": 0.01,
            "retry_max_delay": 0.05,
        }
        values.update(overrides)
        config = livevox_config(**values)
        return LiveVoxClient(
            config, REACTOR, http_client_for(REACTOR, config, pool=self.pool), self.lv_metrics()
        )

    def journal(self, route: str) -> list[JournalEntry]:
        """The simulator's journal entries for one route."""
        return [e for e in self.sim.journal_since(0) if e.route == route]

    async def ready_agent(self, client: LiveVoxClient, n: int = 1) -> Session:
        """Log agent AIVA<n> in, join it and make it READY."""
        session = await client.login(f"AIVA{n}", AGENT_PW)
        await client.join_service(session, SERVICE_ID, agent_number(n))
        await client.ready(session)
        return session


async def _rig(**sandbox: Any) -> AsyncIterator[Rig]:
    clock = Clock()
    clock.advance(1_700_000_000)
    running = await start_simulator(REACTOR, clock, make_sandbox_config(**sandbox))
    pool = HTTPConnectionPool(REACTOR, persistent=True)
    try:
        yield Rig(running, clock, pool)
    finally:
        await pool.closeCachedConnections()
        await running.stop()


@pytest_twisted.async_yield_fixture
async def rig() -> AsyncIterator[Rig]:
    """A simulator (agent sessions may use contacts) and its client factory."""
    async for r in _rig():
        yield r


@pytest_twisted.async_yield_fixture
async def strict_rig() -> AsyncIterator[Rig]:
    """A simulator whose Contact API refuses agent sessions (403)."""
    async for r in _rig(agent_contact_access=False):
        yield r


async def failure(d: Any) -> LiveVoxError:
    """Await ``d`` and return the LiveVoxError it fails with; fail if it succeeds."""
    try:
        result = await d
    except LiveVoxError as e:
        return e
    raise AssertionError(f"expected a LiveVoxError, got {result!r}")


# -- the whole lifecycle ------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_agent_lifecycle_and_wrap_up(rig: Rig) -> None:
    """Login, validate, join, ready, a call, status, catalogue, conference, end, term code, logout."""
    client = rig.client()
    session = await client.login("AIVA1", AGENT_PW)
    assert (session.user_id, session.client_id) == ("5001", "4242")
    assert session.days_until_password_expires == 31
    assert await client.validate(session) is True
    assert (await client.login("AIVA1", AGENT_PW)).session_id == session.session_id

    await client.join_service(session, SERVICE_ID, agent_number(1))
    join = rig.journal("agent.join")[-1]
    assert join.detail["phoneNumber"] == "+18990000001" and join.detail["serviceId"] == SERVICE_ID
    await client.ready(session)
    assert (await client.agent_status(session)).state == "READY"

    call = rig.sim.start_call(agent="AIVA1", account_number=CONTACT_ACCOUNT)
    status = await client.agent_status(session, state_changed_after=0)
    assert status.state == "INCALL"
    found = status.find_call(call.call_session_id)
    assert found is not None
    assert found.call_transaction_id == str(call.call_transaction_id)
    assert found.account_number == CONTACT_ACCOUNT
    assert rig.journal("agent.status")[-1].detail["stateChangedAfter"] == "0"

    catalogue = await client.term_codes(session, SERVICE_ID)
    assert catalogue.find("AI Completed").id == DONE_CODE
    assert catalogue.find(TRANSFER_CODE) is not None

    await client.manual_conference(session, "4158395494")
    assert rig.journal("agent.conference")[-1].detail["supervisorNumber"] == "4158395494"
    await client.end_call(session)
    assert (await client.agent_status(session)).state == "WRAPUP"

    await client.save_term_code(
        session,
        call_transaction_id=found.call_transaction_id or "",
        call_session_id=found.call_session_id or "",
        term_code_id=DONE_CODE,
        phone_dialed=found.phone_number,
        move_agent_to_not_ready=False,
        service_id=SERVICE_ID,
    )
    entry = rig.journal("agent.saveTermCode")[-1]
    assert entry.status == 204 and "warnings" not in entry.detail
    assert (await client.agent_status(session)).state == "READY"

    await client.not_ready(session, "Break")
    assert rig.journal("agent.notReady")[-1].detail["reasonCode"] == "Break"
    assert (await client.agent_status(session)).state == "NOTREADY"
    await client.leave_service(session)
    assert await client.logout(session) is True
    assert await client.validate(session) is False
    assert await client.logout(session) is False


@pytest_twisted.ensureDeferred
async def test_term_code_with_move_to_not_ready(rig: Rig) -> None:
    """moveAgentToNotReady true, sent as a JSON boolean, leaves the agent NOT READY."""
    client = rig.client()
    session = await rig.ready_agent(client, 2)
    call = rig.sim.start_call(agent="AIVA2")
    await client.save_term_code(
        session,
        call_transaction_id=str(call.call_transaction_id),
        call_session_id=call.call_session_id,
        term_code_id=TRANSFER_CODE,
        phone_dialed=call.phone_number,
        move_agent_to_not_ready=True,
    )
    assert (await client.agent_status(session)).state == "NOTREADY"


@pytest_twisted.ensureDeferred
async def test_version_prefix(rig: Rig) -> None:
    """With version v6.0 every path carries it after the category, and the simulator accepts it."""
    client = rig.client(version="v6.0")
    session = await rig.ready_agent(client)
    assert (await client.agent_status(session)).state == "READY"
    assert rig.journal("session.login")[-1].path == "/session/v6.0/login"
    assert rig.journal("agent.ready")[-1].path == "/callControl/v6.0/agent/status/ready"


# -- login and session errors ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_wrong_token_is_login_denied(rig: Rig) -> None:
    """A wrong API token: LoginDeniedError, 401, with the simulator's message, not retried."""
    client = rig.client(token=Secret("wrong-token", "test"))
    error = await failure(client.login("AIVA1", AGENT_PW))
    assert isinstance(error, LoginDeniedError)
    assert (error.call, error.status, error.code) == ("login", 401, 401)
    assert error.message
    assert len(rig.journal("session.login")) == 1


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_login_denied(rig: Rig) -> None:
    """A wrong password: LoginDeniedError."""
    error = await failure(rig.client().login("AIVA1", Secret("nope", "test")))
    assert isinstance(error, LoginDeniedError) and error.status == 401


@pytest_twisted.ensureDeferred
async def test_expired_session(rig: Rig) -> None:
    """Past 2 idle hours on the simulator's clock the session is refused; a new login works."""
    client = rig.client()
    session = await rig.ready_agent(client)
    rig.clock.advance(2 * 3600 + 1)
    error = await failure(client.not_ready(session))
    assert isinstance(error, SessionExpiredError)
    assert (error.call, error.status, error.code) == ("not_ready", 401, 401)
    assert await client.validate(session) is False
    fresh = await client.login("AIVA1", AGENT_PW)
    assert fresh.session_id != session.session_id
    await client.join_service(fresh, SERVICE_ID, agent_number(1))
    await client.ready(fresh)


# -- faults: 5xx, timeouts, dropped connections -----------------------------------------


@pytest_twisted.ensureDeferred
async def test_5xx_then_success_is_retried(rig: Rig) -> None:
    """Two 503s on READY are retried and the third attempt succeeds."""
    client = rig.client()
    session = await client.login("AIVA1", AGENT_PW)
    await client.join_service(session, SERVICE_ID, agent_number(1))
    rig.sim.fail_next("agent.ready", 2, 503)
    await client.ready(session)
    assert [e.status for e in rig.journal("agent.ready")] == [503, 503, 204]
    assert rig.registry.get_sample_value("lvgateway_livevox_retries_total", {"call": "ready"}) == 2


@pytest_twisted.ensureDeferred
async def test_term_code_answer_lost_is_not_repeated_by_the_transport(rig: Rig) -> None:
    """A term code applied but answered 503 is raised, never sent again: the wrap-up checks the status first."""
    client = rig.client()
    session = await rig.ready_agent(client)
    call = rig.sim.start_call(agent="AIVA1")
    rig.sim.fail_next("agent.saveTermCode", 1, 503, when="after")
    error = await failure(
        client.save_term_code(
            session,
            call_transaction_id=str(call.call_transaction_id),
            call_session_id=call.call_session_id,
            term_code_id=DONE_CODE,
            phone_dialed=call.phone_number,
            move_agent_to_not_ready=False,
        )
    )
    assert isinstance(error, LiveVoxServerError) and (error.status, error.attempts) == (503, 1)
    assert [e.status for e in rig.journal("agent.saveTermCode")] == [503]
    assert call.term_code_id == DONE_CODE, "applied before the 503"


@pytest_twisted.ensureDeferred
async def test_retries_run_out(rig: Rig) -> None:
    """With every attempt failing, the 500 is raised after max_retries + 1 attempts."""
    client = rig.client()
    session = await client.login("AIVA1", AGENT_PW)
    rig.sim.fail_next("agent.status", 5, 500)
    error = await failure(client.agent_status(session))
    assert isinstance(error, LiveVoxServerError)
    assert (error.status, error.attempts) == (500, 3)
    assert len(rig.journal("agent.status")) == 3


@pytest_twisted.ensureDeferred
async def test_end_call_is_not_retried(rig: Rig) -> None:
    """End call gets one attempt: the 503 comes back at once."""
    client = rig.client()
    session = await rig.ready_agent(client)
    rig.sim.start_call(agent="AIVA1")
    rig.sim.fail_next("agent.endCall", 1, 503)
    error = await failure(client.end_call(session))
    assert isinstance(error, LiveVoxServerError) and error.call == "call_end"
    assert len(rig.journal("agent.endCall")) == 1


@pytest_twisted.ensureDeferred
async def test_4xx_from_simulator_is_not_retried(rig: Rig) -> None:
    """READY before joining a service is a 400, reported at once with the simulator's message."""
    client = rig.client()
    session = await client.login("AIVA1", AGENT_PW)
    error = await failure(client.ready(session))
    assert type(error) is LiveVoxClientError
    assert error.status == 400 and "service" in (error.message or "")
    assert len(rig.journal("agent.ready")) == 1


@pytest_twisted.ensureDeferred
async def test_timeout_when_the_simulator_is_slow(rig: Rig) -> None:
    """An answer held back past request_timeout is a LiveVoxTimeoutError; the connection is closed."""
    client = rig.client(request_timeout=0.3, max_retries=1)
    session = await client.login("AIVA1", AGENT_PW)
    rig.sim.set_latency(60.0, "agent.status")  # on the simulator's clock, never advanced here
    error = await failure(client.agent_status(session))
    assert isinstance(error, LiveVoxTimeoutError)
    assert (error.call, error.attempts) == ("agent_status", 2)
    entries = rig.journal("agent.status")
    assert len(entries) == 2
    await until(lambda: all(e.delivered is False for e in entries), "the simulator to see both go")


@pytest_twisted.ensureDeferred
async def test_slow_answer_within_the_timeout_arrives(rig: Rig) -> None:
    """An answer delayed on the simulator's clock arrives once that clock moves on."""
    client = rig.client(request_timeout=5.0)
    session = await client.login("AIVA1", AGENT_PW)
    rig.sim.set_latency(3.0, "agent.status")
    d = client.agent_status(session)
    await until(lambda: bool(rig.journal("agent.status")), "the status request to arrive")
    assert not d.called
    rig.clock.advance(3.0)
    status = await d
    assert status.state == "LOGON"


@pytest_twisted.ensureDeferred
async def test_dropped_connections_are_connection_failures(rig: Rig) -> None:
    """An outage that drops connections gives LiveVoxConnectionError after the retries."""
    client = rig.client()
    rig.sim.start_outage(mode="drop")
    error = await failure(client.login("AIVA1", AGENT_PW))
    assert isinstance(error, LiveVoxConnectionError)
    assert error.status is None and error.attempts == 3
    rig.sim.clear_outage()
    assert (await client.login("AIVA1", AGENT_PW)).user_id == "5001"


# -- contacts ---------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_contacts_on_the_agent_session(rig: Rig) -> None:
    """Read, update, create (POST and PUT), already exists, and unknown contacts."""
    client = rig.client()
    session = await client.login("AIVA1", AGENT_PW)
    contact = await client.read_contact(CONTACT_ACCOUNT, session)
    assert contact["account"] == CONTACT_ACCOUNT
    assert contact["person"]["firstName"] == "John"

    await client.update_contact(CONTACT_ACCOUNT, {"person": {"firstName": "Jane"}}, session)
    assert (await client.read_contact(CONTACT_ACCOUNT, session))["person"]["firstName"] == "Jane"

    created = await client.create_contact({"account": "2002", "active": "true"}, session)
    assert created.account == "2002" and created.id is not None
    assert (await client.read_contact("2002", session))["account"] == "2002"

    exists = await failure(client.create_contact({"account": CONTACT_ACCOUNT}, session))
    assert isinstance(exists, ContactExistsError)
    assert (exists.status, exists.code, exists.message) == (202, 202, "Contact already exists!")

    put = rig.client(contact_create_method="PUT")
    assert (await put.create_contact({"account": "3003"}, session)).id is not None
    assert rig.journal("contact.create")[-1].method == "PUT"

    missing = await failure(client.read_contact("no-such", session))
    assert isinstance(missing, NotFoundError) and missing.call == "contact_read"
    missing = await failure(client.update_contact("no-such", {"city": "X"}, session))
    assert isinstance(missing, NotFoundError) and missing.call == "contact_update"


@pytest_twisted.ensureDeferred
async def test_contacts_on_the_contact_user(strict_rig: Rig) -> None:
    """Agent sessions get 403; the contact user logs in, is used, and logs in again on expiry."""
    rig = strict_rig
    agent_only = rig.client()
    session = await agent_only.login("AIVA1", AGENT_PW)
    refused = await failure(agent_only.read_contact(CONTACT_ACCOUNT, session))
    assert isinstance(refused, PermissionDeniedError) and refused.status == 403

    client = rig.client(contact_user=(USER_NAME, USER_PASSWORD))
    assert (await client.read_contact(CONTACT_ACCOUNT, session))["account"] == CONTACT_ACCOUNT
    login = rig.journal("session.login")[-1]
    assert login.user == USER_NAME and login.detail["agent"] is False

    rig.sim.expire_sessions(USER_NAME)
    await client.update_contact(CONTACT_ACCOUNT, {"city": "Austin"}, session)
    assert [e.user for e in rig.journal("session.login")].count(USER_NAME) == 2
    await client.close()
    assert rig.journal("session.logout")[-1].user == USER_NAME


# -- the AIA endpoint ---------------------------------------------------------------------


def _aia_config(rig: Rig, token: str, **overrides: Any) -> AiaConfig:
    values: dict[str, Any] = {
        "url": rig.running.base_url + AIA_PATH,
        "method": "POST",
        "auth_header": AIA_HEADER,
        "token": Secret(token, "test"),
        "headers": (),
        "field_names": {},
        "timeout": 5.0,
    }
    values.update(overrides)
    return AiaConfig(**values)


@pytest_twisted.ensureDeferred
async def test_aia_post(rig: Rig) -> None:
    """The AIA record reaches the simulator's endpoint with the configured field names."""
    config = _aia_config(rig, AIA_TOKEN, field_names={"Other1": "Other1", "ani": "ani"})
    client = AiaClient(
        config,
        REACTOR,
        http_client_for(REACTOR, livevox_config(), pool=rig.pool),
        rig.lv_metrics(),
    )
    record = AiaRecord(
        transaction_id="147516594361",
        session_id="UF200T64DE3A63@10.1.1.1",
        ani="9195550100",
        next_action="transfer",
        lvresult="Transfer To Agent",
        other={1: "billing question"},
    )
    answer = await client.post(record)
    assert answer == {"code": 200, "message": "OK"}
    assert rig.sim.aia_posts[-1] == {
        "transactionId": "147516594361",
        "sessionId": "UF200T64DE3A63@10.1.1.1",
        "ani": "9195550100",
        "nextAction": "transfer",
        "lvresult": "Transfer To Agent",
        "Other1": "billing question",
    }


@pytest_twisted.ensureDeferred
async def test_aia_wrong_token(rig: Rig) -> None:
    """A wrong AIA token is a 401 client error, not a LiveVox session expiry."""
    client = AiaClient(
        _aia_config(rig, "wrong"),
        REACTOR,
        http_client_for(REACTOR, livevox_config(), pool=rig.pool),
        rig.lv_metrics(),
    )
    error = await failure(client.post(AiaRecord(ani="1")))
    assert type(error) is LiveVoxClientError
    assert (error.call, error.status) == ("aia_post", 401)
    assert rig.sim.aia_posts == []
