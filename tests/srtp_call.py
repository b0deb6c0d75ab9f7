"""One call from the test, through a real rtpengine, to a real baresip echo peer, with a media profile.

The test plays LiveVox's side itself: a plain RTP socket whose SDP it offers
to rtpengine. rtpengine's rewritten offer goes to baresip in an INVITE;
baresip's answer goes back through rtpengine to the test's socket. The flags
are those of :func:`lvgateway.media.profiles.ng_flags`, so a passing call
proves the flags the gateway's rtpengine engine will send.
"""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path
from typing import Any

import attrs

from lvgateway.config.media_profiles import CodecMap, MediaProfile
from lvgateway.media.profiles import ng_flags
from tests.baresip_peer import BaresipPeer
from tests.rtp_probe import Capture, exchange
from tests.rtpengine_peer import NgClient, NgError, stop_process
from tests.sip_uac import SipCall

__all__ = ["CallResult", "livevox_offer", "media_port", "run_call"]


def livevox_offer(port: int) -> str:
    """An SDP offer like LiveVox's: PCMU and telephone-event, plain RTP."""
    return (
        "v=0\r\no=livevox 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
    )


def media_port(sdp: str) -> int:
    """The port of the first ``m=audio`` line."""
    m = re.search(r"^m=audio (\d+) ", sdp, re.MULTILINE)
    if m is None:
        raise AssertionError(f"no m=audio line in {sdp!r}")
    return int(m.group(1))


@attrs.frozen
class CallResult:
    """What one call showed.

    :param vendor_offer: the SDP rtpengine sent baresip.
    :param vendor_answer: baresip's answer.
    :param livevox_answer: the SDP rtpengine returned to the test.
    :param echoed: every datagram the test's socket received.
    :param wire: datagrams captured to and from rtpengine's vendor-side port.
    :param vendor_port: that port.
    :param stats: rtpengine's ``query`` reply taken before the BYE.
    """

    vendor_offer: str
    vendor_answer: str
    livevox_answer: str
    echoed: list[bytes]
    wire: list[tuple[int, int, bytes]]
    vendor_port: int
    stats: dict[str, Any]


def run_call(
    ng: NgClient,
    peer: BaresipPeer,
    workdir: Path,
    profile: MediaProfile,
    codec_map: CodecMap | None = None,
    packets: int = 100,
) -> CallResult:
    """Set up one call, send ``packets`` probes from LiveVox's side, capture the vendor side, hang up."""
    livevox = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    livevox.bind(("127.0.0.1", 0))
    call = SipCall(("127.0.0.1", peer.sip_port), peer.uri)
    capture: Capture | None = None
    try:
        offered = ng.request(
            "offer",
            call_id=call.call_id,
            from_tag=call.from_tag,
            sdp=livevox_offer(livevox.getsockname()[1]),
            **ng_flags(profile, codec_map, "offer", "vendor"),
        )
        vendor_port = media_port(offered["sdp"])
        capture = Capture(workdir / f"vendor-{call.call_id[:8]}.pcap", (vendor_port,))
        capture.start()
        vendor_answer = call.invite(offered["sdp"])
        answered = ng.request(
            "answer",
            call_id=call.call_id,
            from_tag=call.from_tag,
            to_tag=call.to_tag,
            sdp=vendor_answer,
            **ng_flags(profile, codec_map, "answer", "livevox"),
        )
        echoed = exchange(livevox, ("127.0.0.1", media_port(answered["sdp"])), packets)
        stats = ng.request("query", call_id=call.call_id)
        call.bye()
        wire = capture.stop()
        return CallResult(
            offered["sdp"], vendor_answer, answered["sdp"], echoed, wire, vendor_port, stats
        )
    finally:
        if capture is not None:
            stop_process(capture.process, sig=signal.SIGINT)
        try:
            ng.request("delete", call_id=call.call_id)
        except NgError:
            pass  # the offer itself failed: there is no call to delete
        call.close()
        livevox.close()
