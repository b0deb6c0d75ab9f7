"""Whether a vendor's answer gives the media its endpoint's profile requires: pure policy.

rtpengine accepts whatever the vendor answers: an ``RTP/AVP`` answer to an
``RTP/SAVP`` offer would carry the call's audio in clear, and an answer
without keys would carry none. So the answer is checked before it is passed
on, and a call whose vendor answers without the crypto its profile requires
is failed like a vendor that refused the offer: 488, over to the next
endpoint, or ended with the ``Reason`` this module words.

Only the first ``m=audio`` section is read, the stream the gateway relays.
"""

from __future__ import annotations

import re

import attrs

from lvgateway.config.media_profiles import MediaProfile
from lvgateway.media.errors import MediaSdpError
from lvgateway.media.profiles import SDES_SUITES_NOT_OFFERED, TRANSPORT_PROTOCOLS

__all__ = ["SrtpAnswerFailure", "check_vendor_answer"]

#: The protocols an answer may carry for each profile (RFC 5124: the F
#: variant is the same keying with feedback).
_ACCEPTED = {
    profile: {protocol, protocol + "F"} for profile, protocol in TRANSPORT_PROTOCOLS.items()
}
_M_LINE = re.compile(r"^m=(\S+) (\d+)(?:/\d+)? (\S+)", re.MULTILINE)


@attrs.frozen
class SrtpAnswerFailure:
    """Why a vendor's answer cannot carry the call's media.

    :param endpoint: the vendor endpoint, as the log names it (its URI).
    :param profile: the endpoint's media profile.
    :param cause: what was wrong, in a few words (the ``Reason`` text).
    """

    endpoint: str
    profile: MediaProfile
    cause: str

    #: The SIP status the vendor leg fails with, as for a refused offer.
    sip_code = 488
    #: The one log line for it, a twisted.logger format over :meth:`log_fields`.
    log_format = (
        "vendor endpoint {endpoint} answered without the media of its {profile} profile: {cause}"
    )

    @property
    def reason(self) -> str:
        """The ``text=`` of the ``Reason: SIP;cause=488`` header sent with the call's end."""
        return f"{self.profile} required: {self.cause}"

    def log_fields(self) -> dict[str, str]:
        """The fields :attr:`log_format` names."""
        return {"endpoint": self.endpoint, "profile": self.profile, "cause": self.cause}

    def as_error(self) -> MediaSdpError:
        """The error an engine's answer hook hands Sippy (488, with :attr:`reason`)."""
        return MediaSdpError(self.reason)


def check_vendor_answer(
    endpoint: str, profile: MediaProfile, answer_sdp: str
) -> SrtpAnswerFailure | None:
    """Check the vendor's answer SDP against the endpoint's profile.

    :param endpoint: the endpoint's URI, for the log line.
    :param profile: the profile the offer was made with.
    :param answer_sdp: the vendor's answer, as received.
    :returns: None when the answer is acceptable, else why not.
    """
    if profile == "rtp":
        return None
    failure = _why_not(profile, _first_audio(answer_sdp))
    return None if failure is None else SrtpAnswerFailure(endpoint, profile, failure)


@attrs.frozen
class _AudioAnswer:
    """The first ``m=audio`` of an answer, with the session-level lines before any ``m=``."""

    protocol: str
    port: int
    section: str
    session: str


def _first_audio(sdp: str) -> _AudioAnswer | None:
    text = sdp.replace("\r\n", "\n")
    first_m = text.find("\nm=")
    session = text if first_m < 0 else text[:first_m]
    for m in _M_LINE.finditer(text):
        if m.group(1) == "audio":
            end = text.find("\nm=", m.end())
            section = text[m.start() : end if end >= 0 else len(text)]
            return _AudioAnswer(m.group(3), int(m.group(2)), section, session)
    return None


def _why_not(profile: MediaProfile, audio: _AudioAnswer | None) -> str | None:
    if audio is None:
        return "no audio stream in the answer"
    if audio.port == 0:
        return "the audio stream was refused (port 0)"
    offered = TRANSPORT_PROTOCOLS[profile]
    if audio.protocol not in _ACCEPTED[profile]:
        return f"answered {audio.protocol} where {offered} was offered"
    if profile == "srtp-sdes":
        suites = re.findall(r"^a=crypto:\d+ (\S+)", audio.section, re.MULTILINE)
        if not suites:
            return "no a=crypto in the answer"
        if suites[0] in SDES_SUITES_NOT_OFFERED:
            return f"answered crypto suite {suites[0]}, which was not offered"
        return None
    # RFC 8122: a=fingerprint may stand at session or media level.
    if not re.search(r"^a=fingerprint:", audio.section + "\n" + audio.session, re.MULTILINE):
        return "no a=fingerprint in the answer"
    return None
