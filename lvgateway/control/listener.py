"""A stream listener service that can say where it listens.

The control part's three listeners (internal control, vendor API, manhole) are
:class:`Listener` services. It is Twisted's ``StreamServerEndpointService``
plus :meth:`Listener.when_listening`, which fires with the listening port:
the way a test that listens on port 0 learns its port, and the way start-up
code can log the address it is really bound to. :func:`is_loopback` tells
whether an endpoint string keeps a listener on this machine.
"""

from __future__ import annotations

import attrs
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorCore,
    IStreamServerEndpoint,
)
from twisted.python.failure import Failure
from zope.interface import implementer

from lvgateway.config.endpoints import is_loopback

__all__ = ["Listener", "is_loopback", "server_endpoint"]


def server_endpoint(reactor: IReactorCore, listen: str) -> IStreamServerEndpoint:
    """Return the server endpoint a Twisted endpoint string describes.

    :param reactor: the reactor the endpoint listens with.
    :param listen: such as ``tcp:9780:interface=127.0.0.1`` or ``ssl:8443:...``.
    :raises ValueError: if the string names no known kind of endpoint or is malformed.
    """
    endpoint: IStreamServerEndpoint = endpoints.serverFromString(  # type: ignore[no-untyped-call]
        reactor, listen
    )
    return endpoint


@implementer(IStreamServerEndpoint)
@attrs.define
class _PortNotingEndpoint:
    """An endpoint that reports the port, or the failure, of each ``listen``."""

    _endpoint: IStreamServerEndpoint
    _listener: Listener

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        d = self._endpoint.listen(factory)
        d.addCallbacks(self._listener._listening, self._listener._not_listening)
        return d


class Listener(StreamServerEndpointService):
    """Listen on a Twisted server endpoint while the service runs.

    :param endpoint: where to listen, usually from :func:`server_endpoint`.
    :param factory: the protocol factory, such as a ``twisted.web.server.Site``.
    """

    def __init__(self, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self._port: IListeningPort | None = None
        self._failure: Failure | None = None
        self._waiting: list[Deferred[IListeningPort]] = []
        super().__init__(_PortNotingEndpoint(endpoint, self), factory)  # type: ignore[no-untyped-call]

    def when_listening(self) -> Deferred[IListeningPort]:
        """Return a Deferred that fires with the listening port once the service listens.

        It errbacks with the error if listening failed, such as a port in use.
        """
        if self._port is not None:
            return succeed(self._port)
        if self._failure is not None:
            return fail(self._failure)
        d: Deferred[IListeningPort] = Deferred()
        self._waiting.append(d)
        return d

    def stopService(self) -> Deferred[None]:
        """Stop listening; the Deferred fires once the port is closed."""
        self._port = None
        self._failure = None
        d: Deferred[None] = super().stopService()  # type: ignore[no-untyped-call]
        return d

    def _listening(self, port: IListeningPort) -> IListeningPort:
        self._port = port
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)
        return port

    def _not_listening(self, failure: Failure) -> Failure:
        self._failure = failure
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)
        return failure
