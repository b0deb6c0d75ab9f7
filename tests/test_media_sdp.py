"""SDP rewriting for the relay, on Sippy's own MsgBody and real SDP text."""

from __future__ import annotations

import pytest
from sippy.Exceptions.SdpParseError import SdpParseError
from sippy.MsgBody import MsgBody

from lvgateway.media.errors import MediaSdpError
from lvgateway.media.sdp import MediaTarget, rewrite_sdp


def sdp(*lines: str) -> str:
    """Join SDP lines with CRLF, as they travel."""
    return "\r\n".join(lines) + "\r\n"


#: An offer like LiveVox's (the body of the guide's sample INVITE is masked).
LIVEVOX_OFFER = sdp(
    "v=0",
    "o=LiveVox 1616876540 1616876541 IN IP4 10.101.21.27",
    "s=LiveVox",
    "c=IN IP4 10.101.21.27",
    "t=0 0",
    "m=audio 16384 RTP/AVP 0 8 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=ptime:20",
    "a=sendrecv",
)


def rewritten(
    text: str, address: str = "203.0.113.5", port: int = 30000
) -> tuple[str, MediaTarget]:
    """Rewrite ``text`` as the relay would; return the new text and the sender's target."""
    body = MsgBody(text)
    target = rewrite_sdp(body, address, port)
    assert body.needs_update is False
    return str(body), target


def test_offer_points_at_relay() -> None:
    """LiveVox's offer comes out naming the relay's address and port, every codec line intact."""
    text, target = rewritten(LIVEVOX_OFFER)
    assert text == sdp(
        "v=0",
        "o=LiveVox 1616876540 1616876541 IN IP4 203.0.113.5",
        "s=LiveVox",
        "c=IN IP4 203.0.113.5",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    )
    assert target == MediaTarget(
        host="10.101.21.27",
        rtp=("10.101.21.27", 16384),
        rtcp=("10.101.21.27", 16385),
        hold=False,
    )


def test_rewrite_is_deterministic() -> None:
    """The same body and port give the same text, so a refresh stays byte-identical."""
    assert rewritten(LIVEVOX_OFFER)[0] == rewritten(LIVEVOX_OFFER)[0]


def test_parsed_body_is_accepted() -> None:
    """A body Sippy has already parsed is rewritten the same way."""
    body = MsgBody(LIVEVOX_OFFER)
    body.parse()
    rewrite_sdp(body, "203.0.113.5", 30000)
    assert str(body) == rewritten(LIVEVOX_OFFER)[0]


def test_media_level_connection() -> None:
    """A c= inside the media section is read and rewritten."""
    text, target = rewritten(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "c=IN IP4 192.0.2.7",
        )
    )
    assert target.rtp == ("192.0.2.7", 4000)
    assert "c=IN IP4 203.0.113.5\r\n" in text
    assert "192.0.2" not in text


def test_session_level_connection_with_video_disabled() -> None:
    """A session-level c= covers every section; the relay keeps audio and disables video."""
    text, target = rewritten(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=video 5000 RTP/AVP 31",
            "m=audio 4000 RTP/AVP 0 101",
            "a=rtpmap:101 telephone-event/8000",
        )
    )
    assert target.rtp == ("192.0.2.1", 4000)
    assert "m=video 0 RTP/AVP 31\r\n" in text
    assert "m=audio 30000 RTP/AVP 0 101\r\n" in text
    assert "192.0.2" not in text


def test_rtcp_attribute() -> None:
    """An a=rtcp: attribute gives the sender's RTCP address and is rewritten to the relay's RTP + 1."""
    text, target = rewritten(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "a=rtcp:4555 IN IP4 192.0.2.9",
        )
    )
    assert target.rtcp == ("192.0.2.9", 4555)
    assert "a=rtcp:30001 IN IP4 203.0.113.5\r\n" in text


def test_old_style_hold_becomes_sendonly() -> None:
    """c=0.0.0.0 is a hold: the relay sends that side nothing and says sendonly, not 0.0.0.0."""
    text, target = rewritten(
        sdp(
            "v=0",
            "o=- 1 2 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 0.0.0.0",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "a=sendrecv",
        )
    )
    assert target == MediaTarget(host=None, rtp=None, rtcp=None, hold=True)
    assert "c=IN IP4 203.0.113.5\r\n" in text
    assert "a=sendonly\r\n" in text
    assert "sendrecv" not in text
    assert "0.0.0.0" not in text


def test_old_style_hold_of_recvonly_becomes_inactive() -> None:
    """A side on hold by address that only receives is inactive."""
    text, _ = rewritten(
        sdp(
            "v=0",
            "o=- 1 2 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 0.0.0.0",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            "a=recvonly",
        )
    )
    assert "a=inactive\r\n" in text
    assert "recvonly" not in text


@pytest.mark.parametrize("direction", ["sendonly", "recvonly", "inactive"])
def test_new_style_hold_passes_through(direction: str) -> None:
    """A direction attribute with a real address is the endpoints' business: kept, and relayed."""
    text, target = rewritten(
        sdp(
            "v=0",
            "o=- 1 2 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 4000 RTP/AVP 0",
            f"a={direction}",
        )
    )
    assert not target.hold
    assert target.rtp == ("192.0.2.1", 4000)
    assert f"a={direction}\r\n" in text


def test_disabled_audio_keeps_port_zero() -> None:
    """An audio stream with port 0 stays 0 and gives no destination."""
    text, target = rewritten(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 0 RTP/AVP 0",
        )
    )
    assert target.rtp is None and not target.hold
    assert "m=audio 0 RTP/AVP 0\r\n" in text


def test_srtp_transport_is_relayed() -> None:
    """RTP/SAVP is relayed as it is: the crypto line passes through."""
    text, target = rewritten(
        sdp(
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "t=0 0",
            "m=audio 4000 RTP/SAVP 0",
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",
        )
    )
    assert target.rtp == ("192.0.2.1", 4000)
    assert "m=audio 30000 RTP/SAVP 0\r\n" in text
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in text


def test_ipv6_relay_address() -> None:
    """An IPv6 relay address is written with address type IP6."""
    text, _ = rewritten(LIVEVOX_OFFER, address="2001:db8::5")
    assert "c=IN IP6 2001:db8::5\r\n" in text
    assert "o=LiveVox 1616876540 1616876541 IN IP6 2001:db8::5\r\n" in text


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            sdp(
                "v=0",
                "o=- 1 1 IN IP4 192.0.2.1",
                "s=-",
                "c=IN IP4 192.0.2.1",
                "t=0 0",
                "m=video 5000 RTP/AVP 31",
            ),
            "no RTP audio",
        ),
        (
            sdp(
                "v=0",
                "o=- 1 1 IN IP4 192.0.2.1",
                "s=-",
                "c=IN IP4 192.0.2.1",
                "t=0 0",
                "m=image 5000 udptl t38",
            ),
            "no RTP audio",
        ),
        (sdp("v=0", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", "m=audio 5000 RTP/AVP 0"), "unparseable"),
        (
            sdp(
                "v=0",
                "o=- 1 1 IN IP4 192.0.2.1",
                "s=-",
                "c=IN IP4 192.0.2.1",
                "t=0 0",
                "m=audio x RTP/AVP 0",
            ),
            "unparseable",
        ),
        (
            sdp(
                "v=0",
                "o=- 1 1 IN IP4 192.0.2.1",
                "s=-",
                "c=IN IP4 media.example",
                "t=0 0",
                "m=audio 5000 RTP/AVP 0",
            ),
            "not an IP address",
        ),
    ],
)
def test_refused_bodies(text: str, reason: str) -> None:
    """A body the relay cannot carry is refused with a 488 error naming why, and left unchanged."""
    body = MsgBody(text)
    with pytest.raises(MediaSdpError, match=reason) as raised:
        rewrite_sdp(body, "203.0.113.5", 30000)
    assert isinstance(raised.value, SdpParseError)
    assert raised.value.code == 488
    assert str(body) == text
    assert body.needs_update is True


def test_non_sdp_body_refused() -> None:
    """A body of another content type is not SDP: refused."""
    from sippy.SipContentType import SipContentType

    ctype = SipContentType("text/plain")
    ctype.parse()
    body = MsgBody("hello", mtype=ctype)
    with pytest.raises(MediaSdpError, match="not an SDP body"):
        rewrite_sdp(body, "203.0.113.5", 30000)
