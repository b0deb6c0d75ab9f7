"""The internal control listener's call routes: list records, re-drive or dismiss a dead letter.

Mounted on the internal listener's table (127.0.0.1, no authentication)::

    control.routes.add_route("calls", CallsAdmin(calls))

``GET /calls?since=<epoch seconds>&state=<state>[,<state>...]&limit=<n>``
    ``{"calls": [record, ...], "count": n}``, oldest change first: records
    changed at or after ``since``, in the states named (``accepted``,
    ``connected``, ``wrapup``, ``done``, ``dead``, ``dismissed``); ``limit``
    1..1000, 100 by default. 400 naming a bad parameter.
``GET /calls/{call_id}``
    One record; 404 for an unknown call.
``POST /calls/{call_id}/redrive``
    Start a dead letter's wrap-up again (200 with the record); 409 when the
    record is not a dead letter; 404 for an unknown call.
``POST /calls/{call_id}/dismiss``
    Give up on a dead letter; its agent goes back to the pool NOT READY.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from lvgateway.calls.interfaces import ICallAdmin
from lvgateway.calls.records import CallRecord, CallState
from lvgateway.control.calls_api import Answer, respond_later
from lvgateway.control.web import BaseResource, JsonError, json_reply

__all__ = ["MAX_LIMIT", "CallAdmin", "CallsAdmin"]

#: The most records one ``GET /calls`` returns.
MAX_LIMIT = 1000


def _arg(request: IRequest, name: str) -> str | None:
    values = (request.args or {}).get(name.encode("ascii"))
    return values[0].decode("utf-8", "replace").strip() if values else None


async def _listing(work: Deferred[list[CallRecord]]) -> Answer:
    records = await work
    return 200, {"calls": [r.to_json() for r in records], "count": len(records)}


async def _one(work: Deferred[CallRecord]) -> Answer:
    return 200, (await work).to_json()


class CallsAdmin(BaseResource):
    """``/calls``: the records, and each call by its id.

    :param calls: the call store's admin side.
    """

    def __init__(self, calls: ICallAdmin) -> None:
        super().__init__()
        self._calls = calls

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """The listing for a trailing slash, else the call named by ``path``."""
        if path == b"" and not request.postpath:
            return self
        return CallAdmin(self._calls, path.decode("utf-8", "replace"))

    def render_GET(self, request: IRequest) -> bytes | int:
        """List records by ``since``, ``state`` and ``limit``."""
        since: float | None = None
        states: list[CallState] = []
        limit = 100
        text = _arg(request, "since")
        if text:
            try:
                since = float(text)
            except ValueError:
                return _bad(request, "since", "expected epoch seconds")
        text = _arg(request, "state")
        if text:
            for name in text.split(","):
                try:
                    states.append(CallState(name.strip().lower()))
                except ValueError:
                    known = ", ".join(s.value for s in CallState)
                    return _bad(request, "state", f"{name!r} is not one of {known}")
        text = _arg(request, "limit")
        if text:
            if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
                return _bad(request, "limit", f"expected 1..{MAX_LIMIT}")
            limit = int(text)
        work = self._calls.query(since, states or None, limit)
        return respond_later(request, Deferred.fromCoroutine(_listing(work)))


def _bad(request: IRequest, field: str, message: str) -> bytes:
    return json_reply(request, {"error": message, "field": field}, 400)


class CallAdmin(BaseResource):
    """``/calls/{call_id}`` and its actions.

    :param calls: the call store's admin side.
    :param call_id: the call.
    """

    def __init__(self, calls: ICallAdmin, call_id: str) -> None:
        super().__init__()
        self._calls = calls
        self._call_id = call_id

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """``redrive`` or ``dismiss``; the record itself for a trailing slash."""
        if request.postpath:
            return JsonError(404, "not found")
        if path == b"redrive":
            return _Action(self._calls.redrive, self._call_id)
        if path == b"dismiss":
            return _Action(self._calls.dismiss, self._call_id)
        if path == b"":
            return self
        return JsonError(404, "not found")

    def render_GET(self, request: IRequest) -> int:
        """Answer the record."""
        return respond_later(
            request, Deferred.fromCoroutine(_one(self._calls.lookup(self._call_id)))
        )


class _Action(BaseResource):
    """``POST`` runs one admin action on one call."""

    isLeaf = True

    def __init__(self, action: Callable[[str], Deferred[CallRecord]], call_id: str) -> None:
        super().__init__()
        self._action = action
        self._call_id = call_id

    def render_POST(self, request: IRequest) -> int:
        """Run the action; answer the record."""
        return respond_later(request, Deferred.fromCoroutine(_one(self._action(self._call_id))))
