"""Prometheus metrics for requests to LiveVox and to the AIA endpoint.

Made with the gateway's helpers (:mod:`lvgateway.metrics`), so every series
exists from the start: each label combination is registered when the
metrics are created. Labels are bounded: ``call`` is one of
:data:`~lvgateway.livevox.calls.CALL_NAMES` and ``outcome`` one of
:data:`OUTCOMES`; never an id, an agent or a number.

Each HTTP request counts once, so a call retried twice counts three
requests; ``lvgateway_livevox_retries_total`` counts the repeats.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from lvgateway.livevox.calls import AIA_POST, CALL_NAMES
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    LiveVoxConnectionError,
    LiveVoxServerError,
    LiveVoxTimeoutError,
    LoginDeniedError,
    NotFoundError,
    PermissionDeniedError,
    SessionExpiredError,
    UnexpectedResponseError,
)
from lvgateway.livevox.reachability import Reachability
from lvgateway.metrics import counter, gauge, histogram

__all__ = ["OUTCOMES", "LiveVoxMetrics", "outcome_of"]

#: The ``outcome`` label values of ``lvgateway_livevox_requests_total``.
OUTCOMES = (
    "success",
    "session_expired",
    "login_denied",
    "permission_denied",
    "not_found",
    "already_exists",
    "client_error",
    "server_error",
    "timeout",
    "connection_failed",
    "unexpected_response",
    "cancelled",
)

#: Histogram buckets in seconds: LiveVox answers in tens to hundreds of milliseconds.
_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def outcome_of(error: BaseException | None) -> str:
    """Return the ``outcome`` label for a request that ended with ``error`` (``None``: success).

    :param error: the exception the request ended with, or ``None``.
    """
    if error is None:
        return "success"
    for kind, label in (
        (SessionExpiredError, "session_expired"),
        (LoginDeniedError, "login_denied"),
        (PermissionDeniedError, "permission_denied"),
        (NotFoundError, "not_found"),
        (ContactExistsError, "already_exists"),
        (LiveVoxServerError, "server_error"),
        (LiveVoxTimeoutError, "timeout"),
        (LiveVoxConnectionError, "connection_failed"),
        (UnexpectedResponseError, "unexpected_response"),
    ):
        if isinstance(error, kind):
            return label
    if isinstance(error, LiveVoxClientError):
        return "client_error"
    return "cancelled"


class LiveVoxMetrics:
    """The counters, histogram and gauge for LiveVox and AIA requests, on one registry.

    Create one per registry and share it between the LiveVox and AIA clients:
    registering the same names twice on one registry is an error.

    :param registry: where the metrics are registered.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        #: Whether LiveVox answers, from every request but the AIA's.
        self.reachability = Reachability()
        calls = {"call": list(CALL_NAMES)}
        self.requests = counter(
            registry,
            "lvgateway_livevox_requests_total",
            "Requests to LiveVox (and the AIA endpoint), by call and outcome.",
            labels={"call": list(CALL_NAMES), "outcome": list(OUTCOMES)},
        )
        self.duration = histogram(
            registry,
            "lvgateway_livevox_request_duration_seconds",
            "Time from sending a request to LiveVox to having its whole answer, by call.",
            labels=calls,
            buckets=_BUCKETS,
        )
        self.retries = counter(
            registry,
            "lvgateway_livevox_retries_total",
            "Requests to LiveVox repeated after a 5xx, timeout or connection failure.",
            labels=calls,
        )
        self.in_flight = gauge(
            registry,
            "lvgateway_livevox_requests_in_flight",
            "Requests to LiveVox sent and not yet answered.",
        )
        self.waiting = gauge(
            registry,
            "lvgateway_livevox_requests_waiting",
            "Requests to LiveVox waiting for a slot under the in-flight cap.",
        )

    def observe(
        self, call: str, seconds: float, error: BaseException | None, now: float = 0.0
    ) -> None:
        """Record one finished request, and note it in :attr:`reachability`.

        :param call: its call name.
        :param seconds: how long it took, body included.
        :param error: what it failed with, or ``None`` on success.
        :param now: when it ended, on the transport's clock.
        """
        outcome = outcome_of(error)
        self.requests.labels(call=call, outcome=outcome).inc()
        self.duration.labels(call=call).observe(seconds)
        if call != AIA_POST:  # the AIA is the client's host, not LiveVox
            self.reachability.note(call, outcome, error, now)

    def unreachable(self) -> str | None:
        """For readiness: ``None`` unless LiveVox is down (:class:`Reachability`)."""
        return self.reachability.reason()
