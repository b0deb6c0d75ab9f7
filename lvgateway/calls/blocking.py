"""Where the call store's blocking work (SQLite) runs: never on the reactor thread.

:class:`ThreadPoolRunner` owns a one-thread pool, started and stopped with
the store's service, so SQLite calls run one after another, in the order
they were asked, on a thread of their own (hendrix's ``ThreadPoolService``
pattern). :class:`InlineRunner` runs the work at once on the caller's
thread, for unit tests that never spin the reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["BlockingRunner", "InlineRunner", "ThreadPoolRunner"]

T = TypeVar("T")


class BlockingRunner(Protocol):
    """Runs blocking functions in order, away from the reactor thread."""

    def start(self) -> None:
        """Make the runner ready to run work."""

    def stop(self) -> None:
        """Stop, after the work already asked for has run."""

    def run(self, f: Callable[[], T]) -> Deferred[T]:
        """Run ``f`` and return a Deferred of its result (or its exception)."""


class ThreadPoolRunner:
    """A one-thread pool: blocking work runs in order on one thread, results come back on the reactor.

    :param reactor: the reactor results are delivered on (``IReactorFromThreads``
        and ``IReactorCore``).
    :param name: the thread's name, for debuggers.
    """

    def __init__(self, reactor: Any, name: str = "lvgateway-callstore") -> None:
        self._reactor = reactor
        self._pool = ThreadPool(minthreads=1, maxthreads=1, name=name)
        self._trigger: Any = None

    def start(self) -> None:
        """Start the thread; it is stopped at the reactor's shutdown if not before.

        The thread is not a daemon: a process whose store was not closed
        (an error, a signal) would otherwise never exit.
        """
        self._pool.start()
        self._trigger = self._reactor.addSystemEventTrigger("during", "shutdown", self._pool.stop)

    def stop(self) -> None:
        """Stop the thread once the queued work has run (this blocks until then)."""
        if self._trigger is not None:
            self._reactor.removeSystemEventTrigger(self._trigger)
            self._trigger = None
        self._pool.stop()

    def run(self, f: Callable[[], T]) -> Deferred[T]:
        """Queue ``f`` on the thread."""
        d: Deferred[T] = deferToThreadPool(self._reactor, self._pool, f)  # type: ignore[arg-type]
        return d


class InlineRunner:
    """Runs each function at once, on the caller's thread: for tests on ``task.Clock``.

    :ivar calls: how many functions it has run.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.started = False

    def start(self) -> None:
        """Note the start."""
        self.started = True

    def stop(self) -> None:
        """Note the stop."""
        self.started = False

    def run(self, f: Callable[[], T]) -> Deferred[T]:
        """Run ``f`` now and return a fired Deferred."""
        self.calls += 1
        try:
            result: Any = f()
        except BaseException as e:
            return fail(e)
        return succeed(result)
