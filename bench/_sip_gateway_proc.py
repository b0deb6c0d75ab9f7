"""The gateway's SIP part alone in a process, for ``bench/sip_signalling.py``.

    python bench/_sip_gateway_proc.py --agents N --vendor 127.0.0.3:PORT --state DIR
        [--media twisted|rtpio|auto|fake] [--log-level info] [--port-min 20000 --port-max 29999]
        [--sample-stalls] [--profile FILE] [--max-invites-per-second N] [--no-shed-on-lag]
        [--gc-thresholds A,B,C] [--godead SECONDS] [--edge-port PORT]

Builds what ``tests/sip_gateway.py`` builds, on the real reactor: the real
:class:`~lvgateway.sip.service.SipService` (Sippy on the reactor, the call
router, the vendor endpoint), the real Twisted media relay (``--media rtpio``
or ``auto`` for that engine, ``--media fake`` for none), an agent pool that admits every known 899 number
(agents ``AIVA1..N`` on ``+1899000000n``), and the in-memory call store
``FakeCalls`` (no SQLite, no wrap-up), which here forgets each call once it
has ended. No LiveVox, no agent state machines, no vendor health probes.

Prints ``port N`` on stdout once SIP listens, then runs until SIGTERM. Log
events at ``--log-level`` and above go to ``DIR/gateway.log`` (the gateway
logs a few info lines per call, as it would in production); nothing else is
written to stdout. On SIGUSR1, and at exit, it writes ``DIR/summary.json``:
live calls, what the call store was told, the SIP call counters, how many
warnings, errors and tracebacks were logged (with the first few of them), and,
since the last summary, how late the reactor ran a 10 ms timer and how long
the garbage collector paused (with ``--sample-stalls``, also the reactor
thread's stacks while it stalled and the most numerous kinds of object).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor, task  # noqa: E402
from twisted.logger import (  # noqa: E402
    ILogObserver,
    LogLevel,
    formatEvent,
    globalLogBeginner,
    textFileLogObserver,
)
from zope.interface import implementer  # noqa: E402

from bench._support import lag_figures  # noqa: E402
from lvgateway.agents.interfaces import Admission, Refusal  # noqa: E402
from lvgateway.agents.testing import FakeAgent, FakeAgentPool  # noqa: E402
from lvgateway.calls.testing import FakeCalls  # noqa: E402
from lvgateway.collector import THRESHOLDS, settle_heap  # noqa: E402
from lvgateway.config import parse_config  # noqa: E402
from lvgateway.config.model import phone_key  # noqa: E402
from lvgateway.drain import OrderedDrain  # noqa: E402
from lvgateway.edge.service import edge_service  # noqa: E402
from lvgateway.health import Readiness  # noqa: E402
from lvgateway.logs import level_filtered  # noqa: E402
from lvgateway.media.select import make_media_relay  # noqa: E402
from lvgateway.media.testing import FakeMediaRelay  # noqa: E402
from lvgateway.metrics import new_registry  # noqa: E402
from lvgateway.sip.service import SipService  # noqa: E402
from lvgateway.sip.sippy_reactor import SippyOnReactor  # noqa: E402
from lvgateway.sip.user_agent import GatewayUA  # noqa: E402
from lvgateway.stalls import StallWatchdog  # noqa: E402

#: The shape of tests/sip_gateway.py's config. Media timeouts are long: neither
#: SIPp sends RTP.
CONFIG = """
[gateway]
state_dir = "{state}"
drain_timeout = 10
call_drain_timeout = 5
[sip]
listen_host = "127.0.0.1"
listen_port = 0
allowed_networks = ["127.0.0.1/32", "127.0.0.3/32"]
max_invites_per_second = {max_invites}
shed_on_reactor_lag = {shed_on_lag}
[livevox]
base_url = "http://127.0.0.1:1"
client_name = "bench"
token_env = "LVGW_BENCH_TOKEN"
[[agent_ranges]]
user_name = "AIVA{{n}}"
count = 3
phone_number_first = "+18990000001"
service_id = "1234567"
password_env = "LVGW_BENCH_TOKEN"
[hours]
time_zone = "UTC"
always_open = true
[vendor]
health_interval = 86400
health_failures = 1000
no_progress_time = 10
no_answer_time = 30
pass_through_headers = ["Carrier-Name"]
[[vendor.endpoints]]
uri = "sip:bot@{vendor}"
[media]
engine = "{engine}"
listen_host = "127.0.0.1"
port_min = {port_min}
port_max = {port_max}
initial_timeout = 3600
timeout = 3600
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
"""


class AdmittingPool(FakeAgentPool):
    """The pool fake, admitting every known agent by a dict lookup and recording nothing.

    The call store fake never tells the pool of a call, so every agent stays
    free; the router itself still refuses a second call to an agent whose
    call is up (486), which the benchmark would see as a failed call.
    """

    def __init__(self, count: int) -> None:
        super().__init__(FakeAgent(f"AIVA{n}", f"+1899{n:07d}") for n in range(1, count + 1))
        self._by_number = {phone_key(a.phone_number): a for a in self.agents.values()}

    def admit(self, phone_number: str) -> Admission:
        """Admit the number's agent; refuse an unknown number 404."""
        agent = self._by_number.get(phone_key(phone_number))
        if agent is None:
            return Admission(None, None, Refusal.UNKNOWN_NUMBER, f"no agent has {phone_number}")
        return Admission(agent.user_name, agent.service_id, None, "ready")


class LeanCalls(FakeCalls):
    """``FakeCalls`` that forgets each call once it has ended, keeping only counts.

    The fake keeps every record and event for a test to read; over thousands
    of calls that memory (and the garbage collector's walks over it) would be
    the benchmark's, not the gateway's: the real store keeps records in SQLite.
    """

    def __init__(self, clock_seconds: Any) -> None:
        super().__init__(clock_seconds)
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def _tally(self) -> None:
        for event, _, details in self.events:
            self.counts[event] += 1
            if event == "ended":
                self.reasons[str(details.get("reason"))] += 1
        self.events.clear()

    def accept(self, invite: Any) -> Any:
        """Keep the record until the call ends."""
        d = super().accept(invite)
        self._tally()
        return d

    def connected(self, call_id: str) -> Any:
        """Count it."""
        d = super().connected(call_id)
        self._tally()
        return d

    def ended(self, call_id: str, *args: Any, **kw: Any) -> Any:
        """Count it and forget the record."""
        d = super().ended(call_id, *args, **kw)
        self._tally()
        self.records.pop(call_id, None)
        return d


@implementer(ILogObserver)
class LogTally:
    """Counts log events by level and keeps the first few warnings, errors and tracebacks."""

    def __init__(self, keep: int = 20) -> None:
        self.levels: Counter[str] = Counter()
        self.failures = 0
        self.first: list[str] = []
        self._keep = keep

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        name = level.name if isinstance(level, type(LogLevel.info)) else str(level)
        self.levels[name] += 1
        failure = event.get("log_failure")
        if failure is not None:
            self.failures += 1
        if (
            failure is not None or level in (LogLevel.warn, LogLevel.error, LogLevel.critical)
        ) and (len(self.first) < self._keep):
            text = formatEvent(event)
            if failure is not None:
                text += "\n" + failure.getTraceback()
            self.first.append(f"[{name}] {text}")


class Stalls:
    """How late the reactor runs a 10 ms timer, and how long the garbage collector pauses.

    Diagnostics for the benchmark: a late timer means every datagram waiting
    in the SIP socket waited as long, and a full socket drops the rest.
    """

    TICK = 0.01

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.all_lags: list[float] = []
        self.gc: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._gc_began = 0.0
        self._last = time.monotonic()
        #: When the reactor last ran the timer.
        self.last_tick = self._last
        self._loop = task.LoopingCall(self._tick)

    def start(self) -> None:
        """Start timing the reactor and the collector."""
        gc.callbacks.append(self._on_gc)
        self._loop.start(self.TICK, now=False)

    def _tick(self) -> None:
        now = time.monotonic()
        lag = now - self._last - self.TICK
        self._last = self.last_tick = now
        self.all_lags.append(max(0.0, lag))
        if lag > 0.02:
            self.lags.append(lag)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = time.perf_counter()
        else:
            self.gc[info["generation"]].append(time.perf_counter() - self._gc_began)

    def take(self) -> dict[str, Any]:
        """What was seen since the last call, in milliseconds; then start afresh."""
        lags, self.lags = self.lags, []
        every, self.all_lags = sorted(self.all_lags), []
        gcs, self.gc = self.gc, {0: [], 1: [], 2: []}
        return {
            "reactor_lag_ms": lag_figures(every),
            "reactor_lags_over_20ms": len(lags),
            "reactor_lag_max_ms": round(1000 * max(lags), 1) if lags else 0.0,
            "reactor_lag_total_ms": round(1000 * sum(lags), 1),
            "gc": {
                f"gen{g}": {
                    "count": len(p),
                    "max_ms": round(1000 * max(p), 1) if p else 0.0,
                    "total_ms": round(1000 * sum(p), 1),
                }
                for g, p in gcs.items()
            },
            "gc_tracked_objects": len(gc.get_objects()),
        }


class StallSampler:
    """A thread that, while the reactor has not ticked for 50 ms, samples the reactor thread's stack.

    For ``--sample-stalls`` only: where the time goes when the gateway stops
    reading its socket. (The garbage collector holds the GIL, so its pauses
    are seen by :class:`Stalls`, not here.)
    """

    def __init__(self, stalls: Stalls) -> None:
        self._stalls = stalls
        self._main: int = threading.main_thread().ident or 0
        self.samples: Counter[str] = Counter()

    def start(self) -> None:
        """Start sampling, every 10 ms."""
        threading.Thread(target=self._run, daemon=True, name="stall-sampler").start()

    def _run(self) -> None:
        while True:
            time.sleep(0.01)
            if time.monotonic() - self._stalls.last_tick < 0.05:
                continue
            frame = sys._current_frames().get(self._main)  # noqa: SLF001 - diagnostics
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-12:]
            key = " <- ".join(
                f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(stack)
            )
            self.samples[key] += 1

    def take(self) -> list[tuple[str, int]]:
        """The most sampled stacks since the last call, then start afresh."""
        top, self.samples = self.samples.most_common(15), Counter()
        return top


def _top_types(n: int = 12) -> list[tuple[str, int]]:
    """The most numerous kinds of object the garbage collector tracks (for ``--sample-stalls``)."""
    kinds = Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())
    return kinds.most_common(n)


def main() -> None:
    """Start the SIP part, print its port, run until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--vendor", required=True, help="HOST:PORT of the SIPp vendor")
    parser.add_argument("--state", type=Path, required=True, help="a directory of its own")
    parser.add_argument("--media", choices=("twisted", "rtpio", "auto", "fake"), default="twisted")
    parser.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")
    parser.add_argument("--port-min", type=int, default=20000)
    parser.add_argument("--port-max", type=int, default=29999)
    parser.add_argument(
        "--sample-stalls", action="store_true", help="sample the stack while the reactor stalls"
    )
    parser.add_argument(
        "--max-invites-per-second", type=float, default=0.0, help="[sip] max_invites_per_second"
    )
    parser.add_argument(
        "--no-shed-on-lag", action="store_true", help="[sip] shed_on_reactor_lag = false"
    )
    parser.add_argument(
        "--gc-thresholds", help="diagnostics: gc.set_threshold values, e.g. 700,10,10"
    )
    parser.add_argument("--godead", type=float, help="diagnostics: seconds a finished leg lingers")
    parser.add_argument(
        "--profile",
        type=Path,
        help="diagnostics: run under cProfile, its stats written here at exit",
    )
    parser.add_argument(
        "--edge-port",
        type=int,
        default=0,
        help="reach the vendor through the Kamailio edge on this UDP port (and the next, for TLS),"
        " run as the gateway's child",
    )
    args = parser.parse_args()

    state: Path = args.state
    state.mkdir(parents=True, exist_ok=True)
    log_file = open(state / "gateway.log", "a", encoding="utf-8")  # noqa: SIM115 - held until exit
    tally = LogTally()
    globalLogBeginner.beginLoggingTo(
        [level_filtered(textFileLogObserver(log_file), args.log_level), tally],
        redirectStandardIO=False,
    )

    os.environ.setdefault("LVGW_BENCH_TOKEN", "bench-token-value")
    config = parse_config(
        CONFIG.format(
            state=state / "state",
            vendor=args.vendor,
            port_min=args.port_min,
            port_max=args.port_max,
            max_invites=args.max_invites_per_second,
            shed_on_lag="false" if args.no_shed_on_lag else "true",
            engine="twisted" if args.media == "fake" else args.media,
        )
        + (
            f"[edge]\nlisten_port = {args.edge_port}\ntls_port = {args.edge_port + 1}\n"
            'ca_file = "/etc/ssl/certs/ca-certificates.crt"\n'
            if args.edge_port
            else ""
        ),
        source=str(state / "gateway.toml"),
    )
    edge = edge_service(reactor, config) if config.edge is not None else None
    if edge is not None:
        edge.startService()
    pool = AdmittingPool(args.agents)
    calls = LeanCalls(reactor.seconds)  # type: ignore[attr-defined]
    registry = new_registry(process_metrics=False)
    media: Any
    if args.media != "fake":
        media = make_media_relay(
            reactor,
            config.media,
            registry,
            config.sip.allowed_networks,
            ensure_sippy=lambda: SippyOnReactor.for_reactor(reactor),
        )
    else:
        media = FakeMediaRelay(address="127.0.0.1", first_port=args.port_min)
    media.start()
    drain = OrderedDrain(reactor, config.gateway.drain_timeout)
    sip = SipService(reactor, config, pool, calls, media, registry, drain, Readiness())
    # No vendor health probes: the first round is sent at start, and its OPTIONS
    # retransmissions (for up to 32 s) would reach the SIPp vendor of the first
    # step as an unexpected message and fail a call there.
    sip.health.start = lambda: None  # type: ignore[method-assign]
    sip.startService()
    # As the gateway does: the stall watchdog, shedding while the reactor lags.
    watchdog = StallWatchdog(reactor, registry)
    sip.shed_while(watchdog.lagging)
    watchdog.startService()
    if args.godead is not None:
        GatewayUA.godead_timeout = args.godead
    thresholds = (
        tuple(int(v) for v in args.gc_thresholds.split(",")) if args.gc_thresholds else THRESHOLDS
    )
    # As the gateway does once started (lvgateway.drain.GatewayService).
    settle_heap(thresholds)  # type: ignore[arg-type]

    stalls = Stalls()
    stalls.start()
    sampler = StallSampler(stalls) if args.sample_stalls else None
    if sampler is not None:
        sampler.start()

    def summary() -> dict[str, Any]:
        counters = {
            f"{s.labels['result']} {s.labels['code']}": int(s.value)
            for metric in registry.collect()
            if metric.name == "lvgateway_calls"
            for s in metric.samples
            if s.name == "lvgateway_calls_total" and s.value
        }
        return {
            "live_calls": len(sip.router.live),
            "since_last_summary": stalls.take(),
            "stall_samples": sampler.take() if sampler is not None else [],
            "top_object_types": _top_types() if sampler is not None else [],
            "store_events": dict(calls.counts),
            "end_reasons": dict(calls.reasons),
            "sip_calls": counters,
            "dropped_datagrams": sip.stack.source_filter.dropped,
            "shed": {
                s.labels["reason"]: int(s.value)
                for metric in registry.collect()
                if metric.name == "lvgateway_sip_invites_shed"
                for s in metric.samples
                if s.name == "lvgateway_sip_invites_shed_total"
            },
            "watchdog_stalls": watchdog.stalls,
            "receive_buffer_bytes": sip.stack.server.receive_buffer,
            "log_levels": dict(tally.levels),
            "log_failures": tally.failures,
            "log_first": tally.first,
        }

    def write_summary() -> None:
        path = state / "summary.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(summary(), indent=1))
        tmp.replace(path)

    def on_usr1(signum: int, frame: Any) -> None:
        reactor.callFromThread(write_summary)  # type: ignore[attr-defined]

    def stopping() -> Any:
        sip.stopService()
        d = media.stop()
        if edge is not None:
            d.addBoth(lambda _: edge.stopService())
        d.addBoth(lambda _: write_summary())
        return d

    signal.signal(signal.SIGUSR1, on_usr1)
    reactor.addSystemEventTrigger("before", "shutdown", stopping)  # type: ignore[attr-defined]
    print(f"port {sip.stack.port}", flush=True)
    if args.profile is None:
        reactor.run()  # type: ignore[attr-defined]
    else:
        import cProfile

        profiler = cProfile.Profile()
        profiler.runcall(reactor.run)  # type: ignore[attr-defined]
        profiler.dump_stats(str(args.profile))
    log_file.close()


if __name__ == "__main__":
    main()
