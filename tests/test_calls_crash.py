"""The crash tests: the gateway side is killed with SIGKILL mid-call and mid-wrap-up, then started again.

The simulator runs in this process, over real HTTP on loopback, and holds
its answers to one wrap-up route (a latency fault): the AIA post, the
contact update or the term code save. So the three calls that end have that
step applied at "LiveVox" but never answered. The gateway side
(``tests/calls_crash_gateway.py``, a real process) is killed with SIGKILL
while three other calls are live, then started again on the same state
directory. Afterwards the simulator must show, for every call, its term code
applied exactly once (no repeat, no contract error) and an AIA post.

Killed during the term code save, the restarted gateway must find the save
landed from the agent's status alone: that is run under both readings of a
closed call's status that docs/livevox-api.md allows (the call gone from the line,
or still shown as the last call on a READY line: ``status_shows_last_call``).
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
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from lvgateway.sandbox.livevox_web import RunningSimulator, start_simulator
from lvgateway.sandbox.sandbox_config import SandboxConfig, sandbox_config_from_dict
from lvgateway.sandbox.simulator import SimRequest, SimResponse, Simulator
from lvgateway.sandbox.testing import (
    CONTACT_ACCOUNT,
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

#: The wrap-up steps in order, each with the simulator route that takes it.
STEPS = {"aia": "aia", "contact": "contact.update", "term_code": "agent.saveTermCode"}

#: The two readings of a closed call's status, as ``status_shows_last_call``.
READINGS = pytest.mark.parametrize(
    "simulator", [False, True], ids=["call-gone", "last-call-shown"], indirect=True
)


@attrs.define
class WatchedSimulator(Simulator):
    """A simulator whose :meth:`arrivals` fire once enough requests to a route have arrived."""

    _watches: list[tuple[str, int, Deferred[None]]] = attrs.field(init=False, factory=list)

    def arrivals(self, route: str, count: int) -> Deferred[None]:
        """Fire once ``count`` requests to ``route`` have been journaled."""
        d: Deferred[None] = Deferred()
        self._watches.append((route, count, d))
        self._wake()
        return d

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer as the simulator does, then wake the watches the request satisfies."""
        response = super().handle(request)
        self._wake()
        return response

    def _wake(self) -> None:
        for watch in list(self._watches):
            route, count, d = watch
            if len(self.journal.find(route)) >= count:
                self._watches.remove(watch)
                d.callback(None)


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

    def has_lines(self, *lines: str) -> Deferred[None]:
        """Fire once the output holds every one of ``lines``; fail after :data:`BOUND` seconds."""
        return self.wait_for(lambda said: all(line in said for line in lines), ", ".join(lines))

    def describe(self) -> str:
        """Everything the process said, for a failure message."""
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr.decode("utf-8", "replace")


def bounded(d: Deferred[Any], what: str, process: GatewayProcess | None = None) -> Deferred[Any]:
    """Bound a wait by :data:`BOUND` seconds, failing with what was waited for."""

    def timed_out(result: Any, timeout: float) -> Any:
        said = process.describe() if process is not None else ""
        raise AssertionError(f"gave up after {timeout}s waiting for {what}\n{said}")

    return d.addTimeout(BOUND, REACTOR, onTimeoutCancel=timed_out)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds, looking again every 10 ms; fail after :data:`BOUND` seconds."""
    deadline = REACTOR.seconds() + BOUND
    while not condition():
        if REACTOR.seconds() > deadline:
            raise AssertionError(f"gave up after {BOUND}s waiting for {what}")
        await deferLater(REACTOR, 0.01, lambda: None)


def sandbox_with_agents(count: int, **livevox: Any) -> SandboxConfig:
    """The sandbox's test config with agents AIVA1..AIVA<count>; ``livevox`` sets ``[livevox]`` keys."""
    data = sandbox_config_dict()
    data["livevox"].update(livevox)
    agents = [u for u in data["users"] if u.get("agent", True)]
    users = [u for u in data["users"] if not u.get("agent", True)]
    template = agents[0]
    data["users"] = [
        {**template, "name": f"AIVA{n}", "user_id": 5000 + n, "phone_number": agent_number(n)}
        for n in range(1, count + 1)
    ] + users
    return sandbox_config_from_dict(data, "<crash test>", environ={})


@pytest_twisted.async_yield_fixture
async def simulator(request: pytest.FixtureRequest) -> AsyncIterator[RunningSimulator]:
    """The simulator over HTTP on loopback, in this process, on the real clock.

    Parametrized indirectly with ``status_shows_last_call`` (false by default).
    """
    config = sandbox_with_agents(AGENTS, status_shows_last_call=getattr(request, "param", False))
    running = await start_simulator(
        REACTOR, REACTOR, config, simulator=WatchedSimulator(config, REACTOR)
    )
    yield running
    await running.stop()


def spawn(
    phase: str, running: RunningSimulator, state_dir: Path, contact: bool = False
) -> GatewayProcess:
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
    if contact:
        args.append("--contact")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    REACTOR.spawnProcess(process, sys.executable, args, env=env, path=str(ROOT))
    return process


@attrs.frozen
class Crash:
    """What the crash phase left: its process, and the calls it left live and ending."""

    process: GatewayProcess
    live: list[str]
    ending: list[str]


async def crash_during(
    running: RunningSimulator, state_dir: Path, step: str, contact: bool
) -> Crash:
    """Run the crash phase with ``step``'s answers held, and SIGKILL it once every ending call sent it.

    :param step: a key of :data:`STEPS`.
    :param contact: whether the ending calls change a contact (a contact step).
    """
    sim = running.simulator
    assert isinstance(sim, WatchedSimulator)
    route = STEPS[step]
    sim.set_latency(3600.0, route)
    crash = spawn("crash", running, state_dir, contact)
    try:
        await crash.wait_for(lambda lines: "ENDED" in lines, "ENDED")
        await bounded(sim.arrivals(route, ENDING), f"the held {route} requests to arrive", crash)
        accepted = [line.split()[1] for line in crash.lines if line.startswith("ACCEPTED")]
        assert len(accepted) == AGENTS
        live, ending = accepted[: AGENTS - ENDING], accepted[AGENTS - ENDING :]
        await crash.has_lines(*(f"STEP {call_id} {step} sent" for call_id in ending))
        # A live call has no wrap-up step yet: its id shows only on its ACCEPTED line.
        assert all(sum(call_id in line for line in crash.lines) == 1 for call_id in live)
        later = list(STEPS)[list(STEPS).index(step) + 1 :]
        for call_id in ending:
            assert not [s for s in later if f"STEP {call_id} {s} sent" in crash.lines], call_id
    finally:
        crash.transport.signalProcess("KILL")  # type: ignore[union-attr]
        await bounded(crash.ended, "the killed process to end", crash)
    assert crash.signal == 9, crash.describe()
    held = sim.journal.find(route)
    assert len(held) == ENDING, held
    await until(
        lambda: all(entry.delivered is False for entry in held),
        f"the held {route} answers to find their client gone",
    )
    in_call = {line["user"] for line in sim.agent_states() if line["state"] == "INCALL"}
    assert len(in_call) == AGENTS - ENDING
    sim.set_latency(0.0, route)
    return Crash(crash, live, ending)


async def recover(running: RunningSimulator, state_dir: Path) -> GatewayProcess:
    """Run the recover phase on the same state directory until it exits 0."""
    process = spawn("recover", running, state_dir)
    await process.wait_for(lambda lines: "IDLE" in lines, "IDLE")
    code = await bounded(process.ended, "the recover phase to exit", process)
    assert code == 0, process.describe()
    return process


def assert_each_call_closed_once(sim: Simulator) -> None:
    """Every agent READY, its call given its term code once, never a repeat, and an AIA post for each."""
    assert sim.contract_errors == 0
    assert sim.stats()["contractErrors"] == 0
    assert sim.journal.find(repeat=True) == []
    states = {line["user"]: line for line in sim.agent_states()}
    for n in range(1, AGENTS + 1):
        line = states[f"AIVA{n}"]
        assert line["state"] == "READY", line
        call = line["lastCall"]
        assert call is not None and call["termCodeId"] is not None
        expected = DONE_CODE if n > AGENTS - ENDING else TRANSFER_CODE
        assert call["termCodeId"] == expected, (n, call)
        assert call["repeats"] == 0, (n, call)
        txn = call["callTransactionId"]
        saves = [
            e
            for e in sim.journal.find("agent.saveTermCode")
            if e.detail.get("callTransactionId") == txn
        ]
        assert len(saves) == 1, saves
        assert (saves[0].repeat, saves[0].contract_error) == (False, None), saves
        assert [p for p in sim.aia_posts if p.get("transactionId") == txn], txn
    # Nothing was sent twice: one save for each call.
    assert len(sim.journal.find("agent.saveTermCode")) == AGENTS


@READINGS
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_sigkill_mid_call_and_mid_wrapup_loses_nothing(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    """After SIGKILL with term codes applied but unanswered, a restart checks them instead of saving again."""
    sim = simulator.simulator
    crash = await crash_during(simulator, tmp_path, "term_code", contact=False)
    process = await recover(simulator, tmp_path)
    assert_each_call_closed_once(sim)
    for call_id in crash.ending:
        assert f"STEP {call_id} term_code checked" in process.lines, process.describe()
        assert f"STEP {call_id} term_code sent" not in process.lines, process.describe()
    checked = [line for line in process.lines if line.endswith("term_code checked")]
    assert len(checked) == ENDING, process.describe()


@pytest.mark.parametrize("step", list(STEPS))
@pytest.mark.timeout(120)
@pytest_twisted.ensureDeferred
async def test_sigkill_during_each_wrapup_step(
    simulator: RunningSimulator, tmp_path: Path, step: str
) -> None:
    """SIGKILL while the AIA, the contact update or the term code is in flight: one term code each, AIA at least once."""
    sim = simulator.simulator
    crash = await crash_during(simulator, tmp_path, step, contact=True)
    process = await recover(simulator, tmp_path)
    assert_each_call_closed_once(sim)
    for call_id in crash.ending:
        if step == "term_code":
            assert f"STEP {call_id} term_code checked" in process.lines, process.describe()
            assert f"STEP {call_id} term_code sent" not in process.lines, process.describe()
        else:
            # The step found sent is sent again (at least once), then the term code once.
            assert f"STEP {call_id} {step} sent" in process.lines, process.describe()
            assert f"STEP {call_id} term_code done" in process.lines, process.describe()
    updates = sim.journal.find("contact.update", status=204)
    assert len(updates) >= ENDING
    assert {e.detail["account"] for e in updates} == {CONTACT_ACCOUNT}
    first_name = sim.contacts.read(CONTACT_ACCOUNT)["person"]["firstName"]
    assert first_name in {f"Caller{n}" for n in range(1, ENDING + 1)}
