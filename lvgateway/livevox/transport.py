"""The HTTP layer under the LiveVox client: URLs, headers, JSON, timeouts, retries, the cap.

One :class:`LiveVoxTransport` serves every agent: it owns the cap on
requests in flight, so hundreds of agents logging in at once queue here
instead of flooding LiveVox.

Each attempt of a call:

1. waits for a slot under ``max_in_flight`` (time spent waiting is not
   part of the timeout: a queue of 200 logins must not time out in line);
2. sends the request with ``Accept: application/json``, the credential
   header (``LV-Access`` for the Session API, ``LV-Session`` for the rest)
   and, when there is a body, ``Content-Type: application/json``;
3. reads the whole body under ``request_timeout`` on the injected clock
   (treq's own ``timeout=`` stops at the headers, so it is not used): when
   the time runs out the request is cancelled and its connection closed;
4. gives back the slot, and turns the outcome into a value or one of the
   exceptions of :mod:`lvgateway.livevox.errors`.

Calls marked safe to repeat (:mod:`lvgateway.livevox.calls`) are retried
after a 5xx, a timeout or a connection failure, up to ``max_retries``
times, waiting ``retry_base_delay * 2**n`` capped at ``retry_max_delay``,
with "equal jitter": a delay ``d`` becomes a uniform draw from
``[d/2, d]``. Never after a 4xx.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Coroutine, Iterable, Sequence
from functools import update_wrapper
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import quote

import attrs
from treq.client import HTTPClient
from twisted.internet import error as neterror
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, succeed
from twisted.internet.interfaces import IConsumer, IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from lvgateway.backoff import Backoff
from lvgateway.config.model import LiveVoxConfig
from lvgateway.livevox.calls import CallSpec
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    LiveVoxConnectionError,
    LiveVoxError,
    LiveVoxServerError,
    LiveVoxTimeoutError,
    LiveVoxUnavailableError,
    LoginDeniedError,
    NotFoundError,
    PermissionDeniedError,
    SessionExpiredError,
    UnexpectedResponseError,
)
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.parsing import Session, error_fields

__all__ = [
    "HttpResult",
    "LiveVoxTransport",
    "RetryPolicy",
    "deferred_method",
    "error_for",
    "exchange",
    "http_client_for",
]

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")

log = Logger()

#: Failures of the connection rather than of LiveVox's answer: worth a retry.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    neterror.ConnectError,
    neterror.ConnectionLost,
    neterror.ConnectionDone,
    neterror.DNSLookupError,
    neterror.TimeoutError,
    ResponseFailed,
    RequestTransmissionFailed,
    ConnectionError,
)

_CANCEL_OR_NETWORK: tuple[type[BaseException], ...] = (CancelledError, *_NETWORK_ERRORS)

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def deferred_method(
    f: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Deferred[T]]:
    """Make an ``async def`` method return a cancellable Deferred, the Twisted boundary.

    :param f: the coroutine method.
    """

    def wrapper(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return Deferred.fromCoroutine(f(self, *args, **kwargs))

    update_wrapper(wrapper, f)
    return wrapper


def http_client_for(
    reactor: Any, config: LiveVoxConfig, *, pool: HTTPConnectionPool | None = None
) -> HTTPClient:
    """Return a treq client that verifies LiveVox's certificate.

    Certificates are always verified (``BrowserLikePolicyForHTTPS``): against
    the system's CAs by default, or against only the CAs in
    ``config.ca_bundle`` (a PEM file of one or more certificates) when set.

    :param reactor: the reactor connections are made on.
    :param config: the LiveVox settings; only ``ca_bundle`` is read.
    :param pool: a connection pool to keep connections in; by default a
        persistent pool on ``reactor``. Pass your own to close its cached
        connections at shutdown (``pool.closeCachedConnections()``).
    :raises ValueError: when the bundle holds no certificate.
    :raises OSError: when the bundle cannot be read.
    """
    trust_root = None
    if config.ca_bundle is not None:
        with open(config.ca_bundle, "rb") as f:
            pem = f.read()
        certificates = [Certificate.loadPEM(block) for block in _PEM_CERT.findall(pem)]
        if not certificates:
            raise ValueError(f"no PEM certificate in {config.ca_bundle}")
        trust_root = trustRootFromCertificates(certificates)  # type: ignore[no-untyped-call]
    if pool is None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = max(2, config.max_in_flight)
    agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trust_root), pool=pool)
    return HTTPClient(agent, data_to_body_producer=_BytesProducer)


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body of bytes, written at once.

    treq's default turns bytes into a ``FileBodyProducer``, which paces its
    writes with the global cooperator (and so the global reactor): a JSON
    body of a few hundred bytes needs no pacing.

    :param data: the body.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        """Write the whole body."""
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: the body is already written."""

    def resumeProducing(self) -> None:
        """Nothing to resume."""

    def stopProducing(self) -> None:
        """Nothing to stop."""


@attrs.frozen
class HttpResult:
    """A whole HTTP answer: status, headers and body, read to the end.

    :param status: the HTTP status.
    :param headers: the response headers.
    :param body: the whole body; empty for a 204.
    """

    status: int
    headers: Headers = attrs.field(repr=False)
    body: bytes


class _BodyReader(Protocol):
    """Collects a response body; cancelling its Deferred closes the connection."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self.finished: Deferred[bytes] = Deferred(self._cancel)

    def _cancel(self, d: Deferred[bytes]) -> None:
        """Stop the body: close the connection it arrives on."""
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        """Keep a chunk of the body."""
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Fire with the body when it is complete, else with the reason."""
        if self.finished.called:
            return
        if isinstance(reason.value, ResponseDone | PotentialDataLoss):
            self.finished.callback(b"".join(self._chunks))
        else:
            self.finished.errback(reason)


def _read_body(response: IResponse) -> Deferred[bytes]:
    """Return a cancellable Deferred of the whole body of ``response``."""
    if response.length == 0:
        return succeed(b"")
    reader = _BodyReader()
    response.deliverBody(reader)
    return reader.finished


async def _send(
    http: HTTPClient,
    method: str,
    url: str,
    headers: dict[str, list[str]],
    params: Sequence[tuple[str, str]],
    data: bytes | None,
) -> HttpResult:
    """Send one request and read its whole answer."""
    response: IResponse = await http.request(
        method,
        url,
        headers=Headers(
            {k.encode("ascii"): [v.encode("utf-8") for v in vs] for k, vs in headers.items()}
        ),
        params=list(params) or None,
        data=data,
        unbuffered=True,
        allow_redirects=False,
    )
    body = await _read_body(response)
    return HttpResult(status=response.code, headers=response.headers, body=body)


def _describe(error: BaseException) -> str:
    """Return a short text for a network failure, unwrapping Twisted's wrapped reasons."""
    reasons = getattr(error, "reasons", None)
    if reasons:
        inner = [r.value for r in reasons if isinstance(r, Failure)]
        if inner:
            return "; ".join(f"{type(e).__name__}: {e}" for e in inner)[:300]
    return f"{type(error).__name__}: {error}"[:300]


async def exchange(
    http: HTTPClient,
    clock: IReactorTime,
    call: str,
    method: str,
    url: str,
    *,
    headers: dict[str, list[str]],
    params: Sequence[tuple[str, str]] = (),
    data: bytes | None = None,
    timeout: float,
) -> HttpResult:
    """Send one request and read its whole answer within ``timeout`` seconds.

    The answer comes back whatever its status; only the transport's own
    failures raise.

    :param http: the treq client.
    :param clock: the clock the timeout runs on.
    :param call: the call name, for the exceptions.
    :param method: the HTTP method.
    :param url: the whole URL, without the query.
    :param headers: the request headers.
    :param params: the query parameters, in order.
    :param data: the body, or ``None``.
    :param timeout: the bound on the request and its whole body.
    :raises LiveVoxTimeoutError: when the whole answer did not come in time.
    :raises LiveVoxConnectionError: when the connection failed or broke.
    """
    attempt = Deferred.fromCoroutine(_send(http, method, url, headers, params, data))
    timed_out = False

    def expire() -> None:
        nonlocal timed_out
        timed_out = True
        attempt.cancel()

    timer: IDelayedCall = clock.callLater(timeout, expire)
    try:
        return await attempt
    except _CANCEL_OR_NETWORK as e:
        if timed_out:
            raise LiveVoxTimeoutError(
                call, message=f"no whole answer within {timeout:g}s"
            ) from None
        if _is_cancellation(e):
            # Cancelled by the caller: Agent reports it wrapped in
            # ResponseNeverReceived, which must not look like a network
            # failure (it would be retried).
            raise CancelledError() from e
        raise LiveVoxConnectionError(call, message=_describe(e)) from e
    finally:
        if timer.active():
            timer.cancel()


def _is_cancellation(error: BaseException) -> bool:
    """Whether ``error`` is a cancellation, bare or wrapped by twisted.web's client."""
    if isinstance(error, CancelledError):
        return True
    reasons = getattr(error, "reasons", None) or []
    return any(isinstance(r, Failure) and isinstance(r.value, CancelledError) for r in reasons)


def error_for(
    call: str, result: HttpResult, *, login: bool = False, sessions: bool = True
) -> LiveVoxError | None:
    """Return the exception a non-2xx answer means, or ``None`` for a 2xx.

    :param call: the call name.
    :param result: the answer.
    :param login: whether the call was a login, where 401/403/404 mean
        "login denied" rather than "session expired" or "not found".
    :param sessions: whether a 401 means an expired session (LiveVox's REST
        API); ``False`` for endpoints without LiveVox sessions (the AIA).
    """
    status = result.status
    if 200 <= status < 300:
        return None
    code, message = error_fields(result.body)
    kind: type[LiveVoxError]
    if login and status in (401, 403, 404):
        kind = LoginDeniedError
    elif sessions and (status == 401 or (400 <= status < 500 and code == 401)):
        kind = SessionExpiredError
    elif status == 403:
        kind = PermissionDeniedError
    elif status == 404:
        kind = NotFoundError
    elif 400 <= status < 500:
        kind = LiveVoxClientError
    elif status >= 500:
        kind = LiveVoxServerError
    else:
        kind = UnexpectedResponseError
        message = message or f"unexpected HTTP status {status}"
    return kind(call, status=status, code=code, message=message)


@attrs.frozen
class RetryPolicy:
    """How a call that is safe to repeat is retried: the gateway's one backoff, bounded in count.

    :param max_retries: repeats after the first attempt; 0 for none.
    :param base_delay: the delay before the first repeat, before jitter.
    :param max_delay: the ceiling on any one delay.
    :param jitter: returns a number in ``[0, 1)``; :func:`random.random` by
        default, injected in tests.
    """

    max_retries: int
    base_delay: float
    max_delay: float
    jitter: Callable[[], float] = random.random

    def delay(self, retry: int) -> float:
        """Return the wait before repeat number ``retry`` (0 for the first repeat).

        :param retry: which repeat this is, from 0.
        """
        return Backoff(self.base_delay, self.max_delay, self.jitter).delay(retry)


class LiveVoxTransport:
    """Sends LiveVox REST calls: one shared by every agent.

    :param http: the treq client (see :func:`http_client_for`).
    :param clock: the clock timeouts and retry delays run on.
    :param config: the LiveVox settings: base URL, version, API token,
        timeout, retries and cap.
    :param metrics: where each request is counted and timed.
    :param jitter: the retry jitter source, a number in ``[0, 1)``.
    """

    def __init__(
        self,
        http: HTTPClient,
        clock: IReactorTime,
        config: LiveVoxConfig,
        metrics: LiveVoxMetrics,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._http = http
        self._clock = clock
        self._config = config
        self._metrics = metrics
        self._retry = RetryPolicy(
            max_retries=config.max_retries,
            base_delay=config.retry_base_delay,
            max_delay=config.retry_max_delay,
            jitter=jitter,
        )
        self._slots = DeferredSemaphore(max(1, config.max_in_flight))
        self._held: list[Deferred[None]] | None = None

    def hold_until(self, opened: Deferred[Any]) -> None:
        """Make every request wait until ``opened`` fires, whatever its result.

        For a LiveVox that is a child process of the gateway (the demo's
        simulator): requests made before it serves wait instead of failing.
        The wait is not part of any request's timeout.

        :param opened: fires when LiveVox may be asked.
        """
        held: list[Deferred[None]] = []
        self._held = held

        def release(result: object) -> None:
            if self._held is held:
                self._held = None
            for waiter in held:
                if not waiter.called:  # a cancelled request already fired its waiter
                    waiter.callback(None)

        opened.addBoth(release)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry settings in force."""
        return self._retry

    def url_for(self, spec: CallSpec, segments: Iterable[str] = ()) -> str:
        """Return the URL of a call, with the configured version after the category.

        ``/session/login`` unversioned, ``/session/v6.0/login`` with version
        ``v6.0``. Per-request segments (a session id, an account) are
        percent-encoded.

        :param spec: the call.
        :param segments: path segments after the call's resource.
        """
        parts = [self._config.base_url.rstrip("/"), spec.category]
        version = (self._config.version or "").strip("/")
        if version:
            parts.append(version)
        parts.append(spec.resource.strip("/"))
        parts.extend(quote(s, safe="") for s in segments)
        return "/".join(parts)

    def _headers(
        self, spec: CallSpec, session: Session | None, has_body: bool
    ) -> dict[str, list[str]]:
        """Return the request headers: JSON, and the one credential the call needs."""
        headers = {"Accept": ["application/json"], "User-Agent": ["lvgateway"]}
        if has_body:
            headers["Content-Type"] = ["application/json"]
        if spec.credential == "access":
            headers["LV-Access"] = [self._config.token.reveal()]
        else:
            if session is None:
                raise ValueError(f"{spec.name} needs a session")
            headers["LV-Session"] = [session.session_id]
        return headers

    async def request(
        self,
        spec: CallSpec,
        parse: Callable[[HttpResult], T],
        *,
        session: Session | None = None,
        agent: str | None = None,
        segments: Sequence[str] = (),
        params: Sequence[tuple[str, str]] = (),
        body: Any = None,
        send_body: bool = False,
        method: str | None = None,
    ) -> T:
        """Make one call, retrying it when that is safe, and return what ``parse`` makes of it.

        :param spec: the call.
        :param parse: turns a 2xx answer into the call's value; it may raise
            a :class:`~lvgateway.livevox.errors.LiveVoxError` (counted as the
            outcome), and a ``ValueError`` it raises becomes
            :class:`~lvgateway.livevox.errors.UnexpectedResponseError`.
        :param session: the session to send as ``LV-Session``, for the calls that need one.
        :param agent: the login the call is for, for log lines (the
            session's user name by default).
        :param segments: path segments after the resource (a session id, an account).
        :param params: query parameters, in order.
        :param body: the JSON body, sent when ``send_body`` is true.
        :param send_body: whether to send ``body`` (so that ``{}`` and
            ``null`` can be sent too).
        :param method: overrides the call's method (Create Contact's POST or PUT).
        :raises LiveVoxError: the typed failure, with ``attempts`` set.
        """
        url = self.url_for(spec, segments)
        data = json.dumps(body, separators=(",", ":")).encode("utf-8") if send_body else None
        headers = self._headers(spec, session, data is not None)
        who = agent or (session.user_name if session is not None else None) or "-"
        short = session.short_id if session is not None else "-"
        verb = method or spec.method
        attempts = 0
        while True:
            attempts += 1
            try:
                return await self._attempt(
                    spec, parse, verb, url, headers, params, data, who, short
                )
            except LiveVoxError as e:
                e.attempts = attempts
                retry = attempts - 1
                if not (
                    spec.retry
                    and isinstance(e, LiveVoxUnavailableError)
                    and retry < self._retry.max_retries
                    # LiveVox is down and the outage watch probes for everyone.
                    and not self._metrics.reachability.quiet
                ):
                    raise
                delay = self._retry.delay(retry)
                self._metrics.retries.labels(call=spec.name).inc()
                log.info(
                    "LiveVox {call} for {agent} failed ({error}); retry {retry} of {max_retries} "
                    "in {delay:.2f}s",
                    call=spec.name,
                    agent=who,
                    error=str(e),
                    retry=retry + 1,
                    max_retries=self._retry.max_retries,
                    delay=delay,
                )
                await deferLater(self._clock, delay, lambda: None)
                if self._metrics.reachability.quiet:
                    raise e  # LiveVox went down meanwhile: the watch probes for everyone

    async def _attempt(
        self,
        spec: CallSpec,
        parse: Callable[[HttpResult], T],
        method: str,
        url: str,
        headers: dict[str, list[str]],
        params: Sequence[tuple[str, str]],
        data: bytes | None,
        who: str,
        short: str,
    ) -> T:
        """Make one attempt under the in-flight cap, counting and logging it."""
        if self._held is not None:
            waiter: Deferred[None] = Deferred()
            self._held.append(waiter)
            await waiter
        self._metrics.waiting.inc()
        try:
            await self._slots.acquire()
        finally:
            self._metrics.waiting.dec()
        self._metrics.in_flight.inc()
        started = self._clock.seconds()
        failure: BaseException | None = None
        try:
            result = await exchange(
                self._http,
                self._clock,
                spec.name,
                method,
                url,
                headers=headers,
                params=params,
                data=data,
                timeout=self._config.request_timeout,
            )
            error = error_for(spec.name, result, login=spec.name == "login")
            if error is not None:
                raise error
            try:
                value = parse(result)
            except ValueError as e:
                raise UnexpectedResponseError(
                    spec.name, status=result.status, message=str(e)
                ) from e
        except BaseException as e:
            failure = e
            if isinstance(e, LiveVoxError):
                # LiveVox unavailable or answering nonsense is worth a warning;
                # a refusal is the caller's to judge (a 404 at logout is fine).
                # During an outage the watch logs it once, with counts.
                if isinstance(e, LiveVoxClientError | ContactExistsError):
                    emit = log.info
                elif isinstance(e, LiveVoxUnavailableError) and self._metrics.reachability.quiet:
                    e.during_outage = True
                    emit = log.debug
                else:
                    emit = log.warn
                emit(
                    "LiveVox {call} for {agent} (session {session}) failed: {error}",
                    call=spec.name,
                    agent=who,
                    session=short,
                    error=str(e),
                    status=e.status,
                    code=e.code,
                )
            raise
        finally:
            self._slots.release()
            self._metrics.in_flight.dec()
            now = self._clock.seconds()
            self._metrics.observe(spec.name, now - started, failure, now)
        log.debug(
            "LiveVox {call} for {agent} (session {session}): HTTP {status}",
            call=spec.name,
            agent=who,
            session=short,
            status=result.status,
        )
        return value
