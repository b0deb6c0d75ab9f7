"""A mutation fuzz test of the guide's sample INVITE against the SIP part in a process of its own.

3,000 mutations (fixed seed): byte flips, truncations, duplicated and removed
lines, garbage in a header's value. Afterwards the process is alive, its log
and output hold no traceback or unhandled error, and a good call (SIPp as
LiveVox and as the vendor) completes. The counts are printed (``pytest -s``).
"""

from __future__ import annotations

import random
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from .sip_gateway import SCENARIOS, SIPP, free_udp_port
from .sip_helpers import options_request
from .sip_process import GatewayProcess, Sender

pytestmark = pytest.mark.timeout(120)

SEED = 4475
MUTATIONS = 3000
BATCH = 50
VENDOR = "127.0.0.3"

#: Values that have broken SIP parsers: quotes and brackets left open, escapes, huge numbers.
GARBAGE = (
    b'"', b"<", b">", b"<sip:", b";;,;,,", b"%00", b"\x00", b"\xff\xfe", b"sip:@", b"@@@",
    b"-1", b"99999999999999999999999", b"SIP/2.0/", b"\t", b" ", b"", b"\r\n x", b"=",
    b"<sip:a@b>;tag=", b"*", b"," * 40, b"A" * 900,
)  # fmt: skip


def sample_invite(local: tuple[str, int], port: int, n: int) -> bytes:
    """The guide's sample INVITE (docs/livevox-api.md, section 8), with loopback in place of the masked addresses."""
    host, lport = local
    body = (
        f"v=0\r\no=LiveVox 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        "m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
    head = (
        f"INVITE sip:+18990000001@127.0.0.1:{port} SIP/2.0\r\n"
        f"Record-Route: <sip:{host}:{lport};r2=on;lr;did=0c.a75cb3e7>\r\n"
        f"Record-Route: <sip:{host};r2=on;lr;did=0c.a75cb3e7>\r\n"
        f"Record-Route: <sip:{host}:5070;lr;did=0c.9c237b23>\r\n"
        f"To: sip:+18990000001@127.0.0.1:{port}\r\n"
        f"Contact: <sip:{host}:{lport};transport=udp>\r\n"
        f"Call-ID: fuzz-{n}-7b7397a3-f7f2e4ec-d3e93b6c@{host}\r\n"
        "CSeq: 4117825 INVITE\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Content-Type: application/sdp\r\n"
        f"From: <sip:+19192109237@{host}:{lport}>;tag=telstage-4c11af69-{n}\r\n"
        "X-Lv-Destination-Ip:\r\n"
        "X-Lv-Destination-Port: 5060\r\n"
        "Session-Privacy: no\r\n"
        "Carrier-Name: tmis\r\n"
        f"Session-ID: U2DB327T{n:07X}@{host}\r\n"
        "Pool-Name: carrierinbound\r\n"
        "Allow: INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS, INFO, REGISTER, SUBSCRIBE,"
        " MESSAGE, UPDATE\r\n"
        "Session-Expires: 1800;refresher=uac\r\n"
        "Supported: timer\r\n"
        "Max-Forwards: 68\r\n"
        f"Via: SIP/2.0/UDP {host}:{lport};branch=z9hG4bK623f.ac426ea3.{n}\r\n"
        f"Via: SIP/2.0/UDP {host}:5070;received={host};branch=z9hG4bK623f.02823352.0\r\n"
        f"Via: SIP/2.0/UDP {host}:5060;branch=z9hG4bK5e18e8dc-0000-7b7397a4-f7f2e4ec-d3e93b6c\r\n"
    )
    return (head + "\r\n" + body).encode()


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One mutation of ``data``: its kind and the result."""
    kind = rng.choice(("flip", "truncate", "duplicate", "remove", "garbage"))
    if kind == "flip":
        out = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return kind, bytes(out)
    if kind == "truncate":
        return kind, data[: rng.randrange(len(data))]
    lines = data.split(b"\r\n")
    at = rng.randrange(len(lines))
    if kind == "duplicate":
        lines.insert(at, lines[at])
    elif kind == "remove":
        del lines[at]
    else:
        name, colon, _ = lines[at].partition(b":")
        filler = b"".join(rng.choice(GARBAGE) for _ in range(rng.randint(1, 4)))
        lines[at] = name + colon + b" " + filler if colon else filler
    return kind, b"\r\n".join(lines)


def ping(sender: Sender, target: tuple[str, int], call_id: str) -> None:
    """Send a valid OPTIONS and wait for its 200."""
    text = options_request(target, sender.address, call_id).replace("\n", "\r\n")
    sender.send(text.encode(), target)
    marker = f"Call-ID: {call_id}\r\n".encode()
    sender.wait_for(
        lambda: any(d.startswith(b"SIP/2.0 200") and marker in d for d in sender.received),
        20.0,
        f"the answer to {call_id}",
    )


def test_mutation_fuzz_leaves_the_gateway_alive_and_a_good_call_completes(tmp_path: Path) -> None:
    """3,000 mutated INVITEs: process alive, no traceback logged, and a SIPp call completes after."""
    vendor_port = free_udp_port(VENDOR)
    gw = GatewayProcess(tmp_path, vendor_port)
    sender = Sender()
    target = ("127.0.0.1", gw.port)
    rng = random.Random(SEED)
    kinds: Counter[str] = Counter()
    try:
        # Every agent on a call: a mutation that is still a valid INVITE gets 486, no vendor leg.
        gw.command("busy", "BUSY")
        for first in range(0, MUTATIONS, BATCH):
            for n in range(first, first + BATCH):
                kind, data = mutate(sample_invite(sender.address, gw.port, n), rng)
                kinds[kind] += 1
                sender.send(data, target)
            # A probe after each batch: datagrams are handled in order, so once the probe
            # is answered the batch has been, and the next one cannot overflow the socket.
            ping(sender, target, f"probe-{first}")
            assert gw.alive(), gw.all_output()[-3000:]
        status = gw.status()
        codes: Counter[str] = Counter()
        first_answer: dict[str, bytes] = {}
        for d in sender.received:
            match = re.search(rb"fuzz-(\d+)-", d)
            if match and match.group(1) not in first_answer and d.startswith(b"SIP/2.0 "):
                first_answer[match.group(1).decode()] = d
        for d in first_answer.values():
            codes[d.split(b" ", 2)[1].decode()] += 1
        print(
            f"\nfuzz: {MUTATIONS} mutations {dict(kinds)}; answered {sum(codes.values())} by code"
            f" {dict(sorted(codes.items()))}; no answer (dropped, or answered elsewhere)"
            f" {MUTATIONS - sum(codes.values())}; guard {status['refused']}"
        )
        assert gw.alive()
        gw.command("free", "FREE")
        gw.wait_status(lambda s: s["active_calls"] == 0, 40.0, "no call up")
        vendor = subprocess.Popen(
            [SIPP, "-sf", str(SCENARIOS / "vendor_answer.xml"), "-i", VENDOR, "-p", str(vendor_port),
             "-mi", VENDOR, "-mp", str(free_udp_port(VENDOR)), "-m", "1",
             "-timeout", "20s", "-timeout_error", "-nostdin"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        livevox = subprocess.run(
            [SIPP, "-sf", str(SCENARIOS / "livevox_call.xml"), "-i", "127.0.0.1",
             "-p", str(free_udp_port("127.0.0.1")), "-mi", "127.0.0.1",
             "-mp", str(free_udp_port("127.0.0.1")), "-m", "1", "-d", "300",
             "-timeout", "20s", "-timeout_error", "-nostdin", "-s", "+18990000001",
             "-key", "session_expires", "1800", f"127.0.0.1:{gw.port}"],
            capture_output=True, cwd=tmp_path, timeout=40,
        )  # fmt: skip
        vendor_out, _ = vendor.communicate(timeout=40)
        assert livevox.returncode == 0, livevox.stdout[-3000:]
        assert vendor.returncode == 0, vendor_out[-3000:]
        gw.wait_status(lambda s: s["ended"] >= 1, 10.0, "the good call's end")
        assert gw.alive()
    finally:
        sender.close()
        code = gw.stop()
    output = gw.all_output()
    assert code == 0, output[-3000:]
    for bad in ("Traceback", "Unhandled", "unhandled"):
        assert bad not in output, output[output.index(bad) - 2000 : output.index(bad) + 2000]
