"""``/hep`` on the internal control listener: the HEP capture switch (behind the control token).

Routes (JSON)::

    GET  /hep        whether capture is on, the collector, packets sent and lost
    POST /hep/on     switch capture on; answers the status
    POST /hep/off    switch capture off; answers the status

Mounted by the gateway::

    control.routes.add_route("hep", HepResource(sip.hep))
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from lvgateway.control.web import BaseResource, JsonError, json_reply

__all__ = ["HepResource", "HepSwitch"]

log = Logger()


class HepSwitch(Protocol):
    """What the resource switches: :class:`lvgateway.sip.hep.HepCapture`."""

    def on(self) -> bool:
        """Switch on; return whether it is on."""

    def off(self) -> bool:
        """Switch off; return whether it is on."""

    def status(self) -> dict[str, Any]:
        """The switch and its counters."""


class HepResource(BaseResource):
    """``/hep``: the capture's status, and its ``on`` and ``off`` actions.

    :param capture: the HEP capture of the SIP stack.
    """

    def __init__(self, capture: HepSwitch) -> None:
        super().__init__()
        self._capture = capture

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """``on`` or ``off``; the status for a trailing slash."""
        if request.postpath:
            return JsonError(404, "not found")
        if path == b"":
            return self
        if path in (b"on", b"off"):
            return _Switch(self._capture, path == b"on")
        return JsonError(404, "not found")

    def render_GET(self, request: IRequest) -> bytes:
        """Answer the status."""
        return json_reply(request, self._capture.status())


class _Switch(BaseResource):
    """``POST`` switches the capture on or off."""

    isLeaf = True

    def __init__(self, capture: HepSwitch, on: bool) -> None:
        super().__init__()
        self._capture = capture
        self._on = on

    def render_POST(self, request: IRequest) -> bytes:
        """Switch, log it, and answer the status."""
        now_on = self._capture.on() if self._on else self._capture.off()
        log.info(
            "HEP capture switched {state} through the control API", state="on" if now_on else "off"
        )
        if self._on and not now_on:
            return json_reply(
                request, {"error": "capture could not start", **self._capture.status()}, 503
            )
        return json_reply(request, self._capture.status())
