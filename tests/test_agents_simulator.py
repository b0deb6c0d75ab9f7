"""Fifty agents through the real client, over loopback HTTP, against the LiveVox simulator: READY, an outage, READY again.

The simulator, the pool and the client share one ``task.Clock``: the test
advances it in small steps, and only while no request is in flight, letting
the real reactor carry the HTTP between steps. So timeouts, retry delays,
backoffs, polls and the outage all happen in clock time, and every wait is
bounded both in clock time and in real time.
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

from lvgateway.agents.pool import AgentPool
from lvgateway.backoff import Backoff
from lvgateway.config.model import AgentConfig, AgentTimings
from lvgateway.config.secret import Secret
from lvgateway.livevox.client import LiveVoxClient
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.testing import livevox_config
from lvgateway.livevox.transport import http_client_for
from lvgateway.metrics import new_registry
from lvgateway.sandbox.livevox_web import RunningSimulator, start_simulator
from lvgateway.sandbox.sandbox_config import sandbox_config_from_dict
from lvgateway.sandbox.testing import (
    AGENT_PASSWORD,
    CLIENT_NAME,
    SERVICE_ID,
    TOKEN,
    agent_number,
    sandbox_config_dict,
)

from .test_agents_support import ALWAYS_OPEN

REACTOR: Any = _reactor
AGENTS = 50
OUTAGE = 300.0
MAX_RETRIES = 2
TIMINGS = AgentTimings(
    login_concurrency=10,
    cycle_interval=600.0,
    reconcile_interval=60.0,
    backoff_base=1.0,
    backoff_max=30.0,
    not_ready_reason="AI Break",
)


@attrs.define
class Run:
    """The simulator, the pool and the clock they share."""

    clock: Clock
    running: RunningSimulator
    pool: AgentPool
    registry: CollectorRegistry

    @property
    def sim(self) -> Any:
        """The simulator."""
        return self.running.simulator

    def in_flight(self) -> float:
        """Requests the client has sent and not yet had answered."""
        value = self.registry.get_sample_value("lvgateway_livevox_requests_in_flight")
        return value or 0.0

    async def until(
        self,
        predicate: Callable[[], bool],
        what: str,
        clock_bound: float,
        step: float = 0.5,
        real_bound: float = 60.0,
    ) -> None:
        """Advance the clock in steps while nothing is in flight, until ``predicate()``; bounded twice."""
        clock_deadline = self.clock.seconds() + clock_bound
        real_deadline = REACTOR.seconds() + real_bound
        while not predicate():
            if self.clock.seconds() > clock_deadline or REACTOR.seconds() > real_deadline:
                raise AssertionError(
                    f"gave up waiting for {what} (clock +{clock_bound}s, real {real_bound}s): "
                    f"{self.pool!r}"
                )
            if self.in_flight() == 0:
                self.clock.advance(step)
            await deferLater(REACTOR, 0, lambda: None)

    def all_ready(self) -> bool:
        """Every agent READY in the pool and at the simulator."""
        return self.pool.counts()["ready"] == AGENTS and all(
            line["state"] == "READY" for line in self.sim.agent_states()
        )

    def journal(self, since: int, *routes: str) -> list[Any]:
        """Journal entries after ``since`` of the given routes."""
        return [e for e in self.sim.journal_since(since) if e.route in routes]


@pytest_twisted.async_yield_fixture
async def run() -> AsyncIterator[Run]:
    """A simulator with fifty agents on loopback, and a pool of them on the real client, stopped after."""
    clock = Clock()
    clock.advance(1_700_000_000)
    data = sandbox_config_dict()
    data["livevox"]["journal_size"] = 100_000
    data["users"] = [
        {"name": f"AIVA{n}", "password": AGENT_PASSWORD, "phone_number": agent_number(n)}
        for n in range(1, AGENTS + 1)
    ]
    running = await start_simulator(
        REACTOR, clock, sandbox_config_from_dict(data, "<test>", environ={})
    )
    http_pool = HTTPConnectionPool(REACTOR, persistent=True)
    http_pool.maxPersistentPerHost = 20
    config = livevox_config(
        base_url=running.base_url,
        client_name=CLIENT_NAME,
        token=Secret(TOKEN, "test"),
        request_timeout=5.0,
        max_in_flight=20,
        max_retries=MAX_RETRIES,
        retry_base_delay=0.5,
        retry_max_delay=2.0,
    )
    registry = new_registry(version="test", process_metrics=False)
    client = LiveVoxClient(
        config,
        clock,
        http_client_for(REACTOR, config, pool=http_pool),
        LiveVoxMetrics(registry),
    )
    agents = [
        AgentConfig(
            f"AIVA{n}", Secret(AGENT_PASSWORD, "test"), agent_number(n), SERVICE_ID, f"a[{n}]"
        )
        for n in range(1, AGENTS + 1)
    ]
    pool = AgentPool(agents, client, clock, TIMINGS, ALWAYS_OPEN, registry=registry)
    try:
        yield Run(clock, running, pool, registry)
    finally:
        await pool.stopService()
        await http_pool.closeCachedConnections()
        await running.stop()


def attempts_within(seconds: float) -> int:
    """The most attempts one agent can make in ``seconds`` of failures: every delay at its least."""
    attempts, elapsed = 1, 0.0
    while True:
        elapsed += Backoff(TIMINGS.backoff_base, TIMINGS.backoff_max, lambda: 0.0).delay(attempts - 1)
        if elapsed > seconds:
            return attempts
        attempts += 1


@pytest_twisted.ensureDeferred
async def test_fifty_agents_ready_survive_an_outage_with_bounded_attempts(run: Run) -> None:
    """Fifty agents come READY; a five-minute outage that loses every session is ridden out; all are READY again with no more logins and READYs than the backoff allows."""
    run.pool.startService()
    await run.until(run.all_ready, "fifty agents READY", clock_bound=120.0)
    assert len(run.journal(0, "session.login")) == AGENTS
    assert len(run.journal(0, "agent.ready")) == AGENTS

    before = run.sim.journal.last_seq
    outage_began = run.clock.seconds()
    run.sim.start_outage(duration=OUTAGE)
    run.sim.expire_sessions()  # LiveVox comes back without the sessions it had
    for view in run.pool.views():  # and the gateway hears of it at once (a wrap-up's 401)
        session = run.pool.agent(view.user_name).session
        assert session is not None
        run.pool.session_expired(view.user_name, session)
    await run.until(
        lambda: run.clock.seconds() >= outage_began + OUTAGE, "the outage to pass", OUTAGE + 60
    )
    during = run.journal(before, "session.login")
    assert len(during) > AGENTS, "logins were retried against the outage"
    assert all(e.status == 503 for e in during)
    counts = run.pool.counts()
    assert counts["backing_off"] + counts["logging_in"] == AGENTS, counts
    await run.until(run.all_ready, "every agent READY again", clock_bound=300.0)
    recovered = run.clock.seconds() - outage_began

    # Each pool attempt is at most 1 + max_retries requests, and an agent makes
    # at most attempts_within(recovered) of them; then one login and one READY
    # (each retried if it met the outage's end).
    per_agent = attempts_within(recovered) * (1 + MAX_RETRIES) + 2 * (1 + MAX_RETRIES)
    logins = run.journal(before, "session.login")
    readies = run.journal(before, "agent.ready")
    assert len(logins) + len(readies) <= AGENTS * per_agent
    assert {e.user for e in logins if e.status == 200} == {f"AIVA{n}" for n in range(1, AGENTS + 1)}
    # and no agent spun on any request (outage answers carry no user: count them all)
    everything = run.journal(
        before, "session.login", "agent.join", "agent.ready", "agent.notReady", "agent.status"
    )
    assert len(everything) <= AGENTS * (attempts_within(recovered) + 3) * (1 + MAX_RETRIES)
    assert run.registry.get_sample_value(
        "lvgateway_agent_relogins_total", {"cause": "expired"}
    ) == float(AGENTS)
