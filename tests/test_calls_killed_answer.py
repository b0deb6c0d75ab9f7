"""A term code save applied at LiveVox but answered 503: the gateway must not save it again.

The simulator listens on loopback (the real reactor and clock) and fails the
next term code save *after* applying it, so the call is closed at "LiveVox"
while the gateway hears a 503. The gateway side is in this process: the real
REST and AIA clients over real HTTP, the call store with its wrap-up
pipeline, the stand-in agent pool, and the stand-in SIP source, which has the
simulator put calls through and end them over its admin API. The wrap-up
must find from the agent's status that the save landed (under both readings
of a closed call's status that docs/livevox-api.md allows), send nothing again,
and leave the agent READY for its next call.
"""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.web.client import HTTPConnectionPool

from lvgateway.calls.blocking import ThreadPoolRunner
from lvgateway.calls.store import CallStore
from lvgateway.calls.testing import SandboxAdmin, SimulatorRig, agent_configs, simulator_rig
from lvgateway.livevox.testing import livevox_config
from lvgateway.livevox.transport import http_client_for
from lvgateway.sandbox.journal import JournalEntry
from lvgateway.sandbox.livevox_web import RunningSimulator, start_simulator
from lvgateway.sandbox.simulator import Simulator
from lvgateway.sandbox.testing import (
    AGENT_PASSWORD,
    AIA_HEADER,
    AIA_PATH,
    AIA_TOKEN,
    CLIENT_NAME,
    DONE_CODE,
    SERVICE_ID,
    TOKEN,
    make_sandbox_config,
)
from tests.test_calls_crash import REACTOR, bounded

AGENT = "AIVA1"


class Steps:
    """Every wrap-up step outcome the call service reports, and a wait for each call's end."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        self._waits: dict[str, Deferred[str]] = {}

    def __call__(self, call_id: str, step: str, outcome: str) -> None:
        """Note one outcome; a ``wrapup`` outcome ends the call's wait."""
        self.seen.append((call_id, step, outcome))
        if step == "wrapup" and call_id in self._waits:
            self._waits.pop(call_id).callback(outcome)

    def finished(self, call_id: str) -> Deferred[str]:
        """Fire with ``done`` or ``dead`` once the call's wrap-up is over; fail after a bound."""
        ended = [outcome for c, step, outcome in self.seen if c == call_id and step == "wrapup"]
        d: Deferred[str] = Deferred()
        if ended:
            d.callback(ended[0])
        else:
            self._waits[call_id] = d
        return bounded(d, f"the wrap-up of {call_id} to end\nsteps: {self.of(call_id)}")

    def of(self, call_id: str) -> list[tuple[str, str]]:
        """The call's ``(step, outcome)`` pairs, in order."""
        return [(step, outcome) for c, step, outcome in self.seen if c == call_id]


@attrs.frozen
class Gateway:
    """The simulator on loopback, and the gateway's call service wired to it over HTTP."""

    running: RunningSimulator
    rig: SimulatorRig
    steps: Steps

    @property
    def sim(self) -> Simulator:
        """The simulator."""
        return self.running.simulator


@pytest_twisted.async_yield_fixture
async def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    """A started call service with agent AIVA1 READY; parametrized with ``status_shows_last_call``."""
    config = make_sandbox_config(status_shows_last_call=request.param)
    running = await start_simulator(REACTOR, REACTOR, config)
    pool = HTTPConnectionPool(REACTOR, persistent=True)
    http = http_client_for(REACTOR, livevox_config(), pool=pool)
    admin = SandboxAdmin(http, running.base_url)
    rig = simulator_rig(
        base_url=running.base_url,
        clock=REACTOR,
        http=http,
        store=CallStore(str(tmp_path), ThreadPoolRunner(REACTOR)),
        agents=agent_configs(1, AGENT_PASSWORD, SERVICE_ID),
        client_name=CLIENT_NAME,
        token=TOKEN,
        aia_path=AIA_PATH,
        aia_token=AIA_TOKEN,
        aia_header=AIA_HEADER,
        dial=admin.dial,
        leg_ended=admin.leg_ended,
        request_timeout=5.0,
    )
    steps = Steps()
    rig.calls.add_listener(steps)
    rig.calls.startService()
    try:
        await bounded(rig.calls.when_recovered(), "the call service to start")
        await rig.pool.bring_in(AGENT)
        yield Gateway(running, rig, steps)
    finally:
        await rig.calls.stopService()
        await pool.closeCachedConnections()
        await running.stop()


async def call_and_hang_up(gw: Gateway) -> tuple[str, str]:
    """Put a call through to the agent and have the caller hang up; return its call id and transaction id."""
    record = await gw.rig.source.place(AGENT)
    await gw.rig.source.caller_hangs_up(record.call_id)
    txn = gw.rig.source.placed[record.call_id].call_transaction_id
    assert txn is not None
    return record.call_id, txn


def saves_for(sim: Simulator, txn: str) -> list[JournalEntry]:
    """The simulator's journal entries of term code saves naming transaction ``txn``."""
    return [
        e
        for e in sim.journal.find("agent.saveTermCode")
        if e.detail.get("callTransactionId") == txn
    ]


@pytest.mark.parametrize(
    "gateway", [False, True], ids=["call-gone", "last-call-shown"], indirect=True
)
@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_term_code_answered_503_after_apply_is_not_saved_again(gateway: Gateway) -> None:
    """A save applied but answered 503 is checked, not repeated; the agent ends READY and takes its next call."""
    gw, sim = gateway, gateway.sim
    sim.fail_next("agent.saveTermCode", 1, 503, when="after")
    call_id, txn = await call_and_hang_up(gw)
    outcome = await gw.steps.finished(call_id)
    assert outcome == "done", gw.steps.of(call_id)

    saves = saves_for(sim, txn)
    assert [(e.status, e.fault, e.repeat) for e in saves] == [(503, "fail_next", False)]
    assert sim.contract_errors == 0, saves
    assert sim.journal.find(repeat=True) == []
    assert ("term_code", "checked") in gw.steps.of(call_id)
    line = sim.agent(AGENT)
    assert line.state.value == "READY"
    assert line.last_call is not None and line.last_call.call_transaction_id == txn
    assert (line.last_call.term_code_id, line.last_call.repeats) == (DONE_CODE, 0)
    assert gw.rig.pool.wrapups_done() == {call_id: False}

    # The agent takes its next call, and that call is saved once too.
    next_id, next_txn = await call_and_hang_up(gw)
    assert await gw.steps.finished(next_id) == "done", gw.steps.of(next_id)
    assert [(e.status, e.repeat) for e in saves_for(sim, next_txn)] == [(204, False)]
    assert sim.agent(AGENT).state.value == "READY"
    assert sim.contract_errors == 0
    assert len(sim.journal.find("agent.saveTermCode")) == 2
    assert {p["transactionId"] for p in sim.aia_posts} == {txn, next_txn}
