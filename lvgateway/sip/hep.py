"""HEP v3 (EEP) capture: a copy of every SIP message in and out, to a Homer/heplify collector.

Every datagram the SIP socket receives (once past the source filter) and
every one it sends is encapsulated as HEP v3 and sent, over a non-blocking
UDP socket, to ``[hep] address``. Its correlation id is the gateway's call id
(the vendor leg's Call-ID, and ``X-LVGW-Call-ID``), for both legs: the
LiveVox leg's Call-ID maps to it once the call is accepted. Messages of a
call not yet accepted (its INVITE, a 100 Trying) wait for that, up to
:data:`HOLD_SECONDS`; messages of no call (OPTIONS probes) carry their own
Call-ID.

Capture never blocks or raises into the SIP path: a failed send is counted,
and logged at most once a minute. It is switched on and off at run time
(:meth:`HepCapture.on`, :meth:`HepCapture.off`) from the control API
(``POST /hep/on``), ``lvgatewayctl hep on`` or the manhole (``hep.on()``).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from lvgateway.config.secret import Secret

__all__ = [
    "HOLD_SECONDS",
    "HepCapture",
    "encode_hep3",
]

log = Logger()

#: How long a message of a call not yet accepted waits for its correlation id.
HOLD_SECONDS = 5.0
#: Messages held at most, over all calls, before the oldest go out uncorrelated.
MAX_HELD = 1000
#: Call-ID mappings remembered after their call, for its last messages.
MAX_KNOWN = 10000
#: How often a failing send is logged again.
ERROR_LOG_INTERVAL = 60.0

# Chunk types of HEP v3, vendor 0 (the generic chunks).
_IP_FAMILY = 0x0001
_IP_PROTO = 0x0002
_IPV4_SRC = 0x0003
_IPV4_DST = 0x0004
_IPV6_SRC = 0x0005
_IPV6_DST = 0x0006
_SRC_PORT = 0x0007
_DST_PORT = 0x0008
_TIME_SEC = 0x0009
_TIME_USEC = 0x000A
_PROTO_TYPE = 0x000B
_CAPTURE_ID = 0x000C
_AUTH_KEY = 0x000E
_PAYLOAD = 0x000F
_CORRELATION_ID = 0x0011

_AF_INET = 2
_AF_INET6 = 10
_UDP = 17
_SIP = 1

_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*(\S[^\r\n]*?)[ \t]*\r?$", re.I | re.M)
_CSEQ = re.compile(rb"^cseq[ \t]*:[ \t]*\d+[ \t]+([A-Za-z]+)", re.I | re.M)

Address = tuple[str, int]


def _chunk(kind: int, value: bytes) -> bytes:
    return struct.pack("!HHH", 0, kind, 6 + len(value)) + value


def encode_hep3(
    payload: bytes,
    src: Address,
    dst: Address,
    timestamp: float,
    capture_id: int,
    correlation_id: str | None,
    auth_key: str | None = None,
) -> bytes:
    """Return one HEP v3 packet carrying a SIP message sent over UDP from ``src`` to ``dst``.

    :param payload: the SIP message as on the wire.
    :param src: its source IP literal and port.
    :param dst: its destination IP literal and port.
    :param timestamp: when it was sent or received (seconds since the epoch).
    :param capture_id: this capture agent's id.
    :param correlation_id: the correlation id chunk's value, or ``None`` for none.
    :param auth_key: the collector's password chunk, or ``None``.
    :raises ValueError: if an address is not an IP literal, the two differ in
        family, or the packet would not fit HEP's 16-bit length.
    """
    s = ipaddress.ip_address(src[0].strip("[]"))
    d = ipaddress.ip_address(dst[0].strip("[]"))
    if s.version != d.version:
        raise ValueError("source and destination differ in address family")
    if s.version == 4:
        family, src_kind, dst_kind = _AF_INET, _IPV4_SRC, _IPV4_DST
    else:
        family, src_kind, dst_kind = _AF_INET6, _IPV6_SRC, _IPV6_DST
    seconds = int(timestamp)
    micros = int(round((timestamp - seconds) * 1_000_000)) % 1_000_000
    chunks = [
        _chunk(_IP_FAMILY, bytes([family])),
        _chunk(_IP_PROTO, bytes([_UDP])),
        _chunk(src_kind, s.packed),
        _chunk(dst_kind, d.packed),
        _chunk(_SRC_PORT, struct.pack("!H", src[1])),
        _chunk(_DST_PORT, struct.pack("!H", dst[1])),
        _chunk(_TIME_SEC, struct.pack("!I", seconds & 0xFFFFFFFF)),
        _chunk(_TIME_USEC, struct.pack("!I", micros)),
        _chunk(_PROTO_TYPE, bytes([_SIP])),
        _chunk(_CAPTURE_ID, struct.pack("!I", capture_id & 0xFFFFFFFF)),
    ]
    if auth_key is not None:
        chunks.append(_chunk(_AUTH_KEY, auth_key.encode("utf-8")))
    if correlation_id is not None:
        chunks.append(_chunk(_CORRELATION_ID, correlation_id.encode("utf-8")))
    chunks.append(_chunk(_PAYLOAD, payload))
    body = b"".join(chunks)
    length = 6 + len(body)
    if length > 0xFFFF:
        raise ValueError(f"a HEP packet of {length} bytes exceeds 65535")
    return b"HEP3" + struct.pack("!H", length) + body


def _call_id(data: bytes) -> str | None:
    head = data.split(b"\r\n\r\n", 1)[0]
    found = _CALL_ID.search(head)
    return found.group(1).decode("utf-8", "replace") if found else None


def _cseq_method(data: bytes) -> bytes | None:
    found = _CSEQ.search(data.split(b"\r\n\r\n", 1)[0])
    return found.group(1).upper() if found else None


class HepCapture:
    """Send a HEP v3 copy of SIP messages to a collector, while switched on.

    :param clock: ``seconds()`` for the timestamps, ``callLater`` for the hold.
    :param address: the collector, ``(ip, port)``.
    :param capture_id: this gateway's capture agent id.
    :param enabled: whether capture starts switched on.
    :param auth_key: the collector's password, or ``None``.
    :param correlate: maps a SIP Call-ID to the gateway's call id, or ``None``
        when it belongs to no accepted call (set by the SIP service).
    """

    def __init__(
        self,
        clock: Any,
        address: Address,
        capture_id: int,
        enabled: bool = False,
        auth_key: Secret | None = None,
        correlate: Callable[[str], str | None] = lambda sip_call_id: None,
    ) -> None:
        self._clock = clock
        self.address = address
        self.capture_id = capture_id
        self._auth_key = auth_key
        self.correlate = correlate
        self.enabled = False
        #: Packets handed to the socket.
        self.sent = 0
        #: Packets lost: the socket refused them, or they could not be encoded.
        self.errors = 0
        self._socket: socket.socket | None = None
        self._last_error_log: float | None = None
        self._known: OrderedDict[str, str] = OrderedDict()
        #: Messages of calls not yet accepted, by SIP Call-ID.
        self._held: dict[str, list[tuple[bytes, Address, Address, float]]] = {}
        self._held_timers: dict[str, Any] = {}
        if enabled:
            self.on()

    def __repr__(self) -> str:
        state = "on" if self.enabled else "off"
        return (
            f"<HepCapture {state} to {self.address[0]}:{self.address[1]}"
            f" sent={self.sent} errors={self.errors}>"
        )

    def status(self) -> dict[str, Any]:
        """The switch, the collector and the counters, for the control API."""
        return {
            "enabled": self.enabled,
            "address": f"{self.address[0]}:{self.address[1]}",
            "capture_id": self.capture_id,
            "sent": self.sent,
            "errors": self.errors,
        }

    def on(self) -> bool:
        """Switch capture on; return whether it is on (a socket that cannot open leaves it off)."""
        if self.enabled:
            return True
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
        except OSError as e:
            log.error("HEP capture cannot open its socket: {error}", error=e)
            return False
        self._socket = sock
        self.enabled = True
        log.info("HEP capture on, to {host}:{port}", host=self.address[0], port=self.address[1])
        return True

    def off(self) -> bool:
        """Switch capture off (held messages are dropped); return whether it is on (``False``)."""
        if self.enabled:
            log.info(
                "HEP capture off ({sent} sent, {errors} lost)", sent=self.sent, errors=self.errors
            )
        self.enabled = False
        for timer in self._held_timers.values():
            if timer.active():
                timer.cancel()
        self._held_timers.clear()
        self._held.clear()
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        return False

    def close(self) -> None:
        """Stop capturing, at the SIP stack's stop."""
        self.off()

    def received(self, data: bytes, src: Address, local: Address) -> None:
        """Capture a datagram the SIP socket received from ``src``."""
        if self.enabled:
            self._capture(data, src, local)

    def sent_to(self, data: bytes, local: Address, dst: Address) -> None:
        """Capture a datagram the SIP socket sent to ``dst``."""
        if self.enabled:
            self._capture(data, local, dst)

    # -- correlation and sending ----------------------------------------------

    def _correlation(self, sip_call_id: str) -> str | None:
        known = self._known.get(sip_call_id)
        if known is not None:
            return known
        try:
            found = self.correlate(sip_call_id)
        except Exception:
            found = None
        if found is not None:
            self._known[sip_call_id] = found
            while len(self._known) > MAX_KNOWN:
                self._known.popitem(last=False)
        return found

    def _capture(self, data: bytes, src: Address, dst: Address) -> None:
        try:
            now = self._clock.seconds()
            sip_call_id = _call_id(data)
            if sip_call_id is None:
                self._send(data, src, dst, now, None)
                return
            self._release_ready()
            correlation = self._correlation(sip_call_id)
            if correlation is not None:
                self._send(data, src, dst, now, correlation)
                return
            if sip_call_id in self._held or _cseq_method(data) == b"INVITE":
                self._hold(sip_call_id, (data, src, dst, now))
                return
            self._send(data, src, dst, now, sip_call_id)
        except Exception:  # capture must never disturb SIP
            self._failed("capture failed unexpectedly")

    def _hold(self, sip_call_id: str, message: tuple[bytes, Address, Address, float]) -> None:
        if sum(len(v) for v in self._held.values()) >= MAX_HELD:
            oldest = next(iter(self._held))
            self._release(oldest)
        self._held.setdefault(sip_call_id, []).append(message)
        if sip_call_id not in self._held_timers:
            self._held_timers[sip_call_id] = self._clock.callLater(
                HOLD_SECONDS, self._release, sip_call_id
            )

    def _release_ready(self) -> None:
        """Send the held messages of every call that has been accepted since."""
        for sip_call_id in list(self._held):
            if self._correlation(sip_call_id) is not None:
                self._release(sip_call_id)

    def _release(self, sip_call_id: str) -> None:
        timer = self._held_timers.pop(sip_call_id, None)
        if timer is not None and timer.active():
            timer.cancel()
        messages = self._held.pop(sip_call_id, [])
        correlation = self._correlation(sip_call_id) or sip_call_id
        for data, src, dst, when in messages:
            self._send(data, src, dst, when, correlation)

    def _send(
        self, data: bytes, src: Address, dst: Address, when: float, correlation: str | None
    ) -> None:
        if self._socket is None:
            return
        try:
            packet = encode_hep3(
                data,
                src,
                dst,
                when,
                self.capture_id,
                correlation,
                self._auth_key.reveal() if self._auth_key is not None else None,
            )
            self._socket.sendto(packet, self.address)
        except (OSError, ValueError) as e:
            self._failed(str(e))
            return
        self.sent += 1

    def _failed(self, why: str) -> None:
        self.errors += 1
        now = self._clock.seconds()
        if self._last_error_log is None or now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.warn(
                "HEP capture to {host}:{port} lost a packet: {why}"
                " ({errors} lost in all; logged once a minute)",
                host=self.address[0],
                port=self.address[1],
                why=why,
                errors=self.errors,
            )
