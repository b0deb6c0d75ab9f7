"""Audio both ways after each mid-call offer/answer case the gateway relays.

The sandbox's dialler (LiveVox) calls its echo bot (the AI vendor) through
the gateway's SIP part and relay, as in :mod:`tests.test_sip_audio`; then,
through the sandbox's admin API, one side makes a new offer or refuses the
other's: a re-INVITE refused 488 in each direction, a glare (both sides
re-INVITE at once, each answered 491), a body-less re-INVITE from LiveVox,
an UPDATE with a changed SDP. After each, the test waits for audio to keep
coming back to the dialler and reaching the bot, then checks the whole call's
RTP: none crossed from elsewhere, none malformed, none lost but, for an offer
naming a decoy port, the packets the relay sent there while the offer was
pending (RFC 3264: an offerer must be ready to receive at once).

A refused offer names a decoy port (a socket that only counts): a relay left
on the refused offer's address would send the rest of the call there.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from .sip_gateway import SipGateway
from .sip_helpers import wait_until, wait_until_async
from .test_sip_audio import bridged, http, make_ready

__all__ = ["bridged"]  # the fixture, imported for the tests below

pytestmark = pytest.mark.timeout(90)

#: Packets (50 a second) that must come back, and reach the bot, after each case.
AFTER = 100


async def call_up(base: str) -> tuple[str, str]:
    """Place a call that lasts until hung up; return the dialler's id and the bot's, once answered."""
    await make_ready(base, "AIVA1")
    status, body = await http(base, "POST", "/_sandbox/dial", {"agent": "AIVA1", "callDuration": 0})
    assert status == 201, body
    dial_id = body["call"]["id"]
    session = body["call"]["callSessionId"]
    bot: dict[str, Any] = {}

    async def answered() -> bool:
        _, result = await http(base, "GET", f"/_sandbox/calls/results/{dial_id}")
        _, calls = await http(base, "GET", "/_sandbox/echo-bot/calls")
        for call in calls["calls"]:
            headers = dict(call["headers"])
            if headers.get("X-LV-Session-ID") == session and call["state"] == "answered":
                bot.update(call)
        return result["call"]["state"] == "connected" and bool(bot)

    await wait_until_async(answered, 15, "the call to be answered at both ends")
    return dial_id, bot["id"]


async def dialler_call(base: str, dial_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The dialler's result and its probe's counts so far."""
    status, body = await http(base, "GET", f"/_sandbox/calls/results/{dial_id}")
    assert status == 200, body
    return body["call"], body["rtpNow"]


async def bot_call(base: str, bot_id: str) -> dict[str, Any]:
    """The echo bot's record of its end of the call."""
    status, body = await http(base, "GET", f"/_sandbox/echo-bot/calls/{bot_id}")
    assert status == 200, body
    call: dict[str, Any] = body["call"]
    return call


async def settled(base: str, dial_id: str, bot_id: str, dialler_n: int, bot_n: int) -> None:
    """Wait until the dialler has ``dialler_n`` offers settled and the bot ``bot_n``."""

    async def done() -> bool:
        result, _ = await dialler_call(base, dial_id)
        bot = await bot_call(base, bot_id)
        mine = [o for o in result["offers"] if o["code"] is not None]
        theirs = [o for o in bot["offers"] if o["code"] is not None]
        return len(mine) >= dialler_n and len(theirs) >= bot_n

    await wait_until_async(done, 15, f"{dialler_n} dialler and {bot_n} bot offers to be settled")


async def audio_flows_on(base: str, dial_id: str, bot_id: str) -> tuple[dict[str, Any], dict]:
    """Wait for AFTER more packets back at the dialler and at the bot than now; hang up; the final records."""
    _, before = await dialler_call(base, dial_id)
    assert before is not None, "the call ended before the audio check"
    bot_before = (await bot_call(base, bot_id))["rtp"]["received"]

    async def flowed() -> bool:
        _, now = await dialler_call(base, dial_id)
        bot = await bot_call(base, bot_id)
        assert now is not None, "the call ended during the audio check"
        return (
            now["received"] >= before["received"] + AFTER
            and bot["rtp"]["received"] >= bot_before + AFTER
        )

    await wait_until_async(flowed, 15, f"{AFTER} more packets both ways")
    status, body = await http(base, "POST", f"/_sandbox/dial/{dial_id}/hangup")
    assert status == 200, body

    async def done() -> bool:
        result, _ = await dialler_call(base, dial_id)
        return bool(result["done"])

    await wait_until_async(done, 15, "the dialler's call record to be final")
    result, _ = await dialler_call(base, dial_id)
    return result, await bot_call(base, bot_id)


def check_rtp(result: dict[str, Any], bot: dict[str, Any], decoy_received: int = 0) -> None:
    """No audio crossed, none malformed; lost only what went to a decoy while its offer was pending."""
    rtp = result["rtp"]
    assert rtp["foreign"] == 0 and rtp["malformed"] == 0, json.dumps(rtp)
    assert rtp["lost"] <= decoy_received, (rtp, decoy_received)
    assert bot["rtp"]["malformed"] == 0, bot["rtp"]
    assert bot["rtp"]["streams"] and len(bot["rtp"]["streams"]) == 1, bot["rtp"]
    if decoy_received == 0:
        assert result["audioOk"], json.dumps(result)


async def ended_cleanly(gateway: SipGateway) -> None:
    """The gateway took the call as hung up by the caller, not as failed."""
    await wait_until(lambda: not gateway.sip.router.live, 10, "the call to leave the call map")
    ends = [d for e, _, d in gateway.calls.events if e == "ended"]
    assert [d["reason"] for d in ends] == ["caller_hangup"], ends


@pytest.mark.parametrize("offerer", ["livevox", "vendor"])
@pytest_twisted.ensureDeferred
async def test_reinvite_refused_488_keeps_the_audio(
    bridged: tuple[SipGateway, str], offerer: str
) -> None:
    """One side offers a new port, the other refuses 488: the refusal comes back, the audio stays where it was."""
    gateway, base = bridged
    dial_id, bot_id = await call_up(base)
    ends = {"livevox": f"/_sandbox/dial/{dial_id}", "vendor": f"/_sandbox/echo-bot/calls/{bot_id}"}
    refuser = "vendor" if offerer == "livevox" else "livevox"
    status, body = await http(base, "POST", f"{ends[refuser]}/refuse-offer", {"code": 488})
    assert status == 200, body
    status, body = await http(
        base, "POST", f"{ends[offerer]}/offer", {"kind": "reinvite", "decoy": True}
    )
    assert status == 200, body
    await settled(base, dial_id, bot_id, 1, 1)
    result, bot = await audio_flows_on(base, dial_id, bot_id)
    records = {"livevox": result, "vendor": bot}
    [sent] = records[offerer]["offers"]
    assert (sent["kind"], sent["code"]) == ("reinvite", 488), sent
    assert [(o["kind"], o["code"]) for o in records[refuser]["offers"]] == [("received", 488)]
    check_rtp(result, bot, records[offerer]["decoyReceived"])
    # The offerer's audio came back to its own port after the refusal.
    assert records[offerer]["rtp"]["received"] >= sent["rtpReceived"] + AFTER
    await ended_cleanly(gateway)


@pytest_twisted.ensureDeferred
async def test_glare_is_answered_491_both_ways_and_keeps_the_audio(
    bridged: tuple[SipGateway, str],
) -> None:
    """Both sides re-INVITE at once: the offers cross and get 491; the call and its audio go on.

    Where the offers cross on the wire, each side answers the other's 491.
    Where they cross inside the gateway (a media engine whose SDP hook
    answers on a later turn), the gateway refuses one 491 and relays the
    other, which is then answered 200: both outcomes are RFC 3261's.
    """
    gateway, base = bridged
    dial_id, bot_id = await call_up(base)
    # Bad requests are refused, saying what is wrong, and change nothing.
    status, body = await http(base, "POST", f"/_sandbox/dial/{dial_id}/offer", {"kind": "hold"})
    assert status == 400 and "reinvite, bodyless, update" in body["message"], body
    status, body = await http(
        base, "POST", f"/_sandbox/echo-bot/calls/{bot_id}/refuse-offer", {"code": 200}
    )
    assert status == 400 and "300 to 699" in body["message"], body
    status, body = await http(base, "POST", "/_sandbox/dial/d999/glare")
    assert status == 404, body
    status, body = await http(base, "POST", f"/_sandbox/dial/{dial_id}/glare")
    assert status == 200, body

    async def both_settled() -> bool:
        result, _ = await dialler_call(base, dial_id)
        bot = await bot_call(base, bot_id)
        mine = [o for o in result["offers"] if o["kind"] == "reinvite"]
        theirs = [o for o in bot["offers"] if o["kind"] == "reinvite"]
        return all(o["code"] is not None for o in mine + theirs)

    await wait_until_async(both_settled, 15, "both crossing offers to be settled")
    result, bot = await audio_flows_on(base, dial_id, bot_id)
    [mine] = [o["code"] for o in result["offers"] if o["kind"] == "reinvite"]
    [theirs] = [o["code"] for o in bot["offers"] if o["kind"] == "reinvite"]
    assert {mine, theirs} <= {200, 491} and 491 in (mine, theirs), (result["offers"], bot["offers"])
    check_rtp(result, bot)
    await ended_cleanly(gateway)


@pytest.mark.parametrize("kind", ["bodyless", "update"])
@pytest_twisted.ensureDeferred
async def test_offer_from_livevox_keeps_the_audio(
    bridged: tuple[SipGateway, str], kind: str
) -> None:
    """LiveVox re-INVITEs without SDP, or sends an UPDATE with a new SDP version: answered 200, audio goes on.

    Body-less, the vendor's offer comes back in the 200 and LiveVox answers
    in the ACK; the UPDATE reaches the vendor as a re-INVITE.
    """
    gateway, base = bridged
    dial_id, bot_id = await call_up(base)
    status, body = await http(base, "POST", f"/_sandbox/dial/{dial_id}/offer", {"kind": kind})
    assert status == 200, body
    await settled(base, dial_id, bot_id, 1, 1)
    result, bot = await audio_flows_on(base, dial_id, bot_id)
    assert [(o["kind"], o["code"]) for o in result["offers"]] == [(kind, 200)]
    assert [(o["kind"], o["code"]) for o in bot["offers"]] == [("received", 200)]
    # What LiveVox was last told names the relay, not a hold.
    assert result["remoteMedia"]["host"] == "127.0.0.1", result["remoteMedia"]
    check_rtp(result, bot)
    await ended_cleanly(gateway)
