"""systemd's notify protocol: readiness, the watchdog, and a status line.

``Type=notify`` units get ``$NOTIFY_SOCKET``, a datagram socket (a path, or
``@name`` in the abstract namespace) to which the service sends
``KEY=VALUE`` lines. The gateway sends ``READY=1`` once its listeners are up
and call recovery is done, ``STATUS=`` with its agents READY and live calls,
``STOPPING=1`` when the drain begins, and, with ``WatchdogSec=`` set (systemd
passes ``$WATCHDOG_USEC``), ``WATCHDOG=1`` from a reactor timer at half the
interval: a stuck reactor stops the pings and systemd restarts the service.
Without ``$NOTIFY_SOCKET`` every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger()


class Notifier:
    """Sends notify messages to ``$NOTIFY_SOCKET``, if there is one.

    :param environ: where ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` are read.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval: float | None = (
            int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        )
        self._socket: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return self.address is not None

    def notify(self, **fields: str) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY="1", STATUS="...")``); return whether sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
                # Never block the reactor on a reader that is behind: a message is dropped instead.
                self._socket.setblocking(False)
            self._socket.sendto(message, self.address)
        except OSError as e:
            if not self._failed:  # said once, not at every watchdog ping
                log.warn(
                    "systemd notify to {address} failed: {error}", address=self.address, error=e
                )
                self._failed = True
            return False
        self._failed = False
        return True

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class SystemdReporter:
    """Pings the watchdog from the reactor and keeps ``STATUS=`` current.

    :param notifier: where messages go.
    :param clock: runs the timers.
    :param status: returns the status line (agents READY, live calls).
    :param status_interval: how often the status is refreshed.
    """

    def __init__(
        self,
        notifier: Notifier,
        clock: IReactorTime,
        status: Callable[[], str],
        status_interval: float = 5.0,
    ) -> None:
        self.notifier = notifier
        self._clock = clock
        self._status = status
        self._status_interval = status_interval
        self._loops: list[LoopingCall] = []
        self._last_status: str | None = None

    def start(self) -> None:
        """Start the watchdog pings (when systemd asked for them) and the status refresh."""
        if not self.notifier.enabled:
            return
        interval = self.notifier.watchdog_interval
        if interval is not None:
            self._every(lambda: self.notifier.notify(WATCHDOG="1"), interval / 2)
        self._every(self.refresh_status, self._status_interval)

    def _every(self, f: Callable[[], object], interval: float) -> None:
        loop = LoopingCall(f)
        loop.clock = self._clock
        loop.start(interval, now=True).addErrback(
            lambda failure: log.failure("systemd notify timer stopped", failure)
        )
        self._loops.append(loop)

    def refresh_status(self) -> None:
        """Send the status line when it changed."""
        try:
            text = self._status()
        except Exception:
            log.failure("building the systemd status line failed")
            return
        if text != self._last_status:
            self._last_status = text
            self.notifier.notify(STATUS=text)

    def ready(self, status: str) -> None:
        """Tell systemd the gateway is ready."""
        self._last_status = status
        self.notifier.notify(READY="1", STATUS=status)

    def stopping(self, status: str) -> None:
        """Tell systemd the gateway is stopping; the watchdog keeps pinging through the drain."""
        self._last_status = status
        self.notifier.notify(STOPPING="1", STATUS=status)

    def stop(self) -> None:
        """Stop every timer and close the socket."""
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops.clear()
        self.notifier.close()
