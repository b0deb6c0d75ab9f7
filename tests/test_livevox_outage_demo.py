"""A LiveVox outage seen by the demo gateway as a real process: /readyz 503, one error line, bounded warnings.

The demo gateway runs the sandbox as its child on the demo's fixed loopback
ports: run this test alone, never beside another demo test. The simulator's
outage fault drops every connection to its LiveVox routes, as a LiveVox that
died would; clearing it brings LiveVox back.
"""

from __future__ import annotations

import json
import re
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .test_demo import CONTROL, SANDBOX, get, run_demo, wait_for

pytestmark = pytest.mark.timeout(180)

#: A log line of the gateway's agents, calls or LiveVox client, with its level.
LINE = re.compile(r"\[(lvgateway\.(?:agents|livevox|calls)[\w.]*)#(\w+)\] (.*)")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The demo gateway (and its sandbox child) running from a copy of etc/."""
    yield from run_demo(tmp_path)


def sandbox(method: str, path: str, body: object | None = None) -> int:
    """Send an admin request to the simulator; return its status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        SANDBOX + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def lines(log: Path, since: int) -> list[tuple[str, str]]:
    """The (level, text) of the agents' and LiveVox client's log lines after byte ``since``."""
    found = []
    with log.open("rb") as f:
        f.seek(since)
        for raw in f.read().decode(errors="replace").splitlines():
            m = LINE.search(raw)
            if m:
                found.append((m.group(2), m.group(3)))
    return found


def test_livevox_outage_is_logged_once_and_shown_by_readyz(
    demo: tuple[subprocess.Popen[bytes], Path],
) -> None:
    """LiveVox dropping every connection: /readyz 503, one error line, few warnings; back: 200 and one line."""
    process, log = demo
    wait_for("/readyz to say ready", 60, lambda: get(CONTROL + "/readyz")[0] == 200)
    wait_for(
        "every agent READY",
        60,
        lambda: re.search(
            r"^lvgateway_agents\{state=\"ready\"\} [1-9]", get(CONTROL + "/metrics")[1], re.M
        ),
    )
    start = log.stat().st_size
    assert sandbox("POST", "/_sandbox/faults/outage", {"mode": "drop"}) == 200

    status, body = wait_for(
        "/readyz to say 503", 30, lambda: (r := get(CONTROL + "/readyz"))[0] == 503 and r
    )
    assert "LiveVox unreachable" in body
    # Let the outage last past the agents' hourly-cycle-free steady state: several probes.
    wait_for(
        "three probes during the outage",
        60,
        lambda: re.search(
            r"^lvgateway_livevox_requests_total\{call=\"session_validate\",outcome=\"connection_failed\"\} ([3-9]|\d\d)",
            get(CONTROL + "/metrics")[1],
            re.M,
        ),
    )
    during = lines(log, start)
    errors = [text for level, text in during if level in ("error", "critical")]
    warnings = [text for level, text in during if level == "warn"]
    assert len(errors) == 1 and errors[0].startswith("LiveVox unreachable"), errors
    assert len(warnings) <= 8, warnings

    assert sandbox("DELETE", "/_sandbox/faults/outage") == 200
    wait_for("/readyz to say ready again", 30, lambda: get(CONTROL + "/readyz")[0] == 200)
    back = wait_for(
        "the line that says LiveVox is back",
        30,
        lambda: [t for _, t in lines(log, start) if t.startswith("LiveVox answers again")],
    )
    assert len(back) == 1 and re.search(r"\d+ requests failed meanwhile", back[0]), back
    errors = [t for level, t in lines(log, start) if level in ("error", "critical")]
    assert len(errors) == 1, errors
    assert process.poll() is None
