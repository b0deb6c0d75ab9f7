"""Helpers for SIP tests: a raw UDP peer on loopback and bounded waits on the real reactor."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import deferLater


async def wait_until(condition: Callable[[], Any], bound: float, what: str) -> Any:
    """Poll ``condition`` on the real reactor until it is truthy, or fail after ``bound`` seconds."""
    deadline = reactor.seconds() + bound  # type: ignore[attr-defined]
    while True:
        value = condition()
        if value:
            return value
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"gave up after {bound}s waiting for {what}")
        await deferLater(reactor, 0.05, lambda: None)  # type: ignore[arg-type]


class RawSipPeer(DatagramProtocol):
    """A UDP socket that sends raw SIP text and keeps every datagram it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Keep the datagram."""
        self.received.append((datagram, addr))

    def send(self, text: str, to: tuple[str, int]) -> None:
        """Send ``text`` with CRLF line ends."""
        assert self.transport is not None
        self.transport.write(text.replace("\r\n", "\n").replace("\n", "\r\n").encode(), to)  # type: ignore[attr-defined]

    def responses(self) -> list[str]:
        """Every datagram received, decoded."""
        return [d.decode(errors="replace") for d, _ in self.received]


def listen_peer(host: str = "127.0.0.1") -> tuple[RawSipPeer, Any]:
    """Listen a RawSipPeer on ``host``, port picked by the kernel."""
    peer = RawSipPeer()
    port = reactor.listenUDP(0, peer, interface=host)  # type: ignore[attr-defined]
    return peer, port


def options_request(
    target: tuple[str, int], local: tuple[str, int], call_id: str | None = None
) -> str:
    """A minimal valid OPTIONS request from ``local`` to ``target``."""
    call_id = call_id or uuid.uuid4().hex
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    return (
        f"OPTIONS sip:{target[0]}:{target[1]} SIP/2.0\n"
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch={branch}\n"
        f"From: <sip:probe@{local[0]}:{local[1]}>;tag={uuid.uuid4().hex[:8]}\n"
        f"To: <sip:{target[0]}:{target[1]}>\n"
        f"Call-ID: {call_id}\n"
        "CSeq: 1 OPTIONS\n"
        "Max-Forwards: 70\n"
        "Content-Length: 0\n\n"
    )


def never(*_: Any) -> Deferred[None]:
    """A Deferred that never fires."""
    return Deferred()


async def wait_until_async(
    check: Callable[[], Any], bound: float, what: str, interval: float = 0.1
) -> Any:
    """Await ``check()`` (a coroutine function) until its result is truthy, or fail after ``bound`` seconds."""
    deadline = reactor.seconds() + bound  # type: ignore[attr-defined]
    while True:
        value = await check()
        if value:
            return value
        if reactor.seconds() > deadline:  # type: ignore[attr-defined]
            raise AssertionError(f"gave up after {bound}s waiting for {what}")
        await deferLater(reactor, interval, lambda: None)  # type: ignore[arg-type]
