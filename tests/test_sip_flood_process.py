"""A flood of unparsable To headers against the SIP part in a process of its own: bounded memory, no transactions, few log lines.

The issue's bounds: 10,000 datagrams at 1,000/s from loopback leave RSS growth
under 2 MB; the transaction gauge is back at its baseline within 40 s; fewer
than 100 log lines are written. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .sip_process import GatewayProcess, Sender, rss_kib

pytestmark = pytest.mark.timeout(120)

COUNT = 10_000
RATE = 1_000  # datagrams a second
BATCH = 50
WARM_UP = 200


def bad_to_invite(n: int, local: tuple[str, int], port: int) -> bytes:
    """The guide's INVITE (loopback addresses) with a To header Sippy cannot parse."""
    host, lport = local
    body = (
        f"v=0\r\no=LiveVox 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
    head = (
        f"INVITE sip:+18990000001@127.0.0.1:{port} SIP/2.0\r\n"
        f"Record-Route: <sip:{host}:{lport};r2=on;lr;did=0c.a75cb3e7>\r\n"
        f'To: "unterminated <sip:+18990000001@127.0.0.1:{port}\r\n'
        f"Contact: <sip:{host}:{lport};transport=udp>\r\n"
        f"Call-ID: flood-{n}@{host}\r\n"
        "CSeq: 4117825 INVITE\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Content-Type: application/sdp\r\n"
        f"From: <sip:+19192109237@{host}:{lport}>;tag=telstage-{n}\r\n"
        "Carrier-Name: tmis\r\n"
        f"Session-ID: U2DB327T{n:08X}@{host}\r\n"
        "Session-Expires: 1800;refresher=uac\r\n"
        "Supported: timer\r\n"
        "Max-Forwards: 68\r\n"
        f"Via: SIP/2.0/UDP {host}:{lport};branch=z9hG4bKflood{n}\r\n"
    )
    return (head + "\r\n" + body).encode()


def answered_400(sender: Sender) -> int:
    """How many answers so far are the guard's 400 naming To."""
    return sum(1 for d in sender.received if d.startswith(b"SIP/2.0 400 Bad Request (malformed To"))


def test_10000_bad_to_invites_at_1000_a_second_keep_nothing(tmp_path: Path) -> None:
    """10,000 INVITEs with a bad To at 1,000/s: each answered 400, RSS +<2 MB, gauge back, <100 log lines."""
    gw = GatewayProcess(tmp_path)
    sender = Sender()
    target = ("127.0.0.1", gw.port)
    try:
        # The first refusals import and allocate what every later one reuses.
        for first in range(0, WARM_UP, BATCH):
            for n in range(first, first + BATCH):
                sender.send(bad_to_invite(-n - 1, sender.address, gw.port), target)
            sender.wait_for(
                lambda f=first: answered_400(sender) >= f + BATCH, 10.0, "the warm-up's answers"
            )
        baseline = gw.status()
        rss_before, lines_before = rss_kib(gw.pid), gw.log_lines()
        peak = baseline["transactions"]
        start = time.monotonic()
        for first in range(0, COUNT, BATCH):
            for n in range(first, first + BATCH):
                sender.send(bad_to_invite(n, sender.address, gw.port), target)
            # Pace to RATE: keep answers until this batch's slot has passed.
            sender.receive_until(start + (first + BATCH) / RATE)
            if first % 1000 == 0:
                peak = max(peak, gw.status()["transactions"])
        sent_for = time.monotonic() - start
        sender.wait_for(lambda: answered_400(sender) >= WARM_UP + COUNT, 20.0, "10,000 answers")
        flood_end = time.monotonic()
        after = gw.wait_status(
            lambda s: s["transactions"] <= baseline["transactions"], 40.0, "the gauge's baseline"
        )
        recovered_in = time.monotonic() - flood_end
        rss_after, lines_after = rss_kib(gw.pid), gw.log_lines()
        print(
            f"\nflood: {COUNT} sent in {sent_for:.1f}s; RSS {rss_before} -> {rss_after} KiB"
            f" (+{rss_after - rss_before} KiB); transactions baseline {baseline['transactions']:g},"
            f" peak {peak:g}, back in {recovered_in:.2f}s; log lines {lines_after - lines_before};"
            f" refused {after['refused']}"
        )
        assert (
            after["refused"].get("bad_header", 0) - baseline["refused"].get("bad_header", 0)
            == COUNT
        )
        assert rss_after - rss_before < 2048, (rss_before, rss_after)
        assert lines_after - lines_before < 100, gw.all_output()[-3000:]
        assert gw.alive()
    finally:
        sender.close()
        code = gw.stop()
    assert code == 0, gw.all_output()[-3000:]
    assert "Traceback" not in gw.all_output()
