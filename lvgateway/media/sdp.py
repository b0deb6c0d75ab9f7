"""SDP rewriting for a relay: point one side's SDP at the relay, and read where that side wants media.

:func:`rewrite_sdp` works on Sippy's ``MsgBody`` in place, as Sippy's own
``Rtp_proxy_session`` does, and is deterministic: the same body and ports
give the same text, so an unchanged re-offer stays unchanged (Sippy compares
SDP bodies byte for byte to answer refreshes locally).

What it does with a body:

- The first ``m=audio`` section whose transport is RTP (``RTP/AVP``,
  ``RTP/AVPF``, ``RTP/SAVP``, ``RTP/SAVPF``) is the relayed stream: its
  ``c=`` becomes the relay's address and its port the relay's RTP port; an
  ``a=rtcp:`` attribute becomes the relay's RTCP port (RTP + 1). A port of 0
  (a stream disabled or refused) stays 0.
- Every other ``m=`` section (video, a second audio stream, T.38) is
  disabled (port 0, ``c=`` the relay's address): one audio stream a call is
  relayed, and no media may bypass the relay.
- ``c=`` at session level is copied into each section by Sippy's parser and
  printed back at session level where all sections share it, so both forms
  come out pointing at the relay; the ``o=`` line's address is the relay's
  too (topology hiding). Session id and version pass through, so they keep
  their RFC 3264 meaning.
- Hold: an old-style hold (``c=IN IP4 0.0.0.0`` or ``::``) is converted to
  the new style, as Sippy's rtpproxy path does: the address becomes the
  relay's and the direction ``sendonly`` (``recvonly`` becomes
  ``inactive``); the relay then sends nothing to that side
  (:attr:`MediaTarget.hold`). ``a=sendonly``, ``recvonly`` and ``inactive``
  with a real address pass through untouched: they are between the two
  endpoints, and the relay forwards whatever is sent.
- Payload types, ``rtpmap``, ``fmtp``, ``ptime`` and every other attribute
  pass through (G.711, RFC 4733 events: no transcoding).

Refused, with :class:`~lvgateway.media.errors.MediaSdpError` (488), and the
body left as it was: a body that does not parse or is not SDP, an SDP with no
audio stream, and a ``c=`` or ``a=rtcp:`` naming a host instead of an IP
address (a relay sends to IP literals; resolving names per call is not its
job).
"""

from __future__ import annotations

import ipaddress
from typing import Any

import attrs
from sippy.SdpBody import SdpBody

from lvgateway.media.errors import MediaSdpError

__all__ = [
    "DTLS_SRTP_TRANSPORTS",
    "RTP_TRANSPORTS",
    "MediaTarget",
    "rewrite_sdp",
    "sdp_address_type",
]

#: The transports of an ``m=`` line the relay carries (SRTP passes through as is).
RTP_TRANSPORTS = frozenset({"rtp/avp", "rtp/avpf", "rtp/savp", "rtp/savpf"})
#: DTLS-SRTP's transports (RFC 5764), which only an engine terminating DTLS takes.
DTLS_SRTP_TRANSPORTS = frozenset({"udp/tls/rtp/savp", "udp/tls/rtp/savpf"})

_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# An old-style hold: what the side's direction becomes when its address is 0.0.0.0.
_HOLD_DIRECTION = {
    "sendrecv": "sendonly",
    "sendonly": "sendonly",
    "recvonly": "inactive",
    "inactive": "inactive",
}
_UNSPECIFIED = frozenset({"0.0.0.0", "::"})


@attrs.frozen
class MediaTarget:
    """Where one side wants its audio, as its SDP says.

    :param host: the IP address its ``c=`` names, normalised; ``None`` when
        on hold by address.
    :param rtp: where to send its RTP; ``None`` on hold or when the stream's
        port is 0.
    :param rtcp: where to send its RTCP (``a=rtcp:``, else RTP port + 1).
    :param hold: an old-style hold (``c=`` 0.0.0.0 or ``::``): send it nothing.
    """

    host: str | None
    rtp: tuple[str, int] | None
    rtcp: tuple[str, int] | None
    hold: bool


def sdp_address_type(address: str) -> str:
    """Return ``IP6`` for an IPv6 literal, else ``IP4``: the ``addrtype`` of ``c=`` and ``o=``."""
    return "IP6" if ":" in address else "IP4"


def _ip_literal(text: str, where: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise MediaSdpError(f"{where} names {text!r}, not an IP address") from None


def _parse(sdp_body: Any) -> Any:
    try:
        sdp_body.parse()
    except MediaSdpError:
        raise
    except Exception as e:  # Sippy raises SdpParseError, ValueError, IndexError...
        raise MediaSdpError(f"unparseable SDP: {e}") from e
    sdp = sdp_body.content
    if not isinstance(sdp, SdpBody):
        raise MediaSdpError(f"not an SDP body: {type(sdp).__name__}")
    return sdp


def _audio_section(sdp: Any, transports: frozenset[str] = RTP_TRANSPORTS) -> Any:
    for sect in sdp.sections:
        m = sect.m_header
        if m.stype.lower() == "audio" and m.transport.lower() in transports:
            return sect
    raise MediaSdpError("no RTP audio stream in the SDP")


def _rtcp_attribute(sect: Any) -> Any | None:
    for a in sect.a_headers:
        if a.name == "rtcp" and a.value:
            return a
    return None


def _read_target(sect: Any) -> MediaTarget:
    raw = sect.c_header.addr
    host = _ip_literal(raw, "c=")
    hold = host in _UNSPECIFIED
    port = sect.m_header.port
    if hold:
        return MediaTarget(host=None, rtp=None, rtcp=None, hold=True)
    if port == 0:
        return MediaTarget(host=host, rtp=None, rtcp=None, hold=False)
    rtcp = (host, port + 1)
    attr = _rtcp_attribute(sect)
    if attr is not None:  # RFC 3605: a=rtcp:port [nettype addrtype address]
        parts = attr.value.split()
        try:
            rtcp_port = int(parts[0])
        except ValueError:
            raise MediaSdpError(f"a=rtcp:{attr.value} has no port") from None
        rtcp_host = _ip_literal(parts[3], "a=rtcp:") if len(parts) >= 4 else host
        rtcp = (rtcp_host, rtcp_port)
    return MediaTarget(host=host, rtp=(host, port), rtcp=rtcp, hold=False)


def _effective_direction(sdp: Any, sect: Any) -> str:
    for headers in (sect.a_headers, sdp.a_headers):
        for a in headers:
            if a.name in _DIRECTIONS and a.value is None:
                return str(a.name)
    return "sendrecv"


def rewrite_sdp(
    sdp_body: Any, address: str, rtp_port: int, transports: frozenset[str] = RTP_TRANSPORTS
) -> MediaTarget:
    """Point ``sdp_body`` at the relay, in place, and return where its sender wants media.

    On success the body's ``needs_update`` is cleared, as Sippy expects of
    an SDP hook. On error the body is unchanged.

    :param sdp_body: a Sippy ``MsgBody`` (``application/sdp``), parsed or not.
    :param address: the relay's address to advertise (an IP literal).
    :param rtp_port: the relay's RTP port facing the body's receiver; its
        RTCP port is the next one.
    :param transports: the ``m=`` transports taken, lower case.
    :returns: the :class:`MediaTarget` of the body's sender.
    :raises lvgateway.media.errors.MediaSdpError: when the body cannot be relayed.
    """
    sdp = _parse(sdp_body)
    audio = _audio_section(sdp, transports)
    target = _read_target(audio)  # validates before anything changes
    atype = sdp_address_type(address)
    for sect in sdp.sections:
        sect.c_header.atype = atype
        sect.c_header.addr = address
        if sect is not audio:
            sect.m_header.port = 0
    if sdp.c_header is not None:
        sdp.c_header.atype = atype
        sdp.c_header.addr = address
    if audio.m_header.port != 0:
        audio.m_header.port = rtp_port
    attr = _rtcp_attribute(audio)
    if attr is not None:
        attr.value = f"{rtp_port + 1} IN {atype} {address}"
    if target.hold:
        direction = _HOLD_DIRECTION[_effective_direction(sdp, audio)]
        audio.a_headers = [
            a for a in audio.a_headers if not (a.name in _DIRECTIONS and a.value is None)
        ]
        audio.addHeader("a", direction)
    origin = sdp.o_header
    if origin is not None:
        origin.address_type = atype
        origin.address = address
    sdp_body.needs_update = False
    return target
