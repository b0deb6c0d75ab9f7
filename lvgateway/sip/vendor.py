"""The AI vendor's SIP endpoints: resolved on their DNS TTL, ordered healthy first.

A host name in an endpoint URI is looked up when a call needs it and the
answer kept for its TTL, so a vendor that moves its endpoint behind DNS is
followed without a restart. IP literals are used as they are. Health (from
the OPTIONS checker) only reorders: an endpoint that failed its last checks
is tried after the healthy ones, never skipped, since a check can be wrong.
With ``[edge]``, every endpoint is reached through the Kamailio edge and its
name is the edge's to resolve (docs/tls-edge.md says why): the gateway keeps
the name for the Request-URI and sends to the edge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from lvgateway.config.media_profiles import CodecMap, MediaProfile
from lvgateway.config.model import IPNetwork, VendorEndpoint
from lvgateway.config.secret import Secret
from lvgateway.sip.udp import is_ip_literal

__all__ = ["ResolvedEndpoint", "VendorEndpoints"]

log = Logger()

#: The TTL used when the resolver gives none (the system resolver's answers).
DEFAULT_TTL = 60.0
#: The shortest time an answer is kept, so a zero TTL cannot cost a lookup per call.
MIN_TTL = 5.0


@attrs.frozen
class ResolvedEndpoint:
    """An endpoint with the address a call goes to now, and how its media is carried."""

    uri: str
    user: str | None
    address: str
    port: int
    username: str | None
    password: str | None
    #: How the vendor is reached from the edge (udp when there is no edge).
    transport: str = "udp"
    #: The edge every request goes to, when the vendor is reached through it;
    #: ``address`` is then the configured host, which the edge resolves.
    via: tuple[str, int] | None = None
    media_profile: MediaProfile = "rtp"
    codec_map: CodecMap | None = None

    @property
    def next_hop(self) -> tuple[str, int]:
        """Where the gateway sends the vendor leg's requests: the edge, or the vendor itself."""
        return self.via if self.via is not None else (self.address, self.port)


@attrs.define
class VendorEndpoints:
    """The configured endpoints, their cached addresses and their health.

    :param endpoints: from config, in failover order.
    :param reactor: resolves names (``IReactorPluggableNameResolver``) and tells time.
    :param lookup: ``lookup(name) -> Deferred[(address, ttl)]``; the reactor's
        resolver, kept DEFAULT_TTL, when not given (tests inject one).
    :param edge: the Kamailio edge's address (``[edge]``): every endpoint is
        reached through it, and its names are resolved there, not here.
    """

    endpoints: Sequence[VendorEndpoint]
    reactor: Any
    lookup: Any = None
    edge: tuple[str, int] | None = None
    _cache: dict[str, tuple[str, float]] = attrs.field(factory=dict)
    _healthy: dict[str, bool] = attrs.field(factory=dict)

    def set_health(self, uri: str, healthy: bool) -> None:
        """Note the result of an endpoint's health check."""
        self._healthy[uri] = healthy

    def healthy(self, uri: str) -> bool:
        """Whether the endpoint passed its last health check (true until checked)."""
        return self._healthy.get(uri, True)

    def networks(self) -> list[IPNetwork]:
        """The networks the vendor's media may come from: each endpoint's address, as known now."""
        found: list[IPNetwork] = []
        for e in self.endpoints:
            host = e.host if is_ip_literal(e.host) else self._cache.get(e.host, ("", 0.0))[0]
            if self.edge is not None:
                host = e.edge_address or (e.host if is_ip_literal(e.host) else "")
            if host:
                found.append(ipaddress.ip_network(host.strip("[]")))
        return found

    def resolve(self, endpoint: VendorEndpoint) -> Deferred[ResolvedEndpoint]:
        """Return the endpoint with its address now, from the cache while its TTL lasts."""
        password = endpoint.password.reveal() if isinstance(endpoint.password, Secret) else None

        def made(address: str) -> ResolvedEndpoint:
            return ResolvedEndpoint(
                endpoint.uri,
                endpoint.user,
                address,
                endpoint.port,
                endpoint.username,
                password,
                transport=endpoint.transport,
                via=self.edge,
                media_profile=endpoint.media_profile,
                codec_map=endpoint.codec_map,
            )

        if is_ip_literal(endpoint.host) or self.edge is not None:
            return succeed(made(endpoint.host))
        cached = self._cache.get(endpoint.host)
        now = self.reactor.seconds()
        if cached is not None and cached[1] > now:
            return succeed(made(cached[0]))
        d = self._lookup(endpoint.host)

        def found(answer: tuple[str, float]) -> ResolvedEndpoint:
            address, ttl = answer
            self._cache[endpoint.host] = (address, now + max(MIN_TTL, ttl))
            if cached is None or cached[0] != address:
                log.info(
                    "vendor endpoint {host} resolves to {address}",
                    host=endpoint.host,
                    address=address,
                )
            return made(address)

        return d.addCallback(found)

    def _lookup(self, name: str) -> Deferred[tuple[str, float]]:
        if self.lookup is not None:
            d: Deferred[tuple[str, float]] = self.lookup(name)
            return d
        return dns_lookup(self.reactor, name)

    def in_order(self) -> Deferred[list[ResolvedEndpoint]]:
        """Resolve every endpoint; healthy ones first, each group in configured order.

        An endpoint whose name does not resolve is left out (and logged); the
        Deferred errbacks only when none resolves.
        """
        ordered = sorted(self.endpoints, key=lambda e: not self.healthy(e.uri))

        def one(endpoint: VendorEndpoint) -> Deferred[ResolvedEndpoint | None]:
            d: Deferred[Any] = self.resolve(endpoint)

            def failed(failure: Any) -> None:
                log.warn(
                    "vendor endpoint {uri} does not resolve: {error}",
                    uri=endpoint.uri,
                    error=failure.getErrorMessage(),
                )
                return None

            return d.addErrback(failed)

        def usable(results: list[ResolvedEndpoint | None]) -> list[ResolvedEndpoint]:
            found = [r for r in results if r is not None]
            if not found:
                raise LookupError("no vendor endpoint resolves")
            return found

        return gatherResults([one(e) for e in ordered]).addCallback(usable)


def dns_lookup(reactor: Any, name: str) -> Deferred[tuple[str, float]]:
    """Look ``name`` up with its TTL (hosts file, then DNS); fall back to the system resolver."""
    from twisted.names import client, hosts, resolve

    resolver = resolve.ResolverChain(
        [hosts.Resolver(), client.Resolver(resolv="/etc/resolv.conf", reactor=reactor)]
    )
    d: Deferred[Any] = resolver.lookupAddress(name)

    def first_a(result: Any) -> tuple[str, float]:
        answers = result[0]
        for rr in answers:
            if rr.type == 1:  # A
                return rr.payload.dottedQuad(), float(rr.ttl)
        raise LookupError(f"no A record for {name}")

    def system(failure: Any) -> Deferred[tuple[str, float]]:
        fallback: Deferred[Any] = reactor.resolve(name)
        return fallback.addCallback(lambda address: (address, DEFAULT_TTL))

    return d.addCallback(first_a).addErrback(system)
