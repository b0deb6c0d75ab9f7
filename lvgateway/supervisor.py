"""Child processes the gateway starts and stops with itself, such as the demo's sandbox.

The demo runs the gateway beside the sandbox (the LiveVox simulator, its SIP
dialler and the AI echo bot). The sandbox has its own SIP stack, so it is
its own process; with ``[[child_processes]]`` in the config the gateway
spawns it, logs its output, restarts it (with a growing delay) if it dies,
and stops it after the gateway's own drain. The gateway never imports the
sandbox: it knows only a command line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["ChildProcessService"]

log = Logger()

#: Run by the child's interpreter before it becomes the real command.
_OWN_GROUP = "import os, sys; os.setpgrp(); os.execvp(sys.argv[1], sys.argv[1:])"


class _Child(ProcessProtocol):
    def __init__(self, service: ChildProcessService) -> None:
        self._service = service
        self._partial = b""
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self._lines(data)

    def errReceived(self, data: bytes) -> None:
        self._lines(data)

    def _lines(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            if line.strip():
                log.info(
                    "[{child}] {line}",
                    child=self._service.name,
                    line=line.decode(errors="replace").rstrip(),
                )

    def processEnded(self, reason: Failure) -> None:
        self._service._ended(reason)
        self.ended.callback(None)


class ChildProcessService(Service):
    """Run one child process while the service runs.

    :param reactor: spawns the process and times restarts.
    :param name: the child's name, for logs.
    :param argv: the command line; ``argv[0]`` is looked up on ``PATH`` if not a path.
    :param env: variables added to the gateway's environment for the child.
    :param cwd: the child's working directory.
    :param stop_timeout: how long the child gets to exit after SIGTERM before SIGKILL.
    """

    def __init__(
        self,
        reactor: Any,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stop_timeout: float = 15.0,
    ) -> None:
        self.name = name
        self._reactor = reactor
        self._argv = list(argv)
        self._env = {**os.environ, **(env or {})}
        self._cwd = cwd
        self._stop_timeout = stop_timeout
        self._process: Any = None
        self._protocol: _Child | None = None
        self._restart: IDelayedCall | None = None
        self._delay = 1.0
        self._stopping = False
        #: How many times the child was started.
        self.starts = 0

    def startService(self) -> None:
        """Spawn the child."""
        Service.startService(self)
        self._stopping = False
        self._spawn()

    def _spawn(self) -> None:
        self._restart = None
        self._protocol = _Child(self)
        self.starts += 1
        log.info(
            "starting child process {child}: {argv}", child=self.name, argv=" ".join(self._argv)
        )
        # The child gets a process group of its own: a Ctrl-C in the terminal, or a
        # signal to the gateway's group, must reach the gateway alone, which stops
        # the child itself once its drain (which may still need the child) is done.
        argv = [sys.executable, "-c", _OWN_GROUP, *self._argv]
        self._process = self._reactor.spawnProcess(
            self._protocol, sys.executable, argv, env=self._env, path=self._cwd
        )
        self._started_at = self._reactor.seconds()

    def _ended(self, reason: Failure) -> None:
        self._process = None
        code = (
            reason.value.exitCode
            if isinstance(reason.value, ProcessDone | ProcessTerminated)
            else None
        )
        if self._stopping:
            log.info("child process {child} stopped", child=self.name)
            return
        if self._reactor.seconds() - self._started_at > 60:
            self._delay = 1.0  # it ran a good while: start over with a short delay
        log.error(
            "child process {child} exited (status {code}): restarting in {delay:.0f}s",
            child=self.name,
            code=code,
            delay=self._delay,
        )
        self._restart = self._reactor.callLater(self._delay, self._spawn)
        self._delay = min(self._delay * 2, 60.0)

    def stopService(self) -> Deferred[None]:
        """SIGTERM the child; SIGKILL it if it has not exited within the bound."""
        Service.stopService(self)
        self._stopping = True
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        if self._process is None or self._protocol is None:
            return succeed(None)
        ended = self._protocol.ended
        self._process.signalProcess("TERM")
        killer = self._reactor.callLater(self._stop_timeout, self._kill)
        ended.addBoth(lambda result: (killer.active() and killer.cancel(), None)[1])
        return ended

    def _kill(self) -> None:
        if self._process is not None:
            log.warn("child process {child} ignored SIGTERM: killing it", child=self.name)
            try:
                self._process.signalProcess("KILL")
            except OSError:
                pass
