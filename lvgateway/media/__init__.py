"""Media: the :class:`IMediaRelay` engines that relay each call's RTP between LiveVox and the vendor.

- :mod:`lvgateway.media.interfaces`: :class:`IMediaRelay`, :class:`IMediaSession`.
- :mod:`lvgateway.media.twisted_relay`: the pure Twisted engine.
- :mod:`lvgateway.media.rtpengine`: rtpengine daemons driven over the ng protocol
  (:mod:`~lvgateway.media.rtpengine_ng`, :mod:`~lvgateway.media.rtpengine_policy`,
  :mod:`~lvgateway.media.rtpengine_session`).
- :mod:`lvgateway.media.latching`: whose media a port takes (strict, or the NAT opt-in).
- :mod:`lvgateway.media.select`: which engine runs (``auto``: a strict one).
- :mod:`lvgateway.media.sdp`: the SDP rewriting both this engine and the fake use.
- :mod:`lvgateway.media.ports`: port-pair allocation from the configured range.
- :mod:`lvgateway.media.counters`: counters, stats and the media-timeout rule.
- :mod:`lvgateway.media.errors`: what fails, and the SIP code each maps to.
- :mod:`lvgateway.media.testing`: verified fakes, and an in-memory UDP reactor.

A session attaches to the **vendor leg** (docs/design.md, Sippy pitfall 6)::

    ua_vendor.on_local_sdp_change = media.on_caller_sdp_change
    ua_vendor.on_remote_sdp_change = media.on_callee_sdp_change
"""

from lvgateway.media.counters import FlowCounters, MediaCounters, MediaSide, RelayStats
from lvgateway.media.errors import (
    MediaError,
    MediaNotRunningError,
    MediaSdpError,
    MediaSessionReleasedError,
    MediaUnavailableError,
    PortsExhaustedError,
)
from lvgateway.media.interfaces import IMediaRelay, IMediaSession
from lvgateway.media.service import MediaRelayService
from lvgateway.media.twisted_relay import TwistedMediaRelay

__all__ = [
    "FlowCounters",
    "IMediaRelay",
    "IMediaSession",
    "MediaCounters",
    "MediaError",
    "MediaNotRunningError",
    "MediaRelayService",
    "MediaSdpError",
    "MediaSessionReleasedError",
    "MediaSide",
    "MediaUnavailableError",
    "PortsExhaustedError",
    "RelayStats",
    "TwistedMediaRelay",
]
