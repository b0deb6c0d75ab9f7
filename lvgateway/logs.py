"""JSON-lines logs, for log shippers, besides twistd's own text log.

Two ways in: ``twistd --logger=lvgateway.logs.json_observer lvgateway ...``
makes twistd's own log JSON lines on standard output (for systemd's journal
or a container runtime); ``[logging] json_file`` in the config adds a JSON
file beside twistd's log, filtered by level. Every event keeps its fields
(``call_id``, ``agent``...), so a shipper can index them. Secrets cannot
reach either: they are :class:`~lvgateway.config.secret.Secret` values, whose
repr shows only where they came from.
"""

from __future__ import annotations

import sys
from typing import IO

from twisted.application.service import Service
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    LogPublisher,
    globalLogPublisher,
    jsonFileLogObserver,
    textFileLogObserver,
)

LEVELS = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "error": LogLevel.error,
    "critical": LogLevel.critical,
}


def json_observer() -> ILogObserver:
    """Return an observer writing JSON lines to the process's real standard output.

    For twistd's ``--logger`` option. ``sys.__stdout__`` is used because
    twistd replaces ``sys.stdout`` with a logging file once logging begins.
    """
    stream = sys.__stdout__
    if stream is None:  # no standard output at all: nothing can be written
        raise RuntimeError("no standard output to write JSON log lines to")
    return jsonFileLogObserver(stream)


def info_observer() -> ILogObserver:
    """Return an observer writing text lines at info level and above to standard output.

    For twistd's ``--logger`` option, where debug lines (a request journal,
    a SIP trace) would drown the story an operator wants to read.
    """
    stream = sys.__stdout__
    if stream is None:
        raise RuntimeError("no standard output to write log lines to")
    return level_filtered(textFileLogObserver(stream), "info")


def level_filtered(observer: ILogObserver, level: str) -> ILogObserver:
    """Wrap ``observer`` so that it sees only events at ``level`` or above."""
    predicate = LogLevelFilterPredicate(defaultLogLevel=LEVELS[level])
    return FilteringLogObserver(observer, [predicate])


class JsonLogService(Service):
    """While running, copies every log event at ``level`` or above to a JSON-lines file.

    :param path: the file, appended to.
    :param level: the lowest level written.
    :param publisher: where events come from; the global publisher by default.
    """

    def __init__(self, path: str, level: str, publisher: LogPublisher = globalLogPublisher) -> None:
        self.path = path
        self.level = level
        self.publisher = publisher
        self._file: IO[str] | None = None
        self._observer: ILogObserver | None = None

    def startService(self) -> None:
        """Open the file and start copying events to it."""
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held until stop
        self._observer = level_filtered(jsonFileLogObserver(self._file), self.level)
        self.publisher.addObserver(self._observer)
        Service.startService(self)

    def stopService(self) -> None:
        """Stop copying events and close the file."""
        Service.stopService(self)
        if self._observer is not None:
            self.publisher.removeObserver(self._observer)
            self._observer = None
        if self._file is not None:
            self._file.close()
            self._file = None
