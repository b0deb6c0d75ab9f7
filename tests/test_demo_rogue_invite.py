"""A call LiveVox never routed is ended, with nothing posted, against the whole demo as a process.

The demo gateway runs with its sandbox (the LiveVox simulator, the dialler
and the echo bot). Its own dialler is stopped; SIPp then sends an INVITE from
an allowed address to a READY agent's 899 number with a made-up Session-ID,
as a stranger would. The echo bot answers it, but the simulator shows the
agent READY with no such call: within ``confirm_within`` (plus a read) the
gateway ends both legs with BYE and a ``Reason``, posts no AIA and no term
code, and the agent then takes a call the simulator does route.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import test_demo
from tests.test_demo import CONTROL, SANDBOX, get, wait_for

#: The demo gateway as a process, the fixture its own test uses.
demo = test_demo.demo

SCENARIOS = Path(__file__).resolve().parent / "sipp"
AGENT, NUMBER = "AIVA1", "+18990000001"

pytestmark = pytest.mark.timeout(180)


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sandbox(path: str) -> Any:
    status, text = get(SANDBOX + path)
    assert status == 200, (path, status, text)
    return json.loads(text)


def agent_state(user: str) -> str:
    line = sandbox(f"/_sandbox/agents/{user}")
    return str(line.get("state") or line.get("agent", {}).get("state"))


def test_an_invite_livevox_never_routed_is_ended_with_nothing_posted(
    demo: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    """The stranger's call gets BYE with a Reason; no AIA or term code for it; the agent then takes a routed call."""
    sipp = shutil.which("sipp")
    assert sipp, "SIPp (Debian's sip-tester) is needed"
    wait_for("/readyz to say ready", 60, lambda: get(CONTROL + "/readyz")[0] == 200)
    # The sandbox is the gateway's child: it may bind its ports a moment after /readyz.
    wait_for("the sandbox to answer", 30, lambda: get(SANDBOX + "/_sandbox/agents")[0] == 200)
    assert post(SANDBOX + "/_sandbox/dialler/stop", {})[0] in (200, 204)
    wait_for(f"{AGENT} READY and idle", 60, lambda: agent_state(AGENT) == "READY")
    posts_before = len(sandbox("/_sandbox/aia")["posts"])
    rogue = subprocess.run(
        [
            sipp, "-sf", str(SCENARIOS / "livevox_wait_bye.xml"),
            "-i", "127.0.0.1", "-s", NUMBER, "-m", "1",
            "-key", "session_expires", "1800",
            "-timeout", "40s", "-timeout_error", "-nostdin",
            "127.0.0.1:5070",
        ],
        capture_output=True,
        timeout=60,
        cwd=SCENARIOS,
    )  # fmt: skip
    assert rogue.returncode == 0, rogue.stdout.decode(errors="replace")[-3000:]
    # No screen pop and no term code for the stranger's call.
    posts = sandbox("/_sandbox/aia")["posts"]
    assert not [p for p in posts[posts_before:] if "U2DB327T" in json.dumps(p)], posts
    journal = sandbox("/_sandbox/journal")["entries"]
    assert not [
        e for e in journal if e["route"] == "agent.saveTermCode" and e["user"] == AGENT
    ], "nothing saved for a call LiveVox never routed"
    assert sandbox("/_sandbox/stats")["contractErrors"] == 0
    # The agent is free: a call the simulator routes is taken and wrapped up.
    status, placed = post(SANDBOX + "/_sandbox/dial", {"agent": AGENT, "callDuration": 1})
    assert status == 201, placed

    def saved() -> list[Any]:
        entries = sandbox("/_sandbox/journal")["entries"]
        return [
            e
            for e in entries
            if e["route"] == "agent.saveTermCode" and e["user"] == AGENT and e["status"] == 204
        ]

    wait_for("the routed call's term code", 30, saved)
