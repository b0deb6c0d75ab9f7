"""Media profiles toward a vendor endpoint, and which media engine can carry each.

A profile says how a vendor endpoint's media is carried: ``rtp`` (plain
RTP/AVP), ``srtp-sdes`` (SRTP keyed by ``a=crypto`` in the SDP, RFC 4568) or
``dtls-srtp`` (SRTP keyed by a DTLS handshake on the media port, RFC 5763).
LiveVox's side is always plain RTP. A codec map makes the engine transcode
between LiveVox's codec and the one the vendor prefers.

These are facts the config checks and the media engines share, so they live
here, below both: the config may import no other part.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "LIVEVOX_CODECS",
    "MEDIA_PROFILES",
    "VENDOR_CODECS",
    "CodecMap",
    "MediaProfile",
    "codec_map_supported",
    "profile_supported",
]

MediaProfile = Literal["rtp", "srtp-sdes", "dtls-srtp"]
MEDIA_PROFILES: tuple[MediaProfile, ...] = ("rtp", "srtp-sdes", "dtls-srtp")

#: What LiveVox sends (G.711), in rtpengine's codec names.
LIVEVOX_CODECS = ("PCMU", "PCMA")
#: What a vendor may be offered instead; Debian's rtpengine encodes and
#: decodes each (libavcodec, bcg729). Names are case sensitive, as in SDP.
VENDOR_CODECS = ("PCMU", "PCMA", "G722", "opus", "G729")

#: The engines that terminate SRTP and transcode. The Twisted relay and
#: rtp.io relay plain RTP only and pass payloads through untouched.
_ENCRYPTING_ENGINES = frozenset({"rtpengine"})


@attrs.frozen
class CodecMap:
    """Transcode between LiveVox's codec and the vendor's.

    :param livevox: the codec LiveVox's side keeps, such as ``PCMU``.
    :param vendor: the codec offered to the vendor instead, such as ``G722``.
    """

    livevox: str
    vendor: str


def profile_supported(engine: str, profile: MediaProfile) -> bool:
    """Tell whether the media engine named ``engine`` can carry ``profile`` toward a vendor.

    Every engine relays plain RTP; only rtpengine terminates SRTP. ``auto``
    never picks rtpengine, so it counts as an engine without SRTP.
    """
    return profile == "rtp" or engine in _ENCRYPTING_ENGINES


def codec_map_supported(engine: str) -> bool:
    """Tell whether the media engine named ``engine`` can transcode for a codec map."""
    return engine in _ENCRYPTING_ENGINES
