"""A stranded agent against the LiveVox simulator over loopback HTTP: READY again within one reconcile interval after the grace.

The simulator puts a call on an agent's line through its admin API
(``POST /_sandbox/calls``) and no SIP INVITE follows, as when LiveVox routes a
call whose INVITE never reaches the gateway. The pool, on the real client,
must close the call with its term code (and, where the simulator refuses a
term code while INCALL, end it first). As in ``test_agents_simulator.py``,
the simulator, the pool and the client share one ``task.Clock``, advanced
only while no request is in flight, and every wait is bounded in clock time
and in real time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest_twisted
from prometheus_client import CollectorRegistry
from treq.client import HTTPClient
from twisted.internet import reactor as _reactor
from twisted.internet.task import Clock, deferLater
from twisted.web.client import Agent, HTTPConnectionPool

from lvgateway.agents.pool import AgentPool
from lvgateway.agents.stranded import StrandedSettings
from lvgateway.config.model import AgentConfig, AgentTimings
from lvgateway.config.secret import Secret
from lvgateway.livevox.client import LiveVoxClient
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.testing import livevox_config
from lvgateway.livevox.transport import http_client_for
from lvgateway.metrics import new_registry
from lvgateway.sandbox.livevox_web import RunningSimulator, start_simulator
from lvgateway.sandbox.testing import (
    AGENT_PASSWORD,
    CLIENT_NAME,
    SERVICE_ID,
    TOKEN,
    TRANSFER_CODE,
    agent_number,
    make_sandbox_config,
)

from .test_agents_support import ALWAYS_OPEN

REACTOR: Any = _reactor
AGENTS = 3
STRANDED = "AIVA2"
RECONCILE = 60.0
GRACE = 60.0
STEP = 0.5
TIMINGS = AgentTimings(
    login_concurrency=10,
    cycle_interval=3600.0,
    reconcile_interval=RECONCILE,
    backoff_base=1.0,
    backoff_max=30.0,
    not_ready_reason="AI Break",
)
SETTINGS = StrandedSettings(
    grace=GRACE,
    term_code="transfer",
    names={"done": "AI Completed", "transfer": "Transfer To Agent"},
    fallback="done",
)


@attrs.define
class Run:
    """The simulator, the pool, an admin client and the clock they share."""

    clock: Clock
    running: RunningSimulator
    pool: AgentPool
    registry: CollectorRegistry
    admin: HTTPClient

    @property
    def sim(self) -> Any:
        """The simulator."""
        return self.running.simulator

    async def until(
        self, predicate: Callable[[], bool], what: str, clock_bound: float, real_bound: float = 60.0
    ) -> None:
        """Advance the clock in steps while nothing is in flight, until ``predicate()``; bounded twice."""
        clock_deadline = self.clock.seconds() + clock_bound
        real_deadline = REACTOR.seconds() + real_bound
        while not predicate():
            if self.clock.seconds() > clock_deadline or REACTOR.seconds() > real_deadline:
                raise AssertionError(
                    f"gave up waiting for {what} (clock +{clock_bound}s, real {real_bound}s): "
                    f"{self.pool!r}, {self.sim.agent(STRANDED).state}"
                )
            in_flight = self.registry.get_sample_value("lvgateway_livevox_requests_in_flight")
            if not in_flight:
                self.clock.advance(STEP)
            await deferLater(REACTOR, 0, lambda: None)

    def ready(self, user: str) -> bool:
        """The agent READY in the pool and at the simulator."""
        return (
            self.pool.agent(user).state.value == "ready"
            and self.sim.agent(user).state.value == "READY"
        )

    def entries(self, since: int, user: str, *routes: str) -> list[Any]:
        """The agent's journal entries after ``since`` of the given routes."""
        return [e for e in self.sim.journal_since(since) if e.route in routes and e.user == user]

    async def strand(self, user: str) -> dict[str, Any]:
        """Put a call on the agent's line through the simulator's admin API, with no SIP INVITE."""
        response = await self.admin.post(
            self.running.base_url + "/_sandbox/calls", json={"agent": user}
        )
        body = await response.json()
        assert response.code == 201, body
        call: dict[str, Any] = body["call"]
        return call


async def _run(**livevox: Any) -> AsyncIterator[Run]:
    clock = Clock()
    clock.advance(1_700_000_000)
    running = await start_simulator(REACTOR, clock, make_sandbox_config(**livevox))
    http_pool = HTTPConnectionPool(REACTOR, persistent=True)
    config = livevox_config(
        base_url=running.base_url,
        client_name=CLIENT_NAME,
        token=Secret(TOKEN, "test"),
        request_timeout=5.0,
        max_retries=1,
    )
    registry = new_registry(version="test", process_metrics=False)
    client = LiveVoxClient(
        config, clock, http_client_for(REACTOR, config, pool=http_pool), LiveVoxMetrics(registry)
    )
    agents = [
        AgentConfig(
            f"AIVA{n}", Secret(AGENT_PASSWORD, "test"), agent_number(n), SERVICE_ID, f"a[{n}]"
        )
        for n in range(1, AGENTS + 1)
    ]
    pool = AgentPool(
        agents,
        client,
        clock,
        TIMINGS,
        ALWAYS_OPEN,
        registry=registry,
        call_api=client,
        stranded=SETTINGS,
    )
    admin = HTTPClient(Agent(REACTOR, pool=http_pool))  # type: ignore[no-untyped-call]
    try:
        yield Run(clock, running, pool, registry, admin)
    finally:
        await pool.stopService()
        await http_pool.closeCachedConnections()
        await running.stop()


@pytest_twisted.async_yield_fixture
async def run() -> AsyncIterator[Run]:
    """A simulator that saves a term code for a call INCALL, and a pool on the real client."""
    async for r in _run():
        yield r


@pytest_twisted.async_yield_fixture
async def refusing() -> AsyncIterator[Run]:
    """A simulator that refuses a term code for a call INCALL until the call is ended."""
    async for r in _run(refuse_term_code_in_call=True):
        yield r


async def _stranded_agent_comes_back(r: Run) -> tuple[dict[str, Any], int]:
    """Bring the pool in, strand an agent, and wait for it to be READY again within the bound."""
    r.pool.startService()
    await r.until(
        lambda: all(r.ready(f"AIVA{n}") for n in range(1, AGENTS + 1)), "agents READY", 60.0
    )
    # Strand it just after a poll of it: the worst case, a whole interval unseen.
    polled = r.sim.journal.last_seq
    await r.until(
        lambda: bool(r.entries(polled, STRANDED, "agent.status")), "a poll", RECONCILE + STEP
    )
    before = r.sim.journal.last_seq
    stranded_at = r.clock.seconds()
    call = await r.strand(STRANDED)
    assert r.sim.agent(STRANDED).state.value == "INCALL"

    def repaired() -> bool:
        saved = r.entries(before, STRANDED, "agent.saveTermCode")
        return any(e.status == 204 for e in saved) and r.ready(STRANDED)

    # The first poll comes within one reconcile interval, the repair one grace
    # after it; a clock step of slack for the steps the test advances in.
    await r.until(repaired, "the stranded agent READY again", GRACE + RECONCILE + STEP)
    assert r.clock.seconds() - stranded_at <= GRACE + RECONCILE + STEP
    return call, before


@pytest_twisted.ensureDeferred
async def test_a_stranded_agent_is_ready_again_after_the_grace(run: Run) -> None:
    """The simulator's call with no INVITE is closed with the transfer term code, its ids and number; no call end; no contract broken."""
    call, before = await _stranded_agent_comes_back(run)
    (saved,) = run.entries(before, STRANDED, "agent.saveTermCode")
    assert saved.status == 204 and saved.repeat is False
    assert saved.detail["callTransactionId"] == call["callTransactionId"]
    assert saved.detail["callSessionId"] == call["callSessionId"]
    assert saved.detail["termCodeId"] == TRANSFER_CODE
    assert saved.detail["phoneDialed"] == call["phoneNumber"]
    assert saved.detail["moveAgentToNotReady"] is False
    assert run.entries(before, STRANDED, "agent.endCall") == []
    assert run.sim.stats()["contractErrors"] == 0
    assert (
        run.registry.get_sample_value("lvgateway_agent_repairs_total", {"outcome": "term_code"})
        == 1.0
    )
    others = [e for n in (1, 3) for e in run.entries(before, f"AIVA{n}", "agent.saveTermCode")]
    assert others == [], "only the stranded agent is touched"


@pytest_twisted.ensureDeferred
async def test_a_term_code_refused_in_call_ends_the_call_first(refusing: Run) -> None:
    """Where the simulator refuses a term code while INCALL: the refused save, the call end, the save again, in that order."""
    call, before = await _stranded_agent_comes_back(refusing)
    steps = [
        (e.route, e.status)
        for e in refusing.entries(
            before, STRANDED, "agent.saveTermCode", "agent.endCall", "agent.status"
        )
        if e.route != "agent.status"
    ]
    assert steps == [
        ("agent.saveTermCode", 400),
        ("agent.endCall", 204),
        ("agent.saveTermCode", 204),
    ]
    last = refusing.entries(before, STRANDED, "agent.saveTermCode")[-1]
    assert last.detail["callTransactionId"] == call["callTransactionId"]
    assert refusing.sim.stats()["contractErrors"] == 0
    assert (
        refusing.registry.get_sample_value("lvgateway_agent_repairs_total", {"outcome": "call_end"})
        == 1.0
    )
