"""The vendor leg through the Kamailio edge against direct UDP: setup time side by side, and Kamailio's CPU per call.

    python bench/tls_edge.py [--rate 20] [--seconds 10] [--rounds 2] [--hold-ms 1000] [--keep]

The gateway's SIP part runs alone in its process (``bench/_sip_gateway_proc.py``,
as ``bench/sip_signalling.py`` runs it), with SIPp playing LiveVox and SIPp's
``uas`` playing the vendor on UDP. Two setups take turns, ``--rounds`` times
each, at the same rate:

- **direct**: the vendor leg goes straight to SIPp over UDP;
- **edge**: ``[edge]`` is configured, so the gateway runs Kamailio as its
  child (the files it renders, the command line it uses) and the vendor leg
  goes gateway -> Kamailio -> SIPp, Kamailio record-routing, all over UDP.

Per step: SIPp's INVITE-to-200 time (LiveVox side: the setup time a caller
sees, through the gateway and the vendor), the gateway's CPU per call, and
for the edge the CPU of Kamailio's whole process tree (``/proc``, before
and after) per call. TLS toward the vendor is not in these figures: SIPp here
has no TLS, and a TLS connection is opened once and kept (the health probe
opens it), so per call the edge adds its routing and one record encryption
per message, which the UDP figure bounds from below.

Bounded: ``--rounds`` x 2 steps of ``--seconds`` each, every SIPp with a
``-timeout``, every process ended on the way out. Writes
``bench/results/tls_edge.json`` and prints one line.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import report  # noqa: E402
from bench.sip_signalling import (  # noqa: E402
    GatewayTarget,
    Processes,
    free_udp_port,
    run_step,
    udp_bound,
)

EDGE_HOST = "127.0.0.1"


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (from ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of ``pids`` so far; a process gone counts nothing."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def kamailio_pids(gateway: int) -> list[int]:
    """The Kamailio processes below the gateway process."""
    found = []
    for pid in process_tree(gateway)[1:]:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "kamailio":
                found.append(pid)
        except OSError:
            continue
    return found


class EdgeTarget(GatewayTarget):
    """The gateway's SIP part with ``[edge]``: its vendor leg through the Kamailio it runs as a child."""

    name = "edge"

    def __init__(self, procs: Processes, work: Path, agents: int) -> None:
        edge_port = free_udp_port(EDGE_HOST)
        super().__init__(
            procs, work, agents, "twisted", "info", extra=["--edge-port", str(edge_port)]
        )
        deadline = time.monotonic() + 20
        while not udp_bound(EDGE_HOST, edge_port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"Kamailio did not bind {edge_port}; see {work}")
            time.sleep(0.05)
        time.sleep(1.0)  # its workers start after the bind
        #: Kamailio's processes, below the gateway's.
        self.kamailio = kamailio_pids(self.process.pid)
        if not self.kamailio:
            raise RuntimeError("no Kamailio process below the gateway")


def main() -> None:
    """Alternate direct and edge steps; report setup time and CPU per call side by side."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hold-ms", type=int, default=1000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    if not (0 < args.rate <= 100 and 0 < args.seconds <= 60 and 0 < args.rounds <= 5):
        parser.error("--rate 1..100, --seconds up to 60, --rounds 1..5")
    agents = max(200, math.ceil(args.rate * (args.hold_ms / 1000 + 10)))
    procs = Processes()
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="tls_edge-"))
    agents_file = work / "agents.csv"
    agents_file.write_text(
        "SEQUENTIAL\n" + "".join(f"+1899{n:07d};\n" for n in range(1, agents + 1))
    )
    steps: dict[str, list[dict[str, Any]]] = {"direct": [], "edge": []}
    keep = True
    try:
        for r in range(args.rounds):
            for mode in ("direct", "edge"):
                folder = work / f"{mode}{r}"
                folder.mkdir()
                target: GatewayTarget
                if mode == "edge":
                    target = EdgeTarget(procs, folder, agents)
                else:
                    target = GatewayTarget(procs, folder, agents, "twisted", "info")
                kamailio = target.kamailio if isinstance(target, EdgeTarget) else []
                try:
                    run_step(procs, target, 10, 2, args.hold_ms, agents, agents_file)  # warm-up
                    if kamailio:  # its workers, forked after it bound its sockets
                        kamailio = kamailio_pids(target.process.pid)
                    k0 = tree_cpu(kamailio)
                    step = run_step(
                        procs, target, args.rate, args.seconds, args.hold_ms, agents, agents_file
                    )
                    k1 = tree_cpu(kamailio)
                    if kamailio:
                        step["kamailio_processes"] = len(kamailio)
                        step["kamailio_cpu_seconds"] = round(k1 - k0, 3)
                        step["kamailio_cpu_ms_per_call"] = round(
                            1000 * (k1 - k0) / step["calls"], 3
                        )
                    steps[mode].append(step)
                    print(
                        f"{mode:6} round {r}: {step['calls']} calls, passed={step['passed']},"
                        f" INVITE->200 p50 {step['invite_to_200_ms_p50']} ms"
                        f" mean {step['invite_to_200_ms_mean']} ms"
                        f" p99 {step['invite_to_200_ms_p99']} ms,"
                        f" gateway {step['cpu_ms_per_call']} ms CPU/call"
                        + (
                            f", Kamailio {step['kamailio_cpu_ms_per_call']} ms CPU/call"
                            if kamailio
                            else ""
                        ),
                        flush=True,
                    )
                finally:
                    procs.end(target.process, grace=15.0)
        keep = args.keep or not all(s["passed"] for v in steps.values() for s in v)
    finally:
        procs.end_all()
        if keep:
            print(f"logs and SIPp files kept in {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)

    def mean(mode: str, key: str) -> float | None:
        values = [s[key] for s in steps[mode] if s.get(key) is not None]
        return round(sum(values) / len(values), 3) if values else None

    direct_ms, edge_ms = (
        mean("direct", "invite_to_200_ms_mean"),
        mean("edge", "invite_to_200_ms_mean"),
    )
    figures = {
        "command": " ".join(["python", "bench/tls_edge.py", *sys.argv[1:]]),
        "rate_cps": args.rate,
        "seconds_per_step": args.seconds,
        "hold_ms": args.hold_ms,
        "steps": steps,
        "setup_ms_mean": {"direct": direct_ms, "edge": edge_ms},
        "setup_added_by_edge_ms": (
            round(edge_ms - direct_ms, 3) if direct_ms is not None and edge_ms is not None else None
        ),
        "gateway_cpu_ms_per_call": {
            "direct": mean("direct", "cpu_ms_per_call"),
            "edge": mean("edge", "cpu_ms_per_call"),
        },
        "kamailio_cpu_ms_per_call": mean("edge", "kamailio_cpu_ms_per_call"),
    }
    line = (
        f"at {args.rate} calls/s: INVITE->200 mean {direct_ms} ms direct, {edge_ms} ms through"
        f" the edge; Kamailio {figures['kamailio_cpu_ms_per_call']} ms CPU per call"
    )
    report("tls_edge", figures, line)


if __name__ == "__main__":
    main()
