"""SIGTERM with calls up: a twistd process holding the rtp.io engine exits within a bound, hung engine or not."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rtp.io")

ROOT = Path(__file__).resolve().parent.parent
TAC = Path(__file__).resolve().parent / "media_rtpio_sigterm.tac"

pytestmark = pytest.mark.timeout(60)

#: From SIGTERM to exit: the engine's stop bound (command 1 s + shutdown 2 s) and twistd's own.
EXIT_BOUND = 8.0


def run_twistd(tmp_path: Path, hang: bool) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Start the .tac under twistd in the foreground; return the process, its ready file and log."""
    ready = tmp_path / "ready"
    log = tmp_path / "twistd.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LVGW_RTPIO_READY": str(ready),
        "LVGW_RTPIO_CALLS": "5",
        "LVGW_RTPIO_PORT_MIN": str(random.randrange(20000, 32000 - 400, 2)),
        "LVGW_RTPIO_HANG": "1" if hang else "0",
    }
    command = [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "--nodaemon",
        "--pidfile=",
        f"--logfile={log}",
        "-y",
        str(TAC),
    ]
    process = subprocess.Popen(command, cwd=tmp_path, env=env)
    return process, ready, log


def wait_ready(process: subprocess.Popen[bytes], ready: Path, log: Path, bound: float) -> str:
    """Poll for the ready file (the calls are up), failing with the log if it takes longer than ``bound``."""
    deadline = time.monotonic() + bound
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(
                f"no calls up within {bound}s (exit {process.poll()}):\n"
                + (log.read_text() if log.exists() else "(no log)")
            )
        time.sleep(0.05)
    return ready.read_text()


@pytest.mark.parametrize("hang", [False, True], ids=["engine-fine", "engine-hung"])
def test_sigterm_with_calls_up_exits_within_the_bound(tmp_path: Path, hang: bool) -> None:
    """SIGTERM to twistd holding five rtp.io calls: the process exits within the bound, the engine stopped."""
    process, ready, log = run_twistd(tmp_path, hang)
    try:
        text = wait_ready(process, ready, log, bound=20.0)
        assert text.startswith("ready ") and len(text.split()) == 1 + 10
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=EXIT_BOUND)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"twistd still running {EXIT_BOUND}s after SIGTERM:\n{log.read_text()}"
            ) from None
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert "Received SIGTERM" in output
    assert "released rtp.io session" in output
    if hang:
        assert "did not shut down within 3 s" in output
        assert took < EXIT_BOUND
    else:
        assert "media relay (rtp.io) stopped" in output
        assert took < 4.0
    assert process.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM)
    assert not list(tmp_path.glob("*.csv")), (
        "rtp.io wrote an accounting file into the working directory"
    )
