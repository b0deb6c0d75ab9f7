"""The sandbox's AI echo bot against a raw UDP stand-in for the gateway's B leg, over real loopback UDP."""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, cast

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher

from lvgateway.sandbox.echo_bot import EchoCall, EchoScript
from lvgateway.sandbox.rtp_media import RtpProbe, listen_rtp, parse_sdp, sdp_body
from lvgateway.sandbox.sandbox_sip import SandboxSip
from lvgateway.sandbox.simulator import Simulator
from lvgateway.sandbox.sip_testing import RawMessage, RawUac, UacDialog, sip_test_config

from .sip_helpers import wait_until

REACTOR: Any = reactor

#: The context headers the gateway puts on its B leg (docs/design.md), in documented case.
CONTEXT = [
    ("X-LVGW-Call-ID", "gw-0001"),
    ("X-LV-Agent", "AIVA1"),
    ("X-LV-DNIS", "+18990000001"),
    ("X-LV-ANI", "+19195550100"),
    ("X-LV-Session-ID", "U2DB327T5E18E8DC@10.101.21.216"),
    ("X-LV-Account", "1001"),
]

Start = Callable[..., SandboxSip]


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
async def uac() -> AsyncIterator[RawUac]:
    """A raw UAC on 127.0.0.1 standing in for the gateway's B leg."""
    peer = RawUac(REACTOR, "127.0.0.1")
    yield peer
    await peer.close()


@pytest_twisted.async_yield_fixture
async def start(errors: list[LogEvent]) -> AsyncIterator[Start]:
    """Start the sandbox's SIP half on 127.0.0.2 with ``[echo_bot]`` keys; stopped after, no errors logged."""
    started: list[SandboxSip] = []

    def _start(**echo_bot: Any) -> SandboxSip:
        config = sip_test_config(echo_bot=echo_bot)
        sip = SandboxSip(config, Simulator(config, REACTOR), REACTOR)
        sip.startService()
        started.append(sip)
        return sip

    yield _start
    for sip in started:
        await sip.stopService()
    assert not errors, "\n".join(str(e.get("text") or e.get("log_format")) for e in errors)


def call_bot(
    uac: RawUac, sip: SandboxSip, headers: list[tuple[str, str]] = CONTEXT
) -> tuple[UacDialog, RtpProbe, Any]:
    """Send the bot an INVITE with an SDP offer on a fresh RTP probe; return the dialog, probe and port."""
    probe = RtpProbe(REACTOR)
    port = listen_rtp(REACTOR, probe, "127.0.0.1")
    offer = sdp_body("127.0.0.1", port.getHost().port, session_id=7)  # type: ignore[attr-defined]
    dialog = uac.invite(sip.address(), headers=headers, sdp=offer)
    return dialog, probe, port


async def answered(uac: RawUac, dialog: UacDialog) -> RawMessage:
    """Wait, bounded, for the 200 to the INVITE."""
    await wait_until(lambda: dialog.final, 5, "a final answer from the bot")
    assert dialog.final == 200
    ok: RawMessage = [m for m in uac.responses("INVITE") if m.status == 200][0]
    return ok


def bot_call(sip: SandboxSip, dialog: UacDialog) -> EchoCall:
    """The bot's record of the call."""
    call = sip.echo_bot.call(dialog.call_id)
    assert call is not None
    return call


@pytest_twisted.ensureDeferred
async def test_answers_180_then_200_and_records_the_context_headers(
    uac: RawUac, start: Start
) -> None:
    """The bot rings, answers with its own SDP, and keeps the INVITE's headers in the case they came."""
    sip = start(call_duration=0)
    dialog, _, port = call_bot(uac, sip)
    try:
        ok = await answered(uac, dialog)
        statuses = [m.status for m in uac.responses("INVITE")]
        assert statuses[:3] == [100, 180, 200]
        media = parse_sdp(ok.body)
        assert media is not None and media.host == "127.0.0.2" and 0 in media.payload_types
        call = bot_call(sip, dialog)
        assert call.rtp_port == media.port and call.state == "answered"
        for name, value in CONTEXT:
            assert call.headers.has_exact(name) and call.headers.get(name) == value
        assert call.lvgw_call_id == "gw-0001" and sip.echo_bot.call("gw-0001") is call
        assert call.ani == "+19195550100" and call.dnis == "+18990000001"
        assert call.raw_invite is not None and "X-LVGW-Call-ID: gw-0001" in call.raw_invite
        uac.bye(dialog.call_id)
        await wait_until(lambda: not call.live, 5, "the call to end")
        assert call.ended_by == "peer" and call.peer_bye_headers() is not None
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_echoes_rtp_then_hangs_up_with_the_disposition_headers(
    uac: RawUac, start: Start
) -> None:
    """Every packet comes back; after call_duration the bot's BYE carries the disposition in documented case."""
    sip = start(call_duration=1.0, others=["echo", "bot"])
    dialog, probe, port = call_bot(uac, sip)
    try:
        ok = await answered(uac, dialog)
        media = parse_sdp(ok.body)
        assert media is not None
        probe.start((media.host, media.port))
        byes = await wait_until(lambda: uac.requests("BYE"), 5, "the bot's BYE")
        probe.stop()
        await wait_until(lambda: probe.received == probe.sent, 2, "the last echoes")
    finally:
        await port.stopListening()
    stats = probe.stats()
    assert 40 <= stats.sent <= 75 and stats.lost == 0 and stats.out_of_order == 0
    assert stats.foreign == stats.malformed == 0 and stats.latency_ms["p50"] < 100
    bye = byes[0].headers
    expected = {
        "X-LV-Term-Code": "AI Completed",
        "X-LV-Next-Action": "done",
        "X-LV-Call-Outcome": "completed",
        "X-LV-Result": "AGENT - Completed",
        "X-LV-Account": "1001",
        "X-LV-Other1": "echo",
        "X-LV-Other2": "bot",
    }
    for name, value in expected.items():
        assert bye.has_exact(name) and bye.get(name) == value, bye.names()
    call = bot_call(sip, dialog)
    assert call.ended_by == "bye" and call.disposition == expected
    assert call.echo is not None and call.echo.echoed == stats.sent
    assert call.echo.streams == [probe.stream_id.hex()]


@pytest_twisted.ensureDeferred
async def test_transfer_is_a_refer_with_the_transfer_disposition(uac: RawUac, start: Start) -> None:
    """A scripted transfer ends with REFER (Refer-To, X-LV-Next-Action: transfer), answered 202, then BYE."""
    sip = start(call_duration=0)
    rule = sip.echo_bot.script(EchoScript(transfer=True, call_duration=0.3))
    dialog, _, port = call_bot(uac, sip)
    try:
        await answered(uac, dialog)
        refers = await wait_until(lambda: uac.requests("REFER"), 5, "the bot's REFER")
        await wait_until(lambda: uac.requests("BYE"), 5, "the BYE after the REFER")
    finally:
        await port.stopListening()
    refer = refers[0].headers
    assert refer.get("X-LV-Next-Action") == "transfer" and refer.has_exact("X-LV-Next-Action")
    assert refer.get("X-LV-Term-Code") == "Transfer To Agent"
    assert refer.get("X-LV-Result") == "AGENT - Transfer"
    assert "sip:transfer@127.0.0.2" in (refer.get("Refer-To") or "")
    call = bot_call(sip, dialog)
    assert call.ended_by == "refer" and call.transfer and call.rule == rule.id
    assert sip.echo_bot.rules == []


@pytest_twisted.ensureDeferred
async def test_calls_whose_ani_matches_the_pattern_are_transferred(
    uac: RawUac, start: Start
) -> None:
    """transfer_ani_pattern picks the calls to transfer by X-LV-ANI; the others end with BYE."""
    sip = start(call_duration=0, transfer_ani_pattern=r"5550199$")
    headers = [("X-LV-ANI", "+19195550199")]
    transferred, _, port1 = call_bot(uac, sip, headers)
    kept, _, port2 = call_bot(uac, sip, [("X-LV-ANI", "+19195550100")])
    try:
        await answered(uac, transferred)
        await answered(uac, kept)
        assert bot_call(sip, transferred).transfer and not bot_call(sip, kept).transfer
        sip.echo_bot.end_call(transferred.call_id)
        sip.echo_bot.end_call(kept.call_id)
        await wait_until(lambda: uac.requests("REFER") and uac.requests("BYE"), 5, "REFER and BYE")
    finally:
        await port1.stopListening()
        await port2.stopListening()
    assert uac.requests("REFER")[0].call_id == transferred.call_id
    assert kept.call_id in [m.call_id for m in uac.requests("BYE")]


@pytest_twisted.ensureDeferred
async def test_scripted_rejection_then_the_default_again(uac: RawUac, start: Start) -> None:
    """A script with reject=486 and count=1 makes the next call busy; the one after is answered."""
    sip = start(call_duration=0)
    sip.echo_bot.script(EchoScript(reject=486), count=1)
    busy, _, port1 = call_bot(uac, sip)
    fine, _, port2 = call_bot(uac, sip)
    try:
        await wait_until(lambda: busy.final and fine.final, 5, "both final answers")
    finally:
        await port1.stopListening()
        await port2.stopListening()
    assert busy.final == 486 and fine.final == 200
    assert bot_call(sip, busy).ended_by == "rejected" and bot_call(sip, busy).final_code == 486
    assert 180 not in [m.status for m in uac.responses("INVITE") if m.call_id == busy.call_id]
    sip.echo_bot.end_call(fine.call_id)


@pytest_twisted.ensureDeferred
async def test_never_answering_until_cancelled(uac: RawUac, start: Start) -> None:
    """A never-answer script leaves the call ringing; the caller's CANCEL ends it with 487."""
    sip = start(call_duration=0)
    sip.echo_bot.script(EchoScript(never_answer=True))
    dialog, _, port = call_bot(uac, sip)
    try:
        await wait_until(
            lambda: [m for m in uac.responses("INVITE") if m.status == 180], 5, "180 Ringing"
        )
        uac.cancel(dialog.call_id)
        await wait_until(lambda: dialog.final, 5, "the 487")
    finally:
        await port.stopListening()
    assert dialog.final == 487
    assert uac.responses("CANCEL")[0].status == 200
    call = bot_call(sip, dialog)
    assert call.ended_by == "cancelled" and call.answered_at is None


@pytest_twisted.ensureDeferred
async def test_answer_delay_is_kept(uac: RawUac, start: Start) -> None:
    """With answer_delay 0.4 the 200 comes no sooner than 0.4 s after the INVITE."""
    sip = start(call_duration=0, answer_delay=0.4)
    sent_at = REACTOR.seconds()
    dialog, _, port = call_bot(uac, sip)
    try:
        await answered(uac, dialog)
        waited = REACTOR.seconds() - sent_at
    finally:
        await port.stopListening()
    assert waited >= 0.38
    call = bot_call(sip, dialog)
    assert call.answered_at is not None and call.answered_at - call.received_at >= 0.38
    sip.echo_bot.end_call(dialog.call_id)


@pytest_twisted.ensureDeferred
async def test_busy_beyond_max_concurrent_calls_and_update_is_answered(
    uac: RawUac, start: Start
) -> None:
    """A call over max_concurrent_calls gets 503; an in-dialog UPDATE (session refresh) gets 200."""
    sip = start(call_duration=0, max_concurrent_calls=1)
    first, _, port1 = call_bot(uac, sip)
    second, _, port2 = call_bot(uac, sip)
    try:
        await wait_until(lambda: first.final and second.final, 5, "both final answers")
        assert first.final == 200 and second.final == 503 and sip.echo_bot.refused == 1
        uac.send(
            "\n".join(
                [
                    f"UPDATE {first.remote_contact} SIP/2.0",
                    f"Via: SIP/2.0/UDP 127.0.0.1:{uac.port};branch=z9hG4bKupdate1",
                    f"From: {first.from_value};tag={first.from_tag}",
                    f"To: {first.to_value};tag={first.to_tag}",
                    f"Call-ID: {first.call_id}",
                    "CSeq: 5 UPDATE",
                    "Session-Expires: 1800;refresher=uac",
                ]
            )
            + "\n\n",
            sip.address(),
        )
        await wait_until(lambda: uac.responses("UPDATE"), 5, "an answer to UPDATE")
        assert uac.responses("UPDATE")[0].status == 200
        assert bot_call(sip, first).peer_requests[0][0] == "UPDATE"
    finally:
        await port1.stopListening()
        await port2.stopListening()


@pytest_twisted.ensureDeferred
async def test_stopping_with_a_bye_unanswered_leaves_no_timer_behind(
    uac: RawUac, errors: list[LogEvent]
) -> None:
    """Stop hangs up, waits a bounded time for the BYE's answer, and no retransmission outlives the stack."""
    config = sip_test_config(echo_bot={"call_duration": 0})
    sip = SandboxSip(config, Simulator(config, REACTOR), REACTOR)
    sip.startService()
    dialog, _, port = call_bot(uac, sip)
    try:
        await answered(uac, dialog)
        uac.silent = True
        tm = sip.stack.tm
        started = REACTOR.seconds()
        await sip.stopService()
        assert REACTOR.seconds() - started < 3
        byes = len(uac.requests("BYE"))
        assert byes >= 1
        # Sippy would retransmit the BYE within 0.5 s if its timers were left armed.
        await wait_until(lambda: REACTOR.seconds() - started > 3.2, 5, "a second past the stop")
        assert len(uac.requests("BYE")) == byes and not errors
        tm.unregConsumer(object(), dialog.call_id)  # a UA going dead after the stop: no error
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_reinvite_with_a_new_offer_is_answered_with_the_bots_sdp(
    uac: RawUac, start: Start
) -> None:
    """A re-INVITE moving the gateway's media is answered 200 with the bot's own SDP, and noted."""
    sip = start(call_duration=0)
    dialog, _, port = call_bot(uac, sip)
    try:
        ok = await answered(uac, dialog)
        uac.reinvite(dialog.call_id, sdp_body("127.0.0.1", 40002, session_id=7, version=2))
        await wait_until(lambda: dialog.reinvite_answer, 5, "the answer to the re-INVITE")
    finally:
        await port.stopListening()
    answer = dialog.reinvite_answer
    assert answer is not None and answer.status == 200
    assert parse_sdp(answer.body) == parse_sdp(ok.body)
    call = bot_call(sip, dialog)
    assert call.remote_media is not None and call.remote_media.port == 40002
    assert call.state == "answered"


@pytest_twisted.ensureDeferred
async def test_silent_script_sends_nothing_until_cancelled(uac: RawUac, start: Start) -> None:
    """A silent script leaves the INVITE and its retransmission unanswered; only a CANCEL gets answers."""
    sip = start(call_duration=0)
    sip.echo_bot.script(EchoScript(silent=True))
    dialog, _, port = call_bot(uac, sip)
    try:
        uac.send(dialog.invite, dialog.target)  # a retransmission
        await wait_until(lambda: sip.echo_bot.calls, 5, "the bot to see the INVITE")
        uac.cancel(dialog.call_id)
        await wait_until(lambda: dialog.final, 5, "the 487 after CANCEL")
    finally:
        await port.stopListening()
    assert [m.status for m in uac.responses("INVITE")] == [487]
    call = bot_call(sip, dialog)
    assert call.ended_by == "ignored" and len(sip.echo_bot.calls) == 1
