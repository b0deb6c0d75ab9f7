"""The simulator over HTTP: a twisted.web resource tree, and an in-process starter for tests.

The tree has two branches: ``/_sandbox/...`` goes to the admin API
(:mod:`.sandbox_admin`), everything else to the simulated LiveVox
(:meth:`.Simulator.handle`), the client-specific AIA path included.

Latency is waited out on the simulator's clock with ``deferLater`` while the
resource returns ``NOT_DONE_YET``, so a test on ``task.Clock`` decides when a
delayed answer goes out. A request is applied when it arrives and only its
answer is delayed; if the client goes away first, the pending answer is
cancelled and its journal entry marked ``delivered=False``. An outage in
``drop`` mode aborts the connection without any answer.

:func:`start_simulator` listens on 127.0.0.1, port 0 by default, for tests
and benchmarks::

    running = await start_simulator(reactor, clock, config)
    ...treq.post(running.base_url + "/session/login", ...)
    await running.stop()
"""

from __future__ import annotations

import weakref
from typing import Any, cast

import attrs
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from lvgateway.sandbox.sandbox_admin import ADMIN_PREFIX, handle_admin
from lvgateway.sandbox.sandbox_config import SandboxConfig
from lvgateway.sandbox.simulator import SimRequest, SimResponse, Simulator

log = Logger()


def to_sim_request(request: Request) -> SimRequest:
    """Turn a twisted.web request into the simulator's plain :class:`SimRequest`.

    :param request: the request being rendered.
    """
    query: dict[str, str] = {}
    for key, values in (request.args or {}).items():
        if values:
            query[key.decode("utf-8", "replace")] = values[0].decode("utf-8", "replace")
    headers: dict[str, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        if values:
            headers[name.decode("latin-1").lower()] = values[0].decode("latin-1")
    content = request.content
    body = content.read() if content is not None else b""
    return SimRequest(
        method=(request.method or b"GET").decode("ascii", "replace"),
        path=(request.path or b"/").decode("utf-8", "replace"),
        query=query,
        headers=headers,
        body=body,
    )


def _write(request: Request, response: SimResponse) -> None:
    request.setResponseCode(response.status)
    if response.body:
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Content-Length", b"%d" % len(response.body))
        request.write(response.body)
    request.finish()


class _LiveVoxResource(Resource):
    """Every LiveVox route and the AIA endpoint: a leaf that routes on the full path."""

    isLeaf = True

    def __init__(self, simulator: Simulator) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._simulator = simulator

    def render(self, request: Request) -> bytes | int:
        response = self._simulator.handle(to_sim_request(request))
        entry = response.entry
        if response.drop:
            if entry is not None:
                entry.delivered = False
            transport = request.channel.transport
            if transport is not None:
                cast(ITCPTransport, transport).abortConnection()
            return NOT_DONE_YET
        if response.delay <= 0:
            _write(request, response)
            if entry is not None:
                entry.delivered = True
            return NOT_DONE_YET
        delayed: Deferred[None] = deferLater(
            self._simulator.clock, response.delay, _write, request, response
        )

        def written(_: None) -> None:
            if entry is not None:
                entry.delivered = True

        def gone(reason: Failure) -> None:
            if entry is not None and entry.delivered is None:
                entry.delivered = False
                log.info(
                    "client went away before the delayed answer to {path} (#{seq})",
                    path=entry.path,
                    seq=entry.seq,
                )
            delayed.cancel()

        def cancelled(reason: Failure) -> None:
            reason.trap(CancelledError)  # type: ignore[no-untyped-call]

        delayed.addCallbacks(written, cancelled)
        request.notifyFinish().addErrback(gone)
        return NOT_DONE_YET


class _AdminResource(Resource):
    """The ``/_sandbox/`` admin API."""

    isLeaf = True

    def __init__(self, simulator: Simulator) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._simulator = simulator

    def render(self, request: Request) -> bytes:
        response = handle_admin(self._simulator, to_sim_request(request))
        request.setResponseCode(response.status)
        if response.body:
            request.setHeader(b"Content-Type", b"application/json")
        return response.body


class SimulatorRoot(Resource):
    """The root of the simulator's resource tree.

    :param simulator: the simulator to serve.
    """

    def __init__(self, simulator: Simulator) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.simulator = simulator
        self._livevox = _LiveVoxResource(simulator)
        self.putChild(ADMIN_PREFIX.encode("ascii"), _AdminResource(simulator))

    def getChild(self, path: bytes, request: Any) -> Resource:
        return self._livevox


class SimulatorSite(Site):
    """A :class:`Site` for the simulator: no access log (the journal is the record),
    and able to close its open connections on stop.

    :param simulator: the simulator to serve.
    :param reactor: the reactor for HTTP timeouts (not the simulator's clock).
    """

    noisy = False

    def __init__(self, simulator: Simulator, reactor: IReactorTime | None = None) -> None:
        super().__init__(SimulatorRoot(simulator), reactor=reactor)  # type: ignore[no-untyped-call]
        self.simulator = simulator
        self._channels: weakref.WeakSet[Protocol] = weakref.WeakSet()

    def buildProtocol(self, addr: IAddress | None) -> Any:
        protocol = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        if protocol is not None:
            self._channels.add(protocol)
        return protocol

    def log(self, request: http.Request) -> None:
        """Write no access log line."""

    def close_connections(self) -> None:
        """Close every connection still open (keep-alive clients, pending answers)."""
        for channel in list(self._channels):
            transport = getattr(channel, "transport", None)  # gone once disconnected
            if transport is not None:
                transport.loseConnection()


@attrs.define
class RunningSimulator:
    """A simulator listening on loopback, started by :func:`start_simulator`.

    :param simulator: the simulator: its state, journal, faults and controls.
    :param port: the listening port.
    :param site: the HTTP site serving it.
    """

    simulator: Simulator
    port: IListeningPort
    site: SimulatorSite

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``, without a trailing slash."""
        host = self.port.getHost()
        return f"http://{host.host}:{host.port}"  # type: ignore[attr-defined]

    async def stop(self) -> None:
        """Stop listening and close the open connections."""
        stopped = self.port.stopListening()
        if stopped is not None:
            await stopped
        self.site.close_connections()


async def start_simulator(
    reactor: IReactorTCP,
    clock: IReactorTime,
    config: SandboxConfig,
    *,
    simulator: Simulator | None = None,
    interface: str = "127.0.0.1",
    port: int = 0,
) -> RunningSimulator:
    """Start a simulator listening on ``interface``, on a free port by default.

    :param reactor: the reactor to listen with.
    :param clock: the simulator's clock: the reactor itself, or a
        ``task.Clock`` to control latency, outages and session expiry.
    :param config: the configuration (see :func:`.sandbox_config_from_dict`).
    :param simulator: serve this simulator instead of a new one (to keep its
        state across a stop and start).
    :param interface: the address to listen on.
    :param port: the port, 0 for any free one.
    """
    sim = simulator if simulator is not None else Simulator(config, clock)
    site = SimulatorSite(sim, cast(IReactorTime, reactor))
    endpoint = endpoints.TCP4ServerEndpoint(  # type: ignore[no-untyped-call]
        reactor, port, interface=interface
    )
    listening: IListeningPort = await endpoint.listen(site)  # type: ignore[no-untyped-call]
    running = RunningSimulator(sim, listening, site)
    log.info("LiveVox simulator listening on {url}", url=running.base_url)
    return running
