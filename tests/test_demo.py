"""The README's demo command as a real process: ready, calls wrapped up, and a clean SIGTERM mid-call.

The demo gateway runs the sandbox (LiveVox simulator, dialler, echo bot) as
its child process, on the demo's fixed loopback ports. The test runs it from
a copy of etc/ so its call store lands in a temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
CONTROL = "http://127.0.0.1:9780"
SANDBOX = "http://127.0.0.1:7480"

pytestmark = pytest.mark.timeout(180)


def demo_env() -> dict[str, str]:
    """The environment the README's command sets from etc/demo.env."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for line in (ROOT / "etc" / "demo.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    return env


def get(url: str) -> tuple[int, str]:
    """GET a URL: its status and body text (an HTTP error status is returned, not raised)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def wait_for(what: str, bound: float, check: Callable[[], Any]) -> Any:
    """Call ``check`` until it returns something truthy, up to ``bound`` seconds."""
    deadline = time.monotonic() + bound
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"gave up after {bound}s waiting for {what}: {last}")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The demo gateway (and its sandbox child) running from a copy of etc/."""
    yield from run_demo(tmp_path)


def run_demo(
    tmp_path: Path, edit: Callable[[str], str] = lambda text: text
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run the demo from a copy of etc/ whose demo.toml ``edit`` may change; kill it at the end."""
    etc = tmp_path / "etc"
    shutil.copytree(
        ROOT / "etc",
        etc,
        ignore=shutil.ignore_patterns("manhole.passwd", "secrets"),
        dirs_exist_ok=True,  # a second run in the same folder keeps its state directory
    )
    config = etc / "demo.toml"
    config.write_text(edit(config.read_text()))
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "lvgateway", "--config", str(etc / "demo.toml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=demo_env(),
            cwd=tmp_path,
        )
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        # A killed gateway's child gets SIGTERM from the kernel: wait until it has
        # let go of the demo's ports, so the next demo starts on free ones.
        children = child_pids(log)
        wait_for("the sandbox child to exit", 20, lambda: not any(map(running, children)))


def child_pids(log: Path) -> list[int]:
    """The pid of every child process the gateway's log says it started."""
    return [int(pid) for pid in re.findall(r"started child process \S+ as pid (\d+)", log.read_text())]


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def readme_metrics() -> list[str]:
    """Every metric name the README's metrics table lists."""
    text = (ROOT / "README.md").read_text()
    return re.findall(r"^\| `(lvgateway_[a-z_]+)` \|", text, flags=re.M)


def test_demo_serves_calls_and_stops_cleanly_on_sigterm(
    demo: tuple[subprocess.Popen[bytes], Path],
) -> None:
    """Ready, every README metric exposed, calls wrapped up with term codes, SIGTERM mid-call drains and exits 143."""
    process, log = demo
    wait_for("/readyz to say ready", 60, lambda: get(CONTROL + "/readyz")[0] == 200)
    status, metrics = get(CONTROL + "/metrics")
    assert status == 200
    missing = [
        m
        for m in readme_metrics()
        if not re.search(rf"^{m}(_total|_info|_bucket)?[{{ ]", metrics, re.M)
    ]
    assert len(readme_metrics()) >= 30 and not missing, missing

    def term_codes() -> list[dict[str, Any]]:
        body = json.loads(get(SANDBOX + "/_sandbox/journal")[1])
        entries = body["entries"] if isinstance(body, dict) else body
        return [
            e
            for e in entries
            if e["route"] == "agent.saveTermCode" and e["status"] == 204 and not e.get("repeat")
        ]

    wait_for("a dialled call's term code at the simulator", 60, lambda: len(term_codes()) >= 1)
    wait_for(
        "a call to be up",
        30,
        lambda: re.search(r"^lvgateway_active_calls [1-9]", get(CONTROL + "/metrics")[1], re.M),
    )

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == -signal.SIGTERM
    output = log.read_text()
    assert "drain ended" in output and "child process sandbox stopped" in output
    assert "Traceback" not in output, output[-5000:]
    for agent in ("AIVA1", "AIVA2", "AIVA3", "AIVA4"):
        assert f"agent {agent}: closing -> logged_out" in output, agent
    store = log.parent / "var" / "demo" / "calls.sqlite3"
    with sqlite3.connect(store) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM calls GROUP BY state").fetchall())
    assert states and set(states) == {"done"}, (
        states
    )  # every call, the one cut by SIGTERM too, closed with LiveVox
    ended = [line for line in output.splitlines() if "wrap-up done" in line]
    assert len(ended) == states["done"]
