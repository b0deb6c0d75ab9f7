"""The vendor API listener: the AI vendor's way in, every request behind a bearer token.

Every request, whatever its path, must carry ``Authorization: Bearer <token>``
with the configured token, compared in constant time. A request without it, or
with another token, gets 401 with ``WWW-Authenticate: Bearer`` and a JSON body
``{"error": "..."}``, before any route sees it (so no path can be probed
without the token); the refusal is logged at debug with its method, path and
peer, never the token presented. Wrong tokens are rate-limited per source
(429 with ``Retry-After`` after 10 in a minute) and summed up in one warning
per minute (:class:`lvgateway.control.auth.FailedTokens`).

The API lives under ``/v1``. It starts with ``GET /v1/ping`` (200
``{"ok":true}``); later parts add theirs to the listener's ``/v1`` table::

    service = vendor_api_service(reactor, cfg.vendor_listen, cfg.vendor_token)
    service.routes.add_route("calls", CallsResource(store))

TLS comes from the endpoint string (``ssl:8443:privateKey=...:certKey=...``).
"""

from __future__ import annotations

from typing import cast

import attrs
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from lvgateway.config.secret import Secret
from lvgateway.control.auth import FailedTokens, Refused, peer_host, presented_credential
from lvgateway.control.listener import server_endpoint
from lvgateway.control.web import BaseResource, Routes, WebListener, json_reply, make_site

__all__ = ["BearerGuard", "Ping", "vendor_api_root", "vendor_api_service", "vendor_v1"]

REALM = "lvgateway"


class Ping(BaseResource):
    """``/v1/ping``: 200 ``{"ok":true}``, to check that the token is accepted."""

    isLeaf = True

    def render_GET(self, request: IRequest) -> bytes:
        """Answer that the caller got through."""
        return json_reply(request, {"ok": True})


def _not_empty(instance: object, attribute: attrs.Attribute[Secret], token: Secret) -> None:
    if not token.reveal():
        raise ValueError(f"the vendor API token ({token.source}) is empty")


@implementer(IResource)
@attrs.define
class BearerGuard:
    """Let a request reach ``wrapped`` only with the right bearer token.

    :param wrapped: the resource tree to guard.
    :param token: the token the vendor must present.
    :raises ValueError: if the token is empty.
    """

    _wrapped: IResource
    _token: Secret = attrs.field(validator=_not_empty)
    _failures: FailedTokens | None = None
    isLeaf = False
    log = Logger()

    def _refusal(self, request: IRequest) -> IResource | None:
        """Return the resource answering a refused request, or ``None`` if it may pass."""
        host = peer_host(request)
        if self._failures is not None:
            wait = self._failures.retry_after(host)
            if wait is not None:
                return Refused(429, "too many wrong credentials; retry later", retry_after=wait)
        presented, reason = presented_credential(request, allow_basic=False)
        if presented is not None and self._token.matches(presented):
            return None
        if presented is not None:
            reason = "invalid bearer token"
        return self._refuse(request, host, reason, invalid_token=presented is not None)

    def _refuse(self, request: IRequest, host: str, reason: str, invalid_token: bool) -> IResource:
        if self._failures is not None:
            self._failures.refused(host)
        # One line per refusal at debug only: the limiter sums them up at warn.
        self.log.debug(
            "vendor API refused {method} {path} from {peer}: {reason}",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            peer=host,
            reason=reason,
        )
        challenge = f'Bearer realm="{REALM}"'
        if invalid_token:
            # RFC 6750, section 3: a token was presented and is not accepted.
            challenge += ', error="invalid_token"'
        return Refused(401, reason, [challenge])

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        """Check the token, then hand the whole path to the wrapped tree."""
        # Undo the traversal step, as twisted.web.guard does: the wrapped
        # resource then sees the path as if it were the root.
        request.postpath.insert(0, request.prepath.pop())
        refusal = self._refusal(request)
        return refusal if refusal is not None else self._wrapped

    def putChild(self, path: bytes, child: IResource) -> None:
        """Refuse: add routes to the wrapped tree instead."""
        raise NotImplementedError("add routes to the guarded tree, not to the guard")

    def render(self, request: IRequest) -> bytes:
        """Answer a request for the root itself, after the token check."""
        refusal = self._refusal(request)
        target = refusal if refusal is not None else self._wrapped
        rendered: bytes = target.render(request)  # type: ignore[no-untyped-call]
        return rendered


def vendor_v1() -> Routes:
    """Return a fresh ``/v1`` table holding ``ping``."""
    v1 = Routes()
    v1.add_route("ping", Ping())
    return v1


def vendor_api_root(token: Secret, v1: Routes, failures: FailedTokens | None = None) -> BearerGuard:
    """Return the guarded root resource of the vendor API, serving ``v1`` at ``/v1``.

    :param token: the token every request must present.
    :param v1: the ``/v1`` table.
    :param failures: rate-limits and sums up wrong tokens per source; none by default.
    """
    root = Routes()
    root.add_route("v1", v1)
    return BearerGuard(root, token, failures)


def vendor_api_service(reactor: IReactorCore, listen: str, token: Secret) -> WebListener:
    """Return the service of the vendor API listener.

    Its ``routes`` is the ``/v1`` table: add the API's routes there, before or
    after it starts.

    :param reactor: the reactor to listen with.
    :param listen: a Twisted server endpoint string; ``ssl:`` for TLS.
    :param token: the token every request must present.
    :raises ValueError: if the token is empty.
    """
    v1 = vendor_v1()
    endpoint = server_endpoint(reactor, listen)
    failures = FailedTokens(cast(IReactorTime, reactor), "vendor API")
    service = WebListener(endpoint, make_site(vendor_api_root(token, v1, failures)), v1)
    service.on_stop.append(failures.stop)
    return service
