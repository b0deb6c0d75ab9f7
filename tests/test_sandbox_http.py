"""The LiveVox simulator over real HTTP on loopback (treq), plus its in-memory StubTreq use."""

# pytest-twisted ships no types, and treq's StubTreq builds its methods at run time.
# mypy: disable-error-code="import-untyped,untyped-decorator,no-untyped-call"

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
import treq
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.task import Clock, deferLater
from twisted.web._newclient import ResponseNeverReceived

from lvgateway.sandbox.journal import JournalEntry
from lvgateway.sandbox.livevox_web import RunningSimulator, SimulatorRoot, start_simulator
from lvgateway.sandbox.simulator import Simulator
from lvgateway.sandbox.testing import (
    AGENT_PASSWORD,
    AIA_HEADER,
    AIA_PATH,
    AIA_TOKEN,
    CONTACT_ACCOUNT,
    DONE_CODE,
    SERVICE_ID,
    TOKEN,
    make_sandbox_config,
)

REACTOR: Any = reactor
TCP: IReactorTCP = REACTOR
LOGIN = {"clientName": "demo", "userName": "AIVA1", "password": AGENT_PASSWORD, "agent": "true"}


async def _start(clock: IReactorTime) -> RunningSimulator:
    return await start_simulator(TCP, clock, make_sandbox_config())


@pytest_twisted.async_yield_fixture
async def running() -> AsyncIterator[RunningSimulator]:
    """A simulator on the real reactor's clock, listening on 127.0.0.1, a free port."""
    sim = await _start(REACTOR)
    yield sim
    await sim.stop()


@pytest_twisted.async_yield_fixture
async def clocked() -> AsyncIterator[tuple[RunningSimulator, Clock]]:
    """A simulator listening on loopback whose clock is a task.Clock the test advances."""
    clock = Clock()
    clock.advance(1_700_000_000)
    sim = await _start(clock)
    yield sim, clock
    await sim.stop()


async def call(
    running: RunningSimulator,
    method: str,
    path: str,
    *,
    session: str | None = None,
    token: str | None = None,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
) -> tuple[int, bytes, Any]:
    """Send one request; return the status, the raw body and the response."""
    all_headers: dict[bytes | str, bytes | str] = {}
    all_headers.update(headers or {})
    if session is not None:
        all_headers["LV-Session"] = session
    if token is not None:
        all_headers["LV-Access"] = token
    kwargs: dict[str, Any] = {} if json_body is None else {"json": json_body}
    response = await treq.request(
        method,
        running.base_url + path,
        headers=all_headers,
        params=params,
        persistent=False,
        timeout=5,
        **kwargs,
    )
    body = await response.content()
    return response.code, body, response


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait, on the real reactor, until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = REACTOR.seconds() + timeout
    while not condition():
        if REACTOR.seconds() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        await deferLater(REACTOR, 0.01, lambda: None)


def _last_entry(sim: Simulator) -> JournalEntry | None:
    entries = sim.journal_since(0)
    return entries[-1] if entries else None


@pytest_twisted.ensureDeferred
async def test_login_with_wrong_token_is_401(running: RunningSimulator) -> None:
    """Over HTTP, a wrong LV-Access answers 401 with the exact JSON error body."""
    status, body, response = await call(
        running, "POST", "/session/login", token="wrong", json_body=LOGIN
    )
    assert status == 401
    assert body == b'{"code":401,"message":"Invalid access token"}'
    assert response.headers.getRawHeaders("Content-Type") == ["application/json"]


@pytest_twisted.ensureDeferred
async def test_full_flow_login_join_ready_call_term_code(running: RunningSimulator) -> None:
    """login, join, ready, a call, status, term code: exact statuses and bodies, READY at the end."""
    status, body, _ = await call(running, "POST", "/session/login", token=TOKEN, json_body=LOGIN)
    assert status == 200
    login = json.loads(body)
    session = login["sessionId"]
    assert (login["userId"], login["clientId"], login["daysUntilPasswordExpires"]) == (
        5001,
        4242,
        31,
    )

    status, body, _ = await call(
        running,
        "POST",
        "/callControl/agent/service/join",
        session=session,
        params={"serviceId": SERVICE_ID, "phoneNumber": "8990000001"},
    )
    assert (status, body) == (204, b"")
    status, body, _ = await call(
        running, "POST", "/callControl/agent/status/ready", session=session
    )
    assert (status, body) == (204, b"")

    status, body, _ = await call(
        running,
        "POST",
        "/_sandbox/calls",
        json_body={
            "phoneNumber": "+18990000001",
            "accountNumber": CONTACT_ACCOUNT,
            "customerNumber": "2134634007",
        },
    )
    assert status == 201
    started = json.loads(body)["call"]

    status, body, response = await call(
        running,
        "POST",
        "/callControl/agent/status",
        session=session,
        json_body={"stateChangedAfter": "0"},
    )
    assert status == 200
    line = json.loads(body)["agentStatus"]["lines"][0]
    assert line["state"] == "INCALL"
    assert line["call"]["callTransactionId"] == started["callTransactionId"]
    assert line["call"]["callSessionId"] == started["callSessionId"]
    assert line["call"]["accountNumber"] == CONTACT_ACCOUNT

    term = {
        "callTransactionId": line["call"]["callTransactionId"],
        "callSessionId": line["call"]["callSessionId"],
        "termCodeId": DONE_CODE,
        "phoneDialed": line["call"]["phoneNumber"],
        "moveAgentToNotReady": "false",
    }
    status, body, response = await call(
        running, "PUT", "/callControl/agent/call/termCode", session=session, json_body=term
    )
    assert (status, body) == (204, b"")
    assert not response.headers.hasHeader("Content-Type")

    status, body, _ = await call(
        running, "POST", "/callControl/agent/status", session=session, json_body={}
    )
    line = json.loads(body)["agentStatus"]["lines"][0]
    assert (line["state"], line["call"]) == ("READY", None)

    status, body, _ = await call(running, "GET", "/_sandbox/journal", params={"since": "0"})
    assert status == 200
    journal = json.loads(body)
    routes = [(e["route"], e["status"]) for e in journal["entries"]]
    assert routes == [
        ("session.login", 200),
        ("agent.join", 204),
        ("agent.ready", 204),
        ("sandbox.startCall", 200),
        ("agent.status", 200),
        ("agent.saveTermCode", 204),
        ("agent.status", 200),
    ]
    assert journal["lastSeq"] == 7
    assert all(e["delivered"] for e in journal["entries"] if e["method"] != "SIM")


@pytest_twisted.ensureDeferred
async def test_repeated_term_code_over_http_is_a_counted_contract_error(
    running: RunningSimulator,
) -> None:
    """A second term code for a closed call answers 400 JSON; /_sandbox/stats and the journal show the breach."""
    status, body, _ = await call(running, "GET", "/_sandbox/stats")
    assert (status, json.loads(body)) == (200, {"contractErrors": 0})
    status, body, _ = await call(running, "POST", "/session/login", token=TOKEN, json_body=LOGIN)
    session = json.loads(body)["sessionId"]
    for path, params in (
        ("/callControl/agent/service/join", {"serviceId": SERVICE_ID}),
        ("/callControl/agent/status/ready", None),
    ):
        status, _, _ = await call(running, "POST", path, session=session, params=params)
        assert status == 204
    status, body, _ = await call(running, "POST", "/_sandbox/calls", json_body={"agent": "AIVA1"})
    started = json.loads(body)["call"]
    term = {
        "callTransactionId": started["callTransactionId"],
        "callSessionId": started["callSessionId"],
        "termCodeId": DONE_CODE,
        "phoneDialed": started["phoneNumber"],
        "moveAgentToNotReady": False,
    }
    path = "/callControl/agent/call/termCode"
    status, _, _ = await call(running, "PUT", path, session=session, json_body=term)
    assert status == 204
    status, body, response = await call(running, "PUT", path, session=session, json_body=term)
    assert status == 400
    assert response.headers.getRawHeaders("Content-Type")[0].startswith("application/json")
    assert json.loads(body) == {
        "code": 400,
        "message": f"Call {started['callTransactionId']} already has a term code ({DONE_CODE})",
    }

    status, body, _ = await call(running, "GET", "/_sandbox/stats")
    assert (status, json.loads(body)) == (200, {"contractErrors": 1})
    status, body, _ = await call(running, "GET", "/_sandbox/journal")
    saves = [e for e in json.loads(body)["entries"] if e["route"] == "agent.saveTermCode"]
    assert [(e["status"], e["repeat"], e["contract_error"]) for e in saves] == [
        (204, False, None),
        (400, True, "repeated term code"),
    ]


@pytest_twisted.ensureDeferred
async def test_versioned_paths(running: RunningSimulator) -> None:
    """/session/v6.0/login and /callControl/v5.0/agent/status work like the unversioned paths."""
    status, body, _ = await call(
        running, "POST", "/session/v6.0/login", token=TOKEN, json_body=LOGIN
    )
    assert status == 200
    session = json.loads(body)["sessionId"]
    status, _, _ = await call(running, "POST", "/callControl/v5.0/agent/status", session=session)
    assert status == 200
    status, body, _ = await call(running, "GET", "/callControl/v5.0/agent/nothing", session=session)
    assert (status, body) == (404, b'{"code":404,"message":"Resource not found"}')


@pytest_twisted.ensureDeferred
async def test_journal_since_and_admin_agents(running: RunningSimulator) -> None:
    """GET /_sandbox/journal?since=N answers only newer entries; /_sandbox/agents the lines."""
    await call(running, "POST", "/session/login", token=TOKEN, json_body=LOGIN)
    await call(running, "POST", "/session/login", token="bad", json_body=LOGIN)
    status, body, _ = await call(running, "GET", "/_sandbox/journal", params={"since": "1"})
    page = json.loads(body)
    assert status == 200
    assert [(e["seq"], e["status"]) for e in page["entries"]] == [(2, 401)]
    status, body, _ = await call(running, "GET", "/_sandbox/agents")
    agents = {a["user"]: a["state"] for a in json.loads(body)["agents"]}
    assert agents == {"AIVA1": "LOGON", "AIVA2": "LOGOFF", "AIVA3": "LOGOFF"}
    status, body, _ = await call(running, "POST", "/_sandbox/calls", json_body={"agent": "AIVA1"})
    assert status == 409
    assert json.loads(body)["code"] == 409


@pytest_twisted.ensureDeferred
async def test_aia_endpoint_auth(running: RunningSimulator) -> None:
    """The AIA path needs its own header and token (else 401), answers 200 and is journaled."""
    post = {
        "transactionId": "147516594361",
        "sessionId": "U1T2@10.1.1.1",
        "ani": "2134634007",
        "accountNumber": "1001",
        "nextAction": "transfer",
        "callOutcome": "escalated",
        "lvresult": "AGENT - Transfer",
        "Other1": "billing",
    }
    for headers in ({}, {AIA_HEADER: "wrong"}, {"LV-Access": TOKEN}):
        status, body, _ = await call(running, "POST", AIA_PATH, json_body=post, headers=headers)
        assert (status, body) == (401, b'{"code":401,"message":"Unauthorized"}')
    status, body, _ = await call(
        running, "POST", AIA_PATH, json_body=post, headers={AIA_HEADER: AIA_TOKEN}
    )
    assert status == 200
    status, _, _ = await call(running, "GET", AIA_PATH, headers={AIA_HEADER: AIA_TOKEN})
    assert status == 405
    assert running.simulator.aia_posts == [post]
    entries = running.simulator.journal.find("aia")
    assert [e.status for e in entries] == [401, 401, 401, 200, 405]
    assert entries[3].detail["body"] == post


@pytest_twisted.ensureDeferred
async def test_latency_waits_on_the_clock(clocked: tuple[RunningSimulator, Clock]) -> None:
    """With latency set, the answer waits until the simulator's clock has advanced."""
    running, clock = clocked
    running.simulator.set_latency(30)
    pending = ensureDeferred(call(running, "POST", "/session/login", token=TOKEN, json_body=LOGIN))
    await wait_for(lambda: _last_entry(running.simulator) is not None, "the login to arrive")
    clock.advance(29)
    assert not pending.called
    clock.advance(1)
    status, _, _ = await pending
    assert status == 200
    entry = _last_entry(running.simulator)
    assert entry is not None and entry.delivered is True


@pytest_twisted.ensureDeferred
async def test_client_gone_before_delayed_answer(clocked: tuple[RunningSimulator, Clock]) -> None:
    """A client that gives up during the latency is noticed: the entry says delivered=False."""
    running, clock = clocked
    running.simulator.set_latency(30)
    pending = ensureDeferred(call(running, "POST", "/session/login", token=TOKEN, json_body=LOGIN))
    await wait_for(lambda: _last_entry(running.simulator) is not None, "the login to arrive")
    pending.cancel()
    with pytest.raises(ResponseNeverReceived) as gave_up:
        await pending
    assert gave_up.value.reasons[0].check(CancelledError)
    entry = _last_entry(running.simulator)
    assert entry is not None
    await wait_for(lambda: entry.delivered is False, "the disconnect to be noticed")
    clock.advance(30)  # the cancelled answer must not be written now
    assert entry.delivered is False
    assert entry.status == 200  # the login was applied all the same


@pytest_twisted.ensureDeferred
async def test_outage_drop_mode_drops_connections(running: RunningSimulator) -> None:
    """An outage in drop mode aborts the connection; after clearing it, requests are served."""
    running.simulator.start_outage(mode="drop")
    with pytest.raises(ResponseNeverReceived):
        await call(running, "POST", "/session/login", token=TOKEN, json_body=LOGIN)
    running.simulator.clear_outage()
    status, _, _ = await call(running, "POST", "/session/login", token=TOKEN, json_body=LOGIN)
    assert status == 200


def test_stub_treq_in_memory() -> None:
    """The resource tree works under treq's StubTreq, with latency flushed on a task.Clock."""
    clock = Clock()
    simulator = Simulator(make_sandbox_config(), clock)
    stub: Any = StubTreq(SimulatorRoot(simulator))
    simulator.set_latency(5)
    responses: list[Any] = []
    stub.post(
        "http://lv.example/session/login", json=LOGIN, headers={"LV-Access": TOKEN}
    ).addCallback(responses.append)
    stub.flush()
    assert responses == []
    clock.advance(5)
    stub.flush()
    assert [r.code for r in responses] == [200]
    bodies: list[bytes] = []
    stub.content(responses[0]).addCallback(bodies.append)
    stub.flush()
    assert b"sessionId" in bodies[0]
