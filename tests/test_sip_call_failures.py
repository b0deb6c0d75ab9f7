"""With SIPp on loopback: media logs carry the gateway's call id; a failed vendor leg pauses the pool quickly."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from lvgateway.agents.interfaces import Refusal
from lvgateway.sip.health import PAUSE_CAUSE

from .sip_gateway import all_succeed, free_udp_port, sipp, start_gateway
from .sip_helpers import wait_until

pytestmark = pytest.mark.timeout(60)

LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"


class Events:
    """Every log event published while it is installed."""

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        """Keep the event."""
        self.events.append(event)

    def lines(self) -> list[str]:
        """The events as formatted text."""
        return [formatEvent(e) for e in self.events]


@pytest_twisted.ensureDeferred
async def test_media_log_lines_carry_the_gateway_call_id(tmp_path: Path) -> None:
    """A bridged call's media events name the call id the call store records, and its SIP Call-ID apart."""
    vendor_port = free_udp_port(VENDOR)
    gateway = start_gateway(tmp_path, [vendor_port])
    seen = Events()
    globalLogPublisher.addObserver(seen)
    try:
        vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
        livevox = sipp(
            "livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        await all_succeed(livevox, vendor)
        await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    finally:
        globalLogPublisher.removeObserver(seen)
        await gateway.stop()
    [record] = gateway.calls.records.values()
    assert record.sip_call_id and record.call_id != record.sip_call_id
    media = [
        e
        for e in seen.events
        if str(e.get("log_namespace", "")).startswith("lvgateway.media") and "call_id" in e
    ]
    assert media, seen.lines()
    assert {e["call_id"] for e in media} == {record.call_id}, [formatEvent(e) for e in media]
    opened = [e for e in media if "sip_call_id" in e]
    assert opened and {e["sip_call_id"] for e in opened} == {record.sip_call_id}


@pytest_twisted.ensureDeferred
async def test_a_failed_vendor_leg_and_a_silent_probe_pause_the_pool_in_seconds(
    tmp_path: Path,
) -> None:
    """The only vendor endpoint is silent: the call fails, one probe goes unanswered, the pool pauses."""
    gateway = start_gateway(tmp_path, [free_udp_port(VENDOR)], no_progress=1)
    seen = Events()
    globalLogPublisher.addObserver(seen)
    try:
        template = (Path(__file__).parent / "sipp" / "livevox_refused.xml").read_text()
        scenario = tmp_path / "refused_408.xml"
        scenario.write_text(template.replace("EXPECTED_CODE", "408"))
        result = await sipp(
            str(scenario), LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        assert result.code == 0, result
        # health_interval is 60 s and health_failures 2: only the failed call can pause this soon.
        await wait_until(
            lambda: gateway.pool.events_of("pause"),
            10,
            "the pool to be paused after the failed call",
        )
    finally:
        globalLogPublisher.removeObserver(seen)
        await gateway.stop()
    assert gateway.pool.events_of("pause") == [(PAUSE_CAUSE, Refusal.VENDOR_UNAVAILABLE)]
    lines = seen.lines()
    assert any("no endpoint left: the call fails" in line for line in lines), lines
    assert not any("failing over" in line for line in lines), lines
    assert any(
        "the vendor endpoint did not answer OPTIONS" in line and "pausing the agents" in line
        for line in lines
    ), lines
