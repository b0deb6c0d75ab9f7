"""The SIP part as one service: the stack, the router, the vendor's health, and their drain steps."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lvgateway.agents.interfaces import IAgentPool
from lvgateway.calls.interfaces import ICalls
from lvgateway.config.model import GatewayConfig
from lvgateway.drain import DrainPhase, OrderedDrain
from lvgateway.health import Readiness
from lvgateway.media.interfaces import IMediaRelay
from lvgateway.sip.health import VendorHealth
from lvgateway.sip.hep import HepCapture
from lvgateway.sip.metrics import SipMetrics
from lvgateway.sip.overload import InviteShedder
from lvgateway.sip.routing import CallRouter
from lvgateway.sip.stack import SipStack
from lvgateway.sip.udp import SourceFilter
from lvgateway.sip.vendor import VendorEndpoints

__all__ = ["SipService"]

log = Logger()


class SipService(Service):
    """Answer LiveVox's INVITEs and bridge them to the vendor while running.

    :param reactor: the reactor.
    :param config: the gateway's configuration.
    :param pool: the agent pool.
    :param calls: the call store.
    :param media: the media engine.
    :param registry: the metrics registry.
    :param drain: where the SIP steps are registered.
    :param readiness: where the SIP and vendor checks are added.
    """

    def __init__(
        self,
        reactor: Any,
        config: GatewayConfig,
        pool: IAgentPool,
        calls: ICalls,
        media: IMediaRelay,
        registry: CollectorRegistry,
        drain: OrderedDrain,
        readiness: Readiness,
    ) -> None:
        self.metrics = SipMetrics(registry)
        #: The gateway's readiness, which OPTIONS answers agree with.
        self.readiness = readiness
        edge = config.edge
        self.endpoints = VendorEndpoints(
            config.vendor.endpoints,
            reactor,
            edge=(edge.listen_host, edge.listen_port) if edge is not None else None,
        )
        self.router = CallRouter(
            reactor, pool, calls, media, config.vendor, self.endpoints, self.metrics
        )
        self.router.shedder = InviteShedder(
            config.sip.max_invites_per_second,
            on_shed=lambda reason: self.metrics.shed.labels(reason).inc(),
        )
        self._shed_on_lag = config.sip.shed_on_reactor_lag
        # The edge relays the vendor's in-dialog requests (its BYE): let it in.
        allowed = tuple(config.sip.allowed_networks) + (
            (ipaddress.ip_network(edge.listen_host),) if edge is not None else ()
        )
        source_filter = SourceFilter(
            allowed, reactor, on_drop=lambda host: self.metrics.dropped.inc()
        )
        user_agent = f"lvgateway ({config.gateway.name})"
        #: HEP capture of every SIP message, switched at run time (``[hep]``).
        self.hep = HepCapture(
            reactor,
            config.hep.address,
            config.hep.capture_id,
            enabled=config.hep.enabled,
            auth_key=config.hep.auth_key,
            correlate=self._correlate,
        )
        self.stack = SipStack(
            reactor,
            config.sip.listen_host,
            config.sip.listen_port,
            source_filter,
            self.router.handle_request,
            user_agent=user_agent,
            advertised_host=config.sip.advertised_host,
            metrics=self.metrics,
            capture=self.hep,
            receive_buffer=config.sip.receive_buffer_bytes,
        )
        self.health = VendorHealth(
            reactor,
            self.endpoints,
            pool,
            config.vendor.health_interval,
            config.vendor.health_failures,
            user_agent,
            self.router.edge_reasons,
        )
        self._media_check = LoopingCall(self.router.check_media)
        self._media_check.clock = reactor
        self._media_check_interval = max(
            0.2,
            min(
                2.0,
                config.media.initial_timeout / 4,
                config.media.timeout / 4,
                config.vendor.silence_timeout / 4,
            ),
        )
        self.health.on_unavailable = self.router.vendor_unavailable
        self.router.vendor_setup_failed = self.health.call_failed
        self.router.unready = self._unready_but_sip
        self.router.session_min_se = config.sip.session_min_se
        drain.register("refuse new calls (503)", DrainPhase.REFUSE_CALLS, self._refuse_calls, 1.0)
        drain.register(
            "let calls finish",
            DrainPhase.FINISH_CALLS,
            lambda: self.router.finish_calls(config.gateway.call_drain_timeout),
            config.gateway.call_drain_timeout + 1.0,
        )
        drain.register("stop SIP", DrainPhase.STOP_SIP, self._stop_sip, 5.0)
        readiness.add_check("sip", self._not_listening)
        readiness.add_check("vendor", self.health.unavailable)

    def shed_while(self, lagging: Callable[[], bool]) -> None:
        """Shed new INVITEs while ``lagging()`` says the reactor lags (if ``shed_on_reactor_lag``)."""
        if self._shed_on_lag:
            self.router.shedder.lagging = lagging

    def _correlate(self, sip_call_id: str) -> str | None:
        """The gateway's call id of the accepted live call with this SIP Call-ID on either leg.

        The LiveVox leg's Call-ID is the INVITE's; the vendor leg's is the one
        Sippy made for its current UA (the capture remembers earlier ones).
        """
        for call in self.router.live:
            if call.call_id is None:
                continue
            vendor = getattr(call.ua_o, "cId", None)
            leg_ids = (call.call_id, call.facts.sip_call_id, str(vendor) if vendor else None)
            if sip_call_id in leg_ids:
                return call.call_id
        return None

    def _unready_but_sip(self) -> str | None:
        """What OPTIONS reports: /readyz's failing checks, less SIP's own (it is answering)."""
        failures = {k: v for k, v in self.readiness.failures().items() if k != "sip"}
        return "; ".join(f"{name}: {why}" for name, why in failures.items()) or None

    def _not_listening(self) -> str | None:
        return None if self.stack.running else "SIP is not listening"

    def _refuse_calls(self) -> Deferred[None]:
        self.router.draining = True
        log.info(
            "draining: new INVITEs and OPTIONS get 503; {live} calls up", live=len(self.router.live)
        )
        return succeed(None)

    def _stop_sip(self) -> Deferred[None]:
        self.health.stop()
        if self._media_check.running:
            self._media_check.stop()
        if self.stack.running:
            self.stack.stopService()
        return succeed(None)

    def startService(self) -> None:
        """Bind SIP and start probing the vendor."""
        self.stack.startService()
        self.router.global_config = self.stack.global_config
        self.health.global_config = self.stack.global_config
        self.health.start()
        self._media_check.start(self._media_check_interval, now=False).addErrback(
            lambda f: log.failure("the media timeout check stopped", f)
        )
        Service.startService(self)

    def stopService(self) -> None:
        """Stop probing and listening (the drain has usually done it already)."""
        Service.stopService(self)
        self._stop_sip()
