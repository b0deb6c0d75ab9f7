"""Sippy's event loop, driven from the Twisted reactor: the one module that touches it.

Sippy 2.x has its own dispatcher (``ED2``, a process-wide singleton fed by
worker threads and ticking at 100 Hz). Here the reactor drives it instead:

- **Timers.** Every Sippy timer arms through ``EventListener.go()`` onto the
  heap ``ED2.tlisteners``. ``go`` is wrapped so that one ``callLater`` is
  always set for the earliest timer; when it fires it sets ``ED2.last_ts``,
  runs ``ED2.dispatchTimers()`` and re-arms. Cancelled timers stay on the heap
  until they expire, and Sippy only compacts them in its own ``loop()``, so
  the adapter compacts them too, or long calls' cancelled timers pile up.
- **Cross-thread calls.** ``ED2.callFromThread`` becomes the reactor's, and
  ``ED2.my_ident`` the reactor thread's id.
- **Tracebacks.** ``dump_exception`` bound ``sys.stdout`` when Sippy was
  imported, before twistd redirected it; its default file becomes a writer
  into ``twisted.logger``, so Sippy's swallowed errors reach the log.

Sippy is pinned at 2.5.0 because this module reaches into its internals; the
SIP end-to-end tests guard it. Nothing outside this module touches ED2.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
from sippy.Core import EventDispatcher, Exceptions
from sippy.Core.EventDispatcher import ED2, EventListener
from sippy.Time.MonoTime import MonoTime
from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.logger import Logger

__all__ = ["SippyOnReactor", "LogWriter"]

log = Logger()


class LogWriter:
    """A file-like object whose lines become ``twisted.logger`` events.

    Sippy writes its tracebacks with ``f.write(...)`` several times and then
    ``f.flush()``: the pieces are joined and logged as one event at flush.

    :param level: ``error`` for tracebacks, ``debug`` for traces.
    :param what: names the source in the event.
    """

    def __init__(self, level: str = "error", what: str = "sippy") -> None:
        self._parts: list[str] = []
        self._level = level
        self._what = what
        #: How many unparseable messages Sippy reported.
        self.malformed = 0

    def write(self, text: str) -> None:
        """Collect a piece of a message."""
        self._parts.append(text)

    def flush(self) -> None:
        """Log what was collected as one event."""
        text, self._parts = "".join(self._parts), []
        if not text.strip():
            return
        if "can't parse SIP" in text or (
            "when processing incoming data" in text and _parse_error(text)
        ):
            self._malformed(text)
            return
        emit = log.error if self._level == "error" else log.debug
        emit("{what}: {text}", what=self._what, text=text.rstrip())

    def _malformed(self, text: str) -> None:
        """A message Sippy could not parse: one short warning, thinned to 1, 10, 100... per kind."""
        self.malformed += 1
        if self.malformed & (self.malformed - 1) and self.malformed % 1000:
            return  # logged at 1, 2, 4, 8... and every thousandth
        lines = [line for line in text.splitlines() if line.strip()]
        source = next(
            (line.split(" from ", 1)[1].rstrip(":") for line in lines if " from " in line), "?"
        )
        error = next((line for line in lines if "Error" in line.split(":", 1)[0]), "unparseable")
        log.warn(
            "malformed SIP message from {source} dropped ({error}); {count} so far",
            source=source,
            error=error.strip(),
            count=self.malformed,
        )


#: Exceptions Sippy raises on a malformed message it got past its parser's guard.
_PARSE_ERRORS = (
    "SipParseError",
    "ESipHeaderCSV",
    "UnicodeDecodeError",
    "ValueError",
    "KeyError",
    "IndexError",
    "TypeError",
    "UnboundLocalError",
)


def _parse_error(text: str) -> bool:
    """Whether a Sippy traceback ends in one of the exceptions bad input causes."""
    last = [line for line in text.splitlines() if line.strip() and not line.startswith("-")]
    return any(line.split(":", 1)[0].rsplit(".", 1)[-1] in _PARSE_ERRORS for line in last[-12:])


@attrs.define
class SippyOnReactor:
    """Run Sippy's timers and cross-thread calls on a reactor.

    One per process (Sippy's dispatcher is a singleton); :meth:`install` is
    idempotent for the same reactor and refuses a second one.

    :param reactor: the reactor to run on.
    """

    reactor: Any  # IReactorTime and IReactorFromThreads
    _wakeup: IDelayedCall | None = None
    _wakeup_at: float = 0.0
    _original_go: Callable[[EventListener], None] | None = None
    #: How many dispatch rounds ran, and how many compactions: for tests and the manhole.
    dispatches: int = 0
    compactions: int = 0

    #: The one installed adapter, process-wide.
    _installed: ClassVar[SippyOnReactor | None] = None

    @classmethod
    def for_reactor(cls, reactor: Any) -> SippyOnReactor:
        """Return the process's adapter, installing one on ``reactor`` if there is none."""
        current = cls._installed
        if current is None:
            current = cls(reactor)
            current.install()
        elif current.reactor is not reactor:
            raise RuntimeError("Sippy's dispatcher is already driven by another reactor")
        return current

    def install(self) -> None:
        """Take over Sippy's dispatcher; call on the reactor thread, before any SIP object exists."""
        current = SippyOnReactor._installed
        if current is self:
            return
        if current is not None:
            raise RuntimeError("Sippy's dispatcher is already driven by another reactor adapter")
        assert IReactorTime.providedBy(self.reactor) and IReactorFromThreads.providedBy(
            self.reactor
        )
        SippyOnReactor._installed = self
        ED2.my_ident = threading.get_ident()
        ED2.callFromThread = self._call_from_thread
        self._original_go = EventListener.go
        adapter = self

        def go(listener: EventListener) -> None:
            assert adapter._original_go is not None
            adapter._original_go(listener)
            adapter._arm(listener)

        EventListener.go = go
        Exceptions.dump_exception.__defaults__ = (LogWriter("error"), None)
        EventDispatcher.dump_exception.__defaults__ = Exceptions.dump_exception.__defaults__
        self._rearm()

    def _call_from_thread(self, callback: Callable[..., Any], *args: Any) -> None:
        """What Sippy's worker threads call to run ``callback`` on the reactor thread."""
        self.reactor.callFromThread(self._run_from_thread, callback, args)

    def _run_from_thread(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            callback(*args)
        except Exception:
            log.failure("sippy: a call from a worker thread raised")
        self._rearm()

    def _arm(self, listener: EventListener) -> None:
        """Make sure a wake-up is set no later than ``listener``'s time."""
        due = listener.etime.monot
        if self._wakeup is not None and self._wakeup.active() and self._wakeup_at <= due:
            return
        self._schedule(due)

    def _schedule(self, due: float) -> None:
        if self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
        delay = max(0.0, due - MonoTime().monot)
        self._wakeup_at = due
        self._wakeup = self.reactor.callLater(delay, self._fire)

    def _rearm(self) -> None:
        """Set the wake-up for the earliest live timer, or none."""
        heap = ED2.tlisteners
        while heap and heap[0].cb_func is None:  # drop cancelled timers at the head
            heapq.heappop(heap)
            ED2.twasted = max(0, ED2.twasted - 1)
        if heap:
            self._schedule(heap[0].etime.monot)
        elif self._wakeup is not None and self._wakeup.active():
            self._wakeup.cancel()
            self._wakeup = None

    def _fire(self) -> None:
        """Run every due Sippy timer, compact cancelled ones, and re-arm."""
        self._wakeup = None
        ED2.last_ts = MonoTime()
        self.dispatches += 1
        try:
            ED2.dispatchTimers()
        except Exception:
            log.failure("sippy: dispatching timers raised")
        self.compact()
        self._rearm()

    def compact(self) -> None:
        """Drop cancelled timers once they are half the heap, as Sippy's own loop does."""
        if ED2.twasted * 2 > len(ED2.tlisteners):
            ED2.tlisteners = [t for t in ED2.tlisteners if t.cb_func is not None]
            heapq.heapify(ED2.tlisteners)
            ED2.twasted = 0
            self.compactions += 1

    def pending_timers(self) -> int:
        """How many timers, live or cancelled, are on Sippy's heap."""
        return len(ED2.tlisteners)
