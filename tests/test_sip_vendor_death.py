"""A vendor's death hands the customer to a person within seconds; a silent but live vendor is not cut.

SIPp plays LiveVox and the AI vendor against the real SIP part on loopback.
Neither sends RTP, so the vendor is silent from the answer: after
``silence_timeout`` (4 s by default) the gateway asks it an in-dialog
OPTIONS. A killed vendor cannot answer, and its call ends as a transfer (the
customer's leg held for the transfer's posts); a vendor that answers keeps
its call.
"""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest_twisted

from lvgateway.calls.outcome import EventKind
from lvgateway.calls.records import CallState

from .sip_gateway import SipGateway, all_succeed, free_udp_port, sipp, start_gateway
from .sip_helpers import wait_until

LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"
NUMBER = "+18990000001"


def sipp_pid(port: int) -> int:
    """The pid of the SIPp process bound to ``port`` (found by its command line)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"sipp") and str(port).encode() in argv:
            return int(entry)
    raise AssertionError(f"no SIPp process on port {port}")


def ended(gateway: SipGateway) -> list[dict[str, object]]:
    return [d for e, _, d in gateway.calls.events if e == "ended"]


def connected(gateway: SipGateway) -> bool:
    return any(r.state is CallState.CONNECTED for r in gateway.calls.records.values())


@pytest_twisted.ensureDeferred
async def test_a_killed_vendor_hands_the_customer_to_a_person(tmp_path: Path) -> None:
    """SIGKILL the vendor mid-call: within 10 s the call ends as a transfer, the LiveVox leg held for it."""
    vendor_port = free_udp_port(VENDOR)
    gateway = start_gateway(tmp_path, [vendor_port], health_interval=3600)
    try:
        vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
        livevox = sipp("livevox_wait_bye.xml", LIVEVOX, ("127.0.0.1", gateway.port), service=NUMBER)
        await wait_until(lambda: connected(gateway), 10, "the call to connect")
        os.kill(sipp_pid(vendor_port), signal.SIGKILL)
        # getProcessOutputAndValue errbacks when its process dies of a signal.
        killed = await vendor.addCallbacks(lambda result: result, lambda failure: "killed")
        assert killed == "killed", killed
        await wait_until(lambda: ended(gateway), 10, "the call to end within 10 s of the kill")
        [end] = ended(gateway)
        assert (end["event"], end["reason"], end["livevox_leg_up"]) == (
            EventKind.VENDOR_DIED,
            "timeout",
            True,
        )
        [record] = gateway.calls.records.values()
        assert record.term_code_name == "transfer"
        # The store, once the transfer is posted, ends the customer's leg with BYE.
        await gateway.sip.router.hang_up_livevox(record.call_id, "transfer")
        result = await livevox
        assert result.code == 0, result
        await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    finally:
        await gateway.stop()


@pytest_twisted.ensureDeferred
async def test_a_silent_vendor_that_answers_options_is_not_cut(tmp_path: Path) -> None:
    """No RTP or RTCP for longer than silence_timeout, but OPTIONS answered: the call stays up until LiveVox ends it."""
    vendor_port = free_udp_port(VENDOR)
    gateway = start_gateway(tmp_path, [vendor_port], health_interval=3600)
    try:
        timeout = gateway.config.vendor.silence_timeout
        hold_ms = int((timeout * 2 + 2) * 1000)
        vendor = sipp("vendor_silent.xml", VENDOR, port=vendor_port, timeout=30)
        livevox = sipp(
            "livevox_call.xml",
            LIVEVOX,
            ("127.0.0.1", gateway.port),
            service=NUMBER,
            hold_ms=hold_ms,
            timeout=30,
        )
        # SIPp's vendor scenario fails unless it got (and answered) an OPTIONS.
        await all_succeed(livevox, vendor)
        await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
        [end] = ended(gateway)
        assert (end["event"], end["reason"]) == (EventKind.LIVEVOX_HANGUP, "caller_hangup")
    finally:
        await gateway.stop()
