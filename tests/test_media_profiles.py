"""The rtpengine ng flags each media profile and codec map asks for (pure policy)."""

from __future__ import annotations

import pytest

from lvgateway.config.media_profiles import MEDIA_PROFILES, CodecMap, MediaProfile
from lvgateway.media.profiles import SDES_SUITES_NOT_OFFERED, ng_flags

G722 = CodecMap(livevox="PCMU", vendor="G722")


@pytest.mark.parametrize("profile", MEDIA_PROFILES)
@pytest.mark.parametrize("message", ["offer", "answer"])
def test_livevox_side_is_always_plain_rtp_without_ice(profile: MediaProfile, message: str) -> None:
    """Whatever the vendor's profile, the SDP toward LiveVox is RTP/AVP with no ICE, SDES or DTLS."""
    flags = ng_flags(profile, None, message, "livevox")  # type: ignore[arg-type]
    assert flags["transport-protocol"] == "RTP/AVP"
    assert flags["ICE"] == "remove"
    assert flags["SDES"] == ["off"] and flags["DTLS"] == "off"
    assert "codec" not in flags
    if message == "offer":
        assert flags["rtcp-mux"] == ["demux"]


@pytest.mark.parametrize(
    ("profile", "protocol"),
    [("rtp", "RTP/AVP"), ("srtp-sdes", "RTP/SAVP"), ("dtls-srtp", "UDP/TLS/RTP/SAVP")],
)
def test_vendor_side_protocol_follows_the_profile(profile: MediaProfile, protocol: str) -> None:
    """The gateway's offer to the vendor carries the profile's protocol; an answer keeps what the vendor offered."""
    assert ng_flags(profile, None, "offer", "vendor")["transport-protocol"] == protocol
    assert "transport-protocol" not in ng_flags(profile, None, "answer", "vendor")


def test_rtp_profile_offers_neither_sdes_nor_dtls() -> None:
    """Plain RTP toward the vendor: no a=crypto, no DTLS, no ICE."""
    assert ng_flags("rtp", None, "offer", "vendor") == {
        "transport-protocol": "RTP/AVP",
        "SDES": ["off"],
        "DTLS": "off",
        "ICE": "remove",
    }


def test_sdes_profile_offers_only_the_aes_cm_128_suites() -> None:
    """SDES without DTLS, and every suite but AES_CM_128_HMAC_SHA1_80/32 left out (NULL and GCM above all)."""
    flags = ng_flags("srtp-sdes", None, "offer", "vendor")
    assert flags["DTLS"] == "off" and flags["ICE"] == "remove"
    assert flags["SDES"] == [f"no-{suite}" for suite in SDES_SUITES_NOT_OFFERED]
    left_out = set(SDES_SUITES_NOT_OFFERED)
    assert {
        "NULL_HMAC_SHA1_80",
        "NULL_HMAC_SHA1_32",
        "AEAD_AES_256_GCM",
        "AEAD_AES_128_GCM",
    } <= left_out
    assert not {"AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"} & left_out


def test_dtls_profile_turns_sdes_off_and_does_ice_lite_only_where_the_vendor_offers_it() -> None:
    """DTLS-SRTP offers no ICE; a vendor's ICE offer gets rtpengine as its lite agent, stripped toward LiveVox."""
    offer = ng_flags("dtls-srtp", None, "offer", "vendor")
    assert offer["SDES"] == ["off"] and "DTLS" not in offer and offer["ICE"] == "remove"
    assert ng_flags("dtls-srtp", None, "answer", "vendor")["ICE"] == "force"
    vendor_offer = ng_flags("dtls-srtp", None, "offer", "livevox")
    assert vendor_offer["ICE-lite"] == "backward" and vendor_offer["ICE"] == "remove"
    assert "ICE-lite" not in ng_flags("srtp-sdes", None, "offer", "livevox")


def test_codec_map_transcodes_in_offers_only() -> None:
    """A map offers the vendor its codec and masks LiveVox's; a vendor's offer is mapped back; answers carry no codec keys."""
    assert ng_flags("rtp", G722, "offer", "vendor")["codec"] == {
        "transcode": ["G722"],
        "mask": ["PCMU"],
    }
    assert ng_flags("rtp", G722, "offer", "livevox")["codec"] == {
        "transcode": ["PCMU"],
        "mask": ["G722"],
    }
    assert "codec" not in ng_flags("rtp", G722, "answer", "vendor")
    assert "codec" not in ng_flags("rtp", G722, "answer", "livevox")


def test_no_codec_map_leaves_payloads_alone() -> None:
    """Without a map no message asks rtpengine to touch codecs."""
    for profile in MEDIA_PROFILES:
        for message in ("offer", "answer"):
            for side in ("vendor", "livevox"):
                assert "codec" not in ng_flags(profile, None, message, side)  # type: ignore[arg-type]
