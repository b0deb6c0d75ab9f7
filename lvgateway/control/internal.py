"""The internal control listener: liveness, readiness and metrics, on 127.0.0.1.

Routes it starts with:

``GET /healthz``
    200 ``ok`` while the process runs and its reactor answers.
``GET /readyz``
    200 ``{"ready": true}`` when every readiness check passes, else 503
    ``{"ready": false, "reasons": {check: reason}}``. A check that raises
    counts as failing (see :class:`lvgateway.health.Readiness`).
``GET /metrics``
    The gateway's registry in the Prometheus text format, or OpenMetrics when
    the scraper asks for it in ``Accept``.

Later parts add their own routes (``/agents``, admin actions) to the listener's
table, without editing this module::

    service = control_service(reactor, cfg.control_listen, readiness, registry)
    service.routes.add_route("agents", AgentsResource(pool))

It has no authentication: it belongs on 127.0.0.1, and a listen string that
is not on loopback is logged as a warning.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from lvgateway.control.listener import is_loopback, server_endpoint
from lvgateway.control.web import (
    BaseResource,
    Routes,
    WebListener,
    json_reply,
    make_site,
    reply,
)
from lvgateway.health import Readiness

__all__ = ["Health", "Metrics", "Ready", "control_routes", "control_service"]

log = Logger()


class Health(BaseResource):
    """``/healthz``: answers 200 ``ok`` whenever the reactor runs."""

    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:
        """Say the process is alive."""
        return reply(request, b"ok\n", b"text/plain; charset=utf-8")


class Ready(BaseResource):
    """``/readyz``: 200 when every readiness check passes, else 503 with the reasons.

    :param readiness: the gateway's readiness checks.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, readiness: Readiness) -> None:
        super().__init__()
        self._readiness = readiness

    def render_GET(self, request: IRequest) -> bytes:
        """Run the checks and report."""
        reasons = self._readiness.failures()
        if reasons:
            self.log.debug("not ready: {reasons}", reasons=reasons)
            return json_reply(request, {"ready": False, "reasons": reasons}, 503)
        return json_reply(request, {"ready": True})


class Metrics(BaseResource):
    """``/metrics``: the registry in the exposition format the scraper accepts.

    :param registry: the gateway's registry, never ``prometheus_client``'s global one.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: IRequest) -> bytes:
        """Collect every metric and encode it."""
        accept = b",".join(request.requestHeaders.getRawHeaders(b"accept", []))
        encoder, content_type = choose_encoder(accept.decode("latin-1"))
        return reply(request, encoder(self._registry), content_type.encode("ascii"))


def control_routes(readiness: Readiness, registry: CollectorRegistry) -> Routes:
    """Return the routing table of the internal listener, with its first three routes.

    :param readiness: the checks ``/readyz`` runs.
    :param registry: the registry ``/metrics`` serves.
    """
    routes = Routes()
    routes.add_route("healthz", Health())
    routes.add_route("readyz", Ready(readiness))
    routes.add_route("metrics", Metrics(registry))
    return routes


def control_service(
    reactor: IReactorCore, listen: str, readiness: Readiness, registry: CollectorRegistry
) -> WebListener:
    """Return the service of the internal control listener.

    Add routes to its ``routes`` table, before or after it starts.

    :param reactor: the reactor to listen with.
    :param listen: a Twisted server endpoint string, such as
        ``tcp:9780:interface=127.0.0.1``.
    :param readiness: the checks ``/readyz`` runs.
    :param registry: the registry ``/metrics`` serves.
    """
    if not is_loopback(listen):
        log.warn(
            "the internal control listener {listen} is reachable beyond this machine,"
            " and its routes have no authentication",
            listen=listen,
        )
    routes = control_routes(readiness, registry)
    endpoint = server_endpoint(reactor, listen)
    return WebListener(endpoint, make_site(routes), routes)
