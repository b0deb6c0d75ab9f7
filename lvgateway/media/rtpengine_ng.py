"""rtpengine's ng control protocol: a bencoded dictionary over UDP behind a cookie, retransmitted until answered.

A request is ``COOKIE SPACE bencode(dict)``; the reply carries the same
cookie. rtpengine keeps its replies by cookie for a while, so a request
sent again with the same cookie (after a lost datagram) is answered from
that cache and not carried out twice: an ``offer`` retransmitted is safe.
Cookies are a random prefix per client and a counter, so two clients, or
two runs, never share one.

The codec is the maintained ``bencode.py`` package (imported as
``bencodepy``): strings decode to ``str`` where they are UTF-8 (SDP, keys,
flags) and stay ``bytes`` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from secrets import token_hex
from typing import Any

import bencodepy
from sippy.Exceptions.RtpProxyError import RtpProxyError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from lvgateway.media.errors import MediaError

__all__ = [
    "NgClient",
    "NgError",
    "NgProtocolError",
    "NgTimeoutError",
    "decode_reply",
    "encode_request",
]

log = Logger()

Address = tuple[str, int]

_CODEC = bencodepy.Bencode(encoding="utf-8", encoding_fallback="value")


class NgError(RtpProxyError, MediaError):  # type: ignore[misc]
    """rtpengine refused a command (``result: error``); an SDP hook reports it as 502."""

    code = 502
    msg = "Bad Gateway"


class NgTimeoutError(NgError):
    """rtpengine did not answer a command, retransmissions included (503 for an SDP hook)."""

    code = 503
    msg = "Service Unavailable"


class NgProtocolError(ValueError):
    """A datagram that is not an ng reply: no cookie, or not a bencoded dictionary."""


def encode_request(cookie: str, message: Mapping[str, Any]) -> bytes:
    """Return the datagram of one ng request.

    :param cookie: the request's cookie (no spaces).
    :param message: the command's dictionary (``command`` and its keys).
    """
    return cookie.encode("ascii") + b" " + bytes(_CODEC.encode(dict(message)))


def decode_reply(datagram: bytes) -> tuple[str, dict[str, Any]]:
    """Return the cookie and dictionary of one ng reply.

    :raises NgProtocolError: when ``datagram`` has no cookie or its body is
        not a bencoded dictionary.
    """
    cookie, space, body = datagram.partition(b" ")
    if not space or not cookie:
        raise NgProtocolError(f"no cookie in {datagram[:40]!r}")
    try:
        value = _CODEC.decode(body)
    except bencodepy.BencodeDecodeError as e:
        raise NgProtocolError(f"not bencode after cookie {cookie[:20]!r}: {e}") from None
    if not isinstance(value, dict):
        raise NgProtocolError(f"reply {cookie[:20]!r} is {type(value).__name__}, not a dictionary")
    return cookie.decode("ascii", "replace"), value


class _Pending:
    """One request waiting for its reply: its datagram, where it goes, and its retransmit timer."""

    def __init__(self, datagram: bytes, address: Address, waiter: Deferred[dict[str, Any]]) -> None:
        self.datagram = datagram
        self.address = address
        self.waiter = waiter
        self.sent = 0
        self.timer: IDelayedCall | None = None


class NgClient(DatagramProtocol):
    """Sends ng commands to any rtpengine from one local UDP port, and matches replies by cookie.

    :param clock: ``IReactorTime``, for retransmissions.
    :param interval: seconds between sends of one request.
    :param attempts: how many times a request is sent before it fails with
        :class:`NgTimeoutError` (so it fails ``interval * attempts`` after the first send).
    """

    noisy = False

    def __init__(self, clock: Any, interval: float = 0.5, attempts: int = 3) -> None:
        self.clock = clock
        self.interval = interval
        self.attempts = attempts
        self._prefix = token_hex(4)
        self._serial = 0
        self._pending: dict[str, _Pending] = {}
        self.unmatched = 0
        self.retransmissions = 0

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered nor given up."""
        return len(self._pending)

    def command(self, address: Address, message: Mapping[str, Any]) -> Deferred[dict[str, Any]]:
        """Send ``message`` to the rtpengine at ``address``; fire with its reply dictionary.

        :returns: ``Deferred`` firing with the reply when ``result`` is
            ``ok`` or ``pong``; it errbacks with :class:`NgError` (the
            ``error-reason``) or :class:`NgTimeoutError`. Cancelling it
            stops the retransmissions.
        """
        self._serial += 1
        cookie = f"{self._prefix}_{self._serial}"
        waiter: Deferred[dict[str, Any]] = Deferred(lambda _: self._forget(cookie))
        pending = _Pending(encode_request(cookie, message), address, waiter)
        self._pending[cookie] = pending
        self._send(cookie, str(message.get("command", "?")))
        return waiter

    def _send(self, cookie: str, command: str) -> None:
        pending = self._pending.get(cookie)
        if pending is None:
            return
        if pending.sent >= self.attempts:
            del self._pending[cookie]
            pending.waiter.errback(
                NgTimeoutError(
                    f"rtpengine {pending.address[0]}:{pending.address[1]} did not answer"
                    f" {command!r} ({pending.sent} sends, {self.interval * pending.sent:g} s)"
                )
            )
            return
        if pending.sent:
            self.retransmissions += 1
        pending.sent += 1
        if self.transport is not None:
            try:
                self.transport.write(pending.datagram, pending.address)
            except OSError as e:  # sent again at the next interval, or failed at the end
                log.debug("ng send to {address} failed: {error}", address=pending.address, error=e)
        pending.timer = self.clock.callLater(self.interval, self._send, cookie, command)

    def _forget(self, cookie: str) -> None:
        pending = self._pending.pop(cookie, None)
        if pending is not None and pending.timer is not None and pending.timer.active():
            pending.timer.cancel()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Deliver one reply to the request with its cookie."""
        try:
            cookie, reply = decode_reply(datagram)
        except NgProtocolError as e:
            self.unmatched += 1
            log.warn("ng: unreadable reply from {addr}: {error}", addr=addr, error=str(e))
            return
        pending = self._pending.get(cookie)
        if pending is None or tuple(addr) != pending.address:
            self.unmatched += 1  # a late reply to a request already answered or given up
            return
        self._forget(cookie)
        result = reply.get("result")
        if result in ("ok", "pong"):
            pending.waiter.callback(reply)
            return
        reason = reply.get("error-reason", f"result {result!r}")
        pending.waiter.errback(NgError(f"rtpengine {addr[0]}:{addr[1]} refused: {reason}"))

    def stop(self) -> None:
        """Fail every request still waiting (the engine is stopping)."""
        for cookie in list(self._pending):
            pending = self._pending[cookie]
            self._forget(cookie)
            pending.waiter.errback(CancelledError("ng client stopped"))
