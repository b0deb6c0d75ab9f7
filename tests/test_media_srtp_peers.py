"""SRTP toward the vendor, proven between two independent real implementations, without the gateway.

rtpengine (Debian's 10.5, userspace) is driven by the test's own ng client
with the flags of :func:`lvgateway.media.profiles.ng_flags`; baresip 1.0
answers as the vendor and echoes the audio. The test's plain RTP probes must
come back, and a capture of rtpengine's vendor-side port must never show a
probe's payload in clear.
"""

from __future__ import annotations

import audioop
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvgateway.config.media_profiles import CodecMap
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
