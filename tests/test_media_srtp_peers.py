"""SRTP toward the vendor, proven between two independent real implementations, without the gateway.

rtpengine (Debian's 10.5, userspace) is driven by the test's own ng client
with the flags of :func:`lvgateway.media.profiles.ng_flags`; baresip 1.0
answers as the vendor and echoes the audio. The test's plain RTP probes must
come back, and a capture of rtpengine's vendor-side port must never show a
probe's payload in clear.
"""

from __future__ import annotations

import audioop
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvgateway.config.media_profiles import CodecMap
from lvgateway.media.profiles import ng_flags
from lvgateway.media.srtp_answer import check_vendor_answer
from tests.baresip_peer import BaresipPeer
from tests.rtp_probe import MARKER, rtp_payload_type
from tests.rtpengine_peer import NgClient, RtpengineProcess
from tests.srtp_call import CallResult, run_call

pytestmark = pytest.mark.timeout(120)

PROBES = 100
#: Echoes that must come back out of PROBES; the rest is room for a loaded machine.
ENOUGH = 80


@pytest.fixture(scope="module")
def rtpengine(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NgClient, RtpengineProcess]]:
    """One userspace rtpengine on loopback for the module's calls."""
    process = RtpengineProcess(tmp_path_factory.mktemp("rtpengine"))
    ng = process.start()
    yield ng, process
    process.stop()


def _peer(
    tmp_path: Path, mediaenc: str | None, codecs: tuple[str, ...] = ("PCMU/8000/1",)
) -> BaresipPeer:
    peer = BaresipPeer(tmp_path, mediaenc=mediaenc, audio_codecs=codecs, lifetime=90)
    peer.start()
    return peer


def _probes_echoed(result: CallResult) -> int:
    return sum(1 for p in result.echoed if MARKER in p and rtp_payload_type(p) == 0)


def _in_clear(result: CallResult) -> int:
    return sum(1 for _, _, payload in result.wire if MARKER in payload)


def _towards_vendor(result: CallResult) -> list[bytes]:
    return [p for s, _, p in result.wire if s == result.vendor_port]


def _from_vendor(result: CallResult) -> list[bytes]:
    return [p for _, d, p in result.wire if d == result.vendor_port]


def _stream_packets(result: CallResult) -> list[int]:
    """Packets rtpengine received per RTP stream (one per side)."""
    return [
        stream["stats"]["packets"]
        for tag in result.stats["tags"].values()
        for media in tag["medias"]
        for stream in media["streams"][:1]
    ]


def test_sdes_srtp_call_echoes_audio_and_shows_no_plain_rtp(
    rtpengine: tuple[NgClient, RtpengineProcess], tmp_path: Path
) -> None:
    """An srtp-sdes call to baresip (srtp-mand) carries the probes both ways, encrypted on the vendor side."""
    ng, process = rtpengine
    peer = _peer(tmp_path, "srtp-mand")
    try:
        result = run_call(ng, peer, tmp_path, "srtp-sdes")
        assert peer.running(), peer.log()
    finally:
        peer.stop()
    assert " RTP/SAVP " in result.vendor_offer
    crypto = [line for line in result.vendor_offer.splitlines() if line.startswith("a=crypto:")]
    assert [line.split()[1] for line in crypto] == [
        "AES_CM_128_HMAC_SHA1_80",
        "AES_CM_128_HMAC_SHA1_32",
    ]
    assert check_vendor_answer(peer.uri, "srtp-sdes", result.vendor_answer) is None
    assert " RTP/AVP " in result.livevox_answer
    assert "a=crypto" not in result.livevox_answer
    assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in peer.log()
    assert "failed to decrypt" not in peer.log()
    assert _probes_echoed(result) >= ENOUGH, (len(result.echoed), process.log())
    assert len(_towards_vendor(result)) >= ENOUGH and len(_from_vendor(result)) >= ENOUGH
    assert _in_clear(result) == 0


def test_dtls_srtp_call_echoes_audio_and_shows_no_plain_rtp(
    rtpengine: tuple[NgClient, RtpengineProcess], tmp_path: Path
) -> None:
    """A dtls-srtp call to baresip (dtls_srtp) completes the handshake and carries the probes both ways."""
    ng, process = rtpengine
    peer = _peer(tmp_path, "dtls_srtp")
    try:
        result = run_call(ng, peer, tmp_path, "dtls-srtp")
        assert peer.running(), peer.log()
    finally:
        peer.stop()
    assert " UDP/TLS/RTP/SAVP " in result.vendor_offer
    assert "a=fingerprint:" in result.vendor_offer and "a=setup:actpass" in result.vendor_offer
    assert check_vendor_answer(peer.uri, "dtls-srtp", result.vendor_answer) is None
    assert " RTP/AVP " in result.livevox_answer
    for attribute in ("a=fingerprint", "a=setup", "a=candidate", "a=ice-"):
        assert attribute not in result.livevox_answer
    assert "verified sha-256 fingerprint OK" in peer.log()
    assert "DTLS-SRTP complete (audio/RTP)" in peer.log()
    assert _probes_echoed(result) >= ENOUGH, (len(result.echoed), process.log())
    assert len(_towards_vendor(result)) >= ENOUGH and len(_from_vendor(result)) >= ENOUGH
    assert _in_clear(result) == 0


def test_plain_rtp_call_shows_the_probes_in_clear(
    rtpengine: tuple[NgClient, RtpengineProcess], tmp_path: Path
) -> None:
    """With the rtp profile the same capture finds the probes: the no-clear-text check can fail."""
    ng, _ = rtpengine
    peer = _peer(tmp_path, None)
    try:
        result = run_call(ng, peer, tmp_path, "rtp")
    finally:
        peer.stop()
    assert " RTP/AVP " in result.vendor_offer and "a=crypto" not in result.vendor_offer
    assert _probes_echoed(result) >= ENOUGH
    assert _in_clear(result) >= 2 * ENOUGH  # each probe, on its way out and echoed back
    failure = check_vendor_answer(peer.uri, "srtp-sdes", result.vendor_answer)
    assert failure is not None and failure.cause == "answered RTP/AVP where RTP/SAVP was offered"


def test_codec_map_transcodes_pcmu_to_g722_both_ways(
    rtpengine: tuple[NgClient, RtpengineProcess], tmp_path: Path
) -> None:
    """A PCMU→G722 map offers baresip G.722 only, and the echo comes back to LiveVox's side as PCMU audio."""
    ng, _ = rtpengine
    peer = _peer(tmp_path, "srtp-mand", codecs=("G722/16000/1",))
    try:
        result = run_call(ng, peer, tmp_path, "srtp-sdes", CodecMap(livevox="PCMU", vendor="G722"))
    finally:
        peer.stop()
    assert " RTP/SAVP 9 101" in result.vendor_offer and "PCMU" not in result.vendor_offer
    assert " RTP/AVP 0 " in result.livevox_answer and "G722" not in result.livevox_answer
    towards, back = _towards_vendor(result), _from_vendor(result)
    assert len(towards) >= ENOUGH and {rtp_payload_type(p) for p in towards} == {9}
    assert len(back) >= ENOUGH and {rtp_payload_type(p) for p in back} == {9}
    # The echo is the probes' audio, decoded and re-encoded twice: loud PCMU,
    # where baresip's own frames before the echo starts are silence.
    loud = [
        p
        for p in result.echoed
        if rtp_payload_type(p) == 0 and audioop.rms(audioop.ulaw2lin(p[12:], 2), 2) > 1000
    ]
    assert len(loud) >= ENOUGH - 10, [
        audioop.rms(audioop.ulaw2lin(p[12:], 2), 2) for p in result.echoed[:20]
    ]
    assert _in_clear(result) == 0


#: A WebRTC-style vendor's re-INVITE offer: DTLS, ICE candidates (one of
#: them a public address LiveVox must never see), rtcp-mux.
VENDOR_ICE_OFFER = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
    "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdef012345\r\n"
    "m=audio 40000 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\na=setup:actpass\r\n"
    "a=fingerprint:sha-256 15:21:7D:5B:16:7A:EC:3B:4F:AD:57:47:2C:81:0F:95:2E:3B:F5:68:1E:"
    "A7:69:94:6E:F1:3E:88:57:5A:EE:41\r\n"
    "a=candidate:1 1 UDP 2130706431 127.0.0.5 40000 typ host\r\n"
    "a=candidate:2 1 UDP 1694498815 203.0.113.9 40000 typ srflx raddr 127.0.0.5 rport 40000\r\n"
    "a=rtcp-mux\r\na=sendrecv\r\n"
)
LIVEVOX_ANSWER = (
    "v=0\r\no=livevox 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 41000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
)


def test_vendor_offer_with_ice_reaches_livevox_plain_and_is_answered_as_ice_lite(
    rtpengine: tuple[NgClient, RtpengineProcess],
) -> None:
    """A vendor's DTLS+ICE offer: LiveVox sees plain RTP and no vendor address; the vendor gets ICE-lite, SAVPF kept."""
    ng, _ = rtpengine
    call_id = uuid.uuid4().hex
    try:
        to_livevox = ng.request(
            "offer",
            call_id=call_id,
            from_tag="vendor",
            sdp=VENDOR_ICE_OFFER,
            replace=["origin"],  # the engine's own topology hiding, in every profile
            **ng_flags("dtls-srtp", None, "offer", "livevox"),
        )["sdp"]
        to_vendor = ng.request(
            "answer",
            call_id=call_id,
            from_tag="vendor",
            to_tag="livevox",
            sdp=LIVEVOX_ANSWER,
            **ng_flags("dtls-srtp", None, "answer", "vendor"),
        )["sdp"]
    finally:
        ng.request("delete", call_id=call_id)
    assert " RTP/AVP 0" in to_livevox
    for leaked in (
        "203.0.113.9",
        "127.0.0.5",
        "a=candidate",
        "a=ice",
        "a=fingerprint",
        "a=setup",
        "a=rtcp-mux",
    ):
        assert leaked not in to_livevox
    assert " UDP/TLS/RTP/SAVPF 0" in to_vendor
    assert "a=ice-lite" in to_vendor and "a=fingerprint:sha-256 " in to_vendor
    assert "a=setup:active" in to_vendor
    candidates = [line for line in to_vendor.splitlines() if line.startswith("a=candidate:")]
    assert candidates and all(" 127.0.0.1 " in c and c.endswith("typ host") for c in candidates)
    assert check_vendor_answer("vendor", "dtls-srtp", to_vendor) is None


def test_baresip_peer_moves_to_another_port_when_its_tcp_port_is_taken(tmp_path: Path) -> None:
    """baresip binds TCP beside UDP: a port taken for TCP makes the helper start it elsewhere, and it answers there."""
    peer = BaresipPeer(tmp_path, mediaenc=None, lifetime=30)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        peer.sip_port = taken.getsockname()[1]
        try:
            peer.start()
            assert peer.running() and peer.sip_port != taken.getsockname()[1]
            assert "Address already in use" not in peer.log()
        finally:
            peer.stop()
