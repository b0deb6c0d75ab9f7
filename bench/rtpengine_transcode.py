"""rtpengine's CPU per call when a codec map transcodes PCMU to G.722, against the same calls passed through.

    PYTHONPATH=. python bench/rtpengine_transcode.py [--calls 20] [--seconds 10] [--repeat 2]

One userspace rtpengine (Debian's 10.5, ``--table=-1``, loopback) carries N
calls at a time, set up over its ng protocol with the flags of
:func:`lvgateway.media.profiles.ng_flags` (``rtp`` profile):

- **passthrough**: no codec map; both ends send PCMU, rtpengine forwards;
- **transcoded**: codec map PCMU to G722; LiveVox's end sends PCMU, the
  vendor's end G.722 (payload type 9), rtpengine decodes and re-encodes both
  ways (libavcodec's G.722, its own G.711).

Each end of each call sends one 20 ms packet every 20 ms (50 packets a
second each way) for ``--seconds``, from this one Python process; every
packet received is counted, with its payload type, so a phase whose media
did not flow (or was not transcoded) shows it. rtpengine's CPU (user +
system, all threads, ``/proc/PID/stat``) is read around the sending window,
after a one-second warm-up. Phases alternate, ``--repeat`` times each; the
figures are the medians. Bounded: at most 100 calls and 30 s a phase.
Writes ``bench/results/rtpengine_transcode.json`` and prints one line.
"""

from __future__ import annotations

import argparse
import select
import socket
import statistics
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._support import report  # noqa: E402
from lvgateway.config.media_profiles import CodecMap  # noqa: E402
from lvgateway.media.profiles import ng_flags  # noqa: E402
from tests.rtpengine_peer import NgClient, RtpengineProcess  # noqa: E402

MAX_CALLS = 100
MAX_SECONDS = 30.0
INTERVAL = 0.02
WARM_UP = 1.0
G722_MAP = CodecMap(livevox="PCMU", vendor="G722")


def _sdp(port: int, payload_type: int, codec: str) -> str:
    return (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {payload_type}\r\na=rtpmap:{payload_type} {codec}/8000\r\n"
        "a=sendrecv\r\n"
    )


def _port(sdp: str) -> int:
    for line in sdp.splitlines():
        if line.startswith("m=audio "):
            return int(line.split()[1])
    raise RuntimeError(f"no m=audio in {sdp!r}")


class Call:
    """Both ends of one call: LiveVox's socket and the vendor's, and where each sends."""

    def __init__(self, ng: NgClient, codec_map: CodecMap | None) -> None:
        self.call_id = uuid.uuid4().hex
        self.livevox = self._socket()
        self.vendor = self._socket()
        self.vendor_pt = 9 if codec_map else 0
        offer = ng.request(
            "offer",
            call_id=self.call_id,
            from_tag="lv",
            sdp=_sdp(self.livevox.getsockname()[1], 0, "PCMU"),
            **ng_flags("rtp", codec_map, "offer", "vendor"),
        )
        answer = ng.request(
            "answer",
            call_id=self.call_id,
            from_tag="lv",
            to_tag="vendor",
            sdp=_sdp(self.vendor.getsockname()[1], self.vendor_pt, "G722" if codec_map else "PCMU"),
            **ng_flags("rtp", codec_map, "answer", "livevox"),
        )
        # The offer's result is what the vendor is told (rtpengine's port facing
        # it); the answer's is what LiveVox is told.
        self.livevox_sends_to = ("127.0.0.1", _port(answer["sdp"]))
        self.vendor_sends_to = ("127.0.0.1", _port(offer["sdp"]))
        if codec_map and " 9" not in offer["sdp"].split("m=audio", 1)[1].splitlines()[0]:
            raise RuntimeError(f"the offer toward the vendor is not G.722: {offer['sdp']}")

    @staticmethod
    def _socket() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        return s

    def close(self, ng: NgClient) -> None:
        """Delete the call in rtpengine and close both sockets."""
        ng.request("delete", call_id=self.call_id)
        self.livevox.close()
        self.vendor.close()


def phase(
    ng: NgClient, process: RtpengineProcess, calls: int, seconds: float, codec_map: CodecMap | None
) -> dict[str, Any]:
    """Run ``calls`` calls for ``seconds``; return rtpengine's CPU and the packets that arrived."""
    live = [Call(ng, codec_map) for _ in range(calls)]
    owner = {c.livevox.fileno(): ("livevox", c) for c in live} | {
        c.vendor.fileno(): ("vendor", c) for c in live
    }
    received: dict[tuple[str, int], int] = {}
    payload = bytes(range(0x10, 0x10 + 160))
    start = time.monotonic()
    tick = 0
    cpu_start = cpu_end = None
    sent = 0
    end = start + WARM_UP + seconds
    while True:
        now = time.monotonic()
        if cpu_start is None and now >= start + WARM_UP:
            cpu_start, window_start = process.cpu_seconds(), now
        if now >= end:
            cpu_end, window_end = process.cpu_seconds(), now
            break
        due = start + tick * INTERVAL
        if now >= due:
            for c in live:
                c.livevox.sendto(
                    struct.pack("!BBHII", 0x80, 0, tick & 0xFFFF, tick * 160, 1) + payload,
                    c.livevox_sends_to,
                )
                c.vendor.sendto(
                    struct.pack("!BBHII", 0x80, c.vendor_pt, tick & 0xFFFF, tick * 160, 2)
                    + payload,
                    c.vendor_sends_to,
                )
                sent += 2
            tick += 1
            continue
        ready, _, _ = select.select(list(owner), [], [], max(0.0, due - now))
        for fd in ready:
            side, c = owner[fd]
            sock = c.livevox if side == "livevox" else c.vendor
            while True:
                try:
                    data = sock.recv(2048)
                except BlockingIOError:
                    break
                key = (side, data[1] & 0x7F)
                received[key] = received.get(key, 0) + 1
    for c in live:
        c.close(ng)
    assert cpu_start is not None and cpu_end is not None
    cpu = cpu_end - cpu_start
    window = window_end - window_start
    return {
        "transcoded": codec_map is not None,
        "calls": calls,
        "seconds": round(window, 2),
        "packets_sent": sent,
        "received_by_payload_type": {
            f"{side}:{pt}": n for (side, pt), n in sorted(received.items())
        },
        "delivered": round(sum(received.values()) / sent, 4) if sent else 0.0,
        "cpu_seconds": round(cpu, 3),
        "cpu_percent_per_call": round(100 * cpu / window / calls, 3),
    }


def main() -> None:
    """Alternate passthrough and transcoded phases; report the medians and their ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    calls = max(1, min(args.calls, MAX_CALLS))
    seconds = max(1.0, min(args.seconds, MAX_SECONDS))
    repeat = max(1, min(args.repeat, 5))
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        process = RtpengineProcess(
            Path(tmp), extra_args=("--log-level=3", "--delete-delay=0"), ports=8 * calls + 40
        )
        ng = process.start()
        try:
            for _ in range(repeat):
                for codec_map in (None, G722_MAP):
                    runs.append(phase(ng, process, calls, seconds, codec_map))
        finally:
            process.stop()
    medians = {}
    for transcoded in (False, True):
        mine = [r for r in runs if r["transcoded"] is transcoded]
        medians["transcoded" if transcoded else "passthrough"] = {
            "cpu_percent_per_call": statistics.median(r["cpu_percent_per_call"] for r in mine),
            "delivered": min(r["delivered"] for r in mine),
        }
    plain, coded = medians["passthrough"], medians["transcoded"]
    ratio = (
        coded["cpu_percent_per_call"] / plain["cpu_percent_per_call"]
        if plain["cpu_percent_per_call"]
        else None
    )
    report(
        "rtpengine_transcode",
        {
            "calls": calls,
            "seconds": seconds,
            "repeat": repeat,
            "medians": medians,
            "ratio": ratio,
            "runs": runs,
        },
        f"rtpengine, {calls} calls x {seconds:.0f} s, userspace: PCMU<->G722 transcoding "
        f"{coded['cpu_percent_per_call']:.3f} % of a core per call (delivered {coded['delivered']:.1%}), "
        f"passthrough {plain['cpu_percent_per_call']:.3f} % (delivered {plain['delivered']:.1%}); "
        f"ratio {ratio:.1f}x"
        if ratio
        else "passthrough used no measurable CPU",
    )


if __name__ == "__main__":
    main()
