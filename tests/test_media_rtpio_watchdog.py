"""The rtp.io engine's watchdog and its stop: a hung engine is noticed within the bound, and never holds stop()."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from lvgateway.media.errors import MediaNotRunningError
from lvgateway.media.rtpio import RtpioError
from lvgateway.media.rtpio_client import CommandWatch, parse_query

from .test_media_rtpio import (
    LIVEVOX_HOST,
    VENDOR_HOST,
    callee_sdp,
    caller_sdp,
    connect,
    make_relay,
    pause,
    sdp,
    started,
    wait_until,
)

pytest.importorskip("rtp.io")

pytestmark = pytest.mark.timeout(30)


class StuckCommand(str):
    """A command the worker thread cannot write until :attr:`go` is set: rtp.io "never answers" it.

    Sippy's worker calls ``command.encode()`` before writing to the socket;
    this one blocks there, so the worker (and every command queued behind it)
    waits, as it does when rtpproxy hangs.
    """

    go: threading.Event

    def __new__(cls, go: threading.Event) -> StuckCommand:
        self = super().__new__(cls, "V\n")  # ends in a newline: Sippy passes it on as it is
        self.go = go
        return self

    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        """Block the worker until released (at most 30 s), then write a harmless ``V``."""
        self.go.wait(30)
        return b"V\n"


def test_command_watch_oldest_and_replies() -> None:
    """The watch reports the oldest unanswered command and its verb, and forgets answered ones."""
    clock = Clock()
    watch = CommandWatch(clock.seconds)
    assert watch.oldest() is None
    first = watch.sent("U call-0 1.2.3.4 5000 tag\n")
    clock.advance(1.5)
    second = watch.sent("Ib\n")
    clock.advance(0.5)
    assert watch.oldest() == (2.0, "U") and watch.waiting == 2
    watch.replied(first)
    assert watch.oldest() == (0.5, "Ib")
    watch.replied(second)
    watch.replied(second)  # a duplicate is harmless
    assert watch.oldest() is None and watch.answered == {"U": 1, "Ib": 1}


def test_parse_query() -> None:
    """rtpproxy's Q reply becomes named counts; an error reply or garbage becomes None."""
    assert parse_query("60 12 7 19 0") == {
        "ttl": 60,
        "from_caller": 12,
        "from_callee": 7,
        "relayed": 19,
        "dropped": 0,
    }
    assert parse_query("E50") is None
    assert parse_query(None) is None
    assert parse_query("1 2 x 4 5") is None


@pytest_twisted.ensureDeferred
async def test_hung_engine_flips_online_and_stop_is_bounded(open_endpoint: Any) -> None:
    """A command that never answers: online() fails within the bound, with a log line; calls get 503; stop() still returns."""
    engine = await started(make_relay(command_timeout=0.5, stop_timeout=1.0))
    session = engine.new_session("call-before")
    await connect(session, open_endpoint(LIVEVOX_HOST), open_endpoint(VENDOR_HOST))
    pending = engine.new_session("call-during")
    go = threading.Event()
    try:
        with capturedLogs() as events:
            stuck_at = time.monotonic()
            engine.client.send_command(StuckCommand(go), None)
            await wait_until(lambda: engine.online() is not None, "online() to fail", bound=3.0)
            flipped = time.monotonic() - stuck_at
            assert 0.5 <= flipped < 0.5 + 0.3
            reason = engine.online()
            assert reason is not None and reason.startswith("rtp.io not answering: a V command")
            with pytest.raises(MediaNotRunningError, match="not answering"):
                engine.new_session("call-after")

            answer_at = time.monotonic()
            body, ex = await caller_sdp(pending, sdp(("127.0.0.1", 6000)))
            assert body is None and isinstance(ex, RtpioError) and ex.code == 503
            assert time.monotonic() - answer_at < 0.5 + 0.3  # the hook is bounded too

            await wait_until(
                lambda: any("not answering" in e.get("log_format", "") for e in events),
                "the watchdog's log line",
                bound=1.0,
            )

            stop_at = time.monotonic()
            await engine.stop()
            assert time.monotonic() - stop_at < 0.5 + 1.0 + 0.5
            assert engine.online() == "media relay (rtp.io) not started"
        [error] = [e for e in events if "did not shut down" in e.get("log_format", "")]
        assert error["log_level"].name == "error"

        # rtp.io breaks a running instance's socket when another is freed beside
        # it: a new engine waits until the stuck one has really gone.
        second = make_relay()
        second.start()
        try:
            await pause(0.2)
            assert second.online() == (
                "rtp.io not ready: an earlier engine of this process is still shutting down"
            )
            go.set()
            await wait_until(lambda: second.online() is None, "the second engine online")
        finally:
            await second.stop()
    finally:
        go.set()  # let the worker and rtpproxy's shutdown finish in the background


@pytest_twisted.ensureDeferred
async def test_engine_answering_again_clears_the_stall() -> None:
    """When the stuck command finally goes through, online() is None again and a line says so."""
    engine = await started(make_relay(command_timeout=0.3))
    go = threading.Event()
    try:
        with capturedLogs() as events:
            engine.client.send_command(StuckCommand(go), None)
            await wait_until(lambda: engine.online() is not None, "the stall")
            await wait_until(
                lambda: any("not answering" in e.get("log_format", "") for e in events),
                "the stall's log line",
            )
            go.set()
            await wait_until(lambda: engine.online() is None, "rtp.io answering again")
            await wait_until(
                lambda: any("answering again" in e.get("log_format", "") for e in events),
                "the recovery's log line",
            )
    finally:
        go.set()
        await engine.stop()


@pytest_twisted.ensureDeferred
async def test_stop_returns_promptly_with_calls_up(open_endpoint: Any) -> None:
    """stop() releases every session and shuts rtp.io down off the reactor, well within its bound."""
    engine = await started(make_relay())
    sessions = [engine.new_session(f"call-{n}") for n in range(3)]
    for session in sessions:
        await connect(session, open_endpoint(LIVEVOX_HOST), open_endpoint(VENDOR_HOST))
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1

    ticker = reactor.callLater  # type: ignore[attr-defined]
    for n in range(20):
        ticker(0.05 * n, tick)
    started_at = time.monotonic()
    stopping = engine.stop()
    assert engine.online() == "media relay (rtp.io) stopping"
    again = engine.stop()  # a second stop waits for the same end
    await stopping
    await again
    took = time.monotonic() - started_at
    assert took < 3.0
    assert ticks >= min(20, int(took / 0.05)) - 2  # the reactor kept turning meanwhile
    assert engine.stats().sessions == 0
    for session in sessions:
        body, ex = await callee_sdp(session, sdp((VENDOR_HOST, 7000)))
        assert body is None and ex is not None
    done: Deferred[None] = engine.stop()
    assert done.called  # stopped already


@pytest.fixture
def open_endpoint() -> Any:
    """A factory of loopback endpoints (as in test_media_rtpio), all closed after the test."""
    from .test_media_rtpio import Endpoint

    ports: list[Any] = []

    def open_(host: str) -> Endpoint:
        endpoint = Endpoint()
        ports.append(reactor.listenUDP(0, endpoint, interface=host))  # type: ignore[attr-defined]
        return endpoint

    yield open_
    for port in ports:
        port.stopListening()
