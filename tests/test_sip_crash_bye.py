"""SIGKILL mid-call, then a restart: every leg the dead gateway left up gets its BYE, every call one term code.

The whole gateway runs as operators run it, ``twistd -n lvgateway``, on a
fixed SIP port. The LiveVox simulator runs in this process over HTTP on
loopback; SIPp plays LiveVox (``livevox_restart_bye.xml``: one INVITE per
agent, with the callSessionId the simulator put through) and the AI vendor
(``vendor_restart_bye.xml``, which logs each BYE it answers). Once the three
calls are up and their dialogs are in the call store, the gateway is killed
with SIGKILL and started again on the same state directory. Within 30 s of
the restart each LiveVox call must get its BYE (SIPp exits 0 only then) and
the vendor must have logged a BYE for each call, and the simulator must show
each call closed with exactly one term code. (The vendor's SIPp is not judged
by its exit code: the gateway's health probes are calls of their own to it,
as many as the gateway sends.)

This needs the whole chain: the SIP part noting each call's dialogs
(``ICalls.note_dialogs``, from ``lvgateway/sip/call.py``), recovery given the
SIP part (``recover(..., legs=...)`` from ``CallService``), and the router
delegating ``ICallLegs.end_orphaned`` to :mod:`lvgateway.sip.orphans`. A
missing link fails the test with a message naming the links and the gateway's
log.
"""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

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

from .sip_dialog_peers import udp_bound
from .sip_gateway import SCENARIOS, SIPP, free_udp_port

REACTOR: Any = reactor
ROOT = Path(__file__).resolve().parent.parent
TWISTD = ["-c", "from twisted.scripts.twistd import run; run()"]
AGENTS = 3
LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"
#: How long a restarted gateway may take to end every leg.
BYE_BOUND = 30.0
#: Every other wait.
BOUND = 60.0

pytestmark = pytest.mark.timeout(240)

CONFIG = """
[gateway]
name = "crash-bye"
state_dir = "{state}"
drain_timeout = 10
call_drain_timeout = 2

[sip]
listen_host = "127.0.0.1"
listen_port = {sip_port}
allowed_networks = ["127.0.0.0/8"]

[livevox]
base_url = "{base_url}"
client_name = "{client}"
token_env = "LVGW_CRASH_BYE_TOKEN"
request_timeout = 5

[[agent_ranges]]
user_name = "AIVA{{n}}"
count = {agents}
phone_number_first = "{first_number}"
service_id = "{service}"
password_env = "LVGW_CRASH_BYE_PASSWORD"

[hours]
time_zone = "UTC"
always_open = true

[vendor]
health_interval = 3600
health_failures = 2
no_answer_time = 10
[[vendor.endpoints]]
uri = "sip:bot@{vendor}:{vendor_port}"

[media]
engine = "twisted"
listen_host = "127.0.0.1"
port_min = {port_min}
port_max = {port_max}
initial_timeout = 300
timeout = 300

[wrapup]
fallback_term_code = "done"
transfer_term_code = "transfer"
[wrapup.term_codes]
done = "AI Completed"
transfer = "Transfer To Agent"
[wrapup.defaults]
caller_hangup = "done"
vendor_hangup = "done"
setup_failed = "transfer"
timeout = "transfer"
gateway_failure = "transfer"

[control]
listen = "tcp:0:interface=127.0.0.1"
"""


class Spawned(ProcessProtocol):
    """A child process (the gateway, SIPp): its output in a file, and its end."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.ended: Deferred[int | None] = Deferred()
        self.signal: int | None = None

    def outReceived(self, data: bytes) -> None:
        """Keep standard output."""
        self._log.write(data)
        self._log.flush()

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        """Fire :attr:`ended` with the exit code (``None`` when killed by a signal)."""
        self._log.close()
        value = reason.value
        if isinstance(value, ProcessTerminated):
            self.signal = value.signal
        code = value.exitCode if isinstance(value, ProcessDone | ProcessTerminated) else None
        self.ended.callback(code)

    def output(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def signal_process(self, name: str) -> None:
        """Send a signal (``KILL``, ``TERM``) if the process still runs."""
        if not self.ended.called:
            try:
                self.transport.signalProcess(name)  # type: ignore[union-attr]
            except ProcessExitedAlready:
                pass


def start_twistd(tmp_path: Path, config: Path, run: str) -> Spawned:
    """Start the gateway from ``config``; its output goes to ``<run>.log``."""
    process = Spawned(tmp_path / f"{run}.log")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LVGW_CRASH_BYE_TOKEN": TOKEN,
        "LVGW_CRASH_BYE_PASSWORD": AGENT_PASSWORD,
    }
    args = [sys.executable, *TWISTD, "-n", "--pidfile=", "lvgateway", "--config", str(config)]
    REACTOR.spawnProcess(process, sys.executable, args, env=env, path=str(tmp_path))
    return process


async def until(condition: Callable[[], Any], bound: float, what: str, *logs: Spawned) -> Any:
    """Wait until ``condition()`` is truthy, looking every 100 ms; fail after ``bound`` seconds."""
    deadline = REACTOR.seconds() + bound
    while True:
        value = condition()
        if value:
            return value
        if REACTOR.seconds() > deadline:
            tail = "".join(f"\n--- {p.log_path.name} ---\n{p.output()[-4000:]}" for p in logs)
            raise AssertionError(f"gave up after {bound:g}s waiting for {what}{tail}")
        await deferLater(REACTOR, 0.1, lambda: None)


def bounded(d: Deferred[Any], bound: float, what: str, *logs: Spawned) -> Deferred[Any]:
    """Fail ``d`` after ``bound`` seconds, saying what was waited for."""

    def timed_out(result: Any, timeout: float) -> Any:
        tail = "".join(f"\n--- {p.log_path.name} ---\n{p.output()[-4000:]}" for p in logs)
        raise AssertionError(f"gave up after {timeout:g}s waiting for {what}{tail}")

    return d.addTimeout(bound, REACTOR, onTimeoutCancel=timed_out)


def start_sipp(tmp_path: Path, name: str, scenario: str, host: str, *args: str) -> Spawned:
    """Start SIPp on ``host`` with ``scenario``, bounded to 200 s; its output goes to ``<name>.log``."""
    process = Spawned(tmp_path / f"{name}.log")
    argv = [
        "sipp", "-sf", str(SCENARIOS / scenario),
        "-i", host, "-mi", host, "-mp", str(free_udp_port(host)),
        "-timeout", "200s", "-timeout_error", "-nostdin",
        "-key", "session_expires", "1800",
        *args,
    ]  # fmt: skip
    REACTOR.spawnProcess(process, SIPP, argv, env=dict(os.environ), path=str(tmp_path))
    return process


def start_vendor(tmp_path: Path, port: int) -> tuple[Spawned, Path]:
    """Start the SIPp vendor on ``VENDOR:port``; return it and the log of the BYEs it answers."""
    byes = tmp_path / "vendor-byes.log"
    process = start_sipp(
        tmp_path,
        "vendor-sipp",
        "vendor_restart_bye.xml",
        VENDOR,
        *("-p", str(port), "-m", "1000", "-aa", "-trace_logs", "-log_file", str(byes)),
    )
    return process, byes


def vendor_byes(log: Path) -> list[str]:
    """The gateway call ids of the BYEs the SIPp vendor answered, in order."""
    if not log.exists():
        return []
    return [line.split()[1] for line in log.read_text().splitlines() if line.startswith("BYE ")]


def live_dialogs(state_dir: Path) -> dict[str, list[str]]:
    """The legs with a saved dialog of each live call in the store (empty while it cannot be read)."""
    path = state_dir / "calls.sqlite3"
    if not path.exists():
        return {}
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            rows = db.execute(
                "SELECT call_id, dialogs FROM calls WHERE state IN ('accepted', 'connected')"
            ).fetchall()
        db.close()
    except sqlite3.Error:
        return {}
    return {call_id: sorted(json.loads(text)) if text else [] for call_id, text in rows}


async def crash_and_restart(
    sim: Any,
    tmp_path: Path,
    config: Path,
    state: Path,
    sip_port: int,
    byes: Path,
    children: list[Spawned],
) -> None:
    """Put three calls through, SIGKILL the gateway, restart it, and check every leg and call.

    :param children: where the processes started here go, for the caller to stop.
    """
    first = start_twistd(tmp_path, config, "first")
    try:
        await until(
            lambda: sum(line["state"] == "READY" for line in sim.agent_states()) == AGENTS,
            BOUND,
            "the gateway to set its agents READY",
            first,
        )
        calls = [
            sim.start_call(agent=f"AIVA{n}", call_session_id=f"U2DB327T{n}E18E8DC@127.0.0.1")
            for n in range(1, AGENTS + 1)
        ]
        inject = tmp_path / "calls.csv"
        inject.write_text(
            "SEQUENTIAL\n"
            + "".join(
                f"{agent_number(n)};{call.call_session_id};{call.call_transaction_id}\n"
                for n, call in enumerate(calls, 1)
            )
        )
        livevox = start_sipp(
            tmp_path,
            "livevox-sipp",
            "livevox_restart_bye.xml",
            LIVEVOX,
            *("-m", str(AGENTS), "-l", str(AGENTS), "-r", "10", "-inf", str(inject)),
            f"{LIVEVOX}:{sip_port}",
        )
        children.append(livevox)
        await until(
            lambda: len(live_dialogs(state)) == AGENTS,
            BOUND,
            f"{AGENTS} calls to be up in the call store",
            first,
        )
        await until(
            lambda: all(legs == ["livevox", "vendor"] for legs in live_dialogs(state).values()),
            BOUND,
            "both legs' dialogs of every call in the call store: lvgateway/sip/call.py must"
            " give them to ICalls.note_dialogs when a call connects",
            first,
        )
    finally:
        first.signal_process("KILL")
        await bounded(first.ended, BOUND, "the killed gateway to end", first)
    assert first.signal == 9, first.output()[-4000:]
    call_ids = set(live_dialogs(state))
    assert len(call_ids) == AGENTS

    second = start_twistd(tmp_path, config, "second")
    children.append(second)
    deadline = REACTOR.seconds() + BYE_BOUND
    try:
        code = await bounded(
            livevox.ended,
            BYE_BOUND,
            "SIPp's LiveVox calls to get their BYEs after the restart (recovery must be given"
            " the SIP part, CallService passing its legs to recover(), and CallRouter must"
            " delegate end_orphaned to lvgateway.sip.orphans)",
            second,
        )
        assert code == 0, livevox.output()[-4000:]
        await until(
            lambda: len(vendor_byes(byes)) >= AGENTS,
            max(0.0, deadline - REACTOR.seconds()),
            "the SIPp vendor to answer a BYE for each call after the restart",
            second,
        )
        assert sorted(vendor_byes(byes)) == sorted(call_ids)
        said = second.output()
        assert said.count("livevox leg ended (200)") == AGENTS, said[-4000:]
        assert said.count("vendor leg ended (200)") == AGENTS, said[-4000:]

        def term_codes() -> dict[str, list[Any]]:
            saves = sim.journal.find("agent.saveTermCode")
            return {
                call.call_transaction_id: [
                    e
                    for e in saves
                    if e.detail.get("callTransactionId") == call.call_transaction_id
                ]
                for call in calls
            }

        await until(
            lambda: all(term_codes().values()),
            BOUND,
            "a term code for every call at the simulator",
            second,
        )
        await until(
            lambda: all(line["state"] == "READY" for line in sim.agent_states()),
            BOUND,
            "every agent READY again after recovery",
            second,
        )
        for txn, saves in term_codes().items():
            assert len(saves) == 1, (txn, saves)
            assert (saves[0].repeat, saves[0].contract_error) == (False, None), saves
        assert sim.contract_errors == 0
        for line in sim.agent_states():
            assert line["lastCall"]["termCodeId"] == TRANSFER_CODE, line
        assert live_dialogs(state) == {}
    finally:
        second.signal_process("TERM")
        await bounded(second.ended, BOUND, "the restarted gateway to stop on SIGTERM", second)
    assert second.signal == signal.SIGTERM, second.output()[-4000:]


@pytest_twisted.async_yield_fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """The LiveVox simulator over HTTP on loopback, in this process, on the real clock."""
    running = await start_simulator(REACTOR, REACTOR, make_sandbox_config())
    yield running
    await running.stop()


@pytest_twisted.ensureDeferred
async def test_sigkill_with_calls_up_then_restart_ends_every_leg_with_bye(
    simulator: RunningSimulator, tmp_path: Path
) -> None:
    """Three calls up, SIGKILL, restart: each LiveVox and vendor leg gets a BYE within 30 s; one term code per call."""
    sim = simulator.simulator
    state = tmp_path / "state"
    sip_port = free_udp_port(LIVEVOX)
    vendor_port = free_udp_port(VENDOR)
    port_min = 42000 + (os.getpid() % 200) * 20
    config = tmp_path / "gateway.toml"
    config.write_text(
        CONFIG.format(
            state=state,
            sip_port=sip_port,
            base_url=simulator.base_url,
            client=CLIENT_NAME,
            agents=AGENTS,
            first_number=agent_number(1),
            service=SERVICE_ID,
            vendor=VENDOR,
            vendor_port=vendor_port,
            port_min=port_min,
            port_max=port_min + 19,
        )
    )
    vendor, byes = start_vendor(tmp_path, vendor_port)
    children = [vendor]
    try:
        await until(lambda: udp_bound(VENDOR, vendor_port), BOUND, "the SIPp vendor to listen")
        await crash_and_restart(sim, tmp_path, config, state, sip_port, byes, children)
    finally:
        for child in children:
            child.signal_process("KILL")
        for child in children:
            await bounded(child.ended, BOUND, f"{child.log_path.name} to end", child)
