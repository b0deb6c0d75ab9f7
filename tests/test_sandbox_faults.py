"""Fault injection in the LiveVox simulator, on task.Clock: error rates, fail-next, expiry, outages."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from lvgateway.sandbox.livevox_state import LineState
from lvgateway.sandbox.sandbox_admin import handle_admin
from lvgateway.sandbox.simulator import SimRequest
from lvgateway.sandbox.testing import SimDriver

READY = "/callControl/agent/status/ready"
SCREENPOP = "/callControl/agent/screenpop"


@pytest.fixture
def clock() -> Clock:
    """A fake clock at a realistic epoch time."""
    c = Clock()
    c.advance(1_700_000_000)
    return c


@pytest.fixture
def sim(clock: Clock) -> SimDriver:
    """A simulator with the test configuration on the fake clock."""
    return SimDriver.create(clock)


def _statuses(sim: SimDriver, session: str, path: str, n: int) -> list[int]:
    method = "POST" if path == READY else "GET"
    return [sim.request(method, path, session=session).status for _ in range(n)]


def test_error_rate_hits_only_its_route_and_is_seeded(clock: Clock) -> None:
    """A 50% error rate on one route fails some of its requests, the same ones for the same seed."""
    patterns = []
    for _ in range(2):
        sim = SimDriver.create(clock)
        session = sim.ready_agent("AIVA1")
        sim.simulator.set_error_rate("agent.ready", 500, 0.5)
        patterns.append(_statuses(sim, session, READY, 40))
        assert set(_statuses(sim, session, SCREENPOP, 20)) == {200}
        failed = sim.simulator.journal.find("agent.ready", fault="error_rate")
        assert all(e.status == 500 for e in failed)
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {204, 500}
    assert 8 <= patterns[0].count(500) <= 32


def test_error_rate_for_every_route(sim: SimDriver) -> None:
    """A '*' rate of 1 fails every LiveVox route; removing it (probability 0) heals them."""
    session = sim.ready_agent("AIVA1")
    sim.simulator.set_error_rate("*", 502, 1.0)
    assert _statuses(sim, session, SCREENPOP, 3) == [502, 502, 502]
    assert sim.request("GET", SCREENPOP, session=session).json() == {
        "code": 502,
        "message": "Simulated failure",
    }
    sim.simulator.set_error_rate("*", 502, 0.0)
    assert _statuses(sim, session, SCREENPOP, 2) == [200, 200]


def test_fail_next_n(sim: SimDriver) -> None:
    """fail_next fails exactly the next N requests to the route, unapplied, then stops."""
    session = sim.ready_agent("AIVA1")
    sim.request("POST", "/callControl/agent/status/notReady", session=session)
    sim.simulator.fail_next("agent.ready", 2, 503)
    assert _statuses(sim, session, SCREENPOP, 1) == [200]
    assert _statuses(sim, session, READY, 2) == [503, 503]
    assert sim.simulator.agent("AIVA1").state is LineState.NOTREADY
    assert _statuses(sim, session, READY, 1) == [204]
    assert sim.simulator.agent("AIVA1").state is LineState.READY
    assert len(sim.simulator.journal.find("agent.ready", fault="fail_next")) == 2


def test_failure_after_apply_then_resend_is_a_contract_error(sim: SimDriver) -> None:
    """An error injected after applying a term code leaves it applied; a re-send is a refused repeat."""
    session = sim.ready_agent("AIVA1")
    call = sim.simulator.start_call("AIVA1")
    sim.simulator.fail_next("agent.saveTermCode", 1, 500, when="after")
    lost = sim.term_code(session, call.call_transaction_id, call.call_session_id)
    assert lost.status == 500
    assert sim.simulator.agent("AIVA1").state is LineState.READY
    assert sim.simulator.contract_errors == 0
    resend = sim.term_code(session, call.call_transaction_id, call.call_session_id)
    assert resend.status == 400
    assert resend.json()["message"].startswith(f"Call {call.call_transaction_id} already has")
    entries = sim.simulator.journal.find("agent.saveTermCode")
    assert [(e.status, e.repeat, e.fault, e.contract_error) for e in entries] == [
        (500, False, "fail_next", None),
        (400, True, None, "repeated term code"),
    ]
    assert sim.simulator.contract_errors == 1


def test_failure_before_apply_then_resend_is_applied(sim: SimDriver) -> None:
    """An error injected before applying a term code leaves the call open; the re-send applies it."""
    session = sim.ready_agent("AIVA1")
    call = sim.simulator.start_call("AIVA1")
    sim.simulator.fail_next("agent.saveTermCode", 1, 503)
    refused = sim.term_code(session, call.call_transaction_id, call.call_session_id)
    assert refused.status == 503
    assert sim.simulator.agent("AIVA1").state is LineState.INCALL
    resend = sim.term_code(session, call.call_transaction_id, call.call_session_id)
    assert resend.status == 204
    entries = sim.simulator.journal.find("agent.saveTermCode")
    assert [(e.status, e.repeat, e.fault) for e in entries] == [
        (503, None, "fail_next"),
        (204, False, None),
    ]
    assert sim.simulator.contract_errors == 0


def test_forced_expiry_of_one_user_or_all(sim: SimDriver) -> None:
    """Forced expiry ends one user's sessions (agent LOGOFF) or every session."""
    one = sim.ready_agent("AIVA1")
    two = sim.ready_agent("AIVA2")
    assert sim.simulator.expire_sessions("aiva1") == 1
    assert sim.request("GET", SCREENPOP, session=one).status == 401
    assert sim.simulator.agent("AIVA1").state is LineState.LOGOFF
    assert sim.request("GET", SCREENPOP, session=two).status == 200
    assert sim.simulator.expire_sessions() == 1
    assert sim.request("GET", SCREENPOP, session=two).status == 401
    assert sim.login("AIVA2") != two


def test_outage_window_until_clock_time(sim: SimDriver, clock: Clock) -> None:
    """During an outage every LiveVox route answers 503, admin still works; it ends on the clock."""
    session = sim.ready_agent("AIVA1")
    sim.simulator.start_outage(duration=60)
    down = sim.request("GET", SCREENPOP, session=session)
    assert down.status == 503
    assert down.json() == {"code": 503, "message": "Service unavailable"}
    assert sim.login_response("AIVA2").status == 503
    assert sim.request("GET", "/nowhere").status == 503
    admin = handle_admin(sim.simulator, SimRequest("GET", "/_sandbox/agents"))
    assert admin.status == 200
    clock.advance(59)
    assert sim.request("GET", SCREENPOP, session=session).status == 503
    clock.advance(1)
    assert sim.request("GET", SCREENPOP, session=session).status == 200
    assert len(sim.simulator.journal.find(fault="outage")) == 4


def test_outage_until_cleared_and_drop_mode(sim: SimDriver, clock: Clock) -> None:
    """An open-ended outage lasts until cleared; in drop mode answers are dropped connections."""
    session = sim.ready_agent("AIVA1")
    sim.simulator.start_outage(mode="drop")
    clock.advance(86400)
    dropped = sim.request("GET", SCREENPOP, session=session)
    assert dropped.drop and dropped.status == 0
    sim.simulator.clear_outage()
    # the session idled through the outage: 401 now
    assert sim.request("GET", SCREENPOP, session=session).status == 401


def test_latency_is_reported_per_route(sim: SimDriver) -> None:
    """Latency, global or per route, is the delay on the answer (the web layer waits it out)."""
    session = sim.ready_agent("AIVA1")
    sim.simulator.set_latency(1.5)
    sim.simulator.set_latency(4.0, "agent.status")
    assert sim.request("GET", SCREENPOP, session=session).delay == 1.5
    assert sim.request("POST", "/callControl/agent/status", session=session).delay == 4.0
    sim.simulator.clear_faults()
    assert sim.request("GET", SCREENPOP, session=session).delay == 0.0


def test_faults_through_the_admin_api(sim: SimDriver, clock: Clock) -> None:
    """The admin API sets and clears the same faults as the Python methods."""
    session = sim.ready_agent("AIVA1")

    def admin(method: str, path: str, body: bytes = b"") -> int:
        return handle_admin(sim.simulator, SimRequest(method, "/_sandbox" + path, body=body)).status

    assert (
        admin("POST", "/faults/fail-next", b'{"route": "agent.status", "count": 1, "status": 500}')
        == 200
    )
    assert sim.request("POST", "/callControl/agent/status", session=session).status == 500
    assert (
        admin("POST", "/faults/error-rate", b'{"route": "nope", "status": 500, "probability": 1}')
        == 400
    )
    assert admin("POST", "/faults/outage", b'{"until": %d}' % (clock.seconds() + 10)) == 200
    assert sim.request("GET", SCREENPOP, session=session).status == 503
    assert admin("DELETE", "/faults/outage") == 200
    assert admin("PUT", "/faults/latency", b'{"seconds": 2}') == 200
    assert sim.request("GET", SCREENPOP, session=session).delay == 2.0
    assert admin("POST", "/faults/expire-sessions", b'{"user": "AIVA1"}') == 200
    assert sim.request("GET", SCREENPOP, session=session).status == 401
    assert admin("DELETE", "/faults") == 200
    assert sim.simulator.faults.describe()["latency"] == 0.0
    assert admin("POST", "/faults/outage", b"{bad") == 400
