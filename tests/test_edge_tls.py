"""The vendor leg over TLS through the Kamailio edge, against baresip as a real TLS-only vendor.

The gateway's SIP part runs in the test process; the edge's Kamailio runs
from the files and command line the gateway's own driver renders; baresip
answers on TLS with its echo module. Certificates come from a CA the test
makes. Every test checks that Kamailio and baresip really ran.
"""

from __future__ import annotations

import signal
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import deferLater

from lvgateway.edge.service import edge_service

from .edge_peers import (
    DOMAIN,
    Authority,
    Baresip,
    EdgeLog,
    free_port_pair,
    start_baresip,
    watch_edge_log,
)
from .rtpengine_process import rtpengine, rtpengine_toml, running
from .sip_gateway import SipGateway, free_udp_port, sipp, start_gateway
from .sip_helpers import wait_until, wait_until_async
from .test_sandbox_sip_process import free_port
from .test_sip_audio import http, make_ready, sandbox_answers, start_sandbox

pytestmark = pytest.mark.timeout(60)

LIVEVOX = "127.0.0.3"


@attrs.frozen
class Pki:
    """The test's CA, a CA nobody trusts, and the vendor certificates they issued."""

    ca: Authority
    good: Path
    other_name: Path
    expired: Path
    untrusted: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A throwaway CA and the certificates of each case."""
    folder = tmp_path / "pki"
    folder.mkdir()
    ca = Authority.make(folder, "test-ca")
    stranger = Authority.make(folder, "stranger-ca")
    return Pki(
        ca,
        ca.issue(folder, "good.pem", DOMAIN),
        ca.issue(folder, "other-name.pem", "other.test"),
        ca.issue(folder, "expired.pem", DOMAIN, expired=True),
        stranger.issue(folder, "untrusted.pem", DOMAIN),
    )


@pytest.fixture
def edge_log() -> Iterator[EdgeLog]:
    """The gateway's log lines from and about the edge."""
    yield from watch_edge_log()


def edge_toml(ca_file: Path) -> str:
    """An [edge] section on free loopback ports, trusting ``ca_file``."""
    port = free_port_pair()
    return (
        f'\n[edge]\nlisten_port = {port}\ntls_port = {port + 1}\nca_file = "{ca_file}"\n'
        "transaction_timeout = 2.0\n"
    )


def tls_endpoint(bs: Baresip, media_profile: str = "rtp") -> str:
    """The vendor endpoint: baresip's TLS port under the vendor's domain, its address given to the edge."""
    return (
        f'[[vendor.endpoints]]\nuri = "sip:bot@{DOMAIN}:{bs.tls_port};transport=tls"\n'
        f'edge_address = "127.0.0.1"\nmedia_profile = "{media_profile}"\n'
    )


def probed_through_the_edge(gateway: SipGateway, vendor: Baresip) -> bool:
    """Whether a probe reached baresip and a later round was judged answered (the edge checked its name).

    The rounds before Kamailio listens go unanswered and may pause the agents;
    an answered round resumes them.
    """
    health = gateway.sip.health
    return (
        len(vendor.requests("OPTIONS")) >= 2
        and health.failed_rounds == 0
        and not health.paused
        and gateway.readiness.failures().get("vendor") is None
    )


@attrs.define
class Bench:
    """A gateway, its running edge and a baresip vendor."""

    gateway: SipGateway
    vendor: Baresip
    edge: EdgeLog
    edge_service: object


async def bench_for(tmp_path: Path, certificate: Path, ca: Authority, log: EdgeLog) -> Bench:
    """Start baresip with ``certificate``, the edge trusting ``ca``, and the gateway through it."""
    vendor = await start_baresip(tmp_path / "baresip", certificate, ca.cert_file)
    gateway = start_gateway(
        tmp_path,
        [],
        endpoints=tls_endpoint(vendor),
        extra_toml=edge_toml(ca.cert_file),
        allowed=f'["{LIVEVOX}/32"]',
        health_interval=0.5,
    )
    service = edge_service(reactor, gateway.config)
    assert service is not None
    service.startService()
    await wait_until(
        lambda: (
            any("Listening on" in line for line in log.lines)
            or any("ERROR" in line for line in log.lines)
        ),
        15,
        "Kamailio to listen",
    )
    assert not any("ERROR" in line for line in log.lines), "\n".join(log.lines)
    return Bench(gateway, vendor, log, service)


async def stop(bench: Bench) -> None:
    """Stop the gateway, the edge and baresip."""
    await bench.gateway.stop()
    await bench.edge_service.stopService()  # type: ignore[attr-defined]
    await bench.vendor.stop()


@pytest_twisted.async_yield_fixture
async def trusted(tmp_path: Path, pki: Pki, edge_log: EdgeLog) -> AsyncIterator[Bench]:
    """baresip with a certificate for the vendor's domain from the trusted CA."""
    bench = await bench_for(tmp_path, pki.good, pki.ca, edge_log)
    yield bench
    await stop(bench)


@pytest_twisted.ensureDeferred
async def test_a_call_goes_over_tls_with_the_vendors_domain_in_the_request_uri(
    trusted: Bench,
) -> None:
    """The INVITE reaches baresip over TLS, addressed to the configured domain; LiveVox's BYE ends both legs."""
    gateway, vendor = trusted.gateway, trusted.vendor
    await wait_until(
        lambda: probed_through_the_edge(gateway, vendor),
        15,
        "the health probe to reach baresip through the edge",
    )
    livevox = sipp(
        "livevox_call.xml",
        LIVEVOX,
        ("127.0.0.1", gateway.port),
        service="+18990000001",
        hold_ms=1500,
    )
    result = await livevox
    assert result.code == 0, result
    invites = vendor.requests("INVITE")
    assert invites and invites[0].startswith(f"INVITE sip:bot@{DOMAIN}:"), invites
    assert "transport=tls" in invites[0]
    # baresip's trace names the transport each message came over.
    assert vendor.transports("INVITE") == ["TLS"], vendor.output[-40:]
    await wait_until(lambda: vendor.requests("BYE"), 5, "the BYE to reach baresip")
    await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    events = [e for e, _, _ in gateway.calls.events]
    assert events == ["accept", "connected", "ended"], events
    assert any("INVITE sip:bot@vendor.test" in line for line in trusted.edge.lines)


@pytest.mark.parametrize("case", ["other_name", "expired", "untrusted"])
@pytest_twisted.ensureDeferred
async def test_a_vendor_certificate_that_fails_gets_no_call_and_livevox_503(
    tmp_path: Path, pki: Pki, edge_log: EdgeLog, case: str
) -> None:
    """A certificate for another name, expired, or from an unknown CA: no INVITE reaches the vendor, LiveVox gets 503, the reason is logged."""
    bench = await bench_for(tmp_path, getattr(pki, case), pki.ca, edge_log)
    try:
        gateway, vendor = bench.gateway, bench.vendor
        try:
            await wait_until(lambda: edge_log.warnings, 15, "the gateway to log the edge's reason")
        except AssertionError as e:
            raise AssertionError("\n".join(edge_log.everything[-60:])) from e
        template = (Path(__file__).parent / "sipp" / "livevox_refused.xml").read_text()
        scenario = tmp_path / "refused_503.xml"
        scenario.write_text(template.replace("EXPECTED_CODE", "503"))
        result = await sipp(
            str(scenario), LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        assert result.code == 0, result
        assert vendor.requests("INVITE") == []
        # The health probe through the edge fails too: /readyz says the vendor is unavailable.
        await wait_until(
            lambda: gateway.readiness.failures().get("vendor"), 10, "/readyz to refuse"
        )
        reason = " ".join(edge_log.warnings)
        if case == "other_name":
            assert "names other.test, not vendor.test" in reason, reason
        else:
            assert "certificate did not verify" in reason, reason
        assert len([w for w in edge_log.warnings if DOMAIN in w]) == 1, edge_log.warnings
        # Kamailio really tried: its TLS handshake or its check is in its log.
        assert any("vendor.test" in line or "tls" in line.lower() for line in edge_log.lines)
    finally:
        await stop(bench)


@pytest.mark.parametrize("profile", ["rtp", "srtp-sdes"])
@pytest_twisted.ensureDeferred
async def test_audio_is_echoed_through_the_edge_and_the_vendor_can_hang_up(
    tmp_path: Path, pki: Pki, edge_log: EdgeLog, profile: str
) -> None:
    """The sandbox's dialler calls through the gateway and the edge to baresip's echo; baresip's BYE ends the call.

    With ``srtp-sdes``, the vendor leg is what a hosted platform asks of a
    trunk: SIP over TLS through the edge, and SDES-SRTP toward baresip
    (``mediaenc=srtp-mand``) from rtpengine, plain RTP toward LiveVox.
    """
    async with AsyncExitStack() as stack:
        media = ""
        if profile != "rtp":
            daemon = await stack.enter_async_context(rtpengine(tmp_path))
            media = rtpengine_toml([daemon])
        await _echo_through_the_edge(tmp_path, pki, profile, media)
        if profile != "rtp":
            assert running(daemon), daemon.text()


async def _echo_through_the_edge(tmp_path: Path, pki: Pki, profile: str, media: str) -> None:
    sandbox_sip = free_udp_port("127.0.0.2")
    vendor = await start_baresip(
        tmp_path / "baresip",
        pki.good,
        pki.ca.cert_file,
        mediaenc="srtp-mand" if profile == "srtp-sdes" else None,
    )
    gateway = start_gateway(
        tmp_path,
        [],
        endpoints=tls_endpoint(vendor, profile),
        extra_toml=edge_toml(pki.ca.cert_file) + media,
        allowed='["127.0.0.2/32"]',
        health_interval=0.5,
        engine="rtpengine" if media else None,
    )
    service = edge_service(reactor, gateway.config)
    assert service is not None
    service.startService()
    http_port = free_port("127.0.0.1", socket.SOCK_STREAM)
    sandbox = start_sandbox(tmp_path, sandbox_sip, gateway.port, http_port)
    base = f"http://127.0.0.1:{http_port}"
    try:
        await wait_until(
            lambda: probed_through_the_edge(gateway, vendor),
            15,
            "the health probe to reach baresip through the edge",
        )
        await wait_until_async(lambda: sandbox_answers(base), 30, "the sandbox to answer")
        await make_ready(base, "AIVA1")
        status, body = await http(
            base, "POST", "/_sandbox/dial", {"agent": "AIVA1", "callDuration": 20}
        )
        assert status == 201, body
        call = body["call"]["id"]
        await wait_until(
            lambda: "connected" in [e for e, _, _ in gateway.calls.events],
            10,
            "the call to connect",
        )
        await deferLater(
            reactor, 2.0, lambda: None
        )  # two seconds of audio, then the vendor hangs up
        await vendor.hang_up()
        result: dict[str, Any] = {}

        async def finished() -> bool:
            _, found = await http(base, "GET", "/_sandbox/calls/results")
            result.update({r["id"]: r for r in found["results"] if r["done"] and r["id"] == call})
            return call in result

        await wait_until_async(finished, 15, "the dialler's call to end")
        rtp = result[call]["rtp"]
        assert rtp["received"] >= 50, rtp  # baresip echoed the audio back through the gateway
        assert rtp["foreign"] == 0, rtp
        await wait_until(lambda: not gateway.sip.router.live, 10, "the call to leave the call map")
        ended = [d for e, _, d in gateway.calls.events if e == "ended"]
        assert ended and ended[0]["reason"] == "vendor_hangup", ended
        assert vendor.transports("INVITE") == ["TLS"] and vendor.transports("BYE") == [
            "TLS"
        ]  # its own BYE, sent over TLS
        if profile == "srtp-sdes":
            assert any("SRTP is Enabled" in line for line in vendor.output), vendor.output[-30:]
            await wait_until(
                lambda: gateway.registry.get_sample_value(
                    "lvgateway_media_calls_total", {"profile": "srtp-sdes"}
                )
                == 1,
                10,
                "the srtp-sdes call to be counted",
            )
    finally:
        (tmp_path / "baresip.log").write_text(
            "\n".join(vendor.output)
        )  # for a failure's post-mortem
        sandbox.send_signal(signal.SIGTERM)
        await wait_until(lambda: sandbox.poll() is not None, 15, "the sandbox to exit")
        await gateway.stop()
        await service.stopService()
        await vendor.stop()


@pytest_twisted.ensureDeferred
async def test_a_udp_vendor_is_reached_through_the_edge_too(
    tmp_path: Path, pki: Pki, edge_log: EdgeLog
) -> None:
    """With [edge], a plain UDP endpoint goes through Kamailio as well; the call and its BYE pass."""
    vendor_port = free_udp_port("127.0.0.3")
    gateway = start_gateway(
        tmp_path,
        [vendor_port],
        extra_toml=edge_toml(pki.ca.cert_file),
        allowed=f'["{LIVEVOX}/32", "127.0.0.3/32"]',
    )
    service = edge_service(reactor, gateway.config)
    assert service is not None
    service.startService()
    try:
        await wait_until(
            lambda: any("Listening on" in line for line in edge_log.lines), 15, "Kamailio"
        )
        vendor = sipp("vendor_answer.xml", "127.0.0.3", port=vendor_port)
        livevox = sipp(
            "livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        for run in (livevox, vendor):
            result = await run
            assert result.code == 0, str(result) + "\n".join(edge_log.lines[-20:])
        assert any(f"INVITE sip:bot@127.0.0.3:{vendor_port}" in line for line in edge_log.lines), (
            edge_log.lines[-20:]
        )
    finally:
        await gateway.stop()
        await service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_tcp_vendor_is_reached_over_tcp_by_the_edge(
    tmp_path: Path, pki: Pki, edge_log: EdgeLog
) -> None:
    """transport=tcp: Kamailio opens TCP to SIPp's uas (listening on TCP only); the call completes."""
    vendor_port = free_tcp_port("127.0.0.3")
    gateway = start_gateway(
        tmp_path,
        [],
        endpoints=(
            f'[[vendor.endpoints]]\nuri = "sip:bot@127.0.0.3:{vendor_port};transport=tcp"\n'
        ),
        extra_toml=edge_toml(pki.ca.cert_file),
        allowed=f'["{LIVEVOX}/32"]',
    )
    service = edge_service(reactor, gateway.config)
    assert service is not None
    service.startService()
    try:
        await wait_until(
            lambda: any("Listening on" in line for line in edge_log.lines), 15, "Kamailio"
        )
        vendor = sipp("", "127.0.0.3", port=vendor_port, extra=["-sn", "uas", "-t", "t1"])
        livevox = sipp(
            "livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        for run in (livevox, vendor):
            result = await run
            assert result.code == 0, str(result) + "\n".join(edge_log.lines[-20:])
        assert any(
            "INVITE sip:bot@127.0.0.3" in line and "via tcp" in line for line in edge_log.lines
        ), edge_log.lines[-20:]
    finally:
        await gateway.stop()
        await service.stopService()


def free_tcp_port(host: str) -> int:
    """A TCP port free on ``host`` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port
