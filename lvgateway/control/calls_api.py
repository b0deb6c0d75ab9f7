"""The vendor API's call routes: a call's record, and its disposition in JSON.

Mounted on the vendor API's ``/v1`` table (behind its bearer token)::

    vendor_api.routes.add_route("calls", VendorCalls(calls))

``GET /v1/calls/{call_id}``
    200 with the call's record (``call_id`` is the ``X-LVGW-Call-ID`` the
    vendor got on the INVITE); 404 ``{"error": ...}`` for an unknown call.
``PUT /v1/calls/{call_id}/disposition``
    A JSON disposition (see :mod:`lvgateway.calls.disposition`), laid over
    anything the vendor said before; the only way to send contact changes.
    200 with the record; 400 ``{"error": ..., "field": ...}`` naming the
    field at fault; 404 for an unknown call; 409 once the call has ended (its
    wrap-up has begun: say it on the BYE instead); 413 for a body over 64 KiB.

:func:`respond_later` answers a request from a Deferred (also used by
:mod:`lvgateway.control.calls_admin`).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET

from lvgateway.calls.disposition import disposition_from_json
from lvgateway.calls.errors import (
    AlreadyWrappedUpError,
    DispositionError,
    NotDeadLetterError,
    UnknownCallError,
)
from lvgateway.calls.interfaces import ICalls
from lvgateway.calls.records import CallRecord
from lvgateway.control.web import BaseResource, JsonError, json_reply

__all__ = ["MAX_BODY", "VendorCall", "VendorCalls", "error_answer", "respond_later"]

log = Logger()

#: The largest disposition body accepted, in bytes.
MAX_BODY = 64 * 1024

Answer = tuple[int, Any]


def error_answer(failure: Failure) -> Answer | None:
    """Return the HTTP answer for one of the calls part's refusals, or ``None`` for anything else."""
    error = failure.value
    if isinstance(error, UnknownCallError):
        return 404, {"error": str(error)}
    if isinstance(error, AlreadyWrappedUpError | NotDeadLetterError):
        return 409, {"error": str(error), "state": error.state}
    if isinstance(error, DispositionError):
        return 400, {"error": error.message, "field": error.field}
    return None


def respond_later(request: IRequest, work: Deferred[Answer]) -> int:
    """Answer ``request`` with the ``(status, JSON body)`` ``work`` fires with; return ``NOT_DONE_YET``.

    The calls part's refusals become their 4xx (:func:`error_answer`);
    anything else is logged and answered 500. If the client goes away first,
    ``work`` is cancelled and nothing is written.

    :param request: the request being rendered.
    :param work: the answer to come.
    """
    gone = False

    def went_away(_: Failure) -> None:
        nonlocal gone
        gone = True
        work.cancel()

    request.notifyFinish().addErrback(went_away)  # type: ignore[attr-defined]

    def refused(failure: Failure) -> Answer:
        answer = error_answer(failure)
        if answer is not None:
            return answer
        if not isinstance(failure.value, CancelledError):
            log.failure(
                "{method} {path} failed",
                failure,
                method=request.method.decode("latin-1"),
                path=request.path.decode("latin-1"),
            )
        return 500, {"error": "internal error"}

    def write(answer: Answer) -> None:
        if gone:
            return
        code, body = answer
        request.write(json_reply(request, body, code))
        request.finish()

    work.addErrback(refused).addCallback(write)
    return NOT_DONE_YET


async def _record(work: Deferred[CallRecord]) -> Answer:
    return 200, (await work).to_json()


class VendorCalls(BaseResource):
    """``/v1/calls``: each child is one call, by its id.

    :param calls: the call store.
    """

    def __init__(self, calls: ICalls) -> None:
        super().__init__()
        self._calls = calls

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """Return the resource of the call named by ``path``."""
        if not path:
            return JsonError(404, "name a call: /v1/calls/{call_id}")
        return VendorCall(self._calls, path.decode("utf-8", "replace"))

    def render_GET(self, request: IRequest) -> bytes:
        """There is no listing for the vendor: name a call."""
        return json_reply(request, {"error": "name a call: /v1/calls/{call_id}"}, 404)


class VendorCall(BaseResource):
    """``/v1/calls/{call_id}`` and its ``/disposition``.

    :param calls: the call store.
    :param call_id: the call.
    """

    def __init__(self, calls: ICalls, call_id: str) -> None:
        super().__init__()
        self._calls = calls
        self._call_id = call_id

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """``disposition``, or the call itself for a trailing slash."""
        if path == b"disposition" and not request.postpath:
            return _Disposition(self._calls, self._call_id)
        if path == b"" and not request.postpath:
            return self
        return JsonError(404, "not found")

    def render_GET(self, request: IRequest) -> int:
        """Answer the call's record."""
        return respond_later(
            request, Deferred.fromCoroutine(_record(self._calls.lookup(self._call_id)))
        )


class _Disposition(BaseResource):
    """``PUT /v1/calls/{call_id}/disposition``."""

    isLeaf = True

    def __init__(self, calls: ICalls, call_id: str) -> None:
        super().__init__()
        self._calls = calls
        self._call_id = call_id

    def render_PUT(self, request: IRequest) -> bytes | int:
        """Check the JSON, then lay it over the call's disposition."""
        content = request.content
        body = content.read(MAX_BODY + 1) if content is not None else b""
        if len(body) > MAX_BODY:
            return json_reply(request, {"error": f"body larger than {MAX_BODY} bytes"}, 413)
        try:
            disposition = disposition_from_json(body)
        except DispositionError as e:
            log.info(
                "call {call_id}: vendor disposition refused: {field}: {error}",
                call_id=self._call_id,
                field=e.field,
                error=e.message,
            )
            return json_reply(request, {"error": e.message, "field": e.field}, 400)
        return respond_later(
            request,
            Deferred.fromCoroutine(
                _record(self._calls.set_disposition(self._call_id, disposition, "api"))
            ),
        )
