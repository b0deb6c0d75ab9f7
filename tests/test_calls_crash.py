"""The crash test: the gateway side is killed with SIGKILL mid-call and mid-wrap-up, then started again.

The simulator runs in this process, over real HTTP on loopback, and holds
its answers to term codes (a latency fault), so the three calls that end
have their term codes applied at "LiveVox" but never answered. The gateway
side (``tests/calls_crash_gateway.py``, a real process) is killed with
SIGKILL while three other calls are live, then started again on the same
state directory. Afterwards the simulator's journal must show, for every
call, its term code applied exactly once (any repeat answered as a repeat),
and an AIA post for each.
"""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from lvgateway.sandbox.livevox_web import RunningSimulator, start_simulator
from lvgateway.sandbox.sandbox_config import sandbox_config_from_dict
from lvgateway.sandbox.simulator import SimRequest, SimResponse, Simulator
from lvgateway.sandbox.testing import (
    DONE_CODE,
    TRANSFER_CODE,
    agent_number,
    sandbox_config_dict,
)

REACTOR: Any = reactor
ROOT = Path(__file__).resolve().parent.parent
SCRIPT = str(ROOT / "tests" / "calls_crash_gateway.py")
AGENTS = 6
ENDING = 3
BOUND = 30.0


@attrs.define
class WatchedSimulator(Simulator):
    """A simulator that fires a Deferred once ``ENDING`` term code saves have arrived."""

    term_codes_arrived: Deferred[None] = attrs.field(init=False, factory=Deferred)
    _seen: int = attrs.field(init=False, default=0)

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer as the simulator does, counting term code saves."""
        response = super().handle(request)
        if response.entry is not None and response.entry.route == "agent.saveTermCode":
            self._seen += 1
            if self._seen >= ENDING and not self.term_codes_arrived.called:
                self.term_codes_arrived.callback(None)
        return response


class GatewayProcess(ProcessProtocol):
    """The gateway script's process: its output lines, and waits on them."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.lines: list[str] = []
        self._partial = b""
        self.stderr = b""
        self._waits: list[tuple[Callable[[list[str]], bool], Deferred[None]]] = []
        self.ended: Deferred[int | None] = Deferred()
        self.signal: int | None = None

    def outReceived(self, data: bytes) -> None:
        """Split output into lines and wake the waits they satisfy."""
        self._partial += data
        *complete, self._partial = self._partial.split(b"\n")
        self.lines.extend(line.decode("utf-8", "replace") for line in complete)
        for predicate, d in list(self._waits):
            if predicate(self.lines):
                self._waits.remove((predicate, d))
                d.callback(None)

    def errReceived(self, data: bytes) -> None:
        """Keep standard error for the failure message."""
        self.stderr += data

    def processEnded(self, reason: Failure) -> None:
        """Fire :attr:`ended` with the exit code (``None`` when killed by a signal)."""
        value = reason.value
        if isinstance(value, ProcessTerminated):
            self.signal = value.signal
        code = value.exitCode if isinstance(value, ProcessDone | ProcessTerminated) else None
        self.ended.callback(code)

    def wait_for(self, predicate: Callable[[list[str]], bool], what: str) -> Deferred[None]:
        """Fire once the output satisfies ``predicate``; fail after :data:`BOUND` seconds."""
        d: Deferred[None] = Deferred()
        if predicate(self.lines):
            d.callback(None)
        else:
            self._waits.append((predicate, d))
        return bounded(d, f"the {self.phase} phase to print {what}", self)

    def describe(self) -> str:
        """Everything the process said, for a failure message."""
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr.decode("utf-8", "replace")


def bounded(d: Deferred[Any], what: str, process: GatewayProcess | None = None) -> Deferred[Any]:
    """Bound a wait by :data:`BOUND` seconds, failing with what was waited for."""

    def timed_out(result: Any, timeout: float) -> Any:
        said = process.describe() if process is not None else ""
        raise AssertionError(f"gave up after {timeout}s waiting for {what}\n{said}")

    return d.addTimeout(BOUND, REACTOR, onTimeoutCancel=timed_out)


def sandbox_with_agents(count: int) -> Any:
    """The sandbox's test config with agents AIVA1..AIVA<count>."""
    data = sandbox_config_dict()
    agents = [u for u in data["users"] if u.get("agent", True)]
    users = [u for u in data["users"] if not u.get("agent", True)]
    template = agents[0]
    data["users"] = [
        {**template, "name": f"AIVA{n}", "user_id": 5000 + n, "phone_number": agent_number(n)}
        for n in range(1, count + 1)
    ] + users
    return sandbox_config_from_dict(data, "<crash test>", environ={})


@pytest_twisted.async_yield_fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """The simulator over HTTP on loopback, in this process, on the real clock."""
    config = sandbox_with_agents(AGENTS)
    running = await start_simulator(
        REACTOR, REACTOR, config, simulator=WatchedSimulator(config, REACTOR)
    )
    yield running
    await running.stop()


def spawn(phase: str, running: RunningSimulator, state_dir: Path) -> GatewayProcess:
    """Start the gateway script for one phase."""
    process = GatewayProcess(phase)
    args = [
        sys.executable,
        SCRIPT,
        "--base-url",
        running.base_url,
        "--state-dir",
        str(state_dir),
        "--phase",
        phase,
        "--agents",
        str(AGENTS),
        "--ending",
        str(ENDING),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    REACTOR.spawnProcess(process, sys.executable, args, env=env, path=str(ROOT))
    return process


@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_sigkill_mid_call_and_mid_wrapup_loses_nothing(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    """After SIGKILL and a restart, every call has its term code applied exactly once and its AIA posted."""
    sim = simulator.simulator
    assert isinstance(sim, WatchedSimulator)
    sim.set_latency(3600.0, "agent.saveTermCode")

    crash = spawn("crash", simulator, tmp_path)
    try:
        await crash.wait_for(lambda lines: "ENDED" in lines, "ENDED")
        await bounded(sim.term_codes_arrived, "the held term codes to arrive", crash)
        accepted = [line.split()[1] for line in crash.lines if line.startswith("ACCEPTED")]
        assert len(accepted) == AGENTS
        live, ending = accepted[: AGENTS - ENDING], accepted[AGENTS - ENDING :]
        assert all(f"STEP {call_id} term_code sent" in crash.lines for call_id in ending)
        # A live call has no wrap-up step yet: its id shows only on its ACCEPTED line.
        assert all(sum(call_id in line for line in crash.lines) == 1 for call_id in live)
    finally:
        crash.transport.signalProcess("KILL")  # type: ignore[union-attr]
        await bounded(crash.ended, "the killed process to end", crash)
    assert crash.signal == 9, crash.describe()
    held = sim.journal.find("agent.saveTermCode")
    assert len(held) == ENDING
    assert all(entry.delivered is False for entry in held)
    in_call = {line["user"] for line in sim.agent_states() if line["state"] == "INCALL"}
    assert len(in_call) == AGENTS - ENDING

    sim.set_latency(0.0, "agent.saveTermCode")
    recover = spawn("recover", simulator, tmp_path)
    await recover.wait_for(lambda lines: "IDLE" in lines, "IDLE")
    code = await bounded(recover.ended, "the recover phase to exit", recover)
    assert code == 0, recover.describe()

    states = {line["user"]: line for line in sim.agent_states()}
    for n in range(1, AGENTS + 1):
        line = states[f"AIVA{n}"]
        assert line["state"] == "READY", line
        call = line["lastCall"]
        assert call is not None and call["termCodeId"] is not None
        expected = DONE_CODE if n > AGENTS - ENDING else TRANSFER_CODE
        assert call["termCodeId"] == expected, (n, call)
        txn = call["callTransactionId"]
        saves = [
            e
            for e in sim.journal.find("agent.saveTermCode")
            if e.detail.get("callTransactionId") == txn
        ]
        applied = [e for e in saves if e.status == 204 and e.repeat is False]
        assert len(applied) == 1, saves
        assert all(e.repeat is True and e.status == 204 for e in saves if e not in applied)
        assert [p for p in sim.aia_posts if p.get("transactionId") == txn], txn
    checked = [line for line in recover.lines if line.endswith("term_code checked")]
    assert len(checked) == ENDING, recover.describe()
    # Nothing was sent twice: three held saves before the kill, three for the live calls after.
    assert len(sim.journal.find("agent.saveTermCode")) == AGENTS
