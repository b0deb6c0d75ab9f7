"""The vendor health check: OPTIONS to each endpoint; the pool paused while none answers, resumed after."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from twisted.internet import reactor

from lvgateway.agents.interfaces import Refusal
from lvgateway.agents.testing import FakeAgentPool
from lvgateway.config.model import VendorEndpoint
from lvgateway.sip.health import PAUSE_CAUSE, VendorHealth
from lvgateway.sip.stack import SipStack
from lvgateway.sip.udp import SourceFilter
from lvgateway.sip.vendor import VendorEndpoints

from .sip_helpers import RawSipPeer, wait_until


class AnsweringVendor(RawSipPeer):
    """A vendor endpoint that answers OPTIONS 200 while ``up``, and says nothing otherwise."""

    up = True

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Answer an OPTIONS with 200, copying its Via, From, To, Call-ID and CSeq."""
        super().datagramReceived(datagram, addr)
        text = datagram.decode(errors="replace")
        if not self.up or not text.startswith("OPTIONS "):
            return
        keep = [
            line
            for line in text.split("\r\n")
            if line.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")
        ]
        reply = "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
        assert self.transport is not None
        self.transport.write(reply.encode(), addr)  # type: ignore[attr-defined]


@pytest_twisted.async_yield_fixture
async def setup() -> AsyncIterator[tuple[VendorHealth, AnsweringVendor, FakeAgentPool]]:
    """A SIP stack, one answering vendor endpoint on 127.0.0.3, and the health check on a short interval."""
    vendor = AnsweringVendor()
    port = reactor.listenUDP(0, vendor, interface="127.0.0.3")  # type: ignore[attr-defined]
    endpoint = VendorEndpoint(
        f"sip:bot@127.0.0.3:{port.getHost().port}",
        "bot",
        "127.0.0.3",
        port.getHost().port,
        None,
        None,
    )
    stack = SipStack(
        reactor,
        "127.0.0.1",
        0,
        SourceFilter([ipaddress.ip_network("127.0.0.0/8")], reactor),
        lambda r, t: None,
    )
    stack.startService()
    pool = FakeAgentPool()
    health = VendorHealth(
        reactor, VendorEndpoints([endpoint], reactor), pool, interval=0.2, failures=2
    )
    health.global_config = stack.global_config
    health.start()
    yield health, vendor, pool
    health.stop()
    stack.stopService()
    await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_pool_paused_when_no_endpoint_answers_and_resumed_when_one_does(
    setup: tuple[VendorHealth, AnsweringVendor, FakeAgentPool],
) -> None:
    """Silence pauses the pool (503 reason) after the failure count; the first answer resumes it."""
    health, vendor, pool = setup
    await wait_until(lambda: vendor.received, 5, "the first OPTIONS")
    assert health.unavailable() is None and pool.events_of("pause") == []
    vendor.up = False
    await wait_until(lambda: pool.events_of("pause"), 40, "the pool to be paused")
    assert pool.events_of("pause")[0] == (PAUSE_CAUSE, Refusal.VENDOR_UNAVAILABLE)
    assert health.unavailable() is not None
    vendor.up = True
    await wait_until(lambda: pool.events_of("resume"), 40, "the pool to be resumed")
    assert health.unavailable() is None
