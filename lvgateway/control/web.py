"""What the control part's HTTP listeners share: a routing table, JSON replies, a web listener.

A :class:`Routes` table is a ``twisted.web`` resource to which later parts add
their own children with :meth:`Routes.add_route`, without editing the module
that made the table::

    service = control_service(reactor, listen, readiness, registry)
    service.routes.add_route("agents", AgentsResource(pool))

A child may itself be a :class:`Routes` table, or any resource that handles the
rest of the path (``getChild`` per call id, say).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.web.error import UnsupportedMethod
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from lvgateway.control.listener import Listener

__all__ = [
    "BaseResource",
    "JsonError",
    "Routes",
    "WebListener",
    "json_reply",
    "make_site",
    "reply",
]


def reply(
    request: IRequest,
    body: bytes,
    content_type: bytes,
    code: int = 200,
    headers: Mapping[bytes, bytes] | None = None,
) -> bytes:
    """Set the status and headers of an uncacheable reply and return its body.

    :param request: the request being answered.
    :param body: the body, already encoded.
    :param content_type: the value of ``Content-Type``.
    :param code: the HTTP status code.
    :param headers: more response headers.
    """
    request.setResponseCode(code)  # type: ignore[no-untyped-call]
    response_headers = request.responseHeaders
    response_headers.setRawHeaders(b"content-type", [content_type])
    response_headers.setRawHeaders(b"cache-control", [b"no-store"])
    for name, value in (headers or {}).items():
        response_headers.setRawHeaders(name, [value])
    return body


def json_reply(
    request: IRequest, body: object, code: int = 200, headers: Mapping[bytes, bytes] | None = None
) -> bytes:
    """Set the status and headers of a JSON reply and return its body.

    :param request: the request being answered.
    :param body: anything ``json.dumps`` takes.
    :param code: the HTTP status code.
    :param headers: more response headers.
    """
    encoded = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return reply(request, encoded, b"application/json", code, headers)


class BaseResource(Resource):
    """A ``twisted.web`` resource to derive the control part's from.

    Its constructor is typed, and a method it has no ``render_*`` for answers
    405 in JSON, with ``Allow``, instead of Twisted's HTML page.
    """

    def __init__(self) -> None:
        Resource.__init__(self)  # type: ignore[no-untyped-call]

    def render(self, request: IRequest) -> bytes:
        """Dispatch to ``render_<METHOD>``, or answer 405."""
        try:
            rendered: bytes = Resource.render(self, request)  # type: ignore[no-untyped-call]
        except UnsupportedMethod as e:
            allowed = b", ".join(e.allowedMethods)
            return json_reply(request, {"error": "method not allowed"}, 405, {b"allow": allowed})
        return rendered


class JsonError(BaseResource):
    """A leaf that answers every method with ``{"error": message}`` and a status code.

    :param code: the HTTP status code, such as 404.
    :param message: the text of the ``error`` field.
    """

    isLeaf = True

    def __init__(self, code: int, message: str) -> None:
        super().__init__()
        self._code = code
        self._message = message

    def render(self, request: IRequest) -> bytes:
        """Answer with the error, whatever the method."""
        return json_reply(request, {"error": self._message}, self._code)


class Routes(BaseResource):
    """A table of named children; a name not in it answers 404 in JSON.

    ``GET`` on the table itself lists the names of its routes.
    """

    def add_route(self, name: str, resource: IResource) -> None:
        """Serve ``resource`` at ``name`` below this table.

        :param name: one path segment, such as ``"agents"``: no ``/``.
        :param resource: the resource that answers that path and below.
        :raises ValueError: if the name is empty, holds a ``/``, or is taken,
            so that one part cannot silently replace another's route.
        """
        if not name or "/" in name:
            raise ValueError(f"route name {name!r} must be one non-empty path segment")
        segment = name.encode("utf-8")
        if segment in self.children:
            raise ValueError(f"route {name!r} is already taken")
        self.putChild(segment, resource)

    def route_names(self) -> list[str]:
        """Return the names of the routes, sorted."""
        return sorted(segment.decode("utf-8") for segment in self.children)

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """Answer the table itself for a trailing slash, else 404."""
        if path == b"":
            return self
        return JsonError(404, "not found")

    def render_GET(self, request: IRequest) -> bytes:
        """List the routes of this table."""
        return json_reply(request, {"routes": self.route_names()})


#: Paths polled by scrapers and probes: no access line for them, or they drown the log.
QUIET_PATHS = frozenset({b"/metrics", b"/healthz", b"/readyz"})


class QuietSite(Site):
    """A site that writes no access line for probes and scrapes, and no factory start/stop lines."""

    noisy = False

    def log(self, request: Any) -> None:
        """Write the access line, unless the request is a probe or a scrape."""
        if request.path in QUIET_PATHS:
            return
        super().log(request)  # type: ignore[no-untyped-call]


def make_site(resource: IResource) -> Site:
    """Return a site serving ``resource`` that never shows a traceback to a client."""
    site = QuietSite(resource)  # type: ignore[no-untyped-call]
    site.displayTracebacks = False
    return site


class WebListener(Listener):
    """A listener serving a site, with the routing table later parts add routes to.

    :param endpoint: where to listen.
    :param site: the site to serve.
    :param routes: the table where later parts add their routes.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, site: Site, routes: Routes) -> None:
        super().__init__(endpoint, site)
        self.routes = routes
        #: Run when the listener stops, such as writing a pending log summary.
        self.on_stop: list[Callable[[], object]] = []

    def stopService(self) -> Deferred[None]:
        """Run the ``on_stop`` callables, then stop listening."""
        for call in self.on_stop:
            call()
        return super().stopService()
