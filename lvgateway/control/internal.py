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

``/healthz``, ``/readyz`` and ``/metrics`` are open to probes and scrapers;
every other path (the status page at ``/``, ``/agents``, ``/calls`` and the
admin actions) needs the control token (:class:`lvgateway.control.auth.ControlGuard`).
Routes added to ``routes`` are guarded too. The config refuses a cleartext
listener beyond loopback; TLS comes from an ``ssl:`` endpoint string.
"""

from __future__ import annotations

from typing import cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.internet.interfaces import IReactorCore, IReactorTime, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from lvgateway.config.secret import Secret
from lvgateway.control.auth import ControlGuard, FailedTokens
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

__all__ = [
    "ControlListener",
    "Health",
    "Metrics",
    "Ready",
    "control_routes",
    "control_service",
]

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

    The encoding is ``prometheus_client``'s own. Its ``twisted.MetricsResource``
    is not used: it renders in the reactor's thread pool, and the gateway's
    callback gauges (the wrap-up queue, Sippy's transactions) read state that
    only the reactor thread may touch.

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


class ControlListener(WebListener):
    """The internal control listener: its routing table behind the token guard.

    :param endpoint: where to listen.
    :param routes: the routing table (``routes``, where later parts add theirs).
    :param guard: the site's root, which checks the token.
    :param failures: the wrong credentials' limiter and summary.
    """

    def __init__(
        self,
        endpoint: IStreamServerEndpoint,
        routes: Routes,
        guard: ControlGuard,
        failures: FailedTokens,
    ) -> None:
        super().__init__(endpoint, make_site(guard), routes)
        self.guard = guard
        self.failures = failures
        self.on_stop.append(failures.stop)

    def set_status_page(self, page: IResource) -> None:
        """Serve ``page`` at ``/``, behind the token."""
        self.guard.index = page


def control_service(
    reactor: IReactorCore,
    listen: str,
    readiness: Readiness,
    registry: CollectorRegistry,
    token: Secret | None = None,
) -> ControlListener:
    """Return the service of the internal control listener.

    Add routes to its ``routes`` table, before or after it starts.

    :param reactor: the reactor to listen with.
    :param listen: a Twisted server endpoint string, such as
        ``tcp:9780:interface=127.0.0.1``.
    :param readiness: the checks ``/readyz`` runs.
    :param registry: the registry ``/metrics`` serves.
    :param token: the bearer token of every path but the probes; without one
        those paths answer 403.
    """
    if listen.split(":", 1)[0].lower() in ("tcp", "tcp6") and not is_loopback(listen):
        log.warn(
            "the internal control listener {listen} is reachable beyond this machine"
            " without TLS: its token crosses the network in clear",
            listen=listen,
        )
    if token is None:
        log.warn(
            "the control listener has no token ([control] token_file or token_env):"
            " its status page, /agents, /calls and admin actions answer 403"
        )
    routes = control_routes(readiness, registry)
    failures = FailedTokens(cast(IReactorTime, reactor), "control listener")
    guard = ControlGuard(routes, token, failures)
    endpoint = server_endpoint(reactor, listen)
    return ControlListener(endpoint, routes, guard, failures)
