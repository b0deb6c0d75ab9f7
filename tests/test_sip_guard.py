"""The guard in front of Sippy: bad messages are answered or dropped, counted, and logged in summary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from lvgateway.sip.guard import MessageGuard

from .sip_gateway import SipGateway, free_udp_port, start_gateway
from .sip_helpers import listen_peer, options_request, wait_until

pytestmark = pytest.mark.timeout(120)


def bad_to(n: int, local: tuple[str, int]) -> bytes:
    """An OPTIONS whose To Sippy cannot parse."""
    text = options_request(("127.0.0.1", 5070), local, f"badto-{n}").replace(
        "To: <sip:127.0.0.1:5070>", 'To: "unterminated <sip:x@'
    )
    return text.replace("\n", "\r\n").encode()


def test_a_bad_to_is_answered_400_naming_it_and_logged_once_per_interval() -> None:
    """1,000 bad To headers: 1,000 answers of 400 naming To, two log lines, one count per message."""
    clock, sent, counted = Clock(), [], []
    guard = MessageGuard(clock, lambda d, a: sent.append((d, a)), counted.append, interval=10)
    with capturedLogs() as events:
        for n in range(1000):
            assert guard.admit(bad_to(n, ("127.0.0.1", 5999)), ("127.0.0.1", 5999)) is None
        clock.advance(10)
    assert len(sent) == 1000
    assert sent[0][0].startswith(b"SIP/2.0 400 Bad Request (malformed To header)\r\n")
    assert sent[0][1] == ("127.0.0.1", 5999)
    assert counted == ["bad_header"] * 1000
    assert len([e for e in events if "refused" in e["log_format"]]) == 2
    guard.stop()


def test_unknown_require_gets_420_and_proxy_require_is_ignored() -> None:
    """Require: foo gets 420 with Unsupported; Proxy-Require alone passes to Sippy."""
    clock, sent = Clock(), []
    guard = MessageGuard(clock, lambda d, a: sent.append(d))
    base = options_request(("127.0.0.1", 5070), ("127.0.0.1", 5999)).replace("\n", "\r\n")
    required = base.replace("CSeq:", "Require: foo, timer\r\nCSeq:").encode()
    assert guard.admit(required, ("127.0.0.1", 5999)) is None
    assert sent[-1].startswith(b"SIP/2.0 420 ")
    assert b"\r\nUnsupported: foo\r\n" in sent[-1]
    proxy = base.replace("CSeq:", "Proxy-Require: foo\r\nCSeq:").encode()
    assert guard.admit(proxy, ("127.0.0.1", 5999)) == proxy
    guard.stop()


def test_rfc4475_corner_cases_of_the_request_uri_contact_and_status_line() -> None:
    """A "?" in the user part passes; an addr-spec Contact with "?" gets 400; a 4294967301 response is dropped."""
    from .rfc4475 import message

    clock, sent = Clock(), []
    guard = MessageGuard(clock, lambda d, a: sent.append(d))
    assert guard.admit(message("intmeth"), ("127.0.0.1", 5060)) is not None
    assert guard.admit(message("regbadct"), ("127.0.0.1", 5060)) is None
    assert sent[-1].startswith(b"SIP/2.0 400 Bad Request (malformed Contact header)\r\n")
    assert guard.admit(message("regescrt"), ("127.0.0.1", 5060)) is not None
    assert guard.admit(message("escruri"), ("127.0.0.1", 5060)) is None
    assert sent[-1].startswith(b"SIP/2.0 400 Bad Request (headers in Request-URI)")
    assert guard.admit(message("bigcode"), ("127.0.0.1", 5060)) is None
    assert guard.refused["bad_response"] == 1
    guard.stop()


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path: Path) -> AsyncIterator[SipGateway]:
    """The SIP part, in this process."""
    gw = start_gateway(tmp_path, [free_udp_port("127.0.0.3")])
    yield gw
    await gw.stop()


@pytest_twisted.ensureDeferred
async def test_bad_to_flood_keeps_no_transaction(gateway: SipGateway) -> None:
    """2,000 OPTIONS with a bad To: every one answered 400, no transaction kept, OPTIONS still 200."""
    peer, port = listen_peer()
    local = (port.getHost().host, port.getHost().port)
    target = ("127.0.0.1", gateway.port)
    try:
        stack = gateway.sip.stack
        baseline = stack.transactions()
        for n in range(2000):
            peer.transport.write(bad_to(n, local), target)  # type: ignore[union-attr]
            # In batches, each answered before the next is sent: sender and gateway share
            # one reactor, and a batch fits the socket's buffer. The bound is for a loaded
            # machine (another suite on the same two cores): a batch normally takes milliseconds.
            if n % 50 == 49:
                await wait_until(
                    lambda n=n: len(peer.received) > n,
                    30.0,
                    f"the gateway to keep up ({len(peer.received)} answers: {peer.responses()[:1]})",
                )
        await wait_until(lambda: len(peer.received) >= 2000, 30.0, "2,000 answers")
        assert all(r.startswith("SIP/2.0 400 Bad Request (malformed To") for r in peer.responses())
        assert stack.transactions() == baseline
        assert stack.guard.refused["bad_header"] == 2000
        peer.received.clear()
        peer.send(options_request(target, local, "after-flood"), target)
        await wait_until(
            lambda: any(r.startswith("SIP/2.0 200") for r in peer.responses()), 5.0, "OPTIONS 200"
        )
    finally:
        await port.stopListening()
