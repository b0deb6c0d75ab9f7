"""The SIP stack on the reactor: real UDP on loopback, the source filter, Sippy's timers and tracebacks."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_twisted
from sippy.Time.Timeout import Timeout
from twisted.internet import reactor
from twisted.logger import LogEvent, globalLogPublisher

from lvgateway.config.model import IPNetwork
from lvgateway.sip.stack import SipStack
from lvgateway.sip.udp import SourceFilter

from .sip_helpers import listen_peer, options_request, wait_until


def answer_options(req: Any, sip_t: Any) -> Any:
    """A request handler: 200 to OPTIONS, 501 to the rest; raises on INFO to test tracebacks."""
    if req.getMethod() == "OPTIONS":
        return (req.genResponse(200, "OK"), None, None)
    if req.getMethod() == "INFO":
        raise RuntimeError("handler exploded on purpose")
    return (req.genResponse(501, "Not Implemented"), None, None)


def networks(*cidrs: str) -> list[IPNetwork]:
    """Parse CIDRs."""
    return [ipaddress.ip_network(c) for c in cidrs]


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    """Every log event while the test runs."""
    seen: list[LogEvent] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


@pytest_twisted.async_yield_fixture
async def stack() -> AsyncIterator[SipStack]:
    """A SIP stack on 127.0.0.1, port picked by the kernel, allowing 127.0.0.1 only."""
    sip = SipStack(
        reactor,
        "127.0.0.1",
        0,
        SourceFilter(networks("127.0.0.1/32"), reactor),
        answer_options,
    )
    sip.startService()
    yield sip
    sip.stopService()


@pytest_twisted.ensureDeferred
async def test_options_from_an_allowed_source_is_answered(stack: SipStack) -> None:
    """OPTIONS over real UDP from an allowed address gets 200 with our User-Agent/Server."""
    peer, port = listen_peer("127.0.0.1")
    try:
        local = ("127.0.0.1", port.getHost().port)
        peer.send(options_request(("127.0.0.1", stack.port), local), ("127.0.0.1", stack.port))
        await wait_until(lambda: peer.received, 5, "a response to OPTIONS")
        assert peer.responses()[0].startswith("SIP/2.0 200 OK")
    finally:
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_source_not_allowed_gets_nothing_and_is_counted(stack: SipStack) -> None:
    """A datagram from 127.0.0.2 (not allowed) gets no response at all, and is counted."""
    stranger, port = listen_peer("127.0.0.2")
    friend, fport = listen_peer("127.0.0.1")
    try:
        target = ("127.0.0.1", stack.port)
        stranger.send(options_request(target, ("127.0.0.2", port.getHost().port)), target)
        stranger.send("garbage that Sippy would answer with 400\n\n" * 3, target)
        # A friend's OPTIONS sent after the stranger's is answered: once it is,
        # the stranger's datagrams have certainly been handled (same socket, in order).
        friend.send(options_request(target, ("127.0.0.1", fport.getHost().port)), target)
        await wait_until(lambda: friend.received, 5, "the allowed peer's response")
        assert stranger.received == []
        assert stack.source_filter.dropped == 2
    finally:
        await port.stopListening()
        await fport.stopListening()


@pytest_twisted.ensureDeferred
async def test_sippy_timers_run_on_the_reactor_and_cancelled_ones_are_compacted(
    stack: SipStack,
) -> None:
    """A Sippy Timeout fires from the reactor; cancelled timers do not pile up on the heap."""
    fired: list[str] = []
    Timeout(lambda: fired.append("fired"), 0.05)
    await wait_until(lambda: fired, 5, "a Sippy timer to fire")
    adapter = stack.adapter
    assert adapter is not None
    before = adapter.pending_timers()
    timers = [Timeout(lambda: None, 3600) for _ in range(200)]
    for t in timers:
        t.cancel()
    Timeout(lambda: fired.append("again"), 0.01)
    await wait_until(lambda: len(fired) == 2, 5, "the second timer")
    assert adapter.compactions >= 1
    assert adapter.pending_timers() <= before + 1


@pytest_twisted.ensureDeferred
async def test_exception_in_sippy_reaches_the_twisted_log(
    stack: SipStack, events: list[LogEvent]
) -> None:
    """A handler raising inside Sippy is logged through twisted.logger, not lost on stdout."""
    peer, port = listen_peer("127.0.0.1")
    try:
        target = ("127.0.0.1", stack.port)
        info = options_request(target, ("127.0.0.1", port.getHost().port)).replace(
            "OPTIONS", "INFO"
        )
        peer.send(info, target)
        await wait_until(
            lambda: [e for e in events if "handler exploded on purpose" in str(e.get("text", ""))],
            5,
            "the traceback in the log",
        )
    finally:
        await port.stopListening()


def test_sippy_uses_dir_only_to_ask_for_its_my_marker() -> None:
    """The stack swaps ``dir`` in these Sippy modules for a marker test: every use there must be ``'my' in dir(x)``."""
    import importlib
    import inspect
    import re

    from lvgateway.sip.stack import _MY_MARKER_MODULES, _my_marker

    for name in _MY_MARKER_MODULES:
        source = inspect.getsource(importlib.import_module(name))
        uses = re.findall(r"[^\n]*\bdir\(", source)
        assert uses, f"{name} no longer calls dir(): drop it from _MY_MARKER_MODULES"
        assert all(re.search(r"'my' in dir\($", use) for use in uses), (name, uses)
    from sippy.SipConf import MyAddress

    assert "my" in _my_marker(MyAddress()) and "my" not in _my_marker("127.0.0.1")
