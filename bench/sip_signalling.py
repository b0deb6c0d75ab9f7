"""How many calls a second the gateway's SIP part carries with every call completing, against Sippy's b2bua_simple.

    python bench/sip_signalling.py [--rates 20,40,60,80,100,120,150,200,250,300] [--seconds 10]
        [--hold-ms 1000] [--targets gateway,floor] [--media twisted|fake] [--log-level info]
        [--max-minutes 10] [--max-calls 40000] [--keep] [--sample-stalls]

Two B2BUAs, each in its own process on loopback, each ramped through the same
call rates with the same SIPp load:

- **gateway**: the gateway's SIP part (``bench/_sip_gateway_proc.py``): Sippy
  on the Twisted reactor, the agent lookup and call router, a call record per
  call (the in-memory ``FakeCalls`` store), the real Twisted media relay
  binding four UDP ports a call (``--media fake`` for none), its info log
  lines written to a file. The vendor is SIPp's built-in ``uas`` (Contact
  ``;transport=UDP``, which the gateway fixes: DESIGN.md, pitfall 1).
- **floor**: Sippy's own ``b2bua_simple`` with ``SIPLOG_LVL=ERR``: the
  signalling floor, with no agent lookup, no call record and no media. Its
  vendor is ``bench/sipp/vendor_uas_lowercase.xml`` (``;transport=udp``),
  which b2bua_simple needs to deliver the BYE, and its LiveVox scenario
  ``bench/sipp/livevox_call_floor.xml`` differs only in the Request-URI of the
  ACK and BYE (b2bua_simple's Contact has a display name SIPp cannot reuse).

SIPp plays LiveVox (``bench/sipp/livevox_call.xml``: the guide's INVITE, each
call to the next agent's 899 number from an injection file, so no agent ever
has two calls) at ``-r RATE -m RATE*SECONDS``, holding each call ``-d``
milliseconds. Each target first runs an uncounted warm-up (10 calls/s, 2 s).
A step passes only when every call completed: both SIPps exit 0, each one's
``-trace_stat`` counts as many successful calls as were attempted and no
failed one, SIPp held at least 95 % of the offered rate, and the gateway
holds no call before or after it (its own count). A target's ramp stops at
its first failing step.

Per step: INVITE-to-200 time from ``-trace_rtt`` (p50, p99 and mean; SIPp
reads a coarse clock, so p50 and p99 are multiples of one kernel tick, 4 ms at
250 Hz, reported as ``invite_to_200_tick_ms``; the mean of many calls is
finer); the B2BUA's CPU (user + sys from ``/proc/PID/stat`` before and after)
per call and as a share of one core, and how long its threads waited for a
CPU (``schedstat``); both SIPps' CPU (``wait4``); how busy the machine was and
how much of that was no process of this run (``%other``: the machine is
shared); LiveVox's retransmissions; datagrams the kernel dropped at the
B2BUA's full SIP socket. For the gateway, also how late its reactor ran a
10 ms timer and how long the garbage collector paused (``gateway_stalls``).
The two cores are shared by this script, the B2BUA under test and both SIPp
instances.

Bounded: each target gets an equal share of ``--max-minutes`` (a step that
has begun runs to its own bounds, about a minute at most), the run at most
``--max-calls`` calls, every SIPp a ``-timeout`` with ``-timeout_error`` and
every wait a deadline. Every process started is ended on the way out, on
SIGTERM too. Logs and SIPp's files are kept (and their directory printed)
with ``--keep`` or when a step failed. Writes
``bench/results/sip_signalling.json`` and prints one line of text.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import ROOT, percentile, report  # noqa: E402

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = ROOT / "bench" / "sipp"
LIVEVOX_HOST = "127.0.0.1"
B2BUA_HOST = "127.0.0.1"
VENDOR_HOST = "127.0.0.3"
#: SIPp's ``uas`` keeps each call 4 s after the BYE (its ``timewait``).
VENDOR_TIMEWAIT = 4.0
WARMUP_RATE, WARMUP_SECONDS = 10, 2
FLOOR_NOTE = (
    "signalling floor: Sippy 2.5.0 b2bua_simple, SIPLOG_LVL=ERR: no agent lookup, no call record,"
    " no media, Sippy's own threaded event loop"
)


# -- processes ---------------------------------------------------------------


class Processes:
    """Every process this run starts; :meth:`end_all` ends those still running, by pid."""

    def __init__(self) -> None:
        self._started: list[subprocess.Popen[bytes]] = []
        self._files: list[IO[Any]] = []

    def start(self, argv: Sequence[str], log: Path, **kw: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` with stdout and stderr into ``log`` (unless ``stdout`` is given)."""
        out = open(log, "wb")  # noqa: SIM115 - closed in end_all
        self._files.append(out)
        kw.setdefault("stdout", out)
        p = subprocess.Popen(list(argv), stderr=out, stdin=subprocess.DEVNULL, **kw)
        self._started.append(p)
        return p

    def end(self, p: subprocess.Popen[bytes], grace: float = 5.0) -> None:
        """SIGTERM ``p`` if it still runs, SIGKILL after ``grace`` seconds; reap it."""
        if p.returncode is not None:
            return
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(grace)

    def end_all(self) -> None:
        """End every process still running, then close their log files."""
        for p in reversed(self._started):
            try:
                self.end(p)
            except Exception as e:  # keep going: the others must end too
                print(f"could not end process {p.pid}: {e}", file=sys.stderr)
        for f in self._files:
            f.close()


def wait_rusage(p: subprocess.Popen[bytes], bound: float) -> float | None:
    """Wait up to ``bound`` seconds for ``p``; return its user+sys CPU seconds, or ``None`` if it still runs."""
    deadline = time.monotonic() + bound
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid == p.pid:
            p.returncode = os.waitstatus_to_exitcode(status)
            return float(usage.ru_utime + usage.ru_stime)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads, from ``/proc/PID/stat``."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def runqueue_wait(pid: int) -> float:
    """Seconds the process's threads have waited for a CPU while runnable (``/proc/PID/task/*/schedstat``)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return total / 1e9


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, from ``/proc/stat``."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def free_udp_port(host: str) -> int:
    """A UDP port free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def udp_bound(host: str, port: int) -> bool:
    """Whether some socket is bound to ``host:port`` (from ``/proc/net/udp``; binds nothing)."""
    want = f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"
    lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    return any(line.split()[1] == want for line in lines)


def socket_drops(host: str, port: int) -> int | None:
    """Datagrams the kernel dropped for the socket bound to ``host:port`` (its receive buffer was full)."""
    want = f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == want:
            return int(fields[-1])
    return None


def wait_bound(
    host: str, port: int, p: subprocess.Popen[bytes], what: str, bound: float = 15.0
) -> None:
    """Wait until ``p`` has bound ``host:port``; raise, saying what, if it dies or the bound passes."""
    deadline = time.monotonic() + bound
    while not udp_bound(host, port):
        if p.poll() is not None:
            raise RuntimeError(f"{what} exited {p.returncode} before binding {host}:{port}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not bind {host}:{port} within {bound:.0f}s")
        time.sleep(0.05)


# -- the B2BUAs under test ---------------------------------------------------------


class Target:
    """A B2BUA under test in its own process."""

    name: str
    livevox_scenario: Path
    vendor_args: list[str]
    process: subprocess.Popen[bytes]
    port: int
    vendor_port: int
    work: Path

    def live_calls(self) -> int | None:
        """Calls the B2BUA still holds, when it can say."""
        return None

    def log_figures(self) -> dict[str, Any]:
        """What its logs say of trouble so far."""
        return {}

    def stalls(self) -> dict[str, Any] | None:
        """Reactor lags and GC pauses since the last ask, when it can say."""
        return None


class GatewayTarget(Target):
    """The gateway's SIP part, run by ``bench/_sip_gateway_proc.py``."""

    name = "gateway"
    livevox_scenario = SCENARIOS / "livevox_call.xml"
    vendor_args = ["-sn", "uas"]

    def __init__(
        self,
        procs: Processes,
        work: Path,
        agents: int,
        media: str,
        log_level: str,
        sample_stalls: bool = False,
        extra: Sequence[str] = (),
    ) -> None:
        self.work = work
        self.vendor_port = free_udp_port(VENDOR_HOST)
        argv = [
            sys.executable, str(ROOT / "bench" / "_sip_gateway_proc.py"),
            "--agents", str(agents), "--vendor", f"{VENDOR_HOST}:{self.vendor_port}",
            "--state", str(work), "--media", media, "--log-level", log_level,
            *(["--sample-stalls"] if sample_stalls else []), *extra,
        ]  # fmt: skip
        self.process = procs.start(argv, work / "stderr.log", stdout=subprocess.PIPE, cwd=work)
        assert self.process.stdout is not None
        line = _read_line(self.process.stdout, 30.0)
        if not line.startswith("port "):
            raise RuntimeError(f"the gateway did not start: {line!r}; see {work / 'stderr.log'}")
        self.port = int(line.split()[1])
        threading.Thread(
            target=_drain, args=(self.process.stdout, work / "stdout.log"), daemon=True
        ).start()
        self._summary: dict[str, Any] = {}

    def summary(self, bound: float = 5.0) -> dict[str, Any]:
        """Ask the gateway for its summary (SIGUSR1) and return it."""
        path = self.work / "summary.json"
        before = path.stat().st_mtime_ns if path.exists() else 0
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_mtime_ns != before:
                self._summary = json.loads(path.read_text())
                return self._summary
            time.sleep(0.05)
        raise RuntimeError(f"the gateway wrote no summary within {bound:.0f}s")

    def live_calls(self) -> int | None:
        """The gateway's count of live calls."""
        return int(self.summary()["live_calls"])

    def stalls(self) -> dict[str, Any] | None:
        """Reactor lags and GC pauses since the last summary (and stacks, with ``--sample-stalls``)."""
        stalls = dict(self._summary.get("since_last_summary", {}))
        for key in ("stall_samples", "top_object_types"):
            if self._summary.get(key):
                stalls[key] = self._summary[key]
        return stalls

    def log_figures(self) -> dict[str, Any]:
        """Log levels, tracebacks, end reasons, SIP counters; stderr tracebacks."""
        s = self._summary
        return {
            "log_levels": s.get("log_levels", {}),
            "logged_failures": s.get("log_failures", 0),
            "end_reasons": s.get("end_reasons", {}),
            "sip_calls": s.get("sip_calls", {}),
            "first_warnings": s.get("log_first", [])[:5],
            "stderr_tracebacks": _count(self.work / "stderr.log", "Traceback"),
        }


class FloorTarget(Target):
    """Sippy's ``b2bua_simple`` with ``SIPLOG_LVL=ERR``."""

    name = "floor"
    livevox_scenario = SCENARIOS / "livevox_call_floor.xml"
    vendor_args = ["-sf", str(SCENARIOS / "vendor_uas_lowercase.xml")]

    def __init__(self, procs: Processes, work: Path) -> None:
        self.work = work
        self.vendor_port = free_udp_port(VENDOR_HOST)
        self.port = free_udp_port(B2BUA_HOST)
        argv = [
            sys.executable, "-m", "sippy.b2bua_simple", "-f",
            "-l", B2BUA_HOST, "-p", str(self.port),
            "-n", f"{VENDOR_HOST}:{self.vendor_port}", "-L", "/dev/null",
        ]  # fmt: skip
        env = {**os.environ, "SIPLOG_LVL": "ERR"}
        self.process = procs.start(argv, work / "b2bua_simple.log", env=env, cwd=work)
        wait_bound(B2BUA_HOST, self.port, self.process, "b2bua_simple")

    def log_figures(self) -> dict[str, Any]:
        """Tracebacks b2bua_simple wrote (its log is stderr at SIPLOG_LVL=ERR)."""
        log = self.work / "b2bua_simple.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return {"tracebacks": text.count("Traceback"), "log_bytes": len(text), "first": text[:1500]}


def _read_line(stream: IO[bytes], bound: float) -> str:
    result: list[bytes] = []
    reader = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(bound)
    return result[0].decode(errors="replace").strip() if result else ""


def _drain(stream: IO[bytes], path: Path) -> None:
    with open(path, "wb") as out:
        shutil.copyfileobj(stream, out)


def _count(path: Path, needle: str) -> int:
    return path.read_text(errors="replace").count(needle) if path.exists() else 0


# -- one step ----------------------------------------------------------------


def read_stat(path: Path) -> dict[str, str]:
    """The last row of a SIPp ``-trace_stat`` CSV, by column name."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter=";"))
    return rows[-1] if rows else {}


def read_rtt(work: Path) -> tuple[list[float], list[float]]:
    """(INVITE-to-200 ms, INVITE send times in ms from SIPp's start) from the ``-trace_rtt`` file."""
    times: list[float] = []
    sent: list[float] = []
    for path in work.glob("*_rtt.csv"):
        with open(path, newline="") as f:
            for row in csv.DictReader(f, delimiter=";"):
                if row.get("rtd_no") == "1":
                    rtt = float(row["response_time_ms"])
                    times.append(rtt)
                    sent.append(float(row["Date_ms"]) - rtt)
    return times, sent


def _tick(rtts: Sequence[float]) -> int | None:
    """The granularity of SIPp's times: the greatest common divisor of the non-zero values.

    SIPp reads a coarse monotonic clock, one kernel tick (4 ms at 250 Hz) at a
    time; a percentile is a multiple of it, while the mean of many calls is not.
    """
    values = {round(v) for v in rtts if v > 0}
    return math.gcd(*values) if values else None


def _int(stat: dict[str, str], name: str) -> int:
    try:
        return int(stat.get(name, "") or 0)
    except ValueError:
        return 0


def run_step(
    procs: Processes,
    target: Target,
    rate: int,
    seconds: float,
    hold_ms: int,
    agents: int,
    agents_file: Path,
) -> dict[str, Any]:
    """Run one rate against ``target``; return its figures, ``passed`` among them."""
    calls = max(1, round(rate * seconds))
    work = target.work / f"{rate}cps"
    work.mkdir(parents=True, exist_ok=True)
    sipp_timeout = int(seconds + hold_ms / 1000 + 30)
    common = ["-nostdin", "-trace_stat", "-fd", "1", "-trace_err", "-timeout_error"]
    vendor_argv = [
        SIPP, *target.vendor_args,
        "-i", VENDOR_HOST, "-p", str(target.vendor_port),
        "-mi", VENDOR_HOST, "-mp", str(free_udp_port(VENDOR_HOST)),
        "-m", str(calls), "-l", str(agents + 10),
        "-stf", str(work / "vendor_stat.csv"), "-error_file", str(work / "vendor_errors.log"),
        "-timeout", f"{sipp_timeout + 15}s", *common,
    ]  # fmt: skip
    vendor = procs.start(vendor_argv, work / "vendor_screen.log", cwd=work)
    wait_bound(VENDOR_HOST, target.vendor_port, vendor, "the SIPp vendor")
    live_before = target.live_calls()  # and the gateway's stall counters start afresh
    drops0 = socket_drops(B2BUA_HOST, target.port)
    cpu0, busy0 = cpu_seconds(target.process.pid), machine_ticks()
    wait0 = runqueue_wait(target.process.pid)
    self0 = _own_cpu()
    began = time.monotonic()
    livevox_argv = [
        SIPP, "-sf", str(target.livevox_scenario), "-inf", str(agents_file),
        "-i", LIVEVOX_HOST, "-p", str(free_udp_port(LIVEVOX_HOST)),
        "-mi", LIVEVOX_HOST, "-mp", str(free_udp_port(LIVEVOX_HOST)),
        "-r", str(rate), "-m", str(calls), "-l", str(agents), "-d", str(hold_ms),
        "-key", "session_expires", "1800",
        "-stf", str(work / "livevox_stat.csv"), "-error_file", str(work / "livevox_errors.log"),
        "-trace_rtt", "-rtt_freq", "1", "-timeout", f"{sipp_timeout}s", *common,
        f"{B2BUA_HOST}:{target.port}",
    ]  # fmt: skip
    livevox = procs.start(livevox_argv, work / "livevox_screen.log", cwd=work)
    livevox_cpu = wait_rusage(livevox, sipp_timeout + 10)
    if livevox_cpu is None:
        procs.end(livevox)
    # SIPp's uas ends each call VENDOR_TIMEWAIT after the BYE: give it that and a margin.
    vendor_cpu = wait_rusage(vendor, VENDOR_TIMEWAIT + 10)
    if vendor_cpu is None:
        procs.end(vendor)
    wall = time.monotonic() - began
    cpu1, busy1 = cpu_seconds(target.process.pid), machine_ticks()
    wait1 = runqueue_wait(target.process.pid)
    self1 = _own_cpu()
    live = target.live_calls()
    drops1 = socket_drops(B2BUA_HOST, target.port)

    lv, vd = read_stat(work / "livevox_stat.csv"), read_stat(work / "vendor_stat.csv")
    rtts, sent = read_rtt(work)
    achieved = (
        (len(sent) - 1) / ((max(sent) - min(sent)) / 1000)
        if len(sent) > 1 and max(sent) > min(sent)
        else 0.0
    )
    ok, failed = _int(lv, "SuccessfulCall(C)"), _int(lv, "FailedCall(C)")
    reasons = []
    if livevox.returncode != 0:
        reasons.append(f"SIPp LiveVox exited {livevox.returncode}")
    if vendor.returncode != 0:
        reasons.append(f"SIPp vendor exited {vendor.returncode}")
    if ok != calls or failed:
        reasons.append(f"LiveVox side: {ok} of {calls} calls successful, {failed} failed")
    vd_ok = _int(vd, "SuccessfulCall(C)")
    if vd_ok != calls:
        reasons.append(f"vendor side: {vd_ok} of {calls} calls successful")
    if calls > 1 and achieved < 0.95 * rate:
        reasons.append(f"SIPp held {achieved:.1f} calls/s of {rate}")
    if live:
        reasons.append(f"{target.name} still holds {live} calls after the step")
    if live_before:
        reasons.append(f"{target.name} held {live_before} calls before the step")
    cpu = cpu1 - cpu0
    ticks = busy1[1] - busy0[1]
    # The machine's busy time less what this run's processes used: anyone else's load.
    machine_busy = (busy1[0] - busy0[0]) / os.sysconf("SC_CLK_TCK")
    ours = cpu + (livevox_cpu or 0) + (vendor_cpu or 0) + (self1 - self0)
    others = max(0.0, machine_busy - ours)
    return {
        "rate": rate,
        "calls": calls,
        "passed": not reasons,
        "why_not": reasons,
        "successful": ok,
        "failed": failed,
        "achieved_rate": round(achieved, 1),
        "invite_to_200_ms_p50": percentile(rtts, 50) if rtts else None,
        "invite_to_200_ms_p99": percentile(rtts, 99) if rtts else None,
        "invite_to_200_ms_mean": round(sum(rtts) / len(rtts), 2) if rtts else None,
        "invite_to_200_ms_max": max(rtts) if rtts else None,
        "invite_to_200_tick_ms": _tick(rtts),
        "cpu_seconds": round(cpu, 3),
        "cpu_ms_per_call": round(1000 * cpu / calls, 2),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 1),
        "sipp_livevox_cpu_seconds": None if livevox_cpu is None else round(livevox_cpu, 2),
        "sipp_vendor_cpu_seconds": None if vendor_cpu is None else round(vendor_cpu, 2),
        "b2bua_waited_for_cpu_seconds": round(wait1 - wait0, 3),
        "others_cpu_percent_of_machine": round(100 * others / (wall * (os.cpu_count() or 1)), 1),
        "machine_busy_percent": round(100 * (busy1[0] - busy0[0]) / ticks, 1) if ticks else None,
        "wall_seconds": round(wall, 1),
        "retransmissions_livevox": _int(lv, "Retransmissions(C)"),
        "retransmissions_vendor": _int(vd, "Retransmissions(C)"),
        "sipp_watchdog": _int(lv, "WatchdogMajor(C)") + _int(lv, "WatchdogMinor(C)"),
        "live_after": live,
        "sip_socket_drops": None if drops0 is None or drops1 is None else drops1 - drops0,
        "gateway_stalls": target.stalls(),
    }


def step_line(name: str, s: dict[str, Any]) -> str:
    """One line of the table."""
    verdict = "pass" if s["passed"] else "FAIL"
    p50, p99, mean = (s[f"invite_to_200_ms_{k}"] for k in ("p50", "p99", "mean"))
    lat = (
        f"{p50:>5.0f} {p99:>5.0f} {mean:>6.1f}"
        if p50 is not None
        else f"{'-':>5} {'-':>5} {'-':>6}"
    )
    sipp = (s["sipp_livevox_cpu_seconds"] or 0) + (s["sipp_vendor_cpu_seconds"] or 0)
    drops = s["sip_socket_drops"] if s["sip_socket_drops"] is not None else "-"
    line = (
        f"{name:<8}{s['rate']:>5} {verdict:<5}{s['successful']:>6}/{s['calls']:<6}"
        f"{s['achieved_rate']:>6.1f} {lat} {s['cpu_ms_per_call']:>7.2f}"
        f" {s['cpu_percent_of_one_core']:>6.1f} {s['b2bua_waited_for_cpu_seconds']:>6.2f}"
        f" {sipp:>6.2f} {s['machine_busy_percent'] or 0:>6.1f}"
        f" {s['others_cpu_percent_of_machine']:>6.1f} {s['retransmissions_livevox']:>7} {drops:>5}"
    )
    if s["why_not"]:
        line += "  " + "; ".join(s["why_not"])
    return line


HEADER = (
    "                                  INVITE->200 ms     ---- B2BUA ----- SIPps  -machine-   LiveVox   SIP\n"
    "target   cps result  ok/calls  held   p50   p99   mean ms/call %1core wait s  cpu s  %busy %other retrans drops"
)


# -- the ramp ----------------------------------------------------------------


def ramp(
    procs: Processes,
    target: Target,
    rates: Sequence[int],
    args: argparse.Namespace,
    agents: int,
    agents_file: Path,
    deadline: float,
    calls_left: list[int],
) -> dict[str, Any]:
    """Warm up, then run ``rates`` in order until a step fails or a bound is reached."""
    step_time = args.seconds + args.hold_ms / 1000 + VENDOR_TIMEWAIT + 3
    cpu0, t0 = cpu_seconds(target.process.pid), time.monotonic()
    time.sleep(3.0)
    idle = (cpu_seconds(target.process.pid) - cpu0) / (time.monotonic() - t0)
    warm = run_step(procs, target, WARMUP_RATE, WARMUP_SECONDS, args.hold_ms, agents, agents_file)
    print(step_line(target.name, warm) + "  (warm-up, not counted)", flush=True)
    steps: list[dict[str, Any]] = []
    stopped_by = "rates exhausted"
    for rate in rates:
        calls = round(rate * args.seconds)
        if time.monotonic() + step_time > deadline:
            stopped_by = f"time bound before {rate} calls/s"
            break
        if calls > calls_left[0]:
            stopped_by = f"call bound before {rate} calls/s"
            break
        calls_left[0] -= calls
        step = run_step(procs, target, rate, args.seconds, args.hold_ms, agents, agents_file)
        steps.append(step)
        print(step_line(target.name, step), flush=True)
        if not step["passed"]:
            stopped_by = f"failed at {rate} calls/s"
            break
        time.sleep(1.0)
    passing = [s for s in steps if s["passed"]]
    best = passing[-1] if passing else None
    return {
        "highest_rate_cps": best["rate"] if best else 0,
        "ceiling_found": bool(steps) and not steps[-1]["passed"],
        "stopped_by": stopped_by,
        "invite_to_200_ms_p50": best["invite_to_200_ms_p50"] if best else None,
        "invite_to_200_ms_p99": best["invite_to_200_ms_p99"] if best else None,
        "cpu_ms_per_call": best["cpu_ms_per_call"] if best else None,
        "idle_cpu_percent_of_one_core": round(100 * idle, 2),
        "warm_up": warm,
        "steps": steps,
        "logs": target.log_figures(),
    }


def main() -> None:
    """Parse arguments, ramp each target, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default="20,40,60,80,100,120,150,200,250,300")
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="each step's length at its rate"
    )
    parser.add_argument(
        "--hold-ms", type=int, default=1000, help="how long each call is held (SIPp -d)"
    )
    parser.add_argument("--targets", default="gateway,floor")
    parser.add_argument("--media", choices=("twisted", "fake"), default="twisted")
    parser.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")
    parser.add_argument("--max-minutes", type=float, default=10.0)
    parser.add_argument("--max-calls", type=int, default=40000)
    parser.add_argument("--keep", action="store_true", help="keep the logs and SIPp files")
    parser.add_argument(
        "--sample-stalls",
        action="store_true",
        help="diagnostics: sample the gateway's stack whenever its reactor stalls 50 ms",
    )
    args = parser.parse_args()
    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not rates or any(r <= 0 for r in rates) or not set(targets) <= {"gateway", "floor"}:
        parser.error("--rates must be positive integers; --targets gateway and/or floor")
    # Enough agents that the injection file never comes back to an agent within
    # hold + 10 s at the highest rate.
    agents = max(200, math.ceil(max(rates) * (args.hold_ms / 1000 + 10)))
    started = time.monotonic()
    results: dict[str, Any] = {}
    procs = Processes()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    # Logs and SIPp's files: kept with --keep, or when a step failed or the run broke.
    work = Path(tempfile.mkdtemp(prefix="sip_signalling-"))
    keep = True
    try:
        agents_file = work / "agents.csv"
        agents_file.write_text(
            "SEQUENTIAL\n" + "".join(f"+1899{n:07d};\n" for n in range(1, agents + 1))
        )
        calls_left = [args.max_calls]
        share = args.max_minutes * 60 / len(targets)
        print(HEADER, flush=True)
        for name in targets:
            (work / name).mkdir()
            deadline = min(started + args.max_minutes * 60, time.monotonic() + share)
            target: Target
            if name == "gateway":
                target = GatewayTarget(
                    procs, work / name, agents, args.media, args.log_level, args.sample_stalls
                )
            else:
                target = FloorTarget(procs, work / name)
            try:
                results[name] = ramp(
                    procs, target, rates, args, agents, agents_file, deadline, calls_left
                )
            finally:
                procs.end(target.process, grace=15.0)
        keep = args.keep or any(
            not s["passed"] for r in results.values() for s in [r["warm_up"], *r["steps"]]
        )
    finally:
        procs.end_all()
        if keep:
            print(f"logs and SIPp files kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)

    gw, floor = results.get("gateway"), results.get("floor")
    ratio: dict[str, Any] = {}
    if gw and floor and floor["highest_rate_cps"]:
        ratio["highest_rate"] = round(gw["highest_rate_cps"] / floor["highest_rate_cps"], 3)
    if gw and floor and gw["cpu_ms_per_call"] and floor["cpu_ms_per_call"]:
        ratio["cpu_per_call"] = round(gw["cpu_ms_per_call"] / floor["cpu_ms_per_call"], 2)
    if gw and floor:
        # CPU per call falls as the rate rises (fixed costs spread), so compare at one rate too.
        both = {s["rate"]: s for s in gw["steps"] if s["passed"]}
        common = [s for s in floor["steps"] if s["passed"] and s["rate"] in both]
        if common:
            f = common[-1]
            g = both[f["rate"]]
            ratio["cpu_per_call_at_common_rate"] = {
                "rate": f["rate"],
                "gateway_ms": g["cpu_ms_per_call"],
                "floor_ms": f["cpu_ms_per_call"],
                "ratio": round(g["cpu_ms_per_call"] / f["cpu_ms_per_call"], 2),
            }
    if floor:
        floor["what"] = FLOOR_NOTE
    figures = {
        "command": " ".join(["python", "bench/sip_signalling.py", *sys.argv[1:]]),
        "cores_shared": (
            f"{os.cpu_count()} cores shared by this script, the B2BUA under test and both SIPp"
            " instances (SIPp as LiveVox and as the vendor); all on loopback"
        ),
        "seconds_per_step": args.seconds,
        "hold_ms": args.hold_ms,
        "rates": rates,
        "agents": agents,
        "gateway_media": args.media,
        "gateway_log_level": args.log_level,
        "invite_to_200_tick_ms": _tick_of(results),
        "wall_seconds": round(time.monotonic() - started, 1),
        **results,
        "ratio_gateway_over_floor": ratio,
    }
    print()
    print(HEADER)
    for name in ("gateway", "floor"):
        for s in results.get(name, {}).get("steps", []):
            print(step_line(name, s))
    report("sip_signalling", figures, summary_line(gw, floor, ratio))


def _tick_of(results: dict[str, Any]) -> int | None:
    """SIPp's time granularity over every step of the run."""
    ticks = {
        s["invite_to_200_tick_ms"]
        for r in results.values()
        for s in r["steps"]
        if s["invite_to_200_tick_ms"]
    }
    return math.gcd(*ticks) if ticks else None


def summary_line(
    gw: dict[str, Any] | None, floor: dict[str, Any] | None, ratio: dict[str, Any]
) -> str:
    """The one line of text."""

    def part(name: str, r: dict[str, Any] | None) -> str:
        if r is None:
            return f"{name}: not run"
        at_least = "" if r["ceiling_found"] else " (ceiling not reached: " + r["stopped_by"] + ")"
        if not r["highest_rate_cps"]:
            return f"{name}: no rate passed ({r['stopped_by']})"
        return (
            f"{name}: {r['highest_rate_cps']} calls/s with every call completed{at_least},"
            f" INVITE->200 p50 {r['invite_to_200_ms_p50']:.0f} ms p99 {r['invite_to_200_ms_p99']:.0f} ms,"
            f" {r['cpu_ms_per_call']} ms CPU/call"
        )

    text = (
        part("gateway", gw)
        + "; "
        + part("b2bua_simple signalling floor (no lookup, record, media)", floor)
    )
    if ratio:
        rate, cpu = ratio.get("highest_rate", "-"), ratio.get("cpu_per_call", "-")
        text += f"; gateway/floor: rate {rate}, CPU per call {cpu}x"
        common = ratio.get("cpu_per_call_at_common_rate")
        if common:
            text += f" ({common['ratio']}x at {common['rate']} calls/s)"
    return text + f"; {os.cpu_count()} cores shared with both SIPps"


if __name__ == "__main__":
    main()
