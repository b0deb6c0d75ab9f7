"""Why the edge could not reach a vendor: read from its reply, logged once per endpoint and interval.

The Kamailio edge answers a request it could not deliver (a TLS certificate
that did not verify, a refused connection, no reply) with 503 and a
``Warning: 399 lvgateway-edge "why"``. The gateway fails over as on any 503;
this module reads the why and keeps a failing endpoint from filling the log
with one line per call.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.logger import Logger

from lvgateway.edge.render import WARNING_AGENT

__all__ = ["EdgeReasonLog", "reason_from_edge"]

log = Logger()


def reason_from_edge(msg: Any) -> str | None:
    """The text of the edge's own ``Warning`` on a SIP reply, or ``None`` when it has none."""
    for warning in msg.getHFBodys("warning"):
        try:
            if not warning.parsed:
                warning.parse()
        except ValueError:
            continue
        if warning.agent == WARNING_AGENT:
            return str(warning.text)
    return None


@attrs.define
class EdgeReasonLog:
    """Log the edge's reason for an endpoint at most once per ``interval`` (a changed reason at once).

    :param clock: tells time (``seconds()``).
    :param interval: seconds between two lines for the same endpoint and reason.
    """

    clock: Any
    interval: float = 60.0
    _last: dict[str, tuple[str, float]] = attrs.field(factory=dict)
    #: How many lines were held back since the last one, per endpoint.
    held: dict[str, int] = attrs.field(factory=dict)

    def note(self, uri: str, reason: str) -> bool:
        """Log ``reason`` for ``uri`` unless the same was logged within the interval; True when logged."""
        now = self.clock.seconds()
        last = self._last.get(uri)
        if last is not None and last[0] == reason and now - last[1] < self.interval:
            self.held[uri] = self.held.get(uri, 0) + 1
            return False
        log.warn(
            "the edge cannot reach vendor endpoint {uri}: {reason}{repeats}",
            uri=uri,
            reason=reason,
            repeats=f" (and {self.held[uri]} more times since)" if self.held.get(uri) else "",
        )
        self._last[uri] = (reason, now)
        self.held[uri] = 0
        return True
