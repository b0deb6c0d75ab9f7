"""The demo starts clean: no warning in its first 10 s, and its sandbox child dies with it.

The gateway waits for the sandbox's ``ready_url`` before it asks LiveVox
anything, so no login meets a refused connection; the child asks the kernel
for SIGTERM when the gateway dies, so a SIGKILL of the gateway leaves no
sandbox holding the demo's ports, and the next start is as clean as the first.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from .test_demo import CONTROL, child_pids, get, run_demo, running, wait_for

pytestmark = pytest.mark.timeout(180)

#: A log line at warn or worse, the gateway's own or one relayed from its child.
WARN_OR_WORSE = re.compile(r"#(warn|error|critical)\]|Traceback|Unhandled")
#: How long a start must stay free of warnings.
CLEAN_SPAN = 10.0


def warnings_in_first_span(log: Path, began: float) -> list[str]:
    """Wait until the gateway has run :data:`CLEAN_SPAN` seconds; its warn-or-worse lines so far."""
    wait_for(
        "the demo's agents to be READY",
        CLEAN_SPAN,
        lambda: "4/4 agents READY" in log.read_text(),
    )
    time.sleep(max(0.0, began + CLEAN_SPAN - time.monotonic()))  # the span itself is the test
    return [line for line in log.read_text().splitlines() if WARN_OR_WORSE.search(line)]


def sandbox_pid(log: Path) -> int:
    """The pid of the sandbox child the log names, once it has one."""
    return int(wait_for("the sandbox child's pid", 10, lambda: child_pids(log))[-1])


def test_demo_starts_clean_and_its_child_dies_with_a_killed_gateway(tmp_path: Path) -> None:
    """No warning in the first 10 s; after SIGKILL the child is gone within 5 s; the next start is clean too."""
    first = run_demo(tmp_path)
    began = time.monotonic()
    process, log = next(first)
    try:
        assert warnings_in_first_span(log, began) == []
        assert "child process sandbox ready" in log.read_text()
        pid = sandbox_pid(log)
        assert running(pid)

        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        wait_for("the sandbox child to exit after the gateway's SIGKILL", 5, lambda: not running(pid))
    finally:
        first.close()

    # The same folder, so the same state directory and the same fixed ports.
    (tmp_path / "first.log").write_bytes(log.read_bytes())
    second = run_demo(tmp_path)
    began = time.monotonic()
    process, log = next(second)
    try:
        problems = warnings_in_first_span(log, began)
        # A call the killed gateway left up is closed at start, as any crash's is: that is
        # the recovery doing its job, not a dirty start.
        assert [p for p in problems if "recover" not in p] == []
        assert sandbox_pid(log) != pid
        assert get(CONTROL + "/readyz")[0] == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == -signal.SIGTERM
    finally:
        second.close()
    assert not running(pid) and os.path.exists(tmp_path / "first.log")
