"""Memory per active call: the gateway's SIP part holding N calls up at once.

    python bench/memory_per_call.py [--calls 300] [--media twisted|fake]

Starts the SIP part alone in its own process (as bench/sip_signalling.py
does), reads its resident memory idle, then has SIPp place N calls at 50 a
second that each stay up long enough for all N to be up together, reads it
again while they are, and divides. Bounded in calls and time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import report  # noqa: E402
from bench.sip_signalling import (  # noqa: E402
    B2BUA_HOST,
    LIVEVOX_HOST,
    SIPP,
    VENDOR_HOST,
    GatewayTarget,
    Processes,
    free_udp_port,
    wait_bound,
)

RATE = 50


def rss_kib(pid: int) -> int:
    """The resident set size of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def main() -> None:
    """Hold N calls up and measure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--media", choices=("twisted", "fake"), default="twisted")
    args = parser.parse_args()
    if not 1 <= args.calls <= 2000:
        parser.error("--calls must be 1..2000")
    hold_ms = int(args.calls / RATE * 1000) + 15000  # all N up together for at least 15 s
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="memory_per_call-"))
    try:
        target = GatewayTarget(procs, work, args.calls + 10, args.media, "warn")
        time.sleep(2)  # settle after start-up before the idle reading
        idle = rss_kib(target.process.pid)
        agents_file = work / "agents.csv"
        agents_file.write_text(
            "SEQUENTIAL\n" + "".join(f"+1899{n:07d};\n" for n in range(1, args.calls + 1))
        )
        bound = int(hold_ms / 1000 + args.calls / RATE + 60)
        common = ["-nostdin", "-timeout", f"{bound}s", "-timeout_error"]
        vendor = procs.start(
            [SIPP, "-sn", "uas", "-i", VENDOR_HOST, "-p", str(target.vendor_port),
             "-mi", VENDOR_HOST, "-mp", str(free_udp_port(VENDOR_HOST)), "-m", str(args.calls), *common],
            work / "vendor.log", cwd=work,
        )  # fmt: skip
        wait_bound(VENDOR_HOST, target.vendor_port, vendor, "the SIPp vendor")
        procs.start(
            [SIPP, "-sf", str(target.livevox_scenario), "-inf", str(agents_file),
             "-i", LIVEVOX_HOST, "-p", str(free_udp_port(LIVEVOX_HOST)),
             "-mi", LIVEVOX_HOST, "-mp", str(free_udp_port(LIVEVOX_HOST)),
             "-r", str(RATE), "-m", str(args.calls), "-l", str(args.calls), "-d", str(hold_ms),
             "-key", "session_expires", "1800", *common, f"{B2BUA_HOST}:{target.port}"],
            work / "livevox.log", cwd=work,
        )  # fmt: skip
        deadline = time.monotonic() + args.calls / RATE + 30
        live = 0
        while time.monotonic() < deadline:
            live = target.live_calls() or 0
            if live >= args.calls:
                break
            time.sleep(0.5)
        if live < args.calls:
            raise RuntimeError(f"only {live} of {args.calls} calls came up; see {work}")
        loaded = rss_kib(target.process.pid)
    finally:
        procs.end_all()
    per_call = (loaded - idle) / args.calls
    report(
        "memory_per_call",
        {
            "calls": args.calls,
            "media": args.media,
            "idle_rss_kib": idle,
            "loaded_rss_kib": loaded,
            "kib_per_active_call": round(per_call, 1),
        },
        f"{args.calls} calls up at once: RSS {idle} KiB idle, {loaded} KiB loaded, "
        f"{per_call:.1f} KiB per active call (media: {args.media})",
    )


if __name__ == "__main__":
    main()
