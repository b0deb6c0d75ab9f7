"""The SIP part's Prometheus metrics: calls by result and code, active calls, setup and duration,
live transactions and refused messages."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from lvgateway.metrics import counter, gauge, histogram
from lvgateway.sip.guard import REASONS
from lvgateway.sip.overload import SHED_REASONS

__all__ = ["SipMetrics"]

#: The results a call is counted under.
RESULTS = ("completed", "refused", "failed", "cancelled")
#: The SIP codes counted by name; any other is ``other``.
CODES = ("200", "404", "408", "480", "486", "487", "488", "500", "503", "other")
_CODES = frozenset(CODES)


class SipMetrics:
    """Counters, gauges and histograms of calls, all series registered up front.

    :param registry: the gateway's registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.calls = counter(
            registry,
            "lvgateway_calls_total",
            "LiveVox INVITEs by how they ended and the final SIP code sent to LiveVox.",
            {"result": RESULTS, "code": CODES},
        )
        self.active_calls = gauge(registry, "lvgateway_active_calls", "Calls with a leg up now.")
        self.setup = histogram(
            registry,
            "lvgateway_call_setup_seconds",
            "From LiveVox's INVITE to the vendor's answer.",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.duration = histogram(
            registry,
            "lvgateway_call_duration_seconds",
            "From the vendor's answer to the end of the call.",
            buckets=(5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0),
        )
        self.media_timeouts = counter(
            registry,
            "lvgateway_media_timeouts_total",
            "Calls ended because a side sent no RTP for longer than its media timeout.",
        )
        self.dropped = counter(
            registry,
            "lvgateway_sip_datagrams_dropped_total",
            "SIP datagrams dropped unanswered because their source is not an allowed network.",
        )
        self.refused = counter(
            registry,
            "lvgateway_sip_messages_refused_total",
            "SIP messages answered with an error or dropped before any transaction, by reason.",
            {"reason": REASONS},
        )
        self.shed = counter(
            registry,
            "lvgateway_sip_invites_shed_total",
            "New INVITEs answered 503 with Retry-After for overload, by reason.",
            {"reason": SHED_REASONS},
        )
        self.transactions = gauge(
            registry,
            "lvgateway_sip_transactions",
            "SIP transactions (client and server) the stack holds now.",
        )

    def call_result(self, result: str, code: int | None) -> None:
        """Count one call's end."""
        name = str(code) if code is not None else "other"
        self.calls.labels(result, name if name in _CODES else "other").inc()

    def active(self, count: int) -> None:
        """Set how many calls are up."""
        self.active_calls.set(count)

    def call_finished(self, call: Any, now: float) -> None:
        """Count a finished call: its result, setup time and duration."""
        connected_at = getattr(call, "connected_at", None)
        started_at = getattr(call, "started_at", now)
        if connected_at is not None:
            self.setup.observe(connected_at - started_at)
            self.duration.observe(now - connected_at)
            self.call_result("completed", 200)
        elif call.sip_code == 487 or call.sip_code is None:
            self.call_result("cancelled", 487)
        else:
            self.call_result("failed", call.sip_code)
