"""A vendor killed mid-call hands the customer to a person within seconds, against the whole demo.

The demo gateway runs with its sandbox (the LiveVox simulator and its
dialler), but its vendor endpoint is a SIPp process that answers, sends no
media, and answers the gateway's in-dialog OPTIONS: alive but silent. The
test SIGKILLs it mid-call. The gateway's next OPTIONS goes unanswered, and
the call ends as a transfer: the AIA and exactly one transfer term code are
posted, then the customer's leg gets BYE, within 10 s of the kill.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_demo import CONTROL, SANDBOX, get, run_demo, wait_for
from tests.test_demo_rogue_invite import agent_state, post, sandbox

SCENARIOS = Path(__file__).resolve().parent / "sipp"
VENDOR = ("127.0.0.3", 5090)
AGENT = "AIVA2"
TRANSFER_CODE_NAME = "Transfer To Agent"

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def demo_with_sipp_vendor(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    def to_sipp(text: str) -> str:
        echo = 'uri = "sip:echo@127.0.0.2:5080"'
        assert echo in text
        # SIPp takes the health probe's out-of-dialog OPTIONS for calls it cannot
        # answer: probe seldom, so that only the in-dialog OPTIONS decide.
        vendor = f'uri = "sip:bot@{VENDOR[0]}:{VENDOR[1]}"'
        text = text.replace(
            "[[vendor.endpoints]]", "[vendor]\nhealth_interval = 3600\n\n[[vendor.endpoints]]"
        )
        return text.replace(echo, vendor)

    yield from run_demo(tmp_path, to_sipp)


def test_a_killed_vendor_hands_the_customer_to_a_person_within_10s(
    demo_with_sipp_vendor: tuple[subprocess.Popen[bytes], Path],
) -> None:
    """SIGKILL the vendor mid-call: the customer's leg ends within 10 s, after one transfer term code."""
    sipp = shutil.which("sipp")
    assert sipp, "SIPp (Debian's sip-tester) is needed"
    vendor = subprocess.Popen(
        [
            sipp, "-sf", str(SCENARIOS / "vendor_silent.xml"),
            # The health probe's OPTIONS reach SIPp as calls of their own: allow for them.
            "-i", VENDOR[0], "-p", str(VENDOR[1]), "-m", "1000",
            "-timeout", "120s", "-nostdin",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=SCENARIOS,
    )  # fmt: skip
    try:
        wait_for("/readyz to say ready", 60, lambda: get(CONTROL + "/readyz")[0] == 200)
        # The sandbox is the gateway's child: it may bind its ports a moment after /readyz.
        wait_for("the sandbox to answer", 30, lambda: get(SANDBOX + "/_sandbox/agents")[0] == 200)
        assert post(SANDBOX + "/_sandbox/dialler/stop", {})[0] in (200, 204)
        wait_for(f"{AGENT} READY and idle", 60, lambda: agent_state(AGENT) == "READY")
        status, placed = post(SANDBOX + "/_sandbox/dial", {"agent": AGENT, "callDuration": 90})
        assert status == 201, placed
        call = placed["call"]

        def result() -> dict[str, Any]:
            found: dict[str, Any] = sandbox(f"/_sandbox/calls/results/{call['id']}")["call"]
            return found

        wait_for("the call to connect", 30, lambda: result().get("state") == "connected")
        vendor.send_signal(signal.SIGKILL)
        vendor.wait(timeout=5)
        killed_at = time.monotonic()
        ended = wait_for("the gateway's BYE to the customer", 10, lambda: result().get("endedBy"))
        assert ended == "gateway", result()
        assert time.monotonic() - killed_at <= 10.0
        txn = call["callTransactionId"]
        saves = [
            e
            for e in sandbox("/_sandbox/journal")["entries"]
            if e["route"] == "agent.saveTermCode" and e["detail"].get("callTransactionId") == txn
        ]
        assert [e["status"] for e in saves] == [204], saves
        codes = {c["id"]: c["name"] for c in term_codes()}
        assert codes[saves[0]["detail"]["termCodeId"]] == TRANSFER_CODE_NAME
        assert sandbox("/_sandbox/stats")["contractErrors"] == 0
    finally:
        if vendor.poll() is None:
            vendor.kill()
            vendor.wait()


def term_codes() -> list[dict[str, Any]]:
    """The term codes of the sandbox's services, as its configuration lists them."""
    data = tomllib.loads(
        (Path(__file__).resolve().parent.parent / "etc" / "sandbox.toml").read_text()
    )
    return [
        code
        for service in data["services"]
        for category in service["term_code_categories"]
        for code in category["term_codes"]
    ]
