"""The SIP stack of one process: Sippy's transaction manager on the reactor, as a service.

It owns the process-wide parts of Sippy (``SipConf``, the transaction
manager, the reactor adapter) and fixes what Sippy 2.5.0 gets wrong for us
at this level: the case-sensitive transport of in-dialog requests
(a ``;transport=UDP`` Contact made every BYE raise, silently).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import sippy.SipTransactionManager
from sippy.SipConf import SipConf
from sippy.SipTransactionManager import SipTransactionManager
from sippy.Udp_server import Udp_server_opts
from twisted.application.service import Service
from twisted.logger import Logger

from lvgateway.sip.guard import MessageGuard
from lvgateway.sip.hep import HepCapture
from lvgateway.sip.metrics import SipMetrics
from lvgateway.sip.sippy_reactor import SippyOnReactor
from lvgateway.sip.udp import ReactorUdpServer, SourceFilter

__all__ = ["SipStack", "SipTrace"]

log = Logger()

#: Sippy's request callback: ``(request, transaction) -> (response, cancel_cb, no_ack_cb)``.
RequestHandler = Callable[[Any, Any], Any]


class SipTrace:
    """Sippy's ``_sip_logger``: every message in and out, as debug events when enabled.

    Off by default: a busy gateway sends thousands of messages a minute.
    """

    def __init__(self, enabled: bool = False) -> None:
        self.enabled = enabled

    def write(self, *args: Any, **kwargs: Any) -> None:
        """Log a traced message, if tracing is on."""
        if self.enabled:
            log.debug(
                "SIP {call_id}: {text}",
                call_id=kwargs.get("call_id", "-"),
                text="".join(str(a) for a in args).rstrip(),
            )


class _CachedAnswer:
    """One entry of Sippy's retransmission cache: a ``SipTMRetransmitO`` without a ``__dict__``."""

    __slots__ = ("userv", "data", "address", "call_id", "lossemul")

    def __init__(
        self,
        userv: Any = None,
        data: Any = None,
        address: Any = None,
        call_id: Any = None,
        lossemul: Any = None,
    ) -> None:
        self.userv = userv
        self.data = data
        self.address = address
        self.call_id = call_id
        self.lossemul = lossemul


#: The entry for a message seen but not to be answered again (most entries): one, shared.
_NOTHING_TO_RESEND = _CachedAnswer()


def _cache_entry(*args: Any) -> _CachedAnswer:
    """What Sippy's ``SipTMRetransmitO(...)`` makes, with far fewer objects for the collector.

    Sippy keeps an entry per message for 32 to 64 s (to answer or ignore its
    retransmissions): at 100 calls a second that is some 20,000 instances and
    as many ``__dict__``s, all walked by every full collection. Sippy only
    reads the entries, so the empty ones can share one instance.
    """
    return _CachedAnswer(*args) if any(a is not None for a in args) else _NOTHING_TO_RESEND


#: Sippy's modules that ask ``'my' in dir(value)`` while printing every message.
_MY_MARKER_MODULES = ("sippy.SipURL", "sippy.SipVia", "sippy.SipConf")


def _my_marker(value: Any) -> tuple[str, ...]:
    """What Sippy's ``'my' in dir(value)`` needs, without listing every attribute of a string.

    Sippy marks its own address, port and transport placeholders with a class
    attribute ``my`` and tests for it with ``dir()``, which builds a sorted
    list of some eighty names for each host, port and transport of each
    message it prints: about 8 % of the gateway's CPU under load. In the
    modules that do it, ``dir`` is used only that way (a test checks).
    """
    return ("my",) if getattr(value, "my", False) else ()


class _TransactionManager(SipTransactionManager):  # type: ignore[misc]
    """Sippy's transaction manager with its UDP servers on the reactor and transport case fixed."""

    def __init__(self, global_config: dict[str, Any], req_cb: RequestHandler, server: Any) -> None:
        self.model_udp_server = (server, Udp_server_opts)
        super().__init__(global_config, req_cb)

    def newTransaction(
        self,
        msg: Any,
        resp_cb: Any = None,
        laddress: Any = None,
        userv: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Start a client transaction; a target transport of ``UDP`` counts as ``udp``.

        Sippy compares ``transport == 'udp'`` case-sensitively, so a peer whose
        Contact says ``;transport=UDP`` made every in-dialog request raise.
        """
        if userv is None:
            address, transport = msg.getTarget()
            if str(transport).lower() == "udp":
                userv = self.l4r.getServer(laddress or address, is_local=laddress is not None)
        return super().newTransaction(msg, resp_cb, laddress, userv, *args, **kwargs)

    def shutdown(self) -> None:
        """Stop, cancelling the timers of transactions in flight first.

        Sippy's own shutdown drops its transaction tables but leaves their
        retransmission timers armed: a BYE in flight at stop would fire on the
        dead manager and log a ``TypeError`` traceback half a second later.
        """
        for table in (self.tclient, self.tserver):
            for t in list((table or {}).values()):
                for name in ("teA", "teB", "teC", "teD", "teE", "teF", "teG"):
                    timer = getattr(t, name, None)
                    if timer is not None:
                        timer.cancel()
        super().shutdown()

    def unregConsumer(self, consumer: Any, call_id: str) -> None:
        """Forget a user agent; after shutdown there is nothing to forget.

        A user agent goes dead 32 s after its call ends and unregisters then,
        which may be after the stack stopped.
        """
        if self.req_consumers is None:
            return
        super().unregConsumer(consumer, call_id)


class SipStack(Service):
    """Listen for SIP on UDP and hand each new request to ``request_handler``.

    :param reactor: the reactor Sippy runs on.
    :param listen_host: an IP literal to bind.
    :param listen_port: the port, or 0 for one the kernel picks.
    :param source_filter: which sources may reach Sippy.
    :param request_handler: Sippy's request callback for out-of-dialog requests.
    :param user_agent: the ``User-Agent``/``Server`` header.
    :param advertised_host: the address put in Via and Contact, if not the bound one.
    :param trace: log every SIP message at debug level.
    :param metrics: where live transactions and refused messages are counted.
    :param guard_log_interval: seconds between the guard's summary log lines.
    :param capture: copies every message in and out as HEP, or ``None``.
    :param receive_buffer: the socket's receive buffer to ask for, in bytes; 0 for the default.
    """

    def __init__(
        self,
        reactor: Any,
        listen_host: str,
        listen_port: int,
        source_filter: SourceFilter,
        request_handler: RequestHandler,
        user_agent: str = "lvgateway",
        advertised_host: str | None = None,
        trace: bool = False,
        metrics: SipMetrics | None = None,
        guard_log_interval: float = 60.0,
        capture: HepCapture | None = None,
        receive_buffer: int = 0,
    ) -> None:
        self._reactor = reactor
        self._receive_buffer = receive_buffer
        self.capture = capture
        self._host = listen_host
        self._port = listen_port
        self.source_filter = source_filter
        self._handler = request_handler
        self._user_agent = user_agent
        self._advertised = advertised_host
        self._trace = trace
        self.adapter: SippyOnReactor | None = None
        self.global_config: dict[str, Any] = {}
        self.tm: Any = None
        self._metrics = metrics
        self.guard = MessageGuard(
            reactor,
            self._send_refusal,
            on_refused=self._count_refusal,
            server=user_agent,
            interval=guard_log_interval,
        )
        if metrics is not None:
            metrics.transactions.set_function(self.transactions)

    @property
    def port(self) -> int:
        """The UDP port bound, once started."""
        return int(self.global_config["_sip_port"])

    @property
    def server(self) -> ReactorUdpServer:
        """The one UDP server of the transaction manager."""
        server: ReactorUdpServer = self.tm.l4r.getServer(None)
        return server

    def transactions(self) -> int:
        """How many client and server transactions Sippy holds now."""
        if self.tm is None:
            return 0
        return len(self.tm.tclient or ()) + len(self.tm.tserver or ())

    def _send_refusal(self, data: bytes, address: tuple[str, int]) -> None:
        if self.tm is not None:
            self.server.send_to(data, address)

    def _count_refusal(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.refused.labels(reason).inc()

    def startService(self) -> None:
        """Drive Sippy from the reactor and bind the SIP port."""
        self.adapter = SippyOnReactor.for_reactor(self._reactor)
        # Process-wide, as SipConf: the module's name is what its methods call.
        sippy.SipTransactionManager.SipTMRetransmitO = _cache_entry
        for name in _MY_MARKER_MODULES:
            importlib.import_module(name).dir = _my_marker  # type: ignore[attr-defined]
        SipConf.my_uaname = self._user_agent
        self.global_config = {
            "_sip_address": self._host,
            "_sip_port": self._port,
            "_sip_logger": SipTrace(self._trace),
        }
        server = functools.partial(
            ReactorUdpServer,
            self._reactor,
            self.source_filter,
            self._advertised,
            guard=self.guard,
            capture=self.capture,
            receive_buffer=self._receive_buffer,
        )
        self.tm = _TransactionManager(self.global_config, self._handler, server)
        self.global_config["_sip_tm"] = self.tm
        self.global_config["_sip_port"] = self.server.port
        Service.startService(self)

    def stopService(self) -> None:
        """Stop listening; transactions in flight are abandoned."""
        Service.stopService(self)
        self.guard.stop()
        if self.capture is not None:
            self.capture.close()
        if self.tm is not None:
            self.tm.shutdown()
            self.tm = None
