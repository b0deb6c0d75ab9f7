"""SIP over UDP on the reactor, behind the source filter, as Sippy's ``Network_server``.

Sippy builds its UDP servers from ``SipTransactionManager.model_udp_server``;
:class:`ReactorUdpServer` is the one it gets here. It listens with
``reactor.listenUDP``, hands datagrams to Sippy on the reactor thread, and
drops every datagram from a network that is not allowed before Sippy sees it:
Sippy answers an unparseable request with 400 before any callback runs, and
in-dialog requests bypass the request callback, so the filter must sit here.
A dropped datagram gets no response at all; it is counted, and logged at
most once a minute per source address. An allowed datagram then passes the
:class:`~lvgateway.sip.guard.MessageGuard`, which answers or drops, without a
transaction, every message Sippy must not process. With HEP capture
(:class:`~lvgateway.sip.hep.HepCapture`), each allowed datagram and each one
sent is copied to the collector.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

import attrs
from sippy.Network_server import Network_server, Remote_address
from sippy.Time.MonoTime import MonoTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from lvgateway.config.model import IPNetwork
from lvgateway.sip.guard import MessageGuard
from lvgateway.sip.hep import HepCapture

__all__ = ["ReactorUdpServer", "SourceFilter", "is_ip_literal"]

log = Logger()

#: How often a dropped source is logged again.
DROP_LOG_INTERVAL = 60.0


def _networks(networks: Sequence[IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(networks)


@attrs.define
class SourceFilter:
    """Which source addresses may reach the SIP stack.

    :param allowed: the allowed networks.
    :param clock: for rate-limiting the log of drops (``seconds()``).
    :param on_drop: called with each dropped source address, e.g. to count it.
    """

    allowed: tuple[IPNetwork, ...] = attrs.field(converter=_networks)
    clock: Any
    on_drop: Callable[[str], None] = lambda host: None
    dropped: int = 0
    _last_logged: dict[str, float] = attrs.field(factory=dict)

    def allows(self, host: str) -> bool:
        """Whether a datagram from ``host`` may be handed to Sippy; counts and logs a refusal."""
        if _allowed(host, self.allowed):
            return True
        self.dropped += 1
        self.on_drop(host)
        now = self.clock.seconds()
        if now - self._last_logged.get(host, -DROP_LOG_INTERVAL) >= DROP_LOG_INTERVAL:
            if len(self._last_logged) > 10000:  # bounded under a spray of sources
                self._last_logged.clear()
            self._last_logged[host] = now
            log.warn(
                "SIP datagram from {host} dropped: not in the allowed networks"
                " ({dropped} dropped in all; logged once a minute per source)",
                host=host,
                dropped=self.dropped,
            )
        return False


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer (0: leave it); return what the kernel reports.

    A burst of INVITEs arriving while the reactor is busy waits in this
    buffer; once it is full the kernel drops datagrams unseen, and LiveVox
    retransmits into the same full socket.
    """
    if size > 0:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError as e:
            log.warn("SIP socket: could not set a {size}-byte receive buffer: {e}", size=size, e=e)
    return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


@functools.lru_cache(maxsize=4096)
def _allowed(host: str, allowed: tuple[IPNetwork, ...]) -> bool:
    """Whether ``host`` is in one of ``allowed``: parsed once per source, not per datagram."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return any(address in net for net in allowed)


class _SipDatagrams(DatagramProtocol):
    def __init__(self, server: ReactorUdpServer) -> None:
        self._server = server

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self._server.datagram_received(datagram, addr)


@functools.lru_cache(maxsize=1024)
def is_ip_literal(host: str) -> bool:
    """Whether ``host`` is an IP address (IPv6 with or without brackets); cached: asked per send."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class ReactorUdpServer(Network_server):  # type: ignore[misc]
    """One UDP socket of Sippy's transaction manager, listening with the reactor.

    Built by Sippy as ``model_udp_server[0](global_config, uopts)``: bind the
    first three arguments with :func:`functools.partial`.

    :param reactor: listens and resolves.
    :param source_filter: decides which datagrams Sippy sees.
    :param advertised_host: the address put in Via and Contact, when it is
        not the bound one; ``None`` for the bound one.
    :param guard: checks each allowed datagram before Sippy parses it.
    :param capture: copies each allowed and each sent datagram as HEP, or ``None``.
    :param receive_buffer: the socket's receive buffer to ask for, in bytes; 0 for the default.
    """

    transport = "udp"

    def __init__(
        self,
        reactor: Any,
        source_filter: SourceFilter,
        advertised_host: str | None,
        global_config: dict[str, Any],
        uopts: Any,
        guard: MessageGuard | None = None,
        capture: HepCapture | None = None,
        receive_buffer: int = 0,
    ) -> None:
        super().__init__(uopts)
        self.guard = guard
        self.capture = capture
        self._reactor = reactor
        self._filter = source_filter
        self._advertised = advertised_host
        self._port: Any = None
        # Sippy first makes a dry-run instance, with flags 0, to check the port
        # is free; getCopy() drops flags, so read the argument, not self.uopts.
        if getattr(uopts, "flags", None) == 0:
            return
        host, port = self.uopts.laddress
        self._port = reactor.listenUDP(int(port), _SipDatagrams(self), interface=host.strip("[]"))
        self.uopts.laddress = (host, self._port.getHost().port)
        #: The receive buffer the kernel granted, in bytes (as it reports it).
        self.receive_buffer = set_receive_buffer(self._port.getHandle(), receive_buffer)
        log.emit(
            LogLevel.warn if self.receive_buffer < receive_buffer else LogLevel.info,
            "SIP listening on udp {host}:{port}, receive buffer {granted} bytes ({asked} asked;"
            " Linux reports twice what it grants, and caps it at net.core.rmem_max)",
            host=host,
            port=self.uopts.laddress[1],
            granted=self.receive_buffer,
            asked=receive_buffer,
        )

    @property
    def port(self) -> int:
        """The UDP port bound."""
        return int(self.uopts.laddress[1])

    def getSIPaddr(self) -> tuple[tuple[str, int], str]:
        """The address Sippy writes into Via and Contact."""
        host, port = self.uopts.laddress
        return ((self._advertised or host, int(port)), self.transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        """Hand an allowed datagram to Sippy; drop others unanswered."""
        host = addr[0]
        if not self._filter.allows(host):
            return
        if self.capture is not None:
            self.capture.received(data, (host, int(addr[1])), self._local())
        if self.guard is not None:
            admitted = self.guard.admit(data, (host, int(addr[1])))
            if admitted is None:
                return
            data = admitted
        if ":" in host:
            host = f"[{host}]"
        self.handle_read(data, Remote_address((host, addr[1]), self.transport), MonoTime())

    def send_to(self, data: bytes | str, address: tuple[str, int], delayed: bool = False) -> None:
        """Write a message to ``address``, resolving a host name first (off the reactor thread)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if self._port is None:
            return
        host, port = address[0].strip("[]"), int(address[1])
        if is_ip_literal(host):
            self._write(data, host, port)
            return
        d = self._reactor.resolve(host)
        d.addCallback(lambda ip: self._write(data, ip, port))
        d.addErrback(self._unresolved, host)

    def _local(self) -> tuple[str, int]:
        host, port = self.uopts.laddress
        return (str(host).strip("[]"), int(port))

    def _write(self, data: bytes, host: str, port: int) -> None:
        if self._port is None:
            return
        try:
            self._port.write(data, (host, port))
        except OSError as e:  # ENETUNREACH and the like: the transaction retransmits
            log.warn("SIP send to {host}:{port} failed: {error}", host=host, port=port, error=e)
            return
        if self.capture is not None:
            self.capture.sent_to(data, self._local(), (host, port))

    def _unresolved(self, failure: Failure, host: str) -> None:
        log.warn(
            "SIP send to {host} failed: the name does not resolve ({error})",
            host=host,
            error=failure.value,
        )

    def join(self) -> None:
        """Nothing to join: no worker threads here."""

    def shutdown(self) -> None:
        """Stop listening and let go of Sippy's callback."""
        if self._port is not None:
            self._port.stopListening()
            self._port = None
        self.uopts.data_callback = None
