"""The media part's Prometheus metrics.

The relay's hot path counts in plain integers on its ports; an engine folds
the totals into these counters now and then (:meth:`MediaMetrics.add_totals`),
so a packet costs no lock and no label lookup.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
from prometheus_client import CollectorRegistry, Counter, Gauge

from lvgateway.config.media_profiles import MEDIA_PROFILES, MediaProfile
from lvgateway.media.counters import DIRECTIONS, DROP_REASONS, FlowCounters
from lvgateway.metrics import counter, gauge

__all__ = ["ALLOCATION_FAILURES", "MediaMetrics", "instances_up_gauge"]

#: Why :meth:`~lvgateway.media.interfaces.IMediaRelay.new_session` failed
#: (``no_instance``: no rtpengine instance answers ping).
ALLOCATION_FAILURES = ("ports_exhausted", "not_running", "no_instance")


@attrs.define(eq=False)
class MediaMetrics:
    """The media metrics on one registry, with every label value registered at start.

    - ``lvgateway_rtp_packets_total{direction}`` and
      ``lvgateway_rtp_bytes_total{direction}``: datagrams (RTP and RTCP)
      relayed, ``livevox_to_vendor`` or ``vendor_to_livevox``;
    - ``lvgateway_rtp_dropped_total{reason}``: datagrams not relayed, by
      :data:`~lvgateway.media.counters.DropReason`;
    - ``lvgateway_media_sessions``: sessions allocated and not released;
    - ``lvgateway_media_allocation_failures_total{reason}``: calls refused
      media, ``ports_exhausted``, ``not_running`` or ``no_instance``;
    - ``lvgateway_media_calls_total{profile}``: sessions released, by the
      media profile of the last vendor endpoint they were offered to
      (``rtp`` when no vendor leg was placed). Not
      ``lvgateway_media_sessions_total``: a counter of that name would
      clash with the gauge above.
    """

    packets: Counter
    bytes: Counter
    dropped: Counter
    sessions: Gauge
    allocation_failures: Counter
    calls: Counter
    _flushed: dict[tuple[int, str], int] = attrs.field(factory=dict)

    @classmethod
    def on(cls, registry: CollectorRegistry) -> MediaMetrics:
        """Create the metrics on ``registry`` (once per registry)."""
        direction = {"direction": list(DIRECTIONS)}
        return cls(
            packets=counter(
                registry,
                "lvgateway_rtp_packets_total",
                "RTP and RTCP datagrams relayed, by direction.",
                direction,
            ),
            bytes=counter(
                registry,
                "lvgateway_rtp_bytes_total",
                "Bytes of RTP and RTCP datagrams relayed, by direction.",
                direction,
            ),
            dropped=counter(
                registry,
                "lvgateway_rtp_dropped_total",
                "Media datagrams not relayed, by reason.",
                {"reason": list(DROP_REASONS)},
            ),
            sessions=gauge(
                registry, "lvgateway_media_sessions", "Media sessions allocated and not released."
            ),
            allocation_failures=counter(
                registry,
                "lvgateway_media_allocation_failures_total",
                "Calls refused media ports, by reason.",
                {"reason": list(ALLOCATION_FAILURES)},
            ),
            calls=counter(
                registry,
                "lvgateway_media_calls_total",
                "Media sessions released, by the vendor endpoint's media profile.",
                {"profile": list(MEDIA_PROFILES)},
            ),
        )

    def session_released(self, profile: MediaProfile) -> None:
        """Count one released session under the media profile it was carried with."""
        self.calls.labels(profile=profile).inc()

    def add_totals(self, flows: Mapping[str, FlowCounters], dropped: Mapping[str, int]) -> None:
        """Bring the counters up to running totals, adding what grew since the last call.

        :param flows: the engine's totals since it was made, by direction.
        :param dropped: the engine's drops since it was made, by reason.
        """
        for direction, flow in flows.items():
            self._grow(self.packets, "direction", direction, flow.packets)
            self._grow(self.bytes, "direction", direction, flow.bytes)
        for reason, count in dropped.items():
            self._grow(self.dropped, "reason", reason, count)

    def _grow(self, metric: Counter, label: str, value: str, total: int) -> None:
        key = (id(metric), value)
        delta = total - self._flushed.get(key, 0)
        if delta > 0:
            metric.labels(**{label: value}).inc(delta)
            self._flushed[key] = total


def instances_up_gauge(registry: CollectorRegistry, names: Sequence[str]) -> Gauge:
    """``lvgateway_rtpengine_up{instance}``: 1 while an rtpengine instance answers ping, else 0.

    :param registry: where it goes.
    :param names: every instance's ``ip:port``.
    """
    return gauge(
        registry,
        "lvgateway_rtpengine_up",
        "Whether each rtpengine instance answers ping (1) or takes no new calls (0).",
        {"instance": list(names)},
    )
