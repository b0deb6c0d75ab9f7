"""A CANCEL at each moment of acceptance frees the agent: its next INVITE is accepted.

SIPp plays LiveVox against the real SIP part on loopback. The call store's
record write is held open (:attr:`FakeCalls.accept_gate`) so that LiveVox's
CANCEL lands while it is in progress; the write then succeeds or fails. A
CANCEL after the write, while the vendor rings, is the third moment. After
each, the agent holds no reservation, and a new INVITE to it is bridged.
"""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol

from lvgateway.calls.errors import CallStoreUnavailableError
from lvgateway.calls.outcome import EventKind

from .sip_gateway import SipGateway, all_succeed, free_udp_port, sipp, start_gateway
from .sip_helpers import wait_until

LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"
NUMBER = "+18990000001"


@pytest.fixture
def vendor_port() -> int:
    return free_udp_port(VENDOR)


class AnswersOptions(DatagramProtocol):
    """Answers the vendor health probe's OPTIONS 200, so its retransmissions stop."""

    answered = 0

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:
        lines = data.decode("utf-8", "replace").splitlines()
        if not lines or not lines[0].startswith("OPTIONS "):
            return
        keep = ("via:", "from:", "to:", "call-id:", "cseq:")
        echoed = [line for line in lines if line.lower().startswith(keep)]
        reply = "\r\n".join(["SIP/2.0 200 OK", *echoed, "Content-Length: 0", "", ""])
        assert self.transport is not None
        self.transport.write(reply.encode(), addr)
        self.answered += 1


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path: Path, vendor_port: int) -> AsyncIterator[SipGateway]:
    # Two vendor SIPp runs in a row: the health probe's OPTIONS is answered
    # first, so that none of its retransmissions reaches a SIPp scenario.
    responder = AnswersOptions()
    port = reactor.listenUDP(vendor_port, responder, interface=VENDOR)  # type: ignore[attr-defined]
    gw = start_gateway(tmp_path, [vendor_port], health_interval=3600)
    try:
        await wait_until(lambda: responder.answered > 0, 5, "the health probe's OPTIONS")
    finally:
        await port.stopListening()
    yield gw
    await gw.stop()


async def next_call_is_bridged(gateway: SipGateway, vendor_port: int) -> None:
    """A fresh INVITE to the same agent is accepted, bridged and ended by LiveVox's BYE."""
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    livevox = sipp("livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service=NUMBER)
    await all_succeed(livevox, vendor)
    await wait_until(lambda: not gateway.sip.router.live, 5, "the second call to finish")


@pytest.mark.parametrize("write", ["succeeds", "fails"])
@pytest_twisted.ensureDeferred
async def test_cancel_while_the_record_is_written_frees_the_agent(
    gateway: SipGateway, vendor_port: int, write: str
) -> None:
    """CANCEL during the record write: 487, nothing placed to the vendor, the agent free for the next call."""
    gate: Deferred[None] = Deferred()
    gateway.calls.accept_gate = gate
    livevox = sipp(
        "livevox_cancel_early.xml", LIVEVOX, ("127.0.0.1", gateway.port), service=NUMBER
    )
    await wait_until(lambda: gateway.calls.accepting == 1, 5, "the record write to begin")
    await livevox_done(livevox)
    agent = gateway.pool.agent("AIVA1")
    assert agent.reservation is not None, "held while its record is being written"
    assert gateway.sip.router.live, "the call waits for its record"
    if write == "fails":
        gateway.calls.refuse = CallStoreUnavailableError("the call store is not open")
    gate.callback(None)
    await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    assert agent.reservation is None
    ended = [d for e, _, d in gateway.calls.events if e == "ended"]
    if write == "succeeds":
        # The store hears the CANCEL once the record exists: one wrap-up.
        assert [(d["reason"], d["event"]) for d in ended] == [
            ("caller_hangup", EventKind.LIVEVOX_HANGUP)
        ]
    else:
        assert ended == [] and gateway.calls.records == {}
    gateway.calls.refuse = None
    await next_call_is_bridged(gateway, vendor_port)


@pytest_twisted.ensureDeferred
async def test_cancel_after_the_record_is_written_frees_the_agent(
    gateway: SipGateway, vendor_port: int
) -> None:
    """CANCEL while the vendor rings: the vendor leg is cancelled and the agent takes the next call."""
    vendor = sipp("vendor_ring.xml", VENDOR, port=vendor_port)
    livevox = sipp("livevox_cancel.xml", LIVEVOX, ("127.0.0.1", gateway.port), service=NUMBER)
    await all_succeed(livevox, vendor)
    await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    assert gateway.pool.agent("AIVA1").reservation is None
    await next_call_is_bridged(gateway, vendor_port)


async def livevox_done(livevox: Deferred[object]) -> None:
    result = await livevox
    assert getattr(result, "code", None) == 0, result
