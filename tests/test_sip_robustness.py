"""Malformed SIP never takes the gateway down: 500+ bad datagrams, then a good call still bridges."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_twisted

from .sip_gateway import SipGateway, all_succeed, free_udp_port, sipp, start_gateway
from .sip_helpers import listen_peer, wait_until

pytestmark = pytest.mark.timeout(90)


def good_invite(target: tuple[str, int], local: tuple[str, int], sdp: str | None = None) -> str:
    """A well-formed INVITE to agent AIVA1's number."""
    body = (
        sdp
        if sdp is not None
        else (
            "v=0\r\no=x 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            "m=audio 4000 RTP/AVP 0\r\n"
        )
    )
    return (
        f"INVITE sip:+18990000001@{target[0]}:{target[1]} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n"
        f"From: <sip:+19192109237@{local[0]}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:+18990000001@{target[0]}>\r\n"
        f"Call-ID: {uuid.uuid4().hex}@{local[0]}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:{local[0]}:{local[1]}>\r\n"
        "Max-Forwards: 70\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n\r\n{body}"
    )


def without(message: str, header: str) -> str:
    """``message`` with every line of ``header`` removed."""
    return "\r\n".join(
        line for line in message.split("\r\n") if not line.lower().startswith(header.lower() + ":")
    )


def malformed(
    target: tuple[str, int], local: tuple[str, int], rng: random.Random
) -> Iterator[bytes]:
    """Yield bad datagrams of every kind the issue names, several of each."""
    for _ in range(45):
        good = good_invite(target, local)
        yield good[: rng.randrange(1, len(good) - 1)].encode()  # truncated
        yield bytes(rng.randrange(256) for _ in range(rng.randrange(1, 1400)))  # garbage bytes
        for header in ("Via", "From", "To", "Call-ID", "CSeq"):
            yield without(good, header).encode()  # a required header missing
        yield good.replace("Content-Length: ", "Content-Length: 9").encode()  # wrong length
        yield good.replace("Max-Forwards: 70", "X-Huge: " + "a" * 60000).encode()[
            :65000
        ]  # huge header
        yield good_invite(
            target, local, sdp="v=0\r\nm=audio banana RTP/AVP zero\r\nc=IN IP4 ???\r\n"
        ).encode()
        yield b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # not SIP at all (a TLS hello)
        yield b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n"  # a response to nothing


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[SipGateway, int]]:
    """The SIP part with a SIPp vendor on 127.0.0.3."""
    vendor_port = free_udp_port("127.0.0.3")
    gw = start_gateway(tmp_path, [vendor_port])
    yield gw, vendor_port
    await gw.stop()


@pytest_twisted.ensureDeferred
async def test_malformed_messages_leave_the_gateway_serving(
    gateway: tuple[SipGateway, int],
) -> None:
    """After 540 malformed datagrams the gateway is up and the next good call completes."""
    gw, vendor_port = gateway
    peer, port = listen_peer("127.0.0.1")
    target = ("127.0.0.1", gw.port)
    sent = 0
    try:
        for datagram in malformed(target, ("127.0.0.1", port.getHost().port), random.Random(7)):
            peer.transport.write(datagram, target)  # type: ignore[union-attr]
            sent += 1
        # OPTIONS after the flood, re-sent as a peer would (the kernel may drop some of a
        # burst this size), until one is answered: the gateway is still serving.
        from .sip_helpers import options_request

        local = ("127.0.0.1", port.getHost().port)

        def answered() -> bool:
            if any(
                "after-the-flood" in r and r.startswith("SIP/2.0 200") for r in peer.responses()
            ):
                return True
            peer.send(options_request(target, local, f"after-the-flood-{uuid.uuid4().hex}"), target)
            return False

        await wait_until(answered, 20, "an OPTIONS sent after the flood to be answered")
    finally:
        await port.stopListening()
    assert sent >= 500
    assert gw.sip.stack.running
    await wait_until(lambda: not gw.sip.router.live, 20, "calls from the flood to end")
    vendor = sipp("vendor_answer.xml", "127.0.0.3", port=vendor_port)
    livevox = sipp("livevox_call.xml", "127.0.0.1", target, service="+18990000002")
    await all_succeed(livevox, vendor)
