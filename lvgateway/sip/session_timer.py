"""RFC 4028 session timers for one leg of a bridged call.

Sippy 2.5.0 has no session timers at all (docs/design.md, pitfall 5). This module
holds what the gateway adds: reading ``Session-Expires``, ``Min-SE`` and
``Supported`` from a refresh, choosing the refresher the way RFC 4028
section 9 says, the headers of the 2xx, and the two timers of a leg: the
gateway's own refresh at half the interval when it is the refresher, and the
expiry (the interval less ``min(32, interval / 3)``, section 10) when a
refresh due from the peer does not come.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from twisted.logger import Logger

from lvgateway.sip.headers import cased

__all__ = ["SessionTerms", "SessionTimer", "TooSmall", "negotiate", "offer_headers"]

log = Logger()

#: RFC 4028's lower bound on Min-SE; a test configuration may set a lower floor.
RFC_MIN_SE = 90


@attrs.frozen
class SessionTerms:
    """A leg's session interval and who refreshes it.

    :param interval: seconds.
    :param refresher: ``uac`` or ``uas``, as the 2xx says.
    :param we_refresh: whether that refresher is the gateway.
    :param require: whether the 2xx carries ``Require: timer`` (section 9).
    """

    interval: int
    refresher: str
    we_refresh: bool
    require: bool

    def headers(self) -> list[Any]:
        """The headers of a 2xx that grants these terms."""
        found = [cased("Session-Expires", f"{self.interval};refresher={self.refresher}")]
        if self.require:
            found.append(cased("Require", "timer"))
        return found


@attrs.frozen
class TooSmall:
    """A refresh whose Session-Expires is under the floor: answer 422 with this Min-SE."""

    min_se: int

    def response(self, req: Any, server: Any) -> Any:
        """The 422 response to ``req``."""
        resp = req.genResponse(422, "Session Interval Too Small", server=server)
        resp.appendHeader(cased("Min-SE", str(self.min_se)))
        return resp


def _session_expires(msg: Any) -> tuple[int, str | None] | None:
    """The interval and refresher of ``msg``'s ``Session-Expires``; ``None`` without a readable one."""
    if msg.countHFs("session-expires") == 0:
        return None
    parts = [p.strip() for p in str(msg.getHFBody("session-expires")).strip().split(";")]
    try:
        interval = int(parts[0])
    except ValueError:
        return None
    refresher = None
    for param in parts[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "refresher" and value.strip().lower() in ("uac", "uas"):
            refresher = value.strip().lower()
    return interval, refresher


def tokens(msg: Any, name: str) -> set[str]:
    """The lower-case tokens of every ``name`` header of ``msg`` (``Allow``, ``Supported``...)."""
    found: set[str] = set()
    for body in msg.getHFBodys(name):
        found.update(t.strip().lower() for t in str(body).split(",") if t.strip())
    return found


def supports_timer(req: Any) -> bool:
    """Whether ``req`` says ``Supported: timer`` (or ``Require: timer``)."""
    return "timer" in tokens(req, "supported") | tokens(req, "require")


def negotiate(req: Any, min_se: int) -> SessionTerms | TooSmall | None:
    """What the gateway, as UAS, grants a request that may refresh the session.

    ``None`` when the request has no (readable) ``Session-Expires``: no session
    timer then. With one under ``min_se`` (or under the request's own
    ``Min-SE``), :class:`TooSmall`. Otherwise the request's interval, and its
    refresher; a request that names none leaves the choice to the UAS, and
    the gateway takes the refresh on itself (``refresher=uas``), so it never
    depends on a peer that did not promise to refresh. ``Require: timer`` goes
    on the 2xx when the refresher is the UAC (section 9: MUST) or when the UAC
    said ``Supported: timer`` (SHOULD).
    """
    parsed = _session_expires(req)
    if parsed is None:
        return None
    interval, refresher = parsed
    if interval < min_se:
        return TooSmall(min_se)
    supported = supports_timer(req)
    if refresher is None or (refresher == "uac" and not supported):
        refresher = "uas"
    return SessionTerms(
        interval=interval,
        refresher=refresher,
        we_refresh=refresher == "uas",
        require=refresher == "uac" or supported,
    )


def answered(resp: Any, default_interval: int) -> SessionTerms | None:
    """The terms a 2xx to the gateway's own request (the gateway as UAC) grants.

    ``None`` when the 2xx names no Session-Expires: the peer does not use
    timers, and no session timer runs.
    """
    parsed = _session_expires(resp)
    if parsed is None:
        return None
    interval, refresher = parsed
    refresher = refresher or "uac"
    return SessionTerms(
        interval=interval or default_interval,
        refresher=refresher,
        we_refresh=refresher == "uac",
        require=False,
    )


def offer_headers(interval: int, min_se: int, refresher: str | None = None) -> list[Any]:
    """``Supported: timer``, ``Session-Expires`` and ``Min-SE`` for a request the gateway sends."""
    expires = f"{interval};refresher={refresher}" if refresher else str(interval)
    return [
        cased("Supported", "timer"),
        cased("Session-Expires", expires),
        cased("Min-SE", str(min_se)),
    ]


class SessionTimer:
    """The refresh and expiry timers of one leg.

    :param clock: the reactor, for ``callLater``.
    :param refresh: called when the gateway's refresh is due.
    :param expired: called when the peer's refresh is overdue.
    """

    def __init__(
        self, clock: Any, refresh: Callable[[], None], expired: Callable[[], None]
    ) -> None:
        self._clock = clock
        self._refresh = refresh
        self._expired = expired
        self._calls: list[Any] = []
        #: The terms in force, or ``None`` while no timer runs.
        self.terms: SessionTerms | None = None

    def start(self, terms: SessionTerms) -> None:
        """A refresh succeeded (or the session began) with ``terms``: re-arm both timers."""
        self.stop()
        self.terms = terms
        deadline = terms.interval - min(32, terms.interval / 3)
        self._calls.append(self._clock.callLater(deadline, self._fire_expired))
        if terms.we_refresh:
            self._calls.append(self._clock.callLater(terms.interval / 2, self._fire_refresh))

    def stop(self) -> None:
        """Cancel both timers (the leg ended)."""
        for call in self._calls:
            if call.active():
                call.cancel()
        self._calls = []

    def _fire_refresh(self) -> None:
        try:
            self._refresh()
        except Exception:
            log.failure("the session refresh failed")

    def _fire_expired(self) -> None:
        self.stop()
        self._expired()
