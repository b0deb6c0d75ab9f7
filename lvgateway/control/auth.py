"""Bearer tokens on the control part's HTTP listeners, and the limit on wrong ones.

:class:`FailedTokens` counts refused credentials per source address. After
``limit`` refusals from one source within ``interval`` seconds, that source is
answered 429 with ``Retry-After`` until its window ends, whatever it presents,
so a token cannot be guessed at line rate. Refusals are not logged one by one
(a scanner would fill the log): one warning per interval sums them up by
source, and says how many were rate-limited.

:class:`ControlGuard` is the internal control listener's root: ``/healthz``,
``/readyz`` and ``/metrics`` stay open to probes and scrapers; every other
path (the status page, ``/agents``, ``/calls`` and their admin actions) needs
the control token, as ``Authorization: Bearer <token>``, or as the password of
HTTP Basic authentication (any user name) so that a browser can show the
status page. Without a configured token those paths answer 403.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from lvgateway.config.secret import Secret
from lvgateway.control.web import BaseResource, json_reply

__all__ = ["ControlGuard", "FailedTokens", "peer_host", "presented_credential"]

REALM = "lvgateway"


def peer_host(request: IRequest) -> str:
    """Return the address a request came from, as text."""
    peer = request.getClientAddress()  # type: ignore[no-untyped-call]
    return str(getattr(peer, "host", peer))


def presented_credential(request: IRequest, allow_basic: bool) -> tuple[bytes | None, str]:
    """Return the token a request presents, or ``None`` with the reason it presents none.

    :param request: the request.
    :param allow_basic: also take the password of HTTP Basic authentication.
    """
    headers = request.requestHeaders.getRawHeaders(b"authorization") or []
    if len(headers) != 1:
        return None, "missing bearer token" if not headers else "more than one Authorization"
    scheme, _, value = headers[0].strip().partition(b" ")
    value = value.strip()
    if scheme.lower() == b"bearer" and value:
        return value, ""
    if allow_basic and scheme.lower() == b"basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None, "malformed basic credentials"
        _, colon, password = decoded.partition(b":")
        if colon and password:
            return password, ""
        return None, "malformed basic credentials"
    return None, "missing bearer token"


@attrs.define
class _Window:
    started: float
    refused: int = 0


class FailedTokens:
    """Wrong credentials per source: rate-limited, and summed up in one log line per interval.

    :param clock: the clock the windows and the summary run on.
    :param listener: names the listener in the summary, such as ``"vendor API"``.
    :param limit: refusals one source may get within ``interval`` before it is answered 429.
    :param interval: the length of a source's window, and of the summary's.
    :param max_sources: the most sources tracked at once; beyond it, new sources
        are counted in the summary but not limited, so memory stays bounded.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        listener: str,
        limit: int = 10,
        interval: float = 60.0,
        max_sources: int = 10_000,
    ) -> None:
        self._clock = clock
        self._listener = listener
        self.limit = limit
        self.interval = interval
        self._max_sources = max_sources
        self._windows: dict[str, _Window] = {}
        self._refused: dict[str, int] = {}
        self._limited: dict[str, int] = {}
        self._summary: IDelayedCall | None = None

    def retry_after(self, host: str) -> int | None:
        """Return the seconds ``host`` must wait when it is over its limit, else ``None``.

        A request answered this way is counted as rate-limited in the summary.
        """
        window = self._windows.get(host)
        if window is None:
            return None
        left = window.started + self.interval - self._clock.seconds()
        if left <= 0:
            del self._windows[host]
            return None
        if window.refused < self.limit:
            return None
        self._limited[host] = self._limited.get(host, 0) + 1
        self._arm()
        return max(1, math.ceil(left))

    def refused(self, host: str) -> None:
        """Count one refused credential from ``host``."""
        now = self._clock.seconds()
        window = self._windows.get(host)
        if window is None or window.started + self.interval <= now:
            if window is None and len(self._windows) >= self._max_sources:
                self._prune(now)
            if len(self._windows) < self._max_sources:
                window = self._windows[host] = _Window(now)
        if window is not None:
            window.refused += 1
        self._refused[host] = self._refused.get(host, 0) + 1
        self._arm()

    def _prune(self, now: float) -> None:
        for host in [h for h, w in self._windows.items() if w.started + self.interval <= now]:
            del self._windows[host]

    def _arm(self) -> None:
        if self._summary is None or not self._summary.active():
            self._summary = self._clock.callLater(self.interval, self.flush)

    def flush(self) -> None:
        """Log the summary of the refusals since the last one, if there were any."""
        refused, self._refused = self._refused, {}
        limited, self._limited = self._limited, {}
        self._prune(self._clock.seconds())
        if self._summary is not None and self._summary.active():
            self._summary.cancel()
        self._summary = None
        if not refused and not limited:
            return
        sources = sorted(set(refused) | set(limited), key=lambda h: -refused.get(h, 0))
        shown = ", ".join(_source_line(h, refused, limited) for h in sources[:10])
        more = f" and {len(sources) - 10} more sources" if len(sources) > 10 else ""
        self.log.warn(
            "{listener}: refused {refused} requests with wrong or missing credentials"
            " and rate-limited {limited} in the last {interval:.0f}s: {sources}{more}",
            listener=self._listener,
            refused=sum(refused.values()),
            limited=sum(limited.values()),
            interval=self.interval,
            sources=shown,
            more=more,
        )

    def stop(self) -> None:
        """Write the pending summary now, and schedule nothing more."""
        self.flush()


def _source_line(host: str, refused: dict[str, int], limited: dict[str, int]) -> str:
    text = f"{host} {refused.get(host, 0)} refused"
    if limited.get(host):
        text += f", {limited[host]} rate-limited"
    return text


class Refused(BaseResource):
    """A leaf answering 401 with a challenge, 403 or 429, in JSON.

    :param code: 401, 403 or 429.
    :param message: the ``error`` field.
    :param challenges: ``WWW-Authenticate`` values, for a 401.
    :param retry_after: seconds, for a 429.
    """

    isLeaf = True

    def __init__(
        self,
        code: int,
        message: str,
        challenges: Iterable[str] = (),
        retry_after: int | None = None,
    ) -> None:
        super().__init__()
        self._code = code
        self._message = message
        self._challenges = [c.encode("ascii") for c in challenges]
        self._retry_after = retry_after

    def render(self, request: IRequest) -> bytes:
        """Answer the refusal, whatever the method."""
        if self._challenges:
            request.responseHeaders.setRawHeaders(b"www-authenticate", self._challenges)
        headers = {}
        if self._retry_after is not None:
            headers[b"retry-after"] = str(self._retry_after).encode("ascii")
        return json_reply(request, {"error": self._message}, self._code, headers)


#: The control listener's paths that need no token: probes and scrapers.
OPEN_PATHS = frozenset({b"healthz", b"readyz", b"metrics"})


@implementer(IResource)
class ControlGuard:
    """The internal control listener's root: open probes, everything else behind the token.

    :param wrapped: the routing table (``/healthz``, ``/agents``, ...).
    :param token: the control token, or ``None`` to refuse every guarded path with 403.
    :param failures: counts and limits wrong credentials.
    :param index: the resource for ``/`` itself (the status page), if any.
    """

    isLeaf = False
    log = Logger()

    def __init__(
        self,
        wrapped: IResource,
        token: Secret | None,
        failures: FailedTokens,
        index: IResource | None = None,
    ) -> None:
        self._wrapped = wrapped
        self._token = token
        self._failures = failures
        #: The resource for ``/`` itself; the routing table's listing when ``None``.
        self.index = index

    def _refusal(self, request: IRequest, browser: bool) -> IResource | None:
        if self._token is None:
            return Refused(
                403,
                "no control token is configured: set [control] token_file or token_env",
            )
        host = peer_host(request)
        wait = self._failures.retry_after(host)
        if wait is not None:
            return Refused(429, "too many wrong credentials; retry later", retry_after=wait)
        presented, reason = presented_credential(request, allow_basic=True)
        if presented is not None and self._token.matches(presented):
            return None
        if presented is not None:
            reason = "invalid bearer token"
        self._failures.refused(host)
        self.log.debug(
            "control listener refused {method} {path} from {peer}: {reason}",
            method=request.method.decode("latin-1"),
            path=request.path.decode("latin-1"),
            peer=host,
            reason=reason,
        )
        bearer = f'Bearer realm="{REALM}"'
        if presented is not None:
            bearer += ', error="invalid_token"'
        challenges = [f'Basic realm="{REALM}"', bearer] if browser else [bearer]
        return Refused(401, reason, challenges)

    def getChildWithDefault(self, path: bytes, request: IRequest) -> IResource:
        """Let probes through; check the token for anything else."""
        if path in OPEN_PATHS:
            return self._child(path, request)
        if path == b"" and not request.postpath:
            refusal = self._refusal(request, browser=True)
            if refusal is not None:
                return refusal
            return self.index if self.index is not None else self._wrapped
        refusal = self._refusal(request, browser=False)
        if refusal is not None:
            return refusal
        return self._child(path, request)

    def _child(self, path: bytes, request: IRequest) -> IResource:
        child: IResource = self._wrapped.getChildWithDefault(path, request)
        return child

    def putChild(self, path: bytes, child: IResource) -> None:
        """Refuse: add routes to the wrapped table instead."""
        raise NotImplementedError("add routes to the routing table, not to the guard")

    def render(self, request: IRequest) -> bytes:
        """Answer a request for the root itself (a request without a path), after the check."""
        refusal = self._refusal(request, browser=True)
        target = refusal if refusal is not None else (self.index or self._wrapped)
        rendered: bytes = target.render(request)  # type: ignore[no-untyped-call]
        return rendered
