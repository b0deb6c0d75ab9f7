"""Legs a crash left up: the SIP part ends each saved dialog with BYE, SIPp playing LiveVox and the vendor."""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.logger import capturedLogs, formatEvent

from lvgateway.sip.orphans import CSEQ_SKIP, end_orphaned
from lvgateway.sip.stack import SipStack

from .sip_dialog_peers import REACTOR, dialog_with, peer_waiting_for, start_stack
from .sip_gateway import free_udp_port

pytestmark = pytest.mark.timeout(60)


@pytest_twisted.async_yield_fixture
async def stack() -> AsyncIterator[SipStack]:
    """A SIP stack on 127.0.0.1, port picked by the kernel."""
    sip = start_stack()
    yield sip
    sip.stopService()


def messages(events: list[Any]) -> list[str]:
    """The text of every captured log event."""
    return [formatEvent(e) for e in events]


@pytest_twisted.ensureDeferred
async def test_both_legs_get_a_bye_past_the_noted_cseq(stack: SipStack) -> None:
    """LiveVox's and the vendor's dialogs each get their BYE, CSeq skipping past the noted one; both answer."""
    livevox = dialog_with(free_udp_port("127.0.0.1"))
    vendor = dialog_with(free_udp_port("127.0.0.1"))
    runs = [
        await peer_waiting_for(livevox, cseq=livevox.local_cseq + CSEQ_SKIP),
        await peer_waiting_for(vendor, "481", cseq=vendor.local_cseq + CSEQ_SKIP),
    ]
    with capturedLogs() as events:
        await end_orphaned(
            stack.global_config,
            REACTOR,
            "call-1",
            {"livevox": livevox.to_json(), "vendor": vendor.to_json()},
            500,
            "gateway restarted",
        )
    for run in runs:
        result = await run
        assert result.code == 0, result
    said = messages(events)
    assert "call call-1: livevox leg ended (200)" in said
    assert "call call-1: the vendor side no longer knew the leg (481): it had ended it" in said


@pytest_twisted.ensureDeferred
async def test_an_unusable_dialog_leaves_only_its_leg_up(stack: SipStack) -> None:
    """A saved dialog that does not parse is logged; the other leg is still ended."""
    vendor = dialog_with(free_udp_port("127.0.0.1"))
    run = await peer_waiting_for(vendor, cseq=vendor.local_cseq + CSEQ_SKIP)
    broken = {**vendor.to_json(), "local_cseq": "many"}
    with capturedLogs() as events:
        await end_orphaned(
            stack.global_config,
            REACTOR,
            "call-2",
            {"livevox": broken, "vendor": vendor.to_json()},
            500,
            "gateway restarted",
        )
    result = await run
    assert result.code == 0, result
    assert any(
        m.startswith("call call-2: the saved livevox dialog is unusable") for m in messages(events)
    )


def test_without_a_running_stack_nothing_is_sent_and_the_legs_are_named() -> None:
    """No transaction manager: end_orphaned fires at once and logs which legs stay up."""
    with capturedLogs() as events:
        d = end_orphaned({}, REACTOR, "call-3", {"vendor": dialog_with(5999).to_json()}, 500, "x")
    assert d.called
    said = messages(events)
    assert "call call-3: the SIP stack is not running: its legs stay up (vendor)" in said
