"""Benchmark the wrap-up: how soon a term code reaches LiveVox after a call ends, and how fast the store writes.

One command, bounded (about 40 s by default)::

    python bench/wrapup.py [--rate 20] [--seconds 15] [--hold 1.0] [--agents 60] [--store-calls 3000]

1. **Term code latency.** The LiveVox simulator runs in its own process
   (``twistd -n lvsandbox`` on a generated config with ``--agents`` agents,
   on loopback). This process is the gateway side: the real REST and AIA
   clients over HTTP, the call store (SQLite in a temporary directory, on its
   own thread), the wrap-up pipeline, the stand-in pool and the stand-in SIP
   call source. Calls start at ``--rate`` per second for ``--seconds``; each
   is put through by the simulator, accepted (INVITE without a transaction
   id: the ids come from the agent's status), held ``--hold`` seconds, then
   the caller hangs up. The latency of a call is the simulator's clock when
   the term code arrived (its journal) minus the gateway's clock when it
   learnt the call ended; both clocks are this machine's wall clock.
2. **Store throughput.** Calls whose records go through a call's eight
   writes (accepted, connected, ended, AIA sent and done, term code sent and
   done, done), many calls at once, each write waited for (committed), with
   ``synchronous=FULL`` (the default) and ``NORMAL``.

Prints one summary table. Exits non-zero if a call's wrap-up did not finish.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted.internet import task  # noqa: E402
from twisted.internet.defer import Deferred, gatherResults  # noqa: E402

from lvgateway.calls.blocking import ThreadPoolRunner  # noqa: E402
from lvgateway.calls.book import CallBook  # noqa: E402
from lvgateway.calls.records import CallRecord, CallState, StepState  # noqa: E402
from lvgateway.calls.store import CallStore  # noqa: E402
from lvgateway.calls.testing import SandboxAdmin, agent_configs, simulator_rig  # noqa: E402
from lvgateway.livevox.testing import livevox_config  # noqa: E402
from lvgateway.livevox.transport import http_client_for  # noqa: E402

TOKEN = "bench-api-token"
PASSWORD = "bench-agent-password"
AIA_TOKEN = "bench-aia-token"
AIA_PATH = "/aia/v1/result"
SERVICE = "1234567"
HARD_LIMIT = 300.0


def sandbox_toml(agents: int, listen: str) -> str:
    """The simulator's config: ``agents`` agents, one service with a done and a transfer code."""
    users = "".join(
        f'[[users]]\nname = "AIVA{n}"\npassword = "{PASSWORD}"\nagent = true\n'
        f'user_id = {5000 + n}\nphone_number = "+1899{n:07d}"\n\n'
        for n in range(1, agents + 1)
    )
    return f"""[server]
listen = "{listen}"

[livevox]
client_name = "bench"
client_id = 1
token = "{TOKEN}"
journal_size = 200000

{users}[[services]]
id = "{SERVICE}"
name = "AI Inbound"

[[services.term_code_categories]]
name = "AI"

[[services.term_code_categories.term_codes]]
id = "101416228"
name = "AI Completed"

[[services.term_code_categories.term_codes]]
id = "101416229"
name = "Transfer To Agent"

[aia]
path = "{AIA_PATH}"
method = "POST"
auth_header = "X-AIA-Token"
token = "{AIA_TOKEN}"
"""


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_simulator(workdir: Path, agents: int) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``twistd -n lvsandbox`` and wait (bounded) until its admin API answers."""
    port = free_port()
    config = workdir / "sandbox.toml"
    config.write_text(sandbox_toml(agents, f"tcp:{port}:interface=127.0.0.1"))
    log = open(workdir / "sandbox.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from twisted.scripts.twistd import run; run()",
            "-n",
            "--pidfile=",
            "lvsandbox",
            "--config",
            str(config),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process, base
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"the simulator did not start: see {workdir / 'sandbox.log'}")


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def latency_run(
    reactor: Any, base: str, args: argparse.Namespace, state: Path
) -> dict[str, Any]:
    """Drive calls at the rate asked for; return the latencies and counts."""
    http = http_client_for(reactor, livevox_config(base_url=base, max_in_flight=50))
    admin = SandboxAdmin(http, base)
    agents = agent_configs(args.agents, PASSWORD, SERVICE)
    rig = simulator_rig(
        base_url=base,
        clock=reactor,
        http=http,
        store=CallStore(str(state), ThreadPoolRunner(reactor), synchronous=args.sync),
        agents=agents,
        client_name="bench",
        token=TOKEN,
        aia_path=AIA_PATH,
        aia_token=AIA_TOKEN,
        dial=admin.dial,
        leg_ended=admin.leg_ended,
        max_in_flight=50,
    )
    calls, pool, source = rig.calls, rig.pool, rig.source
    calls.startService()
    await calls.when_recovered()
    await gatherResults([Deferred.fromCoroutine(pool.bring_in(a.user_name)) for a in agents])

    sent_at: dict[str, float] = {}

    def on_step(call_id: str, step: str, outcome: str) -> None:
        if step == "term_code" and outcome == "sent":
            record = calls.book.get(call_id)
            if record is not None and record.call_transaction_id:
                sent_at[record.call_transaction_id] = reactor.seconds()

    calls.add_listener(on_step)
    free = [a.user_name for a in agents]
    pool.on_wrapup_done.append(lambda user, call_id, moved: free.append(user))
    ended_at: dict[str, float] = {}
    skipped = 0
    failures: list[str] = []

    async def one_call(agent: str) -> None:
        try:
            record = await source.place(agent)
            await task.deferLater(reactor, args.hold, lambda: None)
            txn = calls.book.require(record.call_id).call_transaction_id or record.call_id
            await admin.leg_ended(source.placed[record.call_id])
            ended_at[txn] = reactor.seconds()
            await calls.ended(record.call_id, "caller_hangup")
        except Exception as e:  # noqa: BLE001 - a benchmark reports, it does not stop
            failures.append(repr(e))

    running: list[Deferred[None]] = []
    total = int(args.rate * args.seconds)
    started = reactor.seconds()
    for n in range(total):
        delay = started + n / args.rate - reactor.seconds()
        if delay > 0:
            await task.deferLater(reactor, delay, lambda: None)
        if not free:
            skipped += 1
            continue
        running.append(Deferred.fromCoroutine(one_call(free.pop(0))))
    await gatherResults(running)
    drained = calls.flush()
    drained.addTimeout(60, reactor)
    await drained
    response = await http.get(base + "/_sandbox/journal", params={"since": "0"})
    journal = json.loads(await response.content())["entries"]
    arrivals = {
        e["detail"].get("callTransactionId"): e["time"]
        for e in journal
        if e["route"] == "agent.saveTermCode" and e["status"] == 204 and not e["repeat"]
    }
    latencies = [arrivals[t] - ended_at[t] for t in ended_at if t in arrivals]
    # The split: the gateway's own part (AIA post, three commits) and the term code's trip.
    inside = [sent_at[t] - ended_at[t] for t in ended_at if t in sent_at]
    trip = [arrivals[t] - sent_at[t] for t in sent_at if t in arrivals]
    undone = calls.book.count(CallState.WRAPUP) + calls.book.count(CallState.DEAD)
    await calls.stopService()
    return {
        "calls": len(ended_at),
        "skipped": skipped,
        "failures": failures,
        "latencies": latencies,
        "inside": inside,
        "trip": trip,
        "missing": len(ended_at) - len(latencies),
        "undone": undone,
        "elapsed": reactor.seconds() - started,
    }


async def store_run(reactor: Any, state: Path, calls: int, sync: str, concurrency: int) -> float:
    """Push ``calls`` records through a call's eight committed writes, ``concurrency`` calls at a time; return calls per second."""
    store = CallStore(str(state), ThreadPoolRunner(reactor), synchronous=sync)  # type: ignore[arg-type]
    book = CallBook(store, reactor)
    await store.open()

    async def lifecycle(n: int) -> None:
        now = reactor.seconds()
        call_id = f"bench-{sync}-{n}"
        await book.add(
            CallRecord(
                call_id,
                CallState.ACCEPTED,
                "AIVA1",
                "+18990000001",
                now,
                now,
                call_session_id=f"U{n}@x",
            )
        )
        await book.update(call_id, state=CallState.CONNECTED, connected_at=reactor.seconds())
        await book.update(
            call_id, state=CallState.WRAPUP, ended_at=reactor.seconds(), end_reason="caller_hangup"
        )
        for step in ("aia", "term_code"):
            await book.update(call_id, **{step: StepState.SENT})
            await book.update(call_id, **{step: StepState.DONE})
        await book.update(call_id, state=CallState.DONE, finished_at=reactor.seconds())

    numbers = iter(range(calls))

    async def worker() -> None:
        for n in numbers:
            await lifecycle(n)

    started = time.perf_counter()
    await gatherResults([Deferred.fromCoroutine(worker()) for _ in range(concurrency)])
    elapsed = time.perf_counter() - started
    commits = store.commits
    await store.close()
    print(
        f"  store {sync:6} x{concurrency:<4}: {calls} calls, {calls * 8} writes"
        f" in {commits} commits, {elapsed:.2f}s"
    )
    return calls / elapsed


async def main(reactor: Any, args: argparse.Namespace) -> None:
    """Run both parts and print the summary."""
    workdir = Path(tempfile.mkdtemp(prefix="lvgw-bench-"))
    watchdog = reactor.callLater(HARD_LIMIT, lambda: os._exit(3))
    simulator, base = start_simulator(workdir, args.agents)
    try:
        (workdir / "gw").mkdir()
        result = await latency_run(reactor, base, args, workdir / "gw")
    finally:
        simulator.terminate()
        simulator.wait(timeout=20)
    rates = {}
    for sync in ("FULL", "NORMAL"):
        for concurrency, count in ((1, args.store_calls // 10), (100, args.store_calls)):
            state = workdir / f"{sync}-{concurrency}"
            state.mkdir()
            rates[sync, concurrency] = await store_run(reactor, state, count, sync, concurrency)
    watchdog.cancel()
    lat = result["latencies"]
    print()
    print(
        f"wrap-up at {args.rate} calls/s for {args.seconds}s (hold {args.hold}s,"
        f" {args.agents} agents, store synchronous={args.sync})"
    )
    print(
        f"  calls ended: {result['calls']}, skipped for want of a free agent: {result['skipped']},"
        f" failed: {len(result['failures'])}, term codes missing: {result['missing']},"
        f" wrap-ups not done: {result['undone']}"
    )
    if lat:
        print(
            f"  call end -> term code at the simulator: p50 {1000 * statistics.median(lat):.1f} ms,"
            f" p99 {1000 * percentile(lat, 99):.1f} ms, max {1000 * max(lat):.1f} ms"
        )
    for sync in ("FULL", "NORMAL"):
        print(
            f"  store throughput, synchronous={sync} (8 committed writes a call):"
            f" {rates[sync, 1]:.0f} calls/s one call at a time,"
            f" {rates[sync, 100]:.0f} calls/s 100 calls at a time"
        )
    if result["inside"] and result["trip"]:
        inside, trip = result["inside"], result["trip"]
        print(
            f"    of which end -> term code sent (AIA post and commits): p50"
            f" {1000 * statistics.median(inside):.1f} ms, p99 {1000 * percentile(inside, 99):.1f} ms;"
            f" sent -> arrived: p50 {1000 * statistics.median(trip):.1f} ms,"
            f" p99 {1000 * percentile(trip, 99):.1f} ms"
        )
    for failure in result["failures"][:5]:
        print("  failure:", failure)
    shutil.rmtree(workdir, ignore_errors=True)
    if result["missing"] or result["undone"] or result["failures"]:
        raise SystemExit(1)


def run() -> None:
    """Parse the command line and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="calls started per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="how long calls start")
    parser.add_argument("--hold", type=float, default=1.0, help="each call's length in seconds")
    parser.add_argument("--agents", type=int, default=60, help="virtual agents")
    parser.add_argument("--store-calls", type=int, default=3000, help="calls for the store run")
    parser.add_argument(
        "--sync", choices=("FULL", "NORMAL"), default="FULL", help="the latency run's store"
    )
    args = parser.parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, args)))


if __name__ == "__main__":
    run()
