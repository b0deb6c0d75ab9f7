"""Probe RTP for media tests: known packets out, echoes counted, and a loopback capture to check for clear text.

Each probe packet is plain RTP (version 2, PCMU by default) whose payload
starts with :data:`MARKER` and the packet's number. SRTP encrypts the payload
but leaves the RTP header in clear, so "no plain RTP on the wire" is checked
on the payload: a captured datagram carrying the marker is a probe in clear.
"""

from __future__ import annotations

import select
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from tests.rtpengine_peer import stop_process

__all__ = ["MARKER", "Capture", "exchange", "probe_packet", "rtp_payload_type"]

MARKER = b"LVGWPROBE"
TCPDUMP = "/usr/bin/tcpdump"


def probe_packet(seq: int, ssrc: int = 0x4C56_4757, payload_type: int = 0) -> bytes:
    """An RTP packet of 20 ms of G.711 (160 bytes) carrying the marker and ``seq``."""
    header = struct.pack("!BBHII", 0x80, payload_type, seq & 0xFFFF, seq * 160, ssrc)
    body = MARKER + struct.pack("!I", seq)
    filler = bytes((0x10 + (i * 7) % 0x60) for i in range(160 - len(body)))
    return header + body + filler


def rtp_payload_type(packet: bytes) -> int | None:
    """The payload type of an RTP packet (version 2), or None for anything else."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return None
    return packet[1] & 0x7F


def exchange(
    sock: socket.socket,
    to: tuple[str, int],
    count: int,
    interval: float = 0.02,
    linger: float = 1.0,
) -> list[bytes]:
    """Send ``count`` probes from ``sock`` to ``to`` at ``interval``, keeping every datagram that comes back.

    Receives until ``linger`` seconds after the last probe, so the echo of
    the last packets is counted too. Bounded: ``count * interval + linger``.
    """
    received: list[bytes] = []
    sock.setblocking(False)
    start = time.monotonic()
    sent = 0
    end = start + count * interval + linger
    while True:
        now = time.monotonic()
        if sent < count and now >= start + sent * interval:
            sock.sendto(probe_packet(sent), to)
            sent += 1
            continue
        if now >= end:
            return received
        wake = min(start + sent * interval if sent < count else end, end)
        ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
        while ready:
            try:
                received.append(sock.recv(2048))
            except BlockingIOError:
                break


class Capture:
    """``tcpdump -i lo -w FILE`` on UDP to or from some ports, for the test to read afterwards."""

    def __init__(self, path: Path, ports: tuple[int, ...]) -> None:
        self.path = path
        self.ports = ports
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = path.with_suffix(".stderr")

    def start(self, bound: float = 10.0) -> None:
        """Start tcpdump and wait until it says it is listening."""
        if not Path(TCPDUMP).exists():
            raise AssertionError(f"{TCPDUMP} is missing: install tcpdump")
        flt = " or ".join(f"udp port {p}" for p in self.ports)
        err = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [TCPDUMP, "-i", "lo", "-n", "-U", "-s", "0", "-w", str(self.path), flt],
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
        err.close()
        deadline = time.monotonic() + bound
        while b"listening on" not in self.stderr_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"tcpdump did not start: {self.stderr_path.read_text(errors='replace')}"
                )
            time.sleep(0.02)

    def stop(self, bound: float = 10.0) -> list[tuple[int, int, bytes]]:
        """Stop tcpdump and return the captured UDP datagrams as (source port, destination port, payload)."""
        assert self.process is not None
        stop_process(self.process, bound, signal.SIGINT)  # SIGINT: tcpdump flushes the file
        return list(_udp_datagrams(self.path.read_bytes()))


def _udp_datagrams(pcap: bytes) -> list[tuple[int, int, bytes]]:
    """The UDP/IPv4 datagrams of a classic pcap file on Linux loopback (Ethernet framing)."""
    if len(pcap) < 24:
        raise AssertionError("the capture file has no pcap header")
    magic = pcap[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", pcap[20:24])[0]
    if linktype != 1:
        raise AssertionError(f"expected an Ethernet capture (link type 1), found {linktype}")
    out: list[tuple[int, int, bytes]] = []
    i = 24
    while i + 16 <= len(pcap):
        incl = struct.unpack(endian + "I", pcap[i + 8 : i + 12])[0]
        frame = pcap[i + 16 : i + 16 + incl]
        i += 16 + incl
        if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 17:
            continue
        ihl = (frame[14] & 0x0F) * 4
        udp = frame[14 + ihl :]
        sport, dport = struct.unpack("!HH", udp[:4])
        out.append((sport, dport, udp[8:]))
    return out
