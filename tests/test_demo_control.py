"""The protected control plane against the running demo: token, status page in headless Chromium, lvgatewayctl.

One demo run (fixed ports: run it alone, never beside another demo test):
the probes answer without a token and an admin action without it is
refused; Debian's ``chromium`` loads the status page during a demo call and
its DOM shows the four agents and a live call with the caller's number
masked; the screenshot is kept at ``<tmp_path>/status-page.png`` (the
test's pytest folder, such as
``/tmp/pytest-of-root/pytest-N/test_status_page_and_lvgatewayctl_0/``); and
``lvgatewayctl`` lists agents and calls, holds an agent NOT READY and
readies it again, and fails cleanly without the token.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .test_demo import CONTROL, demo_env, get, run_demo, wait_for

TOKEN = demo_env()["LVGW_DEMO_CONTROL_TOKEN"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

#: The status page, the token as the Basic password (Chromium's CLI cannot set headers).
STATUS_URL = f"http://operator:{TOKEN}@127.0.0.1:9780/"

pytestmark = pytest.mark.timeout(240)


def chromium() -> str:
    """Debian's chromium; its absence fails the test (CI installs it: .ci/run)."""
    path = shutil.which("chromium")
    assert path, "chromium is not installed: apt-get install --no-install-recommends chromium"
    return path


def browse(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once with a fresh profile, bounded in time."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ctl(*args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    """Run lvgatewayctl as a process against the demo's control listener."""
    env = {k: v for k, v in os.environ.items() if k != "LVGW_CONTROL_TOKEN"}
    if token is not None:
        env["LVGW_CONTROL_TOKEN"] = token
    script = Path(sys.executable).parent / "lvgatewayctl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lvgateway.ctl"]
    return subprocess.run(
        [*command, "--url", CONTROL, *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )


def authorized(path: str, method: str = "GET", token: str = TOKEN) -> tuple[int, Any]:
    """A request with the bearer token; status and JSON body."""
    request = urllib.request.Request(
        CONTROL + path,
        method=method,
        headers={"Authorization": f"Bearer {token}"},
        data=b"" if method == "POST" else None,
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_status_page_and_lvgatewayctl(tmp_path: Path) -> None:
    """Probes open, admin refused without the token; Chromium shows agents and a live call; lvgatewayctl works."""
    browser = chromium()
    for process, log in run_demo(tmp_path):
        wait_for("/readyz to say ready", 60, lambda: get(CONTROL + "/readyz")[0] == 200)
        assert get(CONTROL + "/metrics")[0] == 200
        assert get(CONTROL + "/healthz")[0] == 200

        # Without the token: refused, and the agent is untouched.
        status, body = authorized("/agents/AIVA1/not-ready", "POST", token="not-the-token")
        assert status == 401, body
        assert get(CONTROL + "/agents")[0] == 401
        assert get(CONTROL + "/")[0] == 401
        status, agents = authorized("/agents")
        assert status == 200
        assert {a["user_name"]: a["hold"] for a in agents["agents"]}["AIVA1"] is None

        # A live call, then the status page in Chromium while it is up.
        def live_call() -> list[dict[str, Any]]:
            return authorized("/calls?state=connected")[1]["calls"]

        wait_for("a demo call to be connected", 60, live_call)

        def dom_with_a_call() -> str | None:
            result = browse(tmp_path, "--dump-dom", STATUS_URL)
            assert result.returncode == 0, result.stderr[-2000:]
            found = re.search(r'<tr data-call="[^"]+"><td>', result.stdout.split('id="wrapups')[0])
            return result.stdout if found else None

        dom = wait_for("the status page to show a live call", 60, dom_with_a_call)
        assert "<title>lvgateway demo</title>" in dom
        for agent in ("AIVA1", "AIVA2", "AIVA3", "AIVA4"):
            assert f'<tr data-agent="{agent}">' in dom, agent
        assert 'id="calls"' in dom and 'http-equiv="refresh"' in dom
        calls_table = dom.split('id="calls"')[1].split("</table>")[0]
        call_ids = re.findall(r'data-call="([^"]+)"', calls_table)
        assert call_ids
        # The caller's number is masked: only its last four digits show.
        assert "•" in calls_table
        assert not re.search(r"\+?\d{7,}</td><td>\+1899", calls_table)
        assert "<script" not in dom
        screenshot = tmp_path / "status-page.png"
        shot = browse(tmp_path, f"--screenshot={screenshot}", "--window-size=1280,1400", STATUS_URL)
        assert shot.returncode == 0, shot.stderr[-2000:]
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert screenshot.stat().st_size > 5000
        print(f"status page screenshot: {screenshot} (chromium {browser})")

        # lvgatewayctl against the running gateway.
        listed = ctl("agents")
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        assert lines[0].split()[:3] == ["AGENT", "NUMBER", "STATE"]
        assert {line.split()[0] for line in lines[1:]} == {"AIVA1", "AIVA2", "AIVA3", "AIVA4"}
        as_json = ctl("--json", "calls", "--state", "connected,accepted,wrapup,done")
        assert as_json.returncode == 0, as_json.stderr
        assert json.loads(as_json.stdout)["count"] >= 1
        summary = ctl("status")
        assert summary.returncode == 0, summary.stderr
        assert re.search(r"^ready\s+yes$", summary.stdout, re.M), summary.stdout
        assert re.search(r"^live calls\s+\d+$", summary.stdout, re.M)
        held = ctl("not-ready", "AIVA4")
        assert held.returncode == 0, held.stderr
        assert "not-ready AIVA4" in held.stdout
        assert authorized("/agents/AIVA4")[1]["agent"]["hold"] is not None
        released = ctl("--json", "ready", "AIVA4")
        assert released.returncode == 0, released.stderr
        assert json.loads(released.stdout)["agent"]["hold"] is None
        missing = ctl("redrive", "no-such-call")
        assert missing.returncode == 1 and "404" in missing.stderr
        refused = ctl("agents", token="wrong-token")
        assert refused.returncode == 1 and "401" in refused.stderr
        unset = ctl("agents", token=None)
        assert unset.returncode == 2 and "LVGW_CONTROL_TOKEN" in unset.stderr

        # Stop as test_demo does, once a call has been wrapped up: a SIGTERM in the first
        # seconds after start-up can leave an agent's session lent and the drain waiting
        # past its bound (reported, not fixed here).
        wait_for(
            "a call's wrap-up", 60, lambda: "wrap-up done" in (tmp_path / "demo.log").read_text()
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == -signal.SIGTERM
        output = log.read_text()
        assert "Traceback" not in output, output[-5000:]
        assert "demo-control-token" not in output
