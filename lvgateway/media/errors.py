"""The errors of the media part, and the SIP response each maps to.

Two families:

- :class:`MediaUnavailableError` is raised by
  :meth:`~lvgateway.media.interfaces.IMediaRelay.new_session` when the engine
  cannot take a call now (not running, or every port in its range in use).
  The SIP part answers the INVITE ``503 Service Unavailable``
  (:attr:`~MediaUnavailableError.sip_code`).
- :class:`MediaSdpError` and :class:`MediaSessionReleasedError` are handed to
  the ``result_callback`` of a session's SDP hooks (as ``ex=``). They subclass
  Sippy's own ``SdpParseError`` (488) and ``RtpProxyError``, the two classes
  Sippy's ``UA.delayed_local_sdp_update`` and ``delayed_remote_sdp_update``
  turn into a ``CCEventFail`` with the error's ``code`` and ``msg``; any other
  exception class would be re-raised inside Sippy.
"""

from __future__ import annotations

from sippy.Exceptions.RtpProxyError import RtpProxyError
from sippy.Exceptions.SdpParseError import SdpParseError

__all__ = [
    "MediaError",
    "MediaNotRunningError",
    "MediaSdpError",
    "MediaSessionReleasedError",
    "MediaUnavailableError",
    "NoMediaInstanceError",
    "PortsExhaustedError",
]


class MediaError(Exception):
    """The base of every error the media part raises or reports."""


class MediaUnavailableError(MediaError):
    """The engine cannot relay a new call now; answer the INVITE 503."""

    #: The SIP status the INVITE should be answered with.
    sip_code = 503
    #: Its reason phrase.
    sip_reason = "Service Unavailable"


class MediaNotRunningError(MediaUnavailableError):
    """The engine is not started, or is stopping."""


class PortsExhaustedError(MediaUnavailableError):
    """Every port pair in ``[port_min, port_max]`` is in use (by us or by others)."""


class NoMediaInstanceError(MediaUnavailableError):
    """No instance of an external engine (rtpengine) answers: none can take the call."""


class MediaSdpError(SdpParseError, MediaError):  # type: ignore[misc]
    """An SDP body the relay cannot handle: unparseable, no audio, or a host name.

    Sippy answers it ``488 Not Acceptable Here`` (``code`` and ``msg`` come
    from ``SdpParseError``); ``str(error)`` is the reason, also put in the
    ``Reason`` header.
    """


class MediaSessionReleasedError(RtpProxyError, MediaError):  # type: ignore[misc]
    """An SDP hook was called on a session already released (a late re-INVITE)."""

    code = 503
    msg = "Service Unavailable"
