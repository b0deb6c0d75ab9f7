"""A quick measure of the Twisted media relay: CPU per relayed packet, and added latency.

The relay runs in this process on the default reactor; a traffic generator
runs in a child process (plain sockets), playing both ends of ``--calls``
calls: each end sends a 172-byte G.711 packet every 20 ms to the relay
(50 packets a second each way, as a real call), carrying its send time, and
reads what the relay forwards. Only loopback (127.0.0.1 for LiveVox,
127.0.0.3 for the vendor) is used.

    PYTHONPATH=. python bench/media_relay_quick.py --calls 100 --seconds 10

Prints the relay process's CPU per relayed packet (user + system over the
measured window), packets relayed and lost, and the generator's
send-to-receive latency percentiles (the relay's hop plus both processes'
scheduling: an upper bound on what the relay adds).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import selectors
import socket
import struct
import subprocess
import sys
import time
from typing import Any

PACKET = 172
INTERVAL = 0.020


def generator(calls: int, seconds: float) -> None:
    """The child: bind both ends of every call, then send and receive paced RTP for ``seconds``."""
    socks: list[socket.socket] = []
    for _ in range(calls):
        for host in ("127.0.0.1", "127.0.0.3"):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((host, 0))
            s.setblocking(False)
            socks.append(s)
    print(json.dumps([s.getsockname() for s in socks]), flush=True)
    targets = [tuple(t) for t in json.loads(sys.stdin.readline())]
    poller = selectors.DefaultSelector()
    for s in socks:
        poller.register(s, selectors.EVENT_READ)
    latencies: list[float] = []
    received = sent = 0
    # Each socket sends every 20 ms at its own phase, as independent calls do.
    step = INTERVAL / len(socks)
    start = time.monotonic()
    deadline = start + seconds
    filler = b"\xff" * (PACKET - 20)

    def receive(timeout: float, timed: bool) -> int:
        count = 0
        for key, _ in poller.select(timeout):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                count += 1
                if timed:
                    latencies.append(time.monotonic() - struct.unpack("!d", data[12:20])[0])
        return count

    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        while start + sent * step <= now:
            n = sent % len(socks)
            seq = sent // len(socks)
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 0x1234 + n)
            socks[n].sendto(header + struct.pack("!d", time.monotonic()) + filler, targets[n])
            sent += 1
        received += receive(max(0.0, start + sent * step - time.monotonic()), timed=True)
    end = time.monotonic() + 0.2  # drain what is still in flight
    while time.monotonic() < end:
        received += receive(0.05, timed=False)
    latencies.sort()

    def pct(p: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else 0.0
        )

    print(
        json.dumps(
            {
                "sent": sent,
                "received": received,
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
                "max_ms": pct(1.0),
            }
        ),
        flush=True,
    )


def relay_side(calls: int, seconds: float) -> dict[str, Any]:
    """The parent: a relay with one session per call, measured while the child drives it."""
    from prometheus_client import CollectorRegistry
    from sippy.MsgBody import MsgBody
    from twisted.internet import reactor

    from lvgateway.config.model import MediaConfig
    from lvgateway.media.twisted_relay import TwistedMediaRelay

    base = random.randrange(20000, 50000, 2)
    config = MediaConfig("twisted", "127.0.0.1", None, base, base + 4 * calls + 63, 5.0, 10.0)
    relay = TwistedMediaRelay(
        reactor,
        config,
        CollectorRegistry(),
        livevox_networks=[ipaddress.ip_network("127.0.0.1/32")],
    )
    relay.start()
    child = subprocess.Popen(
        [sys.executable, __file__, "--generator", "--calls", str(calls), "--seconds", str(seconds)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    ends = json.loads(child.stdout.readline())
    targets = []
    sessions = []
    for n in range(calls):
        (lv_host, lv_port), (vd_host, vd_port) = ends[2 * n], ends[2 * n + 1]
        session = relay.new_session(f"bench-{n}", [ipaddress.ip_network(f"{vd_host}/32")])
        sessions.append(session)

        def body(host: str, port: int) -> Any:
            return MsgBody(
                f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
                f"m=audio {port} RTP/AVP 0\r\n"
            )

        session.on_caller_sdp_change(body(lv_host, lv_port), lambda *a, **k: None)
        session.on_callee_sdp_change(body(vd_host, vd_port), lambda *a, **k: None)
        targets += [("127.0.0.1", session.livevox_port), ("127.0.0.1", session.vendor_port)]
    child.stdin.write(json.dumps(targets) + "\n")
    child.stdin.flush()

    result: dict[str, Any] = {}
    warmup = 1.0
    window = max(1.0, seconds - 2 * warmup)

    def mark_start() -> None:
        result["cpu0"] = sum(os.times()[:2])
        result["pk0"] = _packets(sessions)

    def mark_end() -> None:
        result["cpu1"] = sum(os.times()[:2])
        result["pk1"] = _packets(sessions)

    reactor.callLater(warmup, mark_start)
    reactor.callLater(warmup + window, mark_end)
    reactor.callLater(seconds + 0.5, reactor.stop)  # the generator has stopped sending by then
    reactor.run()
    line = child.stdout.readline()
    result["generator"] = json.loads(line) if line else {}
    child.wait(timeout=10)
    packets = result["pk1"] - result["pk0"]
    cpu = result["cpu1"] - result["cpu0"]
    gen = result["generator"]
    return {
        "calls": calls,
        "window_s": window,
        "relayed_pps": packets / window,
        "cpu_percent": 100 * cpu / window,
        "cpu_us_per_packet": 1e6 * cpu / packets if packets else None,
        "generator": gen,
        "lost": gen.get("sent", 0) - gen.get("received", 0),
    }


def _packets(sessions: list[Any]) -> int:
    total = 0
    for s in sessions:
        c = s.counters()
        total += c.livevox_to_vendor.packets + c.vendor_to_livevox.packets
    return total


def main() -> None:
    """Run the parent or the child side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--generator", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generator:
        generator(args.calls, args.seconds)
    else:
        print(json.dumps(relay_side(args.calls, args.seconds), indent=2))


if __name__ == "__main__":
    main()
