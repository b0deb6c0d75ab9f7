"""SRTP toward the vendor through the gateway: its SIP part and rtpengine engine, baresip as the vendor.

The test plays LiveVox with a raw SIP UAC and RTP probes (:mod:`tests.sip_uac`,
:mod:`tests.rtp_probe`): the sandbox dialler counts only its own stamped
packets, and baresip's echo decodes and re-encodes the audio (a codec map
transcodes it too), so the stamps would not survive. A probe counts as
echoed when its marker comes back, as PCMU, on LiveVox's side; a tcpdump
capture of rtpengine's vendor-facing port must never show the marker.

The blocking helpers (UAC, probes, capture, baresip's start) run in threads:
the gateway runs on the test's reactor.
"""

from __future__ import annotations

import audioop
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs, formatEvent

from lvgateway.sip.call import BridgedCall

from .baresip_peer import BaresipPeer
from .rtp_probe import MARKER, Capture, exchange, rtp_payload_type
from .rtpengine_process import Rtpengine, rtpengine, rtpengine_toml, running
from .sip_gateway import SIPP, SipGateway, free_udp_port, start_gateway
from .sip_helpers import wait_until
from .sip_uac import SipCall, UacError
from .srtp_call import livevox_offer, media_port

pytestmark = pytest.mark.timeout(120)

PROBES = 100
#: Echoes that must come back out of PROBES; the rest is room for a loaded machine.
ENOUGH = 80
AGENT_URI = "sip:+18990000001@127.0.0.1"

T = TypeVar("T")


async def in_thread(f: Callable[..., T], *args: Any) -> T:
    """Run a blocking helper off the reactor thread."""
    result: T = await deferToThread(f, *args)
    return result


def endpoint_toml(uri: str, profile: str, codec_map: str = "") -> str:
    """One ``[[vendor.endpoints]]`` table."""
    lines = f'[[vendor.endpoints]]\nuri = "{uri}"\nmedia_profile = "{profile}"\n'
    return lines + (f"codec_map = {codec_map}\n" if codec_map else "")


@attrs.define
class Bench:
    """The gateway on rtpengine, and what the test started around it."""

    tmp: Path
    daemon: Rtpengine
    stack: AsyncExitStack
    gateway: SipGateway | None = None
    peers: list[BaresipPeer] = attrs.field(factory=list)

    async def peer(
        self, mediaenc: str | None, codecs: tuple[str, ...] = ("PCMU/8000/1",)
    ) -> BaresipPeer:
        """Start a baresip echo peer, stopped when the test ends."""
        peer = BaresipPeer(self.tmp, mediaenc=mediaenc, audio_codecs=codecs, lifetime=100)
        self.peers.append(peer)
        await in_thread(peer.start)
        return peer

    async def start(self, endpoints: str) -> SipGateway:
        """Start the gateway's SIP part on the rtpengine engine with ``endpoints`` as the vendor."""
        self.gateway = start_gateway(
            self.tmp,
            [],
            allowed='["127.0.0.1/32"]',
            engine="rtpengine",
            extra_toml=rtpengine_toml([self.daemon]) + endpoints,
        )
        await wait_until(lambda: self.gateway.media.online() is None, 10, "rtpengine online")  # type: ignore[union-attr]
        return self.gateway

    def live_call(self) -> BridgedCall | None:
        """The one call in the call map, once connected."""
        assert self.gateway is not None
        calls = list(self.gateway.sip.router.live)
        return calls[0] if len(calls) == 1 and calls[0].connected_at is not None else None


@pytest_twisted.async_yield_fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    """A userspace rtpengine; the test starts the gateway and its baresip peers on it."""
    async with AsyncExitStack() as stack:
        daemon = await stack.enter_async_context(rtpengine(tmp_path))
        made = Bench(tmp_path, daemon, stack)
        try:
            yield made
        finally:
            if made.gateway is not None:
                await made.gateway.stop()
            for peer in made.peers:
                await in_thread(peer.stop)
        assert running(daemon), daemon.text()


@attrs.frozen
class Echoed:
    """What LiveVox's side of one call saw, and what the capture of the vendor side held."""

    livevox_answer: str
    echoed: list[bytes]
    wire: list[tuple[int, int, bytes]]
    vendor_port: int

    def probes_back(self) -> int:
        """Probes that came back to LiveVox as PCMU with their marker."""
        return sum(1 for p in self.echoed if MARKER in p and rtp_payload_type(p) == 0)

    def loud_pcmu_back(self) -> int:
        """PCMU packets back with audio in them (a transcoded echo loses the marker, not the sound)."""
        return sum(
            1
            for p in self.echoed
            if rtp_payload_type(p) == 0 and audioop.rms(audioop.ulaw2lin(p[12:], 2), 2) > 1000
        )

    def in_clear(self) -> int:
        """Captured datagrams on the vendor side carrying a probe's marker in clear."""
        return sum(1 for _, _, payload in self.wire if MARKER in payload)

    def vendor_payload_types(self, outgoing: bool) -> list[int | None]:
        """Payload types of the captured datagrams sent to (``outgoing``) or from the vendor."""
        return [
            rtp_payload_type(p)
            for s, d, p in self.wire
            if (s if outgoing else d) == self.vendor_port
        ]


@contextmanager
def livevox_leg(gateway: SipGateway) -> Iterator[tuple[SipCall, Any]]:
    """LiveVox's SIP UAC and RTP socket toward the gateway, closed at the end."""
    import socket

    rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp.bind(("127.0.0.1", 0))
    call = SipCall(("127.0.0.1", gateway.port), f"{AGENT_URI}:{gateway.port}")
    try:
        yield call, rtp
    finally:
        call.close()
        rtp.close()


async def echo_call(bench: Bench, ready: Callable[[], bool] = lambda: True) -> Echoed:
    """One call from LiveVox through the gateway: probes both ways, the vendor side captured, then BYE."""
    assert bench.gateway is not None
    with livevox_leg(bench.gateway) as (call, rtp):
        answer = await in_thread(call.invite, livevox_offer(rtp.getsockname()[1]))
        bridged = await wait_until(bench.live_call, 5, "the call to be connected")
        vendor_port = bridged.media.vendor_port
        await wait_until(ready, 10, "the vendor's media to be ready")
        capture = Capture(bench.tmp / f"vendor-{vendor_port}.pcap", (vendor_port,))
        await in_thread(capture.start)
        try:
            echoed = await in_thread(exchange, rtp, ("127.0.0.1", media_port(answer)), PROBES)
        finally:
            wire = await in_thread(capture.stop)
        assert await in_thread(call.bye) == 200
    await wait_until(lambda: not bench.gateway.sip.router.live, 10, "the call to end")  # type: ignore[union-attr]
    return Echoed(answer, echoed, wire, vendor_port)


def media_calls(gateway: SipGateway, profile: str) -> float:
    """``lvgateway_media_calls_total{profile}``."""
    value = gateway.registry.get_sample_value("lvgateway_media_calls_total", {"profile": profile})
    assert value is not None, profile
    return float(value)


def assert_echoed_and_encrypted(bench: Bench, result: Echoed) -> None:
    """The probes came back, and the vendor side carried audio both ways, never a probe in clear."""
    assert result.probes_back() >= ENOUGH, (len(result.echoed), bench.daemon.text()[-3000:])
    assert len(result.vendor_payload_types(True)) >= ENOUGH
    assert len(result.vendor_payload_types(False)) >= ENOUGH
    assert result.in_clear() == 0


async def released(gateway: SipGateway) -> None:
    """Wait until rtpengine has answered the call's ``delete`` (the session is counted then)."""
    await wait_until(lambda: gateway.media.stats().sessions == 0, 10, "the media released")


@pytest_twisted.ensureDeferred
async def test_sdes_srtp_call_through_the_gateway_echoes_audio_with_no_plain_rtp(
    bench: Bench,
) -> None:
    """An srtp-sdes endpoint (baresip, srtp-mand): audio both ways, SRTP on the vendor side, plain toward LiveVox."""
    peer = await bench.peer("srtp-mand")
    gateway = await bench.start(endpoint_toml(peer.uri, "srtp-sdes"))
    result = await echo_call(bench)
    assert peer.running(), peer.log()
    assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in peer.log()
    assert "failed to decrypt" not in peer.log()
    assert " RTP/AVP " in result.livevox_answer and "a=crypto" not in result.livevox_answer
    assert_echoed_and_encrypted(bench, result)
    await released(gateway)
    assert media_calls(gateway, "srtp-sdes") == 1 and media_calls(gateway, "rtp") == 0


@pytest_twisted.ensureDeferred
async def test_dtls_srtp_call_through_the_gateway_echoes_audio_with_no_plain_rtp(
    bench: Bench,
) -> None:
    """A dtls-srtp endpoint (baresip, dtls_srtp): the handshake completes and audio flows both ways, encrypted."""
    peer = await bench.peer("dtls_srtp")
    gateway = await bench.start(endpoint_toml(peer.uri, "dtls-srtp"))
    result = await echo_call(bench, lambda: "DTLS-SRTP complete (audio/RTP)" in peer.log())
    assert peer.running(), peer.log()
    assert "verified sha-256 fingerprint OK" in peer.log()
    for attribute in ("a=fingerprint", "a=setup", "a=candidate", "a=ice-", "a=crypto"):
        assert attribute not in result.livevox_answer
    assert_echoed_and_encrypted(bench, result)
    await released(gateway)
    assert media_calls(gateway, "dtls-srtp") == 1


@pytest_twisted.ensureDeferred
async def test_codec_map_through_the_gateway_carries_g722_to_the_vendor_and_pcmu_to_livevox(
    bench: Bench,
) -> None:
    """A PCMU→G722 map: the vendor side carries G.722 only, both ways; LiveVox gets its audio back as PCMU."""
    peer = await bench.peer(None, codecs=("G722/16000/1",))
    await bench.start(endpoint_toml(peer.uri, "rtp", '{ livevox = "PCMU", vendor = "G722" }'))
    result = await echo_call(bench)
    assert peer.running(), peer.log()
    assert " RTP/AVP 0 " in result.livevox_answer and "G722" not in result.livevox_answer
    out, back = result.vendor_payload_types(True), result.vendor_payload_types(False)
    assert len(out) >= ENOUGH and set(out) == {9}, set(out)
    assert len(back) >= ENOUGH and set(back) == {9}, set(back)
    assert result.loud_pcmu_back() >= ENOUGH - 10, len(result.echoed)


async def sipp_plain_vendor(bench: Bench) -> tuple[str, Any]:
    """SIPp's built-in UAS as a vendor that answers RTP/AVP whatever it is offered; the test stops it."""
    port = free_udp_port("127.0.0.1")
    media = free_udp_port("127.0.0.1")
    # -aa: 200 to the health checks' OPTIONS (no -m: SIPp would count them as calls);
    # -trace_msg: what it received, for the test to read. Bounded by -timeout.
    args = f"-sn uas -i 127.0.0.1 -p {port} -mi 127.0.0.1 -mp {media} -aa"
    args += " -timeout 60s -nostdin -trace_msg"
    process = subprocess.Popen(
        [SIPP, *args.split()],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=bench.tmp,
    )
    return f"sip:service@127.0.0.1:{port}", process


def sipp_received(bench: Bench, what: str) -> int:
    """How many ``what`` requests (a method, or any line's start) SIPp's message trace shows."""
    traces = list(bench.tmp.glob("uas_*_messages.log"))
    start = f"\n{what} sip:" if what.isalpha() else f"\n{what}"
    return sum(t.read_text(errors="replace").count(start) for t in traces)


def refusal_lines(events: list[dict[str, Any]], endpoint: str, cause: str) -> list[str]:
    """The log lines that name both the endpoint and the cause."""
    lines = [formatEvent(e) for e in events]
    return [line for line in lines if endpoint in line and cause in line]


CAUSE = "answered RTP/AVP where RTP/SAVP was offered"


@pytest_twisted.ensureDeferred
async def test_vendor_answering_plain_rtp_to_srtp_fails_the_call_488_with_reason(
    bench: Bench,
) -> None:
    """An srtp-sdes endpoint answering RTP/AVP, the only one: LiveVox gets 488 with a Reason; one log line; the vendor gets BYE."""
    uri, sipp = await sipp_plain_vendor(bench)
    try:
        gateway = await bench.start(endpoint_toml(uri, "srtp-sdes"))
        with capturedLogs() as events, livevox_leg(gateway) as (call, rtp):
            with pytest.raises(UacError):
                await in_thread(call.invite, livevox_offer(rtp.getsockname()[1]))
            await wait_until(lambda: not gateway.sip.router.live, 10, "the call to end")
            await wait_until(lambda: sipp_received(bench, "BYE"), 10, "the vendor leg's BYE")
        assert call.final_status == 488, call.final_response
        assert f'Reason: SIP; cause=488; text="srtp-sdes required: {CAUSE}"' in call.final_response
        assert len(refusal_lines(list(events), uri, CAUSE)) == 1, [formatEvent(e) for e in events]
        # The vendor's 200 was acknowledged, then its leg closed.
        assert sipp_received(bench, "ACK") == 1 and sipp_received(bench, "BYE") == 1
        await released(gateway)
        assert media_calls(gateway, "srtp-sdes") == 1
    finally:
        if sipp.poll() is None:
            sipp.terminate()
        sipp.wait(10)


@pytest_twisted.ensureDeferred
async def test_vendor_answering_plain_rtp_to_srtp_fails_over_to_the_next_endpoint_and_its_profile(
    bench: Bench,
) -> None:
    """The srtp-sdes endpoint answers RTP/AVP: the call goes to the next, offered with that endpoint's dtls-srtp profile."""
    uri, sipp = await sipp_plain_vendor(bench)
    try:
        peer = await bench.peer("dtls_srtp")
        await bench.start(endpoint_toml(uri, "srtp-sdes") + endpoint_toml(peer.uri, "dtls-srtp"))
        with capturedLogs() as events:
            result = await echo_call(bench, lambda: "DTLS-SRTP complete (audio/RTP)" in peer.log())
            await wait_until(lambda: sipp_received(bench, "BYE"), 10, "the first vendor leg's BYE")
        assert len(refusal_lines(list(events), uri, CAUSE)) == 1, [formatEvent(e) for e in events]
        assert sipp_received(bench, "INVITE") == 1 and sipp_received(bench, "BYE") == 1
        assert sipp_received(bench, "a=crypto:1 AES_CM_128_HMAC_SHA1_80") == 1  # SDES offered there
        assert "verified sha-256 fingerprint OK" in peer.log() and peer.running()
        assert_echoed_and_encrypted(bench, result)
        await released(bench.gateway)  # type: ignore[arg-type]
        assert media_calls(bench.gateway, "dtls-srtp") == 1  # type: ignore[arg-type]
        assert media_calls(bench.gateway, "srtp-sdes") == 0  # type: ignore[arg-type]
    finally:
        if sipp.poll() is None:
            sipp.terminate()
        sipp.wait(10)
