"""The sandbox's LiveVox dialler against a raw UDP stand-in for the gateway, over real loopback UDP."""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher

from lvgateway.sandbox.dialler import CallResult, DialError
from lvgateway.sandbox.rtp_media import encode_rtp, probe_payload, sdp_body
from lvgateway.sandbox.sandbox_sip import SandboxSip
from lvgateway.sandbox.simulator import Simulator
from lvgateway.sandbox.sip_testing import RawMessage, RawUas, sip_test_config
from lvgateway.sandbox.testing import SimDriver

from .sip_helpers import wait_until

REACTOR: Any = reactor

Start = Callable[..., tuple[SandboxSip, Simulator]]


@pytest_twisted.async_yield_fixture
async def uas() -> AsyncIterator[RawUas]:
    """A raw UAS on 127.0.0.1 standing in for the gateway: 180, then 200 with an RTP echo."""
    peer = RawUas(REACTOR, "127.0.0.1")
    yield peer
    await peer.close()


@pytest.fixture
def errors() -> Iterator[list[LogEvent]]:
    """Error events logged while the test runs (Sippy's swallowed tracebacks included)."""
    seen: list[LogEvent] = []

    def observe(event: LogEvent) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            seen.append(event)

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


@pytest_twisted.async_yield_fixture
async def start(errors: list[LogEvent]) -> AsyncIterator[Start]:
    """Start a simulator and the sandbox's SIP half on 127.0.0.2, dialling ``gateway``; stopped after, no errors logged."""
    started: list[SandboxSip] = []

    def _start(gateway: RawUas, ready: tuple[str, ...] = ("AIVA1",), **dialler: Any) -> Any:
        config = sip_test_config(dialler={"gateway_port": gateway.port, **dialler})
        simulator = Simulator(config, REACTOR)
        driver = SimDriver(simulator)
        for agent in ready:
            driver.ready_agent(agent)
        sip = SandboxSip(config, simulator, REACTOR)
        sip.startService()
        started.append(sip)
        return sip, simulator

    yield _start
    for sip in started:
        await sip.stopService()
    assert not errors, "\n".join(str(e.get("text") or e.get("log_format")) for e in errors)


async def finished(sip: SandboxSip, result: CallResult, bound: float = 8) -> CallResult:
    """Wait, bounded, for a call's final result."""
    await wait_until(lambda: result.done, bound, f"call {result.id} to finish")
    return result


async def invite_at(uas: RawUas, bound: float = 5) -> RawMessage:
    """Wait, bounded, for the first INVITE at the raw UAS."""
    invites = await wait_until(lambda: uas.requests("INVITE"), bound, "an INVITE at the UAS")
    first: RawMessage = invites[0]
    return first


@pytest_twisted.ensureDeferred
async def test_invite_is_shaped_like_the_livevox_sample(uas: RawUas, start: Start) -> None:
    """The INVITE has the sample's Request-URI, headers in documented case, and Session-ID = callSessionId."""
    sip, simulator = start(uas, call_duration=0)
    result = sip.dialler.dial()
    invite = await invite_at(uas)
    line = simulator.agent("AIVA1")
    assert line.current_call is not None and line.state.value == "INCALL"
    assert invite.start == f"INVITE sip:+18990000001@127.0.0.1:{uas.port} SIP/2.0"
    h = invite.headers
    for name in (
        "Record-Route",
        "Session-ID",
        "Session-Expires",
        "Supported",
        "Allow",
        "Carrier-Name",
        "Pool-Name",
        "Session-Privacy",
        "X-Lv-Destination-Ip",
        "X-Lv-Destination-Port",
        "Max-Forwards",
        "Call-ID",
        "CSeq",
        "Contact",
        "Content-Type",
    ):
        assert h.has_exact(name), f"{name} missing or re-cased: {h.names()}"
    assert h.get("Session-ID") == line.current_call.call_session_id == result.call_session_id
    assert h.get("Session-Expires") == "1800;refresher=uac"
    assert h.get("Supported") == "timer"
    assert h.get("Max-Forwards") == "68"
    assert {"INVITE", "BYE", "REFER", "UPDATE"} <= {
        m.strip() for m in (h.get("Allow") or "").split(",")
    }
    assert h.get("Carrier-Name") == "tmis" and h.get("Pool-Name") == "carrierinbound"
    assert h.get("Session-Privacy") == "no" and h.get("X-Lv-Destination-Ip") == ""
    assert len(h.get_all("Record-Route")) == 3 and len(h.get_all("Via")) == 3
    assert (h.get("From") or "").startswith("<sip:+19195550100@127.0.0.2")
    assert ";tag=telstage-" in (h.get("From") or "")
    assert h.get("X-transaction-id") is None and h.get("X-agent-login-id") is None
    assert "m=audio " in invite.body and "RTP/AVP 0" in invite.body
    assert result.call_transaction_id == line.current_call.call_transaction_id
    sip.dialler.hangup(result.id)
    await finished(sip, result)


@pytest_twisted.ensureDeferred
async def test_transaction_id_header_only_when_asked(uas: RawUas, start: Start) -> None:
    """X-transaction-id (and X-agent-login-id) carry the simulator call's ids when asked for."""
    sip, simulator = start(uas, call_duration=0)
    result = sip.dialler.dial(include_transaction_id=True, include_agent_login_id=True)
    invite = await invite_at(uas)
    assert invite.headers.has_exact("X-transaction-id")
    assert invite.headers.get("X-transaction-id") == result.call_transaction_id
    assert invite.headers.get("X-agent-login-id") == "AIVA1"
    assert result.transaction_id_sent
    sip.dialler.hangup(result.id)
    await finished(sip, result)


@pytest_twisted.ensureDeferred
async def test_rtp_is_echoed_and_counted_then_bye_and_wrapup(uas: RawUas, start: Start) -> None:
    """After the call duration: BYE routed to the gateway, every packet back, latency measured, line WRAPUP."""
    sip, simulator = start(uas, call_duration=1.0)
    result = await finished(sip, sip.dialler.dial())
    assert result.state == "ended" and result.ended_by == "dialler"
    assert result.final_code == 200 and result.provisional == [180]
    rtp = result.rtp
    assert rtp is not None
    assert 40 <= rtp.sent <= 60, rtp
    assert rtp.received == rtp.sent and rtp.lost == 0 and rtp.in_flight == 0
    assert rtp.duplicates == rtp.out_of_order == rtp.foreign == rtp.malformed == 0
    assert 0 < rtp.latency_ms["p50"] < 100 and rtp.latency_ms["max"] >= rtp.latency_ms["min"]
    assert result.audio_ok
    dialog = uas.dialogs[result.sip_call_id]
    assert dialog.acked and dialog.bye is not None
    assert dialog.echo is not None and dialog.echo.received == rtp.sent
    assert result.wrapup == "WRAPUP"
    line = simulator.agent("AIVA1")
    assert line.state.value == "WRAPUP"
    assert line.current_call is not None and line.current_call.ended is not None


@pytest_twisted.ensureDeferred
async def test_gateway_bye_ends_the_call_and_its_headers_are_kept(
    uas: RawUas, start: Start
) -> None:
    """A BYE from the gateway ends the call (in-dialog, routed by Record-Route); its headers keep their case."""
    sip, simulator = start(uas, call_duration=0)
    result = sip.dialler.dial()
    await wait_until(lambda: result.rtp_port and result.state == "connected", 5, "the answer")
    await wait_until(lambda: uas.dialogs[result.sip_call_id].echo.received >= 10, 5, "audio")  # type: ignore[union-attr]
    uas.send_bye(result.sip_call_id, [("X-LVGW-Call-ID", "gw-42"), ("Reason", "Q.850;cause=16")])
    await finished(sip, result)
    assert result.ended_by == "gateway" and result.state == "ended"
    bye = result.gateway_bye_headers()
    assert bye is not None and bye.has_exact("X-LVGW-Call-ID") and bye.get("Reason")
    assert uas.responses("BYE")[0].status == 200
    assert result.rtp is not None and result.rtp.lost == 0 and result.rtp.received > 0
    assert simulator.agent("AIVA1").state.value == "WRAPUP"


@pytest_twisted.ensureDeferred
async def test_rejected_call_fails_and_the_line_goes_to_wrapup(start: Start) -> None:
    """A 486 from the gateway fails the call, with no audio, and the simulator's line is moved to WRAPUP."""
    busy = RawUas(REACTOR, "127.0.0.1", answer=486)
    try:
        sip, simulator = start(busy)
        result = await finished(sip, sip.dialler.dial())
        assert result.state == "failed" and result.ended_by == "rejected"
        assert result.final_code == 486 and result.answered_at is None
        assert result.rtp is not None and result.rtp.sent == 0 and not result.audio_ok
        assert result.wrapup == "WRAPUP" and simulator.agent("AIVA1").state.value == "WRAPUP"
        assert busy.requests("ACK"), "the 486 was not acknowledged"
    finally:
        await busy.close()


@pytest_twisted.ensureDeferred
async def test_no_answer_is_cancelled_after_the_setup_timeout(start: Start) -> None:
    """A gateway that never answers gets a CANCEL after setup_timeout; the call fails as setup_timeout."""
    silent = RawUas(REACTOR, "127.0.0.1", answer=None)
    try:
        sip, _ = start(silent, setup_timeout=0.5)
        result = await finished(sip, sip.dialler.dial())
        assert result.ended_by == "setup_timeout" and result.state == "failed"
        assert silent.requests("CANCEL")
        assert result.ended_at is not None and result.ended_at - result.started_at >= 0.45
    finally:
        await silent.close()


@pytest_twisted.ensureDeferred
async def test_crossed_and_stray_packets_are_counted_apart(uas: RawUas, start: Start) -> None:
    """A packet of another call's stream counts as foreign, junk as malformed, neither as received."""
    sip, _ = start(uas, call_duration=0)
    result = sip.dialler.dial()
    await wait_until(lambda: result.state == "connected", 5, "the answer")
    assert result.rtp_port is not None
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        other = encode_rtp(probe_payload(b"otherone", 0, 0.0), sequence=0, timestamp=0, ssrc=7)
        stranger.sendto(other, ("127.0.0.2", result.rtp_port))
        stranger.sendto(b"not rtp at all", ("127.0.0.2", result.rtp_port))
        live = sip.dialler._live[result.id]
        await wait_until(lambda: live.probe.foreign and live.probe.malformed, 5, "the strays")
    finally:
        stranger.close()
    sip.dialler.hangup(result.id)
    await finished(sip, result)
    assert result.rtp is not None
    assert result.rtp.foreign == 1 and result.rtp.malformed == 1 and not result.audio_ok
    assert result.rtp.lost == 0


@pytest_twisted.ensureDeferred
async def test_rate_and_concurrency_bounds_refuse_without_touching_the_simulator(
    uas: RawUas, start: Start
) -> None:
    """Over max_call_rate a dial is refused 429, over max_concurrent_calls 503, and no agent is used."""
    sip, simulator = start(
        uas, ready=("AIVA1", "AIVA2", "AIVA3"), call_duration=0, max_call_rate=1.0
    )
    first = sip.dialler.dial()
    with pytest.raises(DialError) as refused:
        sip.dialler.dial()
    assert refused.value.status == 429 and refused.value.reason == "rate"
    assert sorted(a["state"] for a in simulator.agent_states()) == ["INCALL", "READY", "READY"]
    sip.dialler.hangup(first.id)
    await finished(sip, first)

    sip2, simulator2 = start(uas, ready=("AIVA1", "AIVA2"), call_duration=0, max_concurrent_calls=1)
    up = sip2.dialler.dial()
    with pytest.raises(DialError) as busy:
        sip2.dialler.dial()
    assert busy.value.status == 503 and busy.value.reason == "concurrency"
    assert sip2.dialler.refused == {"concurrency": 1}
    sip2.dialler.hangup(up.id)
    await finished(sip2, up)


@pytest_twisted.ensureDeferred
async def test_no_ready_agent_and_unknown_agent_are_refused(uas: RawUas, start: Start) -> None:
    """No READY agent is a 409, a named unknown agent a 404; nothing is sent."""
    sip, _ = start(uas, ready=())
    with pytest.raises(DialError) as none_ready:
        sip.dialler.dial()
    assert none_ready.value.status == 409 and none_ready.value.reason == "no_ready_agent"
    with pytest.raises(DialError) as unknown:
        sip.dialler.dial("NOBODY")
    assert unknown.value.status == 404
    assert uas.messages == []


@pytest_twisted.ensureDeferred
async def test_automatic_dialler_keeps_to_its_rate_and_count(uas: RawUas, start: Start) -> None:
    """start_auto(rate=5, count=3) places three calls about 0.2 s apart, to the longest-READY agents, then stops."""
    sip, simulator = start(uas, ready=("AIVA2", "AIVA1", "AIVA3"), call_duration=0.3)
    sip.dialler.start_auto(rate=5.0, count=3)
    await wait_until(lambda: len(sip.dialler.results) == 3, 5, "three automatic calls")
    results = list(sip.dialler.results)
    for result in results:
        await finished(sip, result)
    starts = [r.started_at for r in results]
    assert all(b - a >= 0.15 for a, b in zip(starts, starts[1:], strict=False)), starts
    assert [r.agent for r in results] == ["AIVA2", "AIVA1", "AIVA3"]
    summary = sip.dialler.summary()
    assert summary["auto"]["running"] is False and summary["auto"]["placed"] == 3
    assert summary["placed"] == 3 and summary["audioOk"] == 3
    with pytest.raises(ValueError):
        sip.dialler.start_auto(rate=1000.0)


@pytest_twisted.ensureDeferred
async def test_session_refresh_reinvites_and_a_gateway_reinvite_moves_the_audio(
    uas: RawUas, start: Start
) -> None:
    """With session_refresh the dialler re-INVITEs; a re-INVITE from the gateway is answered and audio follows it."""
    sip, _ = start(uas, call_duration=0, session_refresh=0.3)
    result = sip.dialler.dial()
    await wait_until(lambda: result.state == "connected", 5, "the answer")

    def refreshes() -> list[RawMessage]:
        return [m for m in uas.requests("INVITE") if ";tag=" in (m.headers.get("To") or "")]

    await wait_until(lambda: len(refreshes()) >= 2, 5, "two refreshing re-INVITEs")
    assert all(m.headers.get("Call-ID") == result.sip_call_id for m in refreshes())
    moved, moved_port = uas.open_echo()
    offer = sdp_body("127.0.0.1", moved_port, session_id=1, version=2)
    uas.send_request(result.sip_call_id, "INVITE", body=offer)
    answers = await wait_until(
        lambda: [m for m in uas.responses("INVITE") if m.status == 200], 5, "the dialler's 200"
    )
    assert "m=audio " in answers[0].body
    await wait_until(lambda: moved.received >= 5, 5, "audio at the new address")
    assert result.remote_media is not None and result.remote_media.port == moved_port
    sip.dialler.hangup(result.id)
    await finished(sip, result)
    assert result.ended_by == "dialler" and result.rtp is not None and result.rtp.foreign == 0
