"""A scripted HTTP server under treq, and small helpers, for testing the real LiveVox client.

- :class:`RecordingResource` and :func:`stub_http`: a twisted.web resource
  that records every request and answers through a handler, behind a treq
  client that never touches the network (``treq.testing``'s in-memory
  agent, as ``StubTreq`` builds it);
- :func:`livevox_config`: a :class:`~lvgateway.config.model.LiveVoxConfig`
  with test defaults;
- :func:`result_of` and :func:`failure_of`: read a Deferred that has fired.

Import these from :mod:`lvgateway.livevox.testing`, which re-exports them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import attrs
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from lvgateway.config.model import LiveVoxConfig, LiveVoxUser
from lvgateway.config.secret import Secret

__all__ = [
    "Handler",
    "RecordedRequest",
    "RecordingResource",
    "StubHTTP",
    "failure_of",
    "livevox_config",
    "result_of",
    "stub_http",
]


def livevox_config(**overrides: Any) -> LiveVoxConfig:
    """Return a LiveVox config for tests; keyword arguments replace fields.

    ``contact_user`` may be given as ``(user_name, password)``.

    :param overrides: fields of :class:`~lvgateway.config.model.LiveVoxConfig`.
    """
    contact = overrides.pop("contact_user", None)
    if isinstance(contact, tuple):
        contact = LiveVoxUser(contact[0], Secret(contact[1], "test"))
    values: dict[str, Any] = {
        "base_url": "http://livevox.test",
        "version": None,
        "client_name": "Training2",
        "token": Secret("test-api-token", "test"),
        "request_timeout": 10.0,
        "max_in_flight": 10,
        "max_retries": 2,
        "retry_base_delay": 1.0,
        "retry_max_delay": 8.0,
        "ca_bundle": None,
        "password_expiry_warning_days": 14,
        "contact_user": contact,
        "contact_create_method": "POST",
    }
    values.update(overrides)
    return LiveVoxConfig(**values)


@attrs.define
class RecordedRequest:
    """One request the :class:`RecordingResource` saw.

    :param method: ``GET``, ``POST``…
    :param path: the path, without the query.
    :param query: each query parameter's values.
    :param headers: each header's values, names lower-cased.
    :param body: the raw body.
    :param request: the live twisted.web request, to answer later when the
        handler returned ``NOT_DONE_YET``.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, list[str]]
    body: bytes
    request: Request = attrs.field(repr=False)

    def json(self) -> Any:
        """Return the body parsed as JSON (``None`` when empty)."""
        return json.loads(self.body) if self.body.strip() else None

    def header(self, name: str) -> str | None:
        """Return the first value of a header, or ``None``.

        :param name: the header name, any case.
        """
        values = self.headers.get(name.lower())
        return values[0] if values else None


Handler = Callable[[RecordedRequest], "tuple[int, Any] | object"]


class RecordingResource(Resource):
    """A twisted.web resource that records every request and answers through a handler.

    The handler gets the :class:`RecordedRequest` and returns
    ``(status, body)``, where ``body`` is ``bytes``, ``None`` (empty) or a
    JSON value; or :data:`~twisted.web.server.NOT_DONE_YET` to answer later
    through ``recorded.request``.

    :param handler: decides each answer; by default 204 with no body.
    """

    isLeaf = True

    def __init__(self, handler: Handler | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.handler: Handler = handler or (lambda r: (204, None))
        self.requests: list[RecordedRequest] = []

    def render(self, request: Request) -> bytes | int:
        """Record the request and answer it as the handler says."""
        assert request.content is not None
        recorded = RecordedRequest(
            method=request.method.decode("ascii"),
            path=request.path.decode("utf-8"),
            query={
                k.decode("utf-8"): [v.decode("utf-8") for v in vs]
                for k, vs in (request.args or {}).items()
            },
            headers={
                k.decode("ascii").lower(): [v.decode("utf-8") for v in vs]
                for k, vs in request.requestHeaders.getAllRawHeaders()
            },
            body=request.content.read(),
            request=request,
        )
        self.requests.append(recorded)
        answer = self.handler(recorded)
        if answer is NOT_DONE_YET:
            return NOT_DONE_YET
        assert isinstance(answer, tuple)
        status, body = answer
        request.setResponseCode(status)
        if body is None:
            return b""
        if isinstance(body, bytes):
            return body
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode("utf-8")


@attrs.frozen
class StubHTTP:
    """A treq client whose requests go to an in-memory resource.

    :param client: pass this to the client under test.
    :param agent: the in-memory agent; :meth:`flush` moves pending bytes.
    """

    client: HTTPClient
    agent: RequestTraversalAgent

    def flush(self) -> None:
        """Deliver whatever a delayed (``NOT_DONE_YET``) answer has written so far."""
        self.agent.flush()  # type: ignore[no-untyped-call]


def stub_http(resource: Resource) -> StubHTTP:
    """Return a treq client over ``resource``, as ``treq.testing.StubTreq`` builds it.

    :param resource: the server side, such as a :class:`RecordingResource`.
    """
    agent = RequestTraversalAgent(resource)  # type: ignore[no-untyped-call]
    return StubHTTP(HTTPClient(agent=agent, data_to_body_producer=_SynchronousProducer), agent)


def result_of(d: Deferred[Any]) -> Any:
    """Return the result a Deferred has already fired with; fail when it has not fired or failed.

    :param d: a Deferred expected to have succeeded.
    """
    results: list[Any] = []
    failures: list[Failure] = []
    d.addCallbacks(results.append, failures.append)
    if failures:
        failures[0].raiseException()
    assert results, "the Deferred has not fired"
    return results[0]


def failure_of(d: Deferred[Any]) -> BaseException:
    """Return the exception a Deferred has already failed with.

    :param d: a Deferred expected to have failed.
    """
    results: list[Any] = []
    failures: list[Failure] = []
    d.addCallbacks(results.append, failures.append)
    assert not results, f"the Deferred succeeded with {results[0]!r}"
    assert failures, "the Deferred has not fired"
    error = failures[0].value
    assert error is not None
    return error
