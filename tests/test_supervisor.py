"""Child processes: started with the gateway, their output logged, restarted if they die, stopped after it."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest_twisted
from twisted.internet import reactor
from twisted.logger import LogEvent, formatEvent, globalLogPublisher

from lvgateway.supervisor import ChildProcessService

from .sip_helpers import wait_until


def child(name: str, code: str, stop_timeout: float = 5.0) -> ChildProcessService:
    """A child running a Python snippet."""
    return ChildProcessService(
        reactor, name, [sys.executable, "-u", "-c", code], stop_timeout=stop_timeout
    )


def capture() -> tuple[list[str], Any]:
    """Formatted log events, and the observer to remove."""
    lines: list[str] = []

    def observer(event: LogEvent) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observer)
    return lines, observer


@pytest_twisted.ensureDeferred
async def test_child_output_is_logged_and_sigterm_stops_it() -> None:
    """The child's lines reach the log with its name; stopping sends SIGTERM and waits for the exit."""
    lines, observer = capture()
    service = child("talker", "import time\nprint('hello from the child')\ntime.sleep(60)")
    try:
        service.startService()
        await wait_until(
            lambda: any("[talker] hello from the child" in line for line in lines),
            10,
            "the child's line",
        )
        began = reactor.seconds()  # type: ignore[attr-defined]
        await service.stopService()
        assert reactor.seconds() - began < 5  # type: ignore[attr-defined]
        assert any("child process talker stopped" in line for line in lines)
    finally:
        globalLogPublisher.removeObserver(observer)


@pytest_twisted.ensureDeferred
async def test_child_that_ignores_sigterm_is_killed_at_the_bound() -> None:
    """A child ignoring SIGTERM is killed once the stop bound passes."""
    lines, observer = capture()
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('stubborn', flush=True)\ntime.sleep(60)"
    service = child("stubborn", code, stop_timeout=0.5)
    try:
        service.startService()
        await wait_until(
            lambda: any("[stubborn] stubborn" in line for line in lines), 10, "the child to start"
        )
        await service.stopService()
        assert any("ignored SIGTERM: killing it" in line for line in lines)
    finally:
        globalLogPublisher.removeObserver(observer)


@pytest_twisted.ensureDeferred
async def test_child_that_dies_is_restarted() -> None:
    """A child that exits on its own is started again, after a delay."""
    lines, observer = capture()
    service = child("flaky", "print('up', flush=True)")
    try:
        service.startService()
        await wait_until(lambda: service.starts >= 2, 10, "the child to be restarted")
        assert any("child process flaky exited (status 0): restarting" in line for line in lines)
    finally:
        await service.stopService()
        globalLogPublisher.removeObserver(observer)


#: A child that serves HTTP on the port in argv[2] only after argv[1] seconds.
SERVE_LATER = """\
import http.server, sys, time
time.sleep(float(sys.argv[1]))
http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def free_port() -> int:
    """A loopback TCP port free now (the child binds it a moment later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest_twisted.ensureDeferred
async def test_when_ready_fires_once_the_ready_url_answers() -> None:
    """A child whose URL answers only after 1 s is ready then, not at spawn, and the wait logs no warning."""
    lines, observer = capture()
    port = free_port()
    service = ChildProcessService(
        reactor,
        "late",
        [sys.executable, "-c", SERVE_LATER, "1.0", str(port)],
        ready_url=f"http://127.0.0.1:{port}/",
        ready_timeout=20,
    )
    try:
        began = reactor.seconds()  # type: ignore[attr-defined]
        service.startService()
        ready = service.when_ready()
        assert not ready.called
        await ready
        assert reactor.seconds() - began >= 1.0  # type: ignore[attr-defined]
        assert any("child process late ready:" in line and "answered 200" in line for line in lines)
        assert service.when_ready().called
        assert not any("warn" in line.lower() or "error" in line.lower() for line in lines), lines
    finally:
        await service.stopService()
        globalLogPublisher.removeObserver(observer)


@pytest_twisted.ensureDeferred
async def test_a_child_never_ready_is_reported_and_waited_for_no_longer() -> None:
    """A ready URL that never answers: an error once ready_timeout passes, and when_ready fires anyway."""
    lines, observer = capture()
    service = ChildProcessService(
        reactor,
        "mute",
        [sys.executable, "-c", "import time; time.sleep(60)"],
        ready_url="http://127.0.0.1:1/",
        ready_timeout=0.5,
    )
    try:
        service.startService()
        await wait_until(lambda: service.when_ready().called, 10, "the wait to run out")
        assert any("child process mute not ready after" in line for line in lines)
    finally:
        await service.stopService()
        globalLogPublisher.removeObserver(observer)
