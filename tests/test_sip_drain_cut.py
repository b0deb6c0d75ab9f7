"""The drain hands the calls it cuts to people: a call outliving call_drain_timeout ends as a transfer.

SIPp plays LiveVox and the vendor against the real SIP part on loopback. The
drain's "let calls finish" step is given a short bound: the call still up
then is ended as a transfer (the vendor leg gets BYE, the customer's leg is
kept for the transfer's posts), and the step logs at warn how many it cut.
The store's hang-up after the posts then ends the LiveVox leg with BYE.
"""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

from pathlib import Path

import pytest_twisted
from twisted.logger import LogLevel, globalLogPublisher

from lvgateway.calls.outcome import EventKind
from lvgateway.calls.records import CallState

from .sip_gateway import all_succeed, free_udp_port, sipp, start_gateway
from .sip_helpers import wait_until

LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"


@pytest_twisted.ensureDeferred
async def test_a_call_that_outlives_the_drain_is_handed_to_a_person(tmp_path: Path) -> None:
    """call_drain_timeout runs out: the call ends as a transfer, and the warn line carries the count."""
    vendor_port = free_udp_port(VENDOR)
    gateway = start_gateway(tmp_path, [vendor_port], health_interval=3600)
    warnings: list[dict[str, object]] = []

    def observe(event: dict[str, object]) -> None:
        if event.get("log_level") is LogLevel.warn:
            warnings.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
        livevox = sipp(
            "livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001"
        )
        await wait_until(
            lambda: any(r.state is CallState.CONNECTED for r in gateway.calls.records.values()),
            10,
            "the call to connect",
        )
        cut = await gateway.sip.router.finish_calls(0.2)
        assert cut == 1
        [(call_id, details)] = [(c, d) for e, c, d in gateway.calls.events if e == "ended"]
        assert details["event"] is EventKind.DRAIN_TIMEOUT
        assert (details["reason"], details["livevox_leg_up"]) == ("gateway_failure", True)
        assert gateway.calls.records[call_id].term_code_name == "transfer"
        assert gateway.sip.router.live, "the customer's leg waits for the transfer's posts"
        counted = [
            w
            for w in warnings
            if w.get("count") == 1 and "call_drain_timeout" in str(w.get("log_format"))
        ]
        assert counted, warnings
        # The store, once it has posted the transfer, ends the LiveVox leg.
        await gateway.sip.router.hang_up_livevox(call_id, "transfer")
        await all_succeed(livevox, vendor)
        await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
        assert await gateway.sip.router.finish_calls(0.2) == 0
    finally:
        globalLogPublisher.removeObserver(observe)
        await gateway.stop()
