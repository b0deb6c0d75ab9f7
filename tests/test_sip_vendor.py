"""Vendor endpoints: names resolved and kept for their DNS TTL, healthy ones tried first."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lvgateway.config.model import VendorEndpoint
from lvgateway.sip.vendor import MIN_TTL, VendorEndpoints


def endpoint(host: str, port: int = 5060) -> VendorEndpoint:
    """An endpoint without credentials."""
    return VendorEndpoint(f"sip:bot@{host}:{port}", "bot", host, port, None, None)


class ScriptedDns:
    """A lookup that answers from a table of (address, ttl) and counts questions."""

    def __init__(self, answers: dict[str, tuple[str, float]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, name: str) -> Deferred[tuple[str, float]]:
        self.asked.append(name)
        return succeed(self.answers[name])


class VendorEndpointsTests(SynchronousTestCase):
    """Resolution on TTL and failover order."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.dns = ScriptedDns({"bot.vendor.example": ("192.0.2.10", 30.0)})

    def test_ip_literal_is_used_without_a_lookup(self) -> None:
        """An IP literal needs no DNS."""
        vendor = VendorEndpoints([endpoint("127.0.0.3")], self.clock, self.dns)
        resolved = self.successResultOf(vendor.resolve(vendor.endpoints[0]))
        self.assertEqual((resolved.address, resolved.port), ("127.0.0.3", 5060))
        self.assertEqual(self.dns.asked, [])

    def test_name_is_kept_for_its_ttl_then_resolved_again(self) -> None:
        """A name is looked up once per TTL, and a changed address is followed."""
        vendor = VendorEndpoints([endpoint("bot.vendor.example")], self.clock, self.dns)
        first = self.successResultOf(vendor.resolve(vendor.endpoints[0]))
        self.clock.advance(29)
        self.successResultOf(vendor.resolve(vendor.endpoints[0]))
        self.assertEqual(len(self.dns.asked), 1)
        self.dns.answers["bot.vendor.example"] = ("192.0.2.11", 30.0)
        self.clock.advance(2)
        moved = self.successResultOf(vendor.resolve(vendor.endpoints[0]))
        self.assertEqual((first.address, moved.address), ("192.0.2.10", "192.0.2.11"))
        self.assertEqual(len(self.dns.asked), 2)

    def test_zero_ttl_is_kept_a_little_all_the_same(self) -> None:
        """A TTL of 0 does not cost a lookup per call: answers are kept MIN_TTL at least."""
        self.dns.answers["bot.vendor.example"] = ("192.0.2.10", 0.0)
        vendor = VendorEndpoints([endpoint("bot.vendor.example")], self.clock, self.dns)
        for _ in range(5):
            self.successResultOf(vendor.resolve(vendor.endpoints[0]))
            self.clock.advance(MIN_TTL / 10)
        self.assertEqual(len(self.dns.asked), 1)

    def test_unhealthy_endpoints_come_last_but_are_not_dropped(self) -> None:
        """Failover order puts endpoints that failed their check after the healthy ones."""
        vendor = VendorEndpoints(
            [endpoint("127.0.0.3", 1), endpoint("127.0.0.3", 2)], self.clock, self.dns
        )
        vendor.set_health("sip:bot@127.0.0.3:1", False)
        order: Any = self.successResultOf(vendor.in_order())
        self.assertEqual([e.port for e in order], [2, 1])

    def test_no_endpoint_resolving_is_an_error(self) -> None:
        """When no endpoint resolves, in_order fails so the call is refused 503."""

        def nothing(name: str) -> Deferred[tuple[str, float]]:
            d: Deferred[tuple[str, float]] = Deferred()
            d.errback(LookupError(name))
            return d

        vendor = VendorEndpoints([endpoint("gone.vendor.example")], self.clock, nothing)
        self.failureResultOf(vendor.in_order(), LookupError)
        self.flushLoggedErrors()
