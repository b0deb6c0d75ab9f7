"""The simulator's journal: a bounded record of every request it received and every event it made.

Tests, the demo and crash tests read it (from Python or over
``GET /_sandbox/journal?since=<seq>``) to check what the gateway really sent:
which route, as which user, what status it got, whether a term code was a
re-send of one already applied (a breach of the contract, refused), and
whether the answer reached the client at all.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import attrs


@attrs.define
class JournalEntry:
    """One request received, or one event the simulator made happen.

    :param seq: increasing from 1, never reused.
    :param time: the simulator clock's ``seconds()`` when it was received.
    :param method: the HTTP method, or ``SIM`` for an event made through the
        sandbox controls (a call started or ended).
    :param path: the request path without the query, or ``""`` for an event.
    :param route: the route's name, such as ``agent.saveTermCode``;
        ``unknown`` when no route matched.
    :param user: the login name the request acted as, when known.
    :param session: a short prefix of the session id used, never the whole id.
    :param status: the HTTP status returned (0 for a dropped connection).
    :param repeat: for term codes, ``True`` when the call had already been
        closed by an earlier term code (a re-send, refused with 400 as a
        contract error); ``False`` when it was applied; ``None`` when it was
        refused for another reason, and for other routes.
    :param fault: which injected fault produced the answer, if any:
        ``outage``, ``error_rate`` or ``fail_next``.
    :param delivered: ``None`` until known; ``False`` when the client went away
        before a delayed answer was written, ``True`` once it was written.
    :param contract_error: the breach of the contract with LiveVox this
        request committed, such as ``repeated term code``; ``None`` if none.
    :param detail: route-specific facts (ids, the term code, an AIA body);
        never a password, a token or a whole session id.
    """

    seq: int
    time: float
    method: str
    path: str
    route: str
    user: str | None = None
    session: str | None = None
    status: int = 0
    repeat: bool | None = None
    fault: str | None = None
    delivered: bool | None = None
    contract_error: str | None = None
    detail: dict[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the entry as a JSON-ready mapping."""
        return attrs.asdict(self)


@attrs.define
class Journal:
    """A bounded journal: the oldest entries drop out once ``size`` is reached.

    :param size: how many entries are kept.
    """

    size: int
    _entries: deque[JournalEntry] = attrs.field(init=False)
    _next_seq: int = attrs.field(init=False, default=1)

    def __attrs_post_init__(self) -> None:
        self._entries = deque(maxlen=self.size)

    def record(
        self,
        time: float,
        method: str,
        path: str,
        route: str,
        **fields: Any,
    ) -> JournalEntry:
        """Append a new entry and return it, so its status can be filled in later.

        :param time: the clock time it happened.
        :param method: the HTTP method or ``SIM``.
        :param path: the request path.
        :param route: the route name.
        :param fields: any other :class:`JournalEntry` field.
        """
        entry = JournalEntry(
            seq=self._next_seq, time=time, method=method, path=path, route=route, **fields
        )
        self._next_seq += 1
        self._entries.append(entry)
        return entry

    def since(self, seq: int = 0, limit: int | None = None) -> list[JournalEntry]:
        """Return the entries after ``seq``, oldest first.

        :param seq: the last sequence number already seen (0 for everything kept).
        :param limit: at most this many entries, if given.
        """
        result = [e for e in self._entries if e.seq > seq]
        return result if limit is None else result[:limit]

    def find(self, route: str | None = None, **match: Any) -> list[JournalEntry]:
        """Return the entries of ``route`` (any route if ``None``) whose fields equal ``match``.

        :param route: a route name.
        :param match: field values to compare, such as ``status=204`` or ``repeat=True``.
        """
        return [
            e
            for e in self._entries
            if (route is None or e.route == route)
            and all(getattr(e, k) == v for k, v in match.items())
        ]

    @property
    def last_seq(self) -> int:
        """The sequence number of the newest entry ever made (0 if none)."""
        return self._next_seq - 1

    def __iter__(self) -> Iterator[JournalEntry]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)


def journal_page(journal: Journal, since: int, limit: int | None) -> Mapping[str, Any]:
    """Return the JSON body of ``GET /_sandbox/journal``.

    :param journal: the journal to read.
    :param since: the last sequence number the reader has.
    :param limit: the most entries to return.
    """
    return {
        "lastSeq": journal.last_seq,
        "entries": [e.to_json() for e in journal.since(since, limit)],
    }
