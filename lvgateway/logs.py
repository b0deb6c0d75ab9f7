"""Logs for people and for log shippers: one level for every output, JSON lines, rotation.

Three ways out, all filtered at ``[logging] level`` and all without
Twisted's per-factory start/stop noise:

- twistd's own text log (standard output under ``-n``, else ``--logfile``):
  :func:`twistd_observer` builds the observer twistd would have built, behind
  the filter, and the root service hands it to twistd as the application's
  log observer;
- ``[logging] json_file``: :class:`JsonLogService` writes one JSON object a
  line (no record separator), rotated by size or daily, reopened on SIGHUP;
- ``twistd --logger=lvgateway.logs.json_observer``: JSON lines on standard
  output, for the journal or a container runtime.

Each JSON object has ``time`` (ISO 8601, UTC), ``level``, ``namespace`` and
``message`` (the rendered text), then every field of the event (``call_id``,
``agent``...), and ``traceback`` for a failure. Secrets cannot reach any of
them: they are :class:`~lvgateway.config.secret.Secret` values, whose repr
shows only where they came from.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from typing import IO, Any

from twisted.application.service import Service
from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogFilterPredicate,
    ILogObserver,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    PredicateResult,
    formatEvent,
    globalLogPublisher,
    textFileLogObserver,
)
from twisted.python.logfile import DailyLogFile, LogFile
from zope.interface import implementer

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}

#: Log formats of Twisted's own chatter, dropped from every output.
_NOISE = ("Starting factory", "Stopping factory", "Starting protocol", "Stopping protocol")


@implementer(ILogFilterPredicate)
class _NotNoise:
    """Drops Twisted's factory and protocol start/stop lines."""

    def __call__(self, event: LogEvent) -> Any:
        return _not_noise(event)


def _not_noise(event: LogEvent) -> Any:
    text = event.get("log_format") or ""
    if isinstance(text, str) and text.startswith(_NOISE):
        no: Any = PredicateResult.no
        return no
    message = event.get("message")  # legacy log.msg events
    if isinstance(message, tuple) and message and str(message[0]).startswith(_NOISE):
        no_: Any = PredicateResult.no
        return no_
    maybe: Any = PredicateResult.maybe
    return maybe


def level_filtered(observer: ILogObserver, level: str) -> ILogObserver:
    """Wrap ``observer`` so that it sees only events at ``level`` or above, without Twisted's noise."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    return FilteringLogObserver(observer, [_NotNoise(), predicate])


#: Keys of legacy ``log.msg`` events that the rendered message already carries.
_LEGACY_KEYS = frozenset({"message", "format", "time", "isError", "failure", "why"})


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def event_as_dict(event: LogEvent) -> dict[str, Any]:
    """Return the JSON object of one event: time, level, namespace, message, then its fields."""
    when = event.get("log_time")
    stamp = (
        datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(timespec="milliseconds")
        if isinstance(when, int | float)
        else None
    )
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": stamp,
        "level": getattr(level, "name", "info"),
        "namespace": event.get("log_namespace") or event.get("system") or "",
        "message": formatEvent(event),
    }
    failure = event.get("log_failure")
    if failure is not None:
        if record["level"] in ("debug", "info", "warn"):
            record["level"] = "error"
        record["traceback"] = failure.getTraceback()
    legacy = "isError" in event  # a twisted.python.log.msg event
    for key, value in event.items():
        if key.startswith("log_") or key in record or (legacy and key in _LEGACY_KEYS):
            continue
        record[key] = value
    return record


def json_line(event: LogEvent) -> str:
    """Return one event as one line of JSON, newline included."""
    return json.dumps(event_as_dict(event), default=_jsonable, ensure_ascii=False) + "\n"


def json_file_observer(stream: IO[str]) -> ILogObserver:
    """Return an observer writing one JSON object a line to ``stream``."""
    return FileLogObserver(stream, json_line)


def json_observer() -> ILogObserver:
    """Return an observer writing JSON lines to the process's real standard output.

    For twistd's ``--logger`` option. ``sys.__stdout__`` is used because
    twistd replaces ``sys.stdout`` with a logging file once logging begins.
    The level is read from ``LVGW_LOG_LEVEL`` (``info`` by default), since
    twistd builds this observer before the config is read.
    """
    stream = sys.__stdout__
    if stream is None:  # no standard output at all: nothing can be written
        raise RuntimeError("no standard output to write JSON log lines to")
    return level_filtered(json_file_observer(stream), _env_level())


def info_observer() -> ILogObserver:
    """Return an observer writing text lines at info level and above to standard output.

    For twistd's ``--logger`` option, where debug lines (a request journal,
    a SIP trace) would drown the story an operator wants to read.
    """
    stream = sys.__stdout__
    if stream is None:
        raise RuntimeError("no standard output to write log lines to")
    return level_filtered(textFileLogObserver(stream), "info")


def _env_level() -> str:
    level = os.environ.get("LVGW_LOG_LEVEL", "info").lower()
    return level if level in LEVELS else "info"


def twistd_observer(twistd_options: Any, level: str) -> ILogObserver | None:
    """Return the text observer twistd would build from its options, behind ``level``.

    ``None`` when twistd was given ``--logger``: that observer is used as it is.
    """
    if twistd_options is None or twistd_options.get("logger"):
        return None
    from twisted.scripts._twistd_unix import UnixAppLogger

    plain: ILogObserver = UnixAppLogger(twistd_options)._getLogObserver()  # type: ignore[no-untyped-call]
    return level_filtered(plain, level)


class KeepingDailyLogFile(DailyLogFile):
    """A :class:`DailyLogFile` that keeps only the ``keep`` newest rotated files.

    Twisted's class keeps every day's file; this one deletes the oldest
    (``name.YYYY_M_D``, compared as dates) once a rotation leaves more than
    ``keep`` of them.

    :param name: the file's name, in ``directory``.
    :param directory: where the file and its rotated copies are.
    :param keep: how many rotated files are kept.
    """

    def __init__(self, name: str, directory: str, keep: int) -> None:
        self.keep = keep
        DailyLogFile.__init__(self, name, directory)  # type: ignore[no-untyped-call]

    def rotated_files(self) -> list[str]:
        """Return the paths of the rotated files, oldest first."""
        pattern = re.compile(re.escape(self.name) + r"\.(\d+)_(\d+)_(\d+)")
        dated = []
        for entry in os.listdir(self.directory):
            match = pattern.fullmatch(entry)
            if match:
                day = tuple(int(part) for part in match.groups())
                dated.append((day, os.path.join(self.directory, entry)))
        return [path for _, path in sorted(dated)]

    def rotate(self) -> None:
        """Rotate the file, then delete rotated files beyond ``keep``, oldest first."""
        DailyLogFile.rotate(self)  # type: ignore[no-untyped-call]
        rotated = self.rotated_files()
        for path in rotated[: max(0, len(rotated) - self.keep)]:
            try:
                os.remove(path)
            except OSError:
                pass  # gone already, or not ours to delete: the next rotation tries again


def open_log_file(path: str, rotate: str, max_bytes: int, keep: int) -> LogFile:
    """Open ``path`` for appending, rotated by ``size`` or ``daily``, keeping ``keep`` old files."""
    directory, name = os.path.split(os.path.abspath(path))
    if rotate == "daily":
        daily = KeepingDailyLogFile(name, directory, keep)
        return daily  # type: ignore[return-value]
    return LogFile(name, directory, rotateLength=max_bytes, maxRotatedFiles=keep)  # type: ignore[no-untyped-call]


class JsonLogService(Service):
    """While running, copies every log event at ``level`` or above to a JSON-lines file.

    :param path: the file, appended to.
    :param level: the lowest level written.
    :param publisher: where events come from; the global publisher by default.
    :param rotate: ``"size"`` (at ``max_bytes``) or ``"daily"``.
    :param max_bytes: the size at which the file rotates, with ``rotate = "size"``.
    :param keep: how many rotated files are kept.
    :param install_signal: reopen the file on SIGHUP (after a shipper's own rotation).
    """

    def __init__(
        self,
        path: str,
        level: str,
        publisher: LogPublisher = globalLogPublisher,
        rotate: str = "size",
        max_bytes: int = 100_000_000,
        keep: int = 10,
        install_signal: bool = False,
    ) -> None:
        self.path = path
        self.level = level
        self.publisher = publisher
        self.rotate = rotate
        self.max_bytes = max_bytes
        self.keep = keep
        self.install_signal = install_signal
        self._file: LogFile | None = None
        self._observer: ILogObserver | None = None
        self._previous_hup: Callable[..., Any] | int | None = None

    def startService(self) -> None:
        """Open the file and start copying events to it."""
        self._file = open_log_file(self.path, self.rotate, self.max_bytes, self.keep)
        self._observer = level_filtered(json_file_observer(self._file), self.level)  # type: ignore[arg-type]
        self.publisher.addObserver(self._observer)
        if self.install_signal:
            self._previous_hup = signal.signal(signal.SIGHUP, self._hup)
        Service.startService(self)

    def _hup(self, signum: int, frame: object) -> None:
        from twisted.internet import reactor

        reactor.callFromThread(self.reopen)  # type: ignore[attr-defined]

    def reopen(self) -> None:
        """Close and reopen the file at its path (after it was moved away)."""
        if self._file is not None:
            self._file.reopen()  # type: ignore[no-untyped-call]

    def stopService(self) -> None:
        """Stop copying events and close the file."""
        Service.stopService(self)
        if self.install_signal and self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
            self._previous_hup = None
        if self._observer is not None:
            self.publisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()  # type: ignore[no-untyped-call]
            self._file = None
