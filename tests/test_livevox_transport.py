"""Unit tests of the LiveVox transport: retries, backoff, whole-request timeout, the cap, metrics."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from treq.client import HTTPClient
from treq.testing import RequestTraversalAgent, _SynchronousProducer
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.web.iweb import IAgent
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from lvgateway.config.secret import Secret
from lvgateway.livevox.calls import ALL_CALLS, CALL_NAMES
from lvgateway.livevox.client import LiveVoxClient
from lvgateway.livevox.errors import (
    LiveVoxClientError,
    LiveVoxConnectionError,
    LiveVoxServerError,
    LiveVoxTimeoutError,
    SessionExpiredError,
)
from lvgateway.livevox.metrics import OUTCOMES, LiveVoxMetrics
from lvgateway.livevox.parsing import Session
from lvgateway.livevox.testing import (
    Handler,
    RecordedRequest,
    RecordingResource,
    StubHTTP,
    failure_of,
    livevox_config,
    result_of,
    stub_http,
)
from lvgateway.livevox.transport import RetryPolicy

SESSION = Session(session_id="5eb4ad6c-50b7-45da-8d56-f4e9ac7d9cbd", user_name="AIVA1", agent=True)
PW = Secret("pw", "test")


def login_ok(r: RecordedRequest) -> tuple[int, Any]:
    """Answer a login."""
    return 200, {"sessionId": "session-" + r.json()["userName"], "userId": 1}


class Sequence:
    """Answers from a list, in order; the last one repeats."""

    def __init__(self, *answers: tuple[int, Any]) -> None:
        self.answers = list(answers)

    def __call__(self, r: RecordedRequest) -> tuple[int, Any]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


def make(
    handler: Handler | None = None, jitter: float = 0.5, **overrides: Any
) -> tuple[LiveVoxClient, RecordingResource, Clock, StubHTTP, CollectorRegistry]:
    """Return a client over an in-memory server, with a fixed jitter."""
    resource = RecordingResource(handler)
    stub = stub_http(resource)
    clock = Clock()
    registry = CollectorRegistry()
    client = LiveVoxClient(
        livevox_config(**overrides), clock, stub.client, LiveVoxMetrics(registry), lambda: jitter
    )
    return client, resource, clock, stub, registry


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Return a metric sample's value, 0 when absent."""
    return registry.get_sample_value(name, labels) or 0.0


# -- backoff ---------------------------------------------------------------------


@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999999])
def test_backoff_doubles_within_equal_jitter_bounds(jitter: float) -> None:
    """Each delay lies in [d/2, d] for d = base * 2**n capped at the maximum."""
    policy = RetryPolicy(max_retries=10, base_delay=0.5, max_delay=5.0, jitter=lambda: jitter)
    for n in range(8):
        ceiling = min(5.0, 0.5 * 2**n)
        delay = policy.delay(n)
        assert ceiling / 2 <= delay <= ceiling
        assert delay == pytest.approx(ceiling / 2 + ceiling / 2 * jitter)


def test_retry_after_5xx_waits_the_backoff_then_succeeds() -> None:
    """A login answered 503 twice is retried after 0.75 s and 1.5 s (jitter 0.5) and succeeds."""
    handler = Sequence(
        (503, None), (503, {"code": 503, "message": "busy"}), (200, {"sessionId": "abcdefghij"})
    )
    client, resource, clock, _, registry = make(handler)
    d = client.login("AIVA1", PW)
    assert len(resource.requests) == 1 and not d.called
    clock.advance(0.74)
    assert len(resource.requests) == 1
    clock.advance(0.01)
    assert len(resource.requests) == 2
    clock.advance(1.49)
    assert len(resource.requests) == 2
    clock.advance(0.01)
    assert len(resource.requests) == 3
    assert result_of(d).session_id == "abcdefghij"
    assert sample(registry, "lvgateway_livevox_retries_total", call="login") == 2
    assert (
        sample(registry, "lvgateway_livevox_requests_total", call="login", outcome="server_error")
        == 2
    )
    assert (
        sample(registry, "lvgateway_livevox_requests_total", call="login", outcome="success") == 1
    )


def test_requests_held_until_opened_wait_then_go() -> None:
    """Requests made while the transport is held send nothing; they go once it opens, untimed."""
    client, resource, clock, _, _ = make(lambda r: (200, {"sessionId": "abcdefghij"}))
    opened: Deferred[None] = Deferred()
    client.transport.hold_until(opened)
    first, second = client.login("AIVA1", PW), client.login("AIVA2", PW)
    cancelled = client.login("AIVA3", PW)
    cancelled.cancel()
    assert isinstance(failure_of(cancelled), CancelledError)
    clock.advance(3600)  # far past request_timeout: the wait is not part of it
    assert resource.requests == [] and not first.called and not second.called
    opened.callback(None)
    assert len(resource.requests) == 2
    assert result_of(first).session_id == result_of(second).session_id == "abcdefghij"
    assert client.login("AIVA4", PW).called  # once open, requests go at once


def test_retries_are_bounded_and_the_error_counts_attempts() -> None:
    """After max_retries repeats the last 5xx is raised with attempts = max_retries + 1."""
    client, resource, clock, _, _ = make(lambda r: (500, {"code": 500, "message": "down"}))
    d = client.ready(SESSION)
    clock.pump([1.0, 2.0, 4.0, 8.0])
    error = failure_of(d)
    assert isinstance(error, LiveVoxServerError)
    assert (error.status, error.message, error.attempts) == (500, "down", 3)
    assert len(resource.requests) == 3
    assert "after 3 attempts" in str(error)


def test_delays_are_capped_at_max_delay() -> None:
    """With many retries the delay stops growing at retry_max_delay."""
    client, resource, clock, _, _ = make(
        lambda r: (502, None),
        jitter=0.999999,
        max_retries=6,
        retry_base_delay=1.0,
        retry_max_delay=3.0,
    )
    d = client.validate(SESSION)
    seen = [len(resource.requests)]
    for _ in range(6):
        clock.advance(3.0)
        seen.append(len(resource.requests))
    assert seen == [1, 2, 3, 4, 5, 6, 7]
    assert isinstance(failure_of(d), LiveVoxServerError)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_no_retry_on_4xx(status: int) -> None:
    """A 4xx is never retried, even on a call that is safe to repeat."""
    client, resource, clock, _, _ = make(lambda r: (status, {"code": status, "message": "no"}))
    d = client.join_service(SESSION, "1", "8990000001")
    clock.advance(100)
    error = failure_of(d)
    assert isinstance(error, LiveVoxClientError) and error.attempts == 1
    assert len(resource.requests) == 1


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.end_call(SESSION),
        lambda c: c.manual_conference(SESSION, "5551234567"),
        lambda c: c.create_contact({"account": "A1"}, SESSION),
    ],
    ids=["call_end", "conference_manual", "contact_create"],
)
def test_unsafe_calls_are_not_retried_on_5xx(call: Any) -> None:
    """Calls a repeat could double are not retried after a 5xx."""
    client, resource, clock, _, _ = make(lambda r: (503, None))
    d = call(client)
    clock.advance(100)
    assert isinstance(failure_of(d), LiveVoxServerError)
    assert len(resource.requests) == 1


def test_term_code_save_is_never_retried_by_the_transport() -> None:
    """A 5xx on a term code save is raised at once: it may have been applied, and only the wrap-up may decide to repeat it."""
    handler = Sequence((503, None), (204, None))
    client, resource, clock, _, _ = make(handler)
    d = client.save_term_code(
        SESSION,
        call_transaction_id="1",
        call_session_id="S",
        term_code_id="2",
        phone_dialed="5551234567",
        move_agent_to_not_ready=False,
    )
    clock.advance(10)
    error = failure_of(d)
    assert isinstance(error, LiveVoxServerError) and error.attempts == 1
    assert len(resource.requests) == 1


def test_session_expired_is_not_retried() -> None:
    """A 401 is final for the transport: the caller logs in again."""
    client, resource, clock, _, _ = make(lambda r: (401, None))
    d = client.agent_status(SESSION)
    clock.advance(100)
    assert isinstance(failure_of(d), SessionExpiredError)
    assert len(resource.requests) == 1


@implementer(IAgent)
class RefusingAgent:
    """Refuses the first connections, then hands requests to the in-memory server."""

    def __init__(self, refusals: int, inner: RequestTraversalAgent) -> None:
        self.refusals = refusals
        self.inner = inner

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Any = None,
        bodyProducer: Any = None,  # noqa: N803 (IAgent's name)
    ) -> Deferred[Any]:
        if self.refusals:
            self.refusals -= 1
            return fail(ConnectionRefusedError("127.0.0.1"))
        return self.inner.request(method, uri, headers, bodyProducer)


def test_connection_failure_is_retried_then_typed() -> None:
    """A refused connection is retried; when refusals outlast the retries it is LiveVoxConnectionError."""
    resource = RecordingResource(login_ok)
    agent = RefusingAgent(5, RequestTraversalAgent(resource))
    http = HTTPClient(agent, data_to_body_producer=_SynchronousProducer)
    clock = Clock()
    registry = CollectorRegistry()
    client = LiveVoxClient(livevox_config(), clock, http, LiveVoxMetrics(registry), lambda: 0.0)
    d = client.login("AIVA1", PW)
    clock.pump([10.0] * 3)
    error = failure_of(d)
    assert isinstance(error, LiveVoxConnectionError)
    assert error.call == "login" and error.status is None and error.attempts == 3
    assert "ConnectionRefused" in (error.message or "")
    assert resource.requests == []
    assert (
        sample(
            registry, "lvgateway_livevox_requests_total", call="login", outcome="connection_failed"
        )
        == 3
    )
    agent.refusals = 1
    d = client.login("AIVA1", PW)
    clock.advance(10.0)
    assert result_of(d).session_id == "session-AIVA1"


# -- timeout on the whole request -----------------------------------------------------


def test_timeout_fires_when_the_body_never_finishes() -> None:
    """Headers and half a body, then nothing: the request times out on the clock and its connection closes."""
    finished: list[Deferred[None]] = []

    def stall(r: RecordedRequest) -> object:
        r.request.setResponseCode(200)
        r.request.setHeader(b"Content-Type", b"application/json")
        r.request.write(b'{"sessionId": "abc')
        finished.append(r.request.notifyFinish())
        return NOT_DONE_YET

    client, resource, clock, stub, registry = make(stall, max_retries=0, request_timeout=5.0)
    d = client.login("AIVA1", PW)
    stub.flush()
    assert not d.called
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.1)
    error = failure_of(d)
    assert isinstance(error, LiveVoxTimeoutError)
    assert error.call == "login" and error.status is None
    stub.flush()
    assert isinstance(failure_of(finished[0]), Exception)  # the server saw the connection go
    assert (
        sample(registry, "lvgateway_livevox_requests_total", call="login", outcome="timeout") == 1
    )
    assert sample(registry, "lvgateway_livevox_requests_in_flight") == 0


def test_timeout_before_headers_then_retry_succeeds() -> None:
    """A login with no answer at all times out, is retried, and the retry succeeds."""
    calls: list[RecordedRequest] = []

    def first_silent(r: RecordedRequest) -> object:
        calls.append(r)
        if len(calls) == 1:
            return NOT_DONE_YET
        return login_ok(r)

    client, resource, clock, stub, _ = make(first_silent, request_timeout=5.0, jitter=0.0)
    d = client.login("AIVA1", PW)
    clock.advance(5.0)
    assert not d.called and len(calls) == 1
    clock.advance(0.5)  # first retry delay: base 1.0, equal jitter 0 -> 0.5
    assert len(calls) == 2
    session = result_of(d)
    assert session.session_id == "session-AIVA1"


def test_slow_but_complete_answer_within_timeout_succeeds() -> None:
    """An answer whose body completes before the timeout is not cut off."""
    held: list[RecordedRequest] = []

    def hold(r: RecordedRequest) -> object:
        held.append(r)
        r.request.setResponseCode(204)
        return NOT_DONE_YET

    client, resource, clock, stub, _ = make(hold, request_timeout=5.0)
    d = client.ready(SESSION)
    clock.advance(4.0)
    held[0].request.finish()
    stub.flush()
    assert result_of(d) is None
    clock.advance(10)
    assert len(held) == 1


def test_cancelling_a_call_frees_its_slot_and_closes_its_connection() -> None:
    """A caller's cancel ends the request, releases its slot and counts as cancelled."""
    held: list[RecordedRequest] = []

    def hold(r: RecordedRequest) -> object:
        held.append(r)
        return NOT_DONE_YET

    client, resource, clock, stub, registry = make(hold, max_in_flight=1)
    d1 = client.ready(SESSION)
    d2 = client.ready(SESSION)
    assert len(held) == 1
    d1.cancel()
    assert isinstance(failure_of(d1), CancelledError)
    assert len(held) == 2  # the slot went to the second call
    d2.cancel()
    failure_of(d2)
    assert (
        sample(registry, "lvgateway_livevox_requests_total", call="ready", outcome="cancelled") == 2
    )
    assert sample(registry, "lvgateway_livevox_requests_in_flight") == 0


def test_cancelling_during_backoff_stops_the_retries() -> None:
    """A cancel while waiting to retry stops the call with no further request."""
    client, resource, clock, _, _ = make(lambda r: (503, None))
    d = client.ready(SESSION)
    d.cancel()
    assert isinstance(failure_of(d), CancelledError)
    clock.advance(100)
    assert len(resource.requests) == 1


# -- the in-flight cap --------------------------------------------------------------


def test_200_logins_never_exceed_the_in_flight_cap() -> None:
    """200 logins at once: the server never holds more than max_in_flight, and all 200 finish."""
    cap = 7
    held: list[RecordedRequest] = []
    in_flight = 0
    most = 0

    def hold(r: RecordedRequest) -> object:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        held.append(r)
        return NOT_DONE_YET

    client, resource, clock, stub, registry = make(hold, max_in_flight=cap)
    ds = [client.login(f"agent{i:03d}", PW) for i in range(200)]
    assert len(held) == cap
    assert sample(registry, "lvgateway_livevox_requests_waiting") == 200 - cap
    rounds = 0
    while held:
        rounds += 1
        assert rounds <= 200, "the logins did not drain"
        batch, held[:] = held[:3], held[3:]
        for r in batch:
            name = r.json()["userName"]
            r.request.setResponseCode(200)
            r.request.setHeader(b"Content-Type", b"application/json")
            r.request.write(b'{"sessionId": "session-%s"}' % name.encode())
            in_flight -= 1
            r.request.finish()
        stub.flush()
        assert in_flight <= cap
    assert most == cap
    sessions = [result_of(d) for d in ds]
    assert [s.session_id for s in sessions] == [f"session-agent{i:03d}" for i in range(200)]
    assert len(resource.requests) == 200
    assert sample(registry, "lvgateway_livevox_requests_in_flight") == 0
    assert sample(registry, "lvgateway_livevox_requests_waiting") == 0


def test_waiting_for_a_slot_is_not_part_of_the_timeout() -> None:
    """A request queued behind the cap longer than the timeout still gets its full time once sent."""
    held: list[RecordedRequest] = []

    def hold(r: RecordedRequest) -> object:
        held.append(r)
        r.request.setResponseCode(204)
        return NOT_DONE_YET

    client, resource, clock, stub, _ = make(
        hold, max_in_flight=1, request_timeout=5.0, max_retries=0
    )
    first = client.ready(SESSION)
    second = client.ready(SESSION)
    clock.advance(4.0)
    held[0].request.finish()
    stub.flush()
    assert result_of(first) is None
    clock.advance(4.0)  # 8 s since the second call began, 4 s since it was sent
    assert not second.called
    held[1].request.finish()
    stub.flush()
    assert result_of(second) is None


# -- metrics -------------------------------------------------------------------------


def test_every_series_exists_from_the_start() -> None:
    """Each call x outcome counter, each call's histogram and retry counter exist at zero."""
    registry = CollectorRegistry()
    LiveVoxMetrics(registry)
    for call in CALL_NAMES:
        assert registry.get_sample_value("lvgateway_livevox_retries_total", {"call": call}) == 0
        assert (
            registry.get_sample_value(
                "lvgateway_livevox_request_duration_seconds_count", {"call": call}
            )
            == 0
        )
        for outcome in OUTCOMES:
            labels = {"call": call, "outcome": outcome}
            assert registry.get_sample_value("lvgateway_livevox_requests_total", labels) == 0
    assert {c.name for c in ALL_CALLS} | {"aia_post"} == set(CALL_NAMES)


def test_duration_is_observed_on_the_clock() -> None:
    """The duration histogram records the time to the whole answer."""
    held: list[RecordedRequest] = []

    def hold(r: RecordedRequest) -> object:
        held.append(r)
        r.request.setResponseCode(204)
        return NOT_DONE_YET

    client, resource, clock, stub, registry = make(hold)
    d = client.ready(SESSION)
    clock.advance(0.3)
    held[0].request.finish()
    stub.flush()
    result_of(d)
    labels = {"call": "ready"}
    assert registry.get_sample_value(
        "lvgateway_livevox_request_duration_seconds_sum", labels
    ) == pytest.approx(0.3)
    assert (
        registry.get_sample_value(
            "lvgateway_livevox_request_duration_seconds_bucket", {"call": "ready", "le": "0.25"}
        )
        == 0
    )
