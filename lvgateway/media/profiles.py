"""The rtpengine ng flags that carry a vendor endpoint's media profile: pure policy.

The gateway asks rtpengine twice per SDP exchange: an ``offer`` with the
offerer's SDP, whose result goes to the other side, and an ``answer`` with
the answerer's SDP, whose result goes back to the offerer. :func:`ng_flags`
says, for the side a rewritten SDP is *going to*, what rtpengine must put in
it and expect on those ports:

- toward LiveVox: always plain ``RTP/AVP``, no ICE (the vendor's candidates
  never reach LiveVox), no SDES, no DTLS;
- toward the vendor: the profile's protocol and keying, and the codec map.

The engine merges these keys into its own (call-id, tags, SDP, latching). The
flags were established against Debian's rtpengine 10.5.3.5 and an independent
SRTP peer, baresip 1.0 (``tests/test_media_srtp_peers.py``):

- SDES offers only the AES-CM-128 suites. rtpengine 10.5 otherwise offers
  twelve ``a=crypto`` lines (about 1 kB of SDP, too much for an INVITE over
  UDP), among them the ``NULL_HMAC_*`` suites, which leave the audio in clear
  if the vendor picks one, and the AEAD-GCM suites, which baresip 1.0 accepts
  over SDES and then fails to decrypt (every packet: "failed to decrypt RTP
  packet ... Unknown error 217").
- DTLS-SRTP offers ``UDP/TLS/RTP/SAVP`` with ``a=setup:actpass``; rtpengine
  takes whichever role the vendor's answer leaves it (baresip answers
  ``active``). The offer carries no ICE: with ``ICE=force`` and
  ``ICE-lite=forward`` offered to baresip (which does not do ICE), the DTLS
  handshake completed on the RTCP port only and no audio flowed. Where the
  vendor offers ICE (its re-INVITE), rtpengine answers as its ICE-lite
  agent and strips the candidates toward LiveVox.
- A codec map offers the vendor's codec, transcoded, and masks LiveVox's
  (still accepted on LiveVox's side). rtpengine reads codec options only in
  offers, so answers carry none.
- When the vendor offers (a re-INVITE), LiveVox gets plain RTP with no ICE,
  fingerprint or ``a=rtcp-mux`` (``rtcp-mux=demux``), and the answer to the
  vendor keeps the protocol it offered, with rtpengine's keys and, for ICE,
  ``a=ice-lite`` and rtpengine's own host candidates.
"""

from __future__ import annotations

from typing import Any, Literal

from lvgateway.config.media_profiles import (
    CodecMap,
    MediaProfile,
    codec_map_supported,
    profile_supported,
)

__all__ = [
    "SDES_SUITES_NOT_OFFERED",
    "TRANSPORT_PROTOCOLS",
    "Message",
    "PlainRtpOnly",
    "Side",
    "ng_flags",
]

Message = Literal["offer", "answer"]
Side = Literal["vendor", "livevox"]

#: The SDP transport protocol each profile puts on the vendor's m= line.
TRANSPORT_PROTOCOLS: dict[MediaProfile, str] = {
    "rtp": "RTP/AVP",
    "srtp-sdes": "RTP/SAVP",
    "dtls-srtp": "UDP/TLS/RTP/SAVP",
}

#: The SDES suites rtpengine 10.5 would also offer, left out (see above):
#: what remains is AES_CM_128_HMAC_SHA1_80 and AES_CM_128_HMAC_SHA1_32.
SDES_SUITES_NOT_OFFERED = (
    "AEAD_AES_256_GCM",
    "AEAD_AES_128_GCM",
    "AES_256_CM_HMAC_SHA1_80",
    "AES_256_CM_HMAC_SHA1_32",
    "AES_192_CM_HMAC_SHA1_80",
    "AES_192_CM_HMAC_SHA1_32",
    "F8_128_HMAC_SHA1_80",
    "F8_128_HMAC_SHA1_32",
    "NULL_HMAC_SHA1_80",
    "NULL_HMAC_SHA1_32",
)

_PLAIN = {"SDES": ["off"], "DTLS": "off"}


def ng_flags(
    profile: MediaProfile, codec_map: CodecMap | None, message: Message, toward: Side
) -> dict[str, Any]:
    """The ng keys for one ``offer`` or ``answer`` whose rewritten SDP goes ``toward`` one side.

    :param profile: the vendor endpoint's media profile.
    :param codec_map: the endpoint's codec map, or None to pass payloads untouched.
    :param message: the ng command.
    :param toward: the side that receives the SDP rtpengine returns.
    """
    if toward == "livevox":
        flags: dict[str, Any] = {"transport-protocol": "RTP/AVP", "ICE": "remove", **_PLAIN}
        if message == "offer":
            # The vendor offered: rtcp-mux is accepted toward it, never offered to LiveVox.
            flags["rtcp-mux"] = ["demux"]
            if profile == "dtls-srtp":
                flags["ICE-lite"] = "backward"  # rtpengine is the vendor's lite agent
            if codec_map is not None:
                flags["codec"] = {"transcode": [codec_map.livevox], "mask": [codec_map.vendor]}
        return flags
    # An answer keeps the protocol the vendor offered (RTP/SAVPF stays SAVPF);
    # forcing ours there would answer RTP/SAVP to an RTP/SAVPF offer.
    flags = {"transport-protocol": TRANSPORT_PROTOCOLS[profile]} if message == "offer" else {}
    if profile == "rtp":
        flags.update(_PLAIN, ICE="remove")
    elif profile == "srtp-sdes":
        flags.update(DTLS="off", ICE="remove", SDES=[f"no-{s}" for s in SDES_SUITES_NOT_OFFERED])
    else:
        # Offering, the gateway has no ICE to honour; answering a vendor that
        # offered ICE, rtpengine is its only candidate (lite, see the offer).
        flags.update(SDES=["off"], ICE="remove" if message == "offer" else "force")
    if message == "offer" and codec_map is not None:
        flags["codec"] = {"transcode": [codec_map.vendor], "mask": [codec_map.livevox]}
    return flags


class PlainRtpOnly:
    """:meth:`IMediaSession.use_vendor_profile` of an engine that relays plain RTP only.

    Mixed into the Twisted relay's, rtp.io's and the fake's sessions. The
    config refuses any other profile for these engines (``--check-config``),
    so one reaching here is a bug, said loudly rather than relayed in clear.
    """

    #: The engine's name in ``media.engine``, for :func:`profile_supported`.
    engine_name = "twisted"

    def use_vendor_profile(
        self, endpoint: str, profile: MediaProfile, codec_map: CodecMap | None = None
    ) -> None:
        """Accept ``rtp`` without a codec map; refuse anything else with ``ValueError``."""
        if not profile_supported(self.engine_name, profile):
            raise ValueError(f"{endpoint}: media profile {profile!r} needs the rtpengine engine")
        if codec_map is not None and not codec_map_supported(self.engine_name):
            raise ValueError(f"{endpoint}: a codec map needs the rtpengine engine")
