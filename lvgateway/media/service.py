"""A media engine as a service of the gateway's tree.

The engine's :meth:`~lvgateway.media.interfaces.IMediaRelay.stop` releases
the calls' ports; in the ordered drain it belongs in ``STOP_MEDIA``, after
SIP has stopped, so the service's own stop is normally a no-op by then.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from lvgateway.media.interfaces import IMediaRelay

__all__ = ["MediaRelayService"]


class MediaRelayService(Service):
    """Starts an :class:`IMediaRelay` with the service tree and stops it with it.

    :param relay: the engine.
    """

    def __init__(self, relay: IMediaRelay) -> None:
        self.relay = relay

    def startService(self) -> None:
        """Start the engine."""
        Service.startService(self)  # type: ignore[no-untyped-call]
        self.relay.start()

    def stopService(self) -> Deferred[Any]:
        """Stop the engine; fires when its ports are closed."""
        Service.stopService(self)  # type: ignore[no-untyped-call]
        return self.relay.stop()
