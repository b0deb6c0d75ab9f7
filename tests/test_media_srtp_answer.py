"""The SRTP failure rule: a vendor answer without the crypto its profile requires fails the call, with a Reason and one log line."""

from __future__ import annotations

import pytest
from twisted.logger import formatEvent

from lvgateway.media.errors import MediaSdpError
from lvgateway.media.srtp_answer import check_vendor_answer

ENDPOINT = "sip:bot@vendor.example:5060"
HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
CRYPTO = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:76U6SbmgYgmjwcaTCHVVXV5b2q/KzW66CEYk5QaC\r\n"
FINGERPRINT = "a=fingerprint:SHA-256 FD:3D:AA:16:AF:5C:EE:39:30:15:BF:55:5F:22:0E:91\r\n"


def answer(m_line: str, *attributes: str, session: str = "") -> str:
    """An answer SDP with one audio section."""
    return HEAD + session + m_line + "\r\na=rtpmap:0 PCMU/8000\r\n" + "".join(attributes)


@pytest.mark.parametrize(
    ("profile", "sdp"),
    [
        ("srtp-sdes", answer("m=audio 14656 RTP/SAVP 0", CRYPTO)),
        ("srtp-sdes", answer("m=audio 14656 RTP/SAVPF 0", CRYPTO)),
        (
            "dtls-srtp",
            answer("m=audio 12506 UDP/TLS/RTP/SAVP 0", "a=setup:active\r\n", FINGERPRINT),
        ),
        ("dtls-srtp", answer("m=audio 12506 UDP/TLS/RTP/SAVPF 0", session=FINGERPRINT)),
        ("rtp", answer("m=audio 4000 RTP/AVP 0")),
        ("rtp", "not even SDP"),
    ],
)
def test_answers_with_the_required_crypto_pass(profile: str, sdp: str) -> None:
    """Keys where the profile wants them (fingerprint at media or session level); rtp is never checked."""
    assert check_vendor_answer(ENDPOINT, profile, sdp) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("profile", "sdp", "cause"),
    [
        (
            "srtp-sdes",
            answer("m=audio 4000 RTP/AVP 0"),
            "answered RTP/AVP where RTP/SAVP was offered",
        ),
        (
            "srtp-sdes",
            answer("m=audio 4000 RTP/AVP 0", CRYPTO),
            "answered RTP/AVP where RTP/SAVP was offered",
        ),
        ("srtp-sdes", answer("m=audio 4000 RTP/SAVP 0"), "no a=crypto in the answer"),
        (
            "srtp-sdes",
            answer("m=audio 4000 RTP/SAVP 0", "a=crypto:1 NULL_HMAC_SHA1_80 inline:abc\r\n"),
            "answered crypto suite NULL_HMAC_SHA1_80, which was not offered",
        ),
        (
            "srtp-sdes",
            answer("m=audio 0 RTP/SAVP 0", CRYPTO),
            "the audio stream was refused (port 0)",
        ),
        ("srtp-sdes", HEAD + "m=video 4000 RTP/SAVP 96\r\n", "no audio stream in the answer"),
        ("dtls-srtp", answer("m=audio 4000 UDP/TLS/RTP/SAVP 0"), "no a=fingerprint in the answer"),
        (
            "dtls-srtp",
            answer("m=audio 4000 RTP/AVP 0"),
            "answered RTP/AVP where UDP/TLS/RTP/SAVP was offered",
        ),
        (
            "dtls-srtp",
            answer("m=audio 4000 RTP/SAVP 0", CRYPTO),
            "answered RTP/SAVP where UDP/TLS/RTP/SAVP was offered",
        ),
    ],
)
def test_answers_without_the_required_crypto_fail_with_the_cause(
    profile: str, sdp: str, cause: str
) -> None:
    """Each way an answer can leave the media unprotected is named."""
    failure = check_vendor_answer(ENDPOINT, profile, sdp)  # type: ignore[arg-type]
    assert failure is not None
    assert failure.cause == cause


def test_failure_gives_the_reason_a_488_and_one_log_line_naming_the_endpoint() -> None:
    """The call fails like a refused offer, with a Reason text and a log line naming endpoint and cause."""
    failure = check_vendor_answer(ENDPOINT, "srtp-sdes", answer("m=audio 4000 RTP/AVP 0"))
    assert failure is not None
    assert failure.sip_code == 488
    assert failure.reason == "srtp-sdes required: answered RTP/AVP where RTP/SAVP was offered"
    line = formatEvent({"log_format": failure.log_format, **failure.log_fields()})
    assert line == (
        "vendor endpoint sip:bot@vendor.example:5060 answered without the media of its "
        "srtp-sdes profile: answered RTP/AVP where RTP/SAVP was offered"
    )
    error = failure.as_error()
    assert isinstance(error, MediaSdpError) and str(error) == failure.reason


def test_only_the_first_audio_stream_counts() -> None:
    """A second, plain audio section does not fail an answer whose relayed stream is SRTP."""
    sdp = answer("m=audio 4000 RTP/SAVP 0", CRYPTO) + "m=audio 4002 RTP/AVP 0\r\n"
    assert check_vendor_answer(ENDPOINT, "srtp-sdes", sdp) is None
    plain_first = answer("m=audio 4002 RTP/AVP 0") + "m=audio 4000 RTP/SAVP 0\r\n" + CRYPTO
    failure = check_vendor_answer(ENDPOINT, "srtp-sdes", plain_first)
    assert failure is not None and failure.cause == "answered RTP/AVP where RTP/SAVP was offered"
