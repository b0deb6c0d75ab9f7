"""Child processes the gateway starts and stops with itself, such as the demo's sandbox.

The demo runs the gateway beside the sandbox (the LiveVox simulator, its SIP
dialler and the AI echo bot). The sandbox has its own SIP stack, so it is
its own process; with ``[[child_processes]]`` in the config the gateway
spawns it, logs its output, restarts it (with a growing delay) if it dies,
and stops it after the gateway's own drain. The gateway never imports the
sandbox: it knows only a command line and, optionally, a URL that answers
once the child serves (:meth:`ChildProcessService.when_ready`).

A child never outlives the gateway: it asks the kernel for SIGTERM when its
parent dies (``PR_SET_PDEATHSIG``), so even a SIGKILL of the gateway ends it,
and the next start finds its ports free. Twisted's ``procmon`` restarts
children but leaves them running when the parent is killed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from treq.client import HTTPClient
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

__all__ = ["ChildProcessService"]

log = Logger()

#: Run by the child's interpreter before it becomes the real command (argv: the
#: gateway's pid, then the command): SIGTERM when the gateway dies, kept across
#: exec; exit at once if it died already; a process group of its own.
_BOOTSTRAP = """\
import ctypes, os, signal, sys
PR_SET_PDEATHSIG = 1
if sys.platform.startswith("linux"):
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):
    sys.exit("the gateway that started this process has exited")
os.setpgrp()
os.execvp(sys.argv[2], sys.argv[2:])
"""

#: Seconds between two readiness probes, and the bound on each.
_PROBE_INTERVAL = 0.2
_PROBE_TIMEOUT = 2.0


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
    :param ready_url: a URL that answers 2xx once the child serves; ``None``
        if the child is ready once spawned.
    :param ready_timeout: how long to wait for ``ready_url`` before logging an
        error and calling the child ready anyway.
    """

    def __init__(
        self,
        reactor: Any,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        stop_timeout: float = 15.0,
        ready_url: str | None = None,
        ready_timeout: float = 30.0,
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
        self._ready_url = ready_url
        self._ready_timeout = ready_timeout
        self._ready = ready_url is None
        self._ready_waiters: list[Deferred[None]] = []
        self._probing: Deferred[None] | None = None

    def startService(self) -> None:
        """Spawn the child."""
        Service.startService(self)
        self._stopping = False
        self._spawn()
        if not self._ready and self._probing is None:
            self._probing = Deferred.fromCoroutine(self._wait_until_ready())
            self._probing.addErrback(self._probe_failed)

    def when_ready(self) -> Deferred[None]:
        """Fire once the child serves: its ``ready_url`` answered 2xx, or the wait ran out.

        Fires at once for a child with no ``ready_url``, or one found ready already.
        """
        if self._ready:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._ready_waiters.append(waiter)
        return waiter

    async def _wait_until_ready(self) -> None:
        """Probe ``ready_url`` until it answers 2xx or ``ready_timeout`` passes."""
        assert self._ready_url is not None
        http = HTTPClient(Agent(self._reactor, pool=HTTPConnectionPool(self._reactor, False)))
        began = self._reactor.seconds()
        while not self._stopping:
            status = await self._probe(http, self._ready_url)
            waited = self._reactor.seconds() - began
            if status is not None and 200 <= status < 300:
                log.info(
                    "child process {child} ready: {url} answered {status} after {waited:.1f}s",
                    child=self.name,
                    url=self._ready_url,
                    status=status,
                    waited=waited,
                )
                break
            if waited >= self._ready_timeout:
                log.error(
                    "child process {child} not ready after {waited:.0f}s ({url} answered"
                    " {status}): going on without it",
                    child=self.name,
                    url=self._ready_url,
                    status=status if status is not None else "nothing",
                    waited=waited,
                )
                break
            await deferLater(self._reactor, _PROBE_INTERVAL, lambda: None)
        self._set_ready()

    async def _probe(self, http: HTTPClient, url: str) -> int | None:
        """GET ``url`` once, bounded; its status, or ``None`` if nothing answered."""

        async def get() -> int:
            response = await http.get(url)
            await response.content()
            return int(response.code)

        try:
            return await Deferred.fromCoroutine(get()).addTimeout(_PROBE_TIMEOUT, self._reactor)
        except Exception as e:  # refused, reset, timed out: the child is not serving yet
            log.debug("child process {child} not serving yet: {error}", child=self.name, error=e)
            return None

    def _set_ready(self) -> None:
        self._ready = True
        self._probing = None
        waiters, self._ready_waiters = self._ready_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _probe_failed(self, failure: Failure) -> None:
        if not isinstance(failure.value, CancelledError):
            log.failure("probing child process {child} failed", failure, child=self.name)
        self._set_ready()

    def _spawn(self) -> None:
        self._restart = None
        self._protocol = _Child(self)
        self.starts += 1
        # The child gets a process group of its own: a Ctrl-C in the terminal, or a
        # signal to the gateway's group, must reach the gateway alone, which stops
        # the child itself once its drain (which may still need the child) is done.
        argv = [sys.executable, "-c", _BOOTSTRAP, str(os.getpid()), *self._argv]
        self._process = self._reactor.spawnProcess(
            self._protocol, sys.executable, argv, env=self._env, path=self._cwd
        )
        log.info(
            "started child process {child} as pid {pid}: {argv}",
            child=self.name,
            pid=self._process.pid,
            argv=" ".join(self._argv),
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
        if self._probing is not None:
            self._probing.cancel()
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
