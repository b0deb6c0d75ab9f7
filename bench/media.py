"""Media benchmark: the gateway's relay engines (rtp.io, Twisted, rtpengine) against rtpengine, under N G.711 calls.

    PYTHONPATH=. python bench/media.py [--calls 50,100,200,300,400] [--seconds 8] [--repeat 1]
                                       [--engines rtpio,twisted,rtpengine,gw-rtpengine] [--budget 900]
                                       [--name media]

For each N and each engine, one trial on loopback:

- the **load** is ``bench/rtp_load.c``, built here with gcc into a temporary
  directory: one C process playing both ends of N calls, a LiveVox end on
  127.0.0.1 and a vendor end on 127.0.0.3 each sending a 172-byte RTP packet
  every 20 ms (50 packets a second each way), with the stream, sequence
  number and send time in the payload; it checks that every packet reached
  the other end of its own call, and measures loss and one-way latency;
- the **relay** runs in its own process: ``rtpio`` and ``twisted`` are the
  gateway's engines, built by :func:`lvgateway.media.select.make_media_relay`
  with the gateway's defaults on the reactor (this file, ``--serve``), their
  sessions set up through the same SDP hooks Sippy calls; ``rtpengine`` is
  Debian's ``rtpengine-daemon`` in userspace (``--table=-1``, no kernel
  module, loopback only), its calls set up with ``offer``/``answer`` over its
  ng control protocol (bencode over UDP);
- ``gw-rtpengine`` is the same daemon driven by the gateway's rtpengine
  engine (``--serve rtpengine``: strict latching, its ping and query
  polling running), so it measures what the gateway's signalling adds to
  rtpengine driven directly, in the same run. Its CPU is the daemon's; the
  gateway process's own CPU is ``gateway_cpu_share``. ``setup_ms_per_call``
  is how long setting up the calls took (offer and answer), per call;
- ``direct`` is the baseline: the two ends send to each other, no relay. Its
  latency is the generator's and the kernel's share; an engine's *added*
  latency is its percentile minus direct's at the same N.

After a warm-up second, the relay process's CPU (user + system, every
thread: ``/proc/PID/stat``) is read at the start and end of the measured
window; CPU per packet is that over the packets delivered in the window.
With ``--repeat K`` each engine runs K interleaved trials at each N; the
table gives their medians (loss pooled), and the JSON every trial. Tails
are noisy on a small shared VM: the load generator and the relay share its
cores. An engine that loses more than 1 % or whose median p99 passes 50 ms
at some N is not tried at larger N. Bounded: at most 1000 calls, 60 s a
trial, 5 repeats, and ``--budget`` seconds in all.

rtpengine must be installed (``apt-get install -y rtpengine-daemon``, with
``/usr/sbin/policy-rc.d`` exiting 101 so that its service does not start);
without it, it is left out and the output says so. Writes
its figures as JSON under the results folder, in a file named by ``--name`` (``media`` by
default), and prints one line of text. The benchmark and
rtpengine are never part of CI.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import report  # noqa: E402
from lvgateway.media.rtpengine_ng import decode_reply, encode_request  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOAD_SOURCE = HERE / "rtp_load.c"
WARMUP = 1.0
DRAIN_MS = 300
GIVE_UP_LOSS = 0.01
GIVE_UP_P99_US = 50_000
TARGET_LOSS = 0.001
TARGET_ADDED_P99_US = 1000


class NgClient:
    """A blocking client of rtpengine's ng protocol: ``cookie bencoded-dict`` datagrams."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(2.0)
        self.to = ("127.0.0.1", port)
        self.n = 0

    def __call__(self, **command: Any) -> dict[str, Any]:
        self.n += 1
        cookie = f"{os.getpid()}_{self.n}"
        self.sock.sendto(encode_request(cookie, command), self.to)
        while True:
            got, reply = decode_reply(self.sock.recv(65536))
            if got == cookie:
                return reply

    def close(self) -> None:
        self.sock.close()


# -- the pieces of one trial -------------------------------------------------


def sdp(host: str, port: int) -> str:
    """A G.711 offer or answer naming ``host:port``."""
    return (
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
    )


def sdp_target(text: str) -> tuple[str, int]:
    """Where a rewritten SDP says to send: its audio ``c=`` address and port."""
    port = int(re.search(r"^m=audio (\d+)", text, re.M).group(1))  # type: ignore[union-attr]
    hosts = re.findall(r"^c=IN IP4 (\S+)", text, re.M)
    return hosts[-1], port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_udp_port() -> int:
    """A UDP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def port_range(calls: int) -> tuple[int, int]:
    """A relay port range below the kernel's ephemeral ports, with room to spare."""
    size = 8 * calls + 400
    base = random.randrange(20000, 32000 - size, 2)
    return base, base + size - 1


def build_load(tmp: Path) -> Path:
    """Compile rtp_load.c into ``tmp``."""
    binary = tmp / "rtp_load"
    subprocess.run(
        ["gcc", "-O2", "-Wall", "-o", str(binary), str(LOAD_SOURCE)], check=True, timeout=60
    )
    return binary


class Relay:
    """The relay process of one trial: our engine (``--serve``) or rtpengine."""

    def __init__(self, engine: str, calls: int) -> None:
        self.engine = engine
        self.calls = calls
        self.process: subprocess.Popen[str] | None = None
        self.daemon: subprocess.Popen[str] | None = None
        self.ng: NgClient | None = None

    @property
    def pid(self) -> int | None:
        """The process that relays the media (rtpengine's, for both rtpengine engines)."""
        if self.daemon is not None:
            return self.daemon.pid
        return self.process.pid if self.process is not None else None

    @property
    def gateway_pid(self) -> int | None:
        """The gateway's process driving rtpengine (``gw-rtpengine`` only)."""
        return self.process.pid if self.daemon is not None and self.process is not None else None

    def start(self) -> None:
        low, high = port_range(self.calls)
        if self.engine in ("rtpio", "twisted", "gw-rtpengine"):
            extra: list[str] = []
            serve_engine = self.engine
            if self.engine == "gw-rtpengine":
                extra = ["--ng-port", str(self._start_rtpengine(low, high))]
                serve_engine = "rtpengine"
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--serve", serve_engine, "--port-min", str(low),
                 "--port-max", str(high), *extra],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=tempfile.gettempdir(),
            )  # fmt: skip
            ready = self._line()
            if ready != "READY":
                raise RuntimeError(f"{self.engine} relay did not start: {ready!r}")
        elif self.engine == "rtpengine":
            self._start_rtpengine(low, high)
            self.process, self.daemon = self.daemon, None

    def _start_rtpengine(self, low: int, high: int) -> int:
        """Start rtpengine in userspace on loopback; return its ng port once it answers ping."""
        port = free_udp_port()
        self.daemon = subprocess.Popen(
            ["rtpengine", "--foreground", "--log-stderr", "--log-level=3", "--config-file=none",
             "--table=-1", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{port}",
             f"--port-min={low}", f"--port-max={high}", f"--num-threads={os.cpu_count() or 2}",
             "--delete-delay=0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self.ng = NgClient(port)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.ng(command="ping").get("result") == "pong":
                    return port
            except OSError:
                pass
            if time.monotonic() > deadline or self.daemon.poll() is not None:
                raise RuntimeError("rtpengine did not answer ping")
            time.sleep(0.05)

    def _line(self, bound: float = 60.0) -> str:
        """The child's next line (it answers each request with one), waiting at most ``bound`` s."""
        assert self.process is not None and self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], bound)
        if not ready:
            raise RuntimeError(f"{self.engine} relay said nothing for {bound:g} s")
        return self.process.stdout.readline().strip()

    def targets(self, ports: list[int]) -> list[tuple[str, int]]:
        """Set up every call; return, per stream, where it is sent (LiveVox end, vendor end, ...)."""
        if self.engine == "direct":
            out: list[tuple[str, int]] = []
            for i in range(self.calls):
                out += [("127.0.0.3", ports[2 * i + 1]), ("127.0.0.1", ports[2 * i])]
            return out
        if self.engine == "rtpengine":
            assert self.ng is not None
            out = []
            for i in range(self.calls):
                call = f"bench-{i}"
                offer = self.ng(command="offer", **{"call-id": call, "from-tag": "lv"},
                                sdp=sdp("127.0.0.1", ports[2 * i]),
                                replace=["origin", "session-connection"])  # fmt: skip
                answer = self.ng(command="answer", **{"call-id": call, "from-tag": "lv",
                                 "to-tag": "vd"}, sdp=sdp("127.0.0.3", ports[2 * i + 1]),
                                 replace=["origin", "session-connection"])  # fmt: skip
                if offer.get("result") != "ok" or answer.get("result") != "ok":
                    raise RuntimeError(f"rtpengine refused call {i}: {offer} {answer}")
                out += [sdp_target(answer["sdp"]), sdp_target(offer["sdp"])]
            return out
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write("PORTS " + " ".join(map(str, ports)) + "\n")
        self.process.stdin.flush()
        line = self._line()
        if not line.startswith("TARGETS "):
            raise RuntimeError(f"{self.engine} relay: {line!r}")
        words = line.split()[1:]
        return [(words[k], int(words[k + 1])) for k in range(0, len(words), 2)]

    def stop(self) -> dict[str, Any]:
        """Stop the relay; our engines report their own stats."""
        stats: dict[str, Any] = {}
        if self.ng is not None:
            self.ng.close()
        if self.process is None:
            return stats
        if self.engine in ("rtpio", "twisted", "gw-rtpengine") and self.process.stdin is not None:
            try:
                self.process.stdin.write("STOP\n")
                self.process.stdin.flush()
                line = self._line()
                if line.startswith("STATS "):
                    stats = json.loads(line[6:])
            except (BrokenPipeError, ValueError):
                pass
        else:
            self.process.terminate()
        if self.daemon is not None:
            self.daemon.terminate()
        for process in (self.process, self.daemon):
            if process is None:
                continue
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return stats


def trial(load: Path, engine: str, calls: int, seconds: float) -> dict[str, Any]:
    """One engine under ``calls`` calls for ``seconds``; its figures."""
    gen = subprocess.Popen(
        [str(load), str(calls), str(WARMUP), str(seconds), str(DRAIN_MS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert gen.stdin is not None and gen.stdout is not None
    relay = Relay(engine, calls)
    try:
        ports = [int(p) for p in gen.stdout.readline().split()[1:]]
        relay.start()
        setup0 = time.monotonic()
        targets = relay.targets(ports)
        setup_s = time.monotonic() - setup0
        gen.stdin.write("TARGETS " + " ".join(f"{h} {p}" for h, p in targets) + "\n")
        gen.stdin.flush()
        pid, gw_pid = relay.pid, relay.gateway_pid
        cpu0 = cpu1 = t0 = t1 = gen0 = gen1 = gw0 = gw1 = 0.0
        result: dict[str, Any] = {}
        for line in gen.stdout:
            if line.startswith("MEASURE_START"):
                t0, gen0 = time.monotonic(), cpu_seconds(gen.pid)
                cpu0 = cpu_seconds(pid) if pid else 0.0
                gw0 = cpu_seconds(gw_pid) if gw_pid else 0.0
            elif line.startswith("MEASURE_END"):
                t1, gen1 = time.monotonic(), cpu_seconds(gen.pid)
                cpu1 = cpu_seconds(pid) if pid else 0.0
                gw1 = cpu_seconds(gw_pid) if gw_pid else 0.0
            elif line.startswith("RESULT "):
                result = json.loads(line[7:])
        gen.wait(timeout=30)
    finally:
        if gen.poll() is None:
            gen.kill()
        engine_stats = relay.stop()
    window = t1 - t0
    packets = result["received_in_window"]
    sent = result["sent_measured"]
    out = {
        "engine": engine,
        "calls": calls,
        "window_s": round(window, 3),
        "packets_in_window": packets,
        "relay_cpu_s": round(cpu1 - cpu0, 3),
        "relay_cpu_share": round((cpu1 - cpu0) / window, 3) if window else None,
        "relay_cpu_us_per_packet": round((cpu1 - cpu0) / packets * 1e6, 2) if pid and packets else None,
        "load_cpu_share": round((gen1 - gen0) / window, 3) if window else None,
        "gateway_cpu_share": round((gw1 - gw0) / window, 3) if window and gw_pid else None,
        "setup_ms_per_call": round(setup_s * 1000 / calls, 3),
        "loss": round(result["lost"] / sent, 6) if sent else None,
        **{k: result[k] for k in ("sent_measured", "lost", "dups", "crossed", "foreign",
                                  "p50_us", "p99_us", "p999_us", "max_us", "max_send_lag_us")},
    }  # fmt: skip
    if engine_stats:
        out["engine_stats"] = engine_stats
    return out


# -- our engines, served in a child process ----------------------------------


def serve(engine: str, port_min: int, port_max: int, ng_port: int | None = None) -> None:
    """The relay child: build the engine as the gateway does, then set up calls as told on stdin."""
    from prometheus_client import CollectorRegistry
    from sippy.MsgBody import MsgBody
    from twisted.internet import reactor, stdio
    from twisted.internet.defer import Deferred, ensureDeferred
    from twisted.internet.task import deferLater
    from twisted.protocols.basic import LineReceiver

    from lvgateway.config.model import MediaConfig, RtpengineInstance
    from lvgateway.media.select import make_media_relay
    from lvgateway.sip.sippy_reactor import SippyOnReactor

    instances = (RtpengineInstance(("127.0.0.1", ng_port)),) if ng_port else ()
    config = MediaConfig(engine, "127.0.0.1", None, port_min, port_max, 60.0, 120.0, rtpengine=instances)  # type: ignore[arg-type]
    networks = [ipaddress.ip_network("127.0.0.1/32")]
    relay = make_media_relay(
        reactor, config, CollectorRegistry(), networks,
        ensure_sippy=lambda: SippyOnReactor.for_reactor(reactor),
    )  # fmt: skip

    async def sdp_result(hook: Any, host: str, port: int) -> tuple[str, int]:
        d: Deferred[Any] = Deferred()
        returned = hook(MsgBody(sdp(host, port)), lambda body, ex=None: d.callback((body, ex)))
        body, ex = (returned, None) if returned is not None else await d
        if ex is not None:
            raise ex
        return sdp_target(str(body))

    class Control(LineReceiver):
        delimiter = b"\n"

        def connectionMade(self) -> None:
            ensureDeferred(self.ready())

        async def ready(self) -> None:
            relay.start()
            while relay.online() is not None:
                await deferLater(reactor, 0.01, lambda: None)  # type: ignore[arg-type]
            self.sendLine(b"READY")

        def lineReceived(self, line: bytes) -> None:
            words = line.decode().split()
            if words and words[0] == "PORTS":
                ensureDeferred(self.calls([int(w) for w in words[1:]])).addErrback(self.failed)
            elif words and words[0] == "STOP":
                ensureDeferred(self.stop()).addErrback(self.failed)

        async def calls(self, ports: list[int]) -> None:
            vendor_nets = [ipaddress.ip_network("127.0.0.3/32")]
            out: list[str] = []
            for i in range(len(ports) // 2):
                session = relay.new_session(f"bench-{i}", vendor_nets)
                to_vendor = await sdp_result(
                    session.on_caller_sdp_change, "127.0.0.1", ports[2 * i]
                )
                to_livevox = await sdp_result(
                    session.on_callee_sdp_change, "127.0.0.3", ports[2 * i + 1]
                )
                out += [f"{to_livevox[0]} {to_livevox[1]}", f"{to_vendor[0]} {to_vendor[1]}"]
            self.sendLine(("TARGETS " + " ".join(out)).encode())

        async def stop(self) -> None:
            stats = relay.stats()
            await relay.stop()
            self.sendLine(
                ("STATS " + json.dumps({
                    "sessions": stats.sessions,
                    "livevox_to_vendor": stats.livevox_to_vendor.packets,
                    "vendor_to_livevox": stats.vendor_to_livevox.packets,
                    "dropped": dict(stats.dropped),
                })).encode()
            )  # fmt: skip
            reactor.stop()  # type: ignore[attr-defined]

        def failed(self, failure: Any) -> None:
            self.sendLine(f"ERROR {failure.getErrorMessage()}".encode())
            reactor.stop()  # type: ignore[attr-defined]

    stdio.StandardIO(Control())  # type: ignore[no-untyped-call]
    reactor.run()


# -- the run -------------------------------------------------------------------


def summarise(runs: list[dict[str, Any]], engine: str, calls: int) -> dict[str, Any]:
    """One engine at one N over its repeated trials: medians, and loss pooled."""

    def median(key: str) -> Any:
        values = sorted(r[key] for r in runs if r.get(key) is not None)
        return values[len(values) // 2] if values else None

    sent = sum(r["sent_measured"] for r in runs)
    return {
        "engine": engine,
        "calls": calls,
        "trials": len(runs),
        "relay_cpu_us_per_packet": median("relay_cpu_us_per_packet"),
        "relay_cpu_share": median("relay_cpu_share"),
        "loss": round(sum(r["lost"] for r in runs) / sent, 6) if sent else None,
        "crossed": sum(r["crossed"] for r in runs),
        "p50_us": median("p50_us"),
        "p99_us": median("p99_us"),
        "added_p50_us": median("added_p50_us"),
        "added_p99_us": median("added_p99_us"),
        "p99_us_each": [r["p99_us"] for r in runs],
        "load_cpu_share": median("load_cpu_share"),
        "gateway_cpu_share": median("gateway_cpu_share"),
        "setup_ms_per_call": median("setup_ms_per_call"),
    }


def highest_ok(table: list[dict[str, Any]], engine: str) -> int | None:
    """The largest N at which the engine, and every smaller N tried, had loss < 0.1 % and p99 added < 1 ms."""
    best = None
    for row in sorted((r for r in table if r["engine"] == engine), key=lambda r: r["calls"]):
        added = row.get("added_p99_us")
        if added is None or row["loss"] >= TARGET_LOSS or added >= TARGET_ADDED_P99_US:
            break
        best = row["calls"]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="50,100,200,300,400", help="comma-separated Ns")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window per trial")
    parser.add_argument("--repeat", type=int, default=1, help="trials per engine and N (medians)")
    parser.add_argument("--engines", default="rtpio,twisted,rtpengine,gw-rtpengine")
    parser.add_argument("--budget", type=float, default=900.0, help="seconds for the whole run")
    parser.add_argument("--name", default="media", help="the results file's name under the results folder, without .json")
    parser.add_argument("--serve", choices=("rtpio", "twisted", "rtpengine"), help=argparse.SUPPRESS)
    parser.add_argument("--ng-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port-min", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--port-max", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port_min, args.port_max, args.ng_port)
        return

    ns = sorted({int(n) for n in args.calls.split(",")})
    if max(ns) > 1000 or args.seconds > 60 or not 1 <= args.repeat <= 5:
        parser.error("bounded: at most 1000 calls, 60 s a trial and 5 repeats")
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    notes: list[str] = []
    if "rtpengine" in engines and shutil.which("rtpengine") is None:
        engines = [e for e in engines if e not in ("rtpengine", "gw-rtpengine")]
        notes.append(
            "rtpengine left out: not installed (apt-get install -y rtpengine-daemon,"
            " with /usr/sbin/policy-rc.d exiting 101)"
        )
    deadline = time.monotonic() + args.budget
    rows: list[dict[str, Any]] = []
    table: list[dict[str, Any]] = []
    given_up: set[str] = set()
    out_of_time = False
    with tempfile.TemporaryDirectory(prefix="lvgw-media-bench-") as tmp:
        load = build_load(Path(tmp))
        for n in ns:
            runs: dict[str, list[dict[str, Any]]] = {}
            for rep in range(args.repeat):
                baseline: dict[str, Any] | None = None
                for engine in ["direct", *engines]:
                    if engine in given_up:
                        continue
                    if time.monotonic() + args.seconds + 5 > deadline:
                        notes.append(f"budget of {args.budget:g} s spent at N={n}, trial {rep + 1}")
                        out_of_time = True
                        break
                    row = trial(load, engine, n, args.seconds)
                    row["trial"] = rep + 1
                    row["loadavg_1min"] = round(os.getloadavg()[0], 2)
                    if engine == "direct":
                        baseline = row
                    elif baseline is not None:
                        row["added_p50_us"] = row["p50_us"] - baseline["p50_us"]
                        row["added_p99_us"] = row["p99_us"] - baseline["p99_us"]
                    rows.append(row)
                    runs.setdefault(engine, []).append(row)
                    print(
                        f"N={n:4d} #{rep + 1} {engine:9s} cpu/pkt={row['relay_cpu_us_per_packet']} us"
                        f" cpu={row['relay_cpu_share']} loss={row['loss']:.4%}"
                        f" crossed={row['crossed']} p50={row['p50_us']} us p99={row['p99_us']} us"
                        f" setup={row['setup_ms_per_call']} ms/call"
                        f" (load cpu {row['load_cpu_share']}, loadavg {row['loadavg_1min']})",
                        flush=True,
                    )
                if out_of_time:
                    break
            for engine, trials in runs.items():
                summary = summarise(trials, engine, n)
                table.append(summary)
                if engine != "direct" and (
                    summary["loss"] > GIVE_UP_LOSS or summary["p99_us"] > GIVE_UP_P99_US
                ):
                    given_up.add(engine)
            if out_of_time:
                break

    ratios: list[dict[str, Any]] = []
    by = {(r["engine"], r["calls"]): r for r in table}
    for n in ns:
        ref = by.get(("rtpengine", n))
        for engine in ("rtpio", "twisted", "gw-rtpengine"):
            ours = by.get((engine, n))
            if ref is None or ours is None or not ref["relay_cpu_us_per_packet"]:
                continue
            ratios.append({
                "engine": engine,
                "calls": n,
                "cpu_per_packet_vs_rtpengine": round(
                    ours["relay_cpu_us_per_packet"] / ref["relay_cpu_us_per_packet"], 2),
                "p99_vs_rtpengine": round(ours["p99_us"] / ref["p99_us"], 2) if ref["p99_us"] else None,
            })  # fmt: skip
    print(f"\n{'engine':9s} {'N':>4s} {'cpu us/pkt':>10s} {'cpu share':>9s} {'loss':>8s}"
          f" {'p50 us':>7s} {'p99 us':>7s} {'+p50':>6s} {'+p99':>6s}  p99 each")  # fmt: skip
    for r in table:
        print(
            f"{r['engine']:9s} {r['calls']:4d} {r['relay_cpu_us_per_packet'] or '-':>10} "
            f"{r['relay_cpu_share']:>9} {r['loss']:>8.4%} {r['p50_us']:>7} {r['p99_us']:>7} "
            f"{r['added_p50_us'] if r['added_p50_us'] is not None else '-':>6} "
            f"{r['added_p99_us'] if r['added_p99_us'] is not None else '-':>6}  {r['p99_us_each']}"
        )
    best = {e: highest_ok(table, e) for e in engines}
    mid = max((n for n in ns if all((e, n) in by for e in engines)), default=None)
    parts = [f"{e} {best[e]}" for e in engines]
    line = (
        "media: highest N with loss < 0.1% and p99 added < 1 ms: " + ", ".join(parts)
        + (
            f"; at N={mid} CPU/packet "
            + ", ".join(f"{e} {by[(e, mid)]['relay_cpu_us_per_packet']} us" for e in engines)
            if mid else ""
        )
        + "".join(
            f"; {r['engine']}/rtpengine {r['cpu_per_packet_vs_rtpengine']}x" for r in ratios
            if r["calls"] == mid
        )
        + (f" ({'; '.join(notes)})" if notes else "")
    )  # fmt: skip
    report(
        args.name,
        {
            "seconds": args.seconds,
            "warmup_s": WARMUP,
            "repeat": args.repeat,
            "calls": ns,
            "engines": engines,
            "table": table,
            "ratios": ratios,
            "highest_ok": best,
            "criteria": {"loss_below": TARGET_LOSS, "added_p99_us_below": TARGET_ADDED_P99_US},
            "notes": notes,
            "trials": rows,
        },
        line,
    )


if __name__ == "__main__":
    main()
