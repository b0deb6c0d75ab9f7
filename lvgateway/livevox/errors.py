"""LiveVox's failures as typed exceptions a caller can act on.

Every exception names the call that failed (a short name such as ``login``,
``service_join`` or ``term_code_save``, see :mod:`lvgateway.livevox.calls`),
the HTTP status when there was one, and LiveVox's own ``code`` and
``message`` from its error body ``{"code": <int>, "message": "<text>"}``
(docs/livevox-api.md §5) when it sent one.

The tree, by what a caller does about each::

    LiveVoxError
    ├── LiveVoxClientError           4xx: repeating the same request will not help
    │   ├── SessionExpiredError      401 after login: log in again
    │   ├── LoginDeniedError         401/403/404 on login: credentials or token wrong
    │   ├── PermissionDeniedError    403 after login: this login may not do that
    │   └── NotFoundError            404: the thing named does not exist
    ├── ContactExistsError           the 202 "Contact already exists!" on create
    ├── UnexpectedResponseError      a 2xx LiveVox's documentation does not explain
    └── LiveVoxUnavailableError      LiveVox could not answer: try again later
        ├── LiveVoxServerError       5xx
        ├── LiveVoxTimeoutError      no whole response within the configured time
        └── LiveVoxConnectionError   no connection, or it broke mid-request

No exception text ever holds a password, a token or a whole session id.
"""

from __future__ import annotations

__all__ = [
    "ContactExistsError",
    "LiveVoxClientError",
    "LiveVoxConnectionError",
    "LiveVoxError",
    "LiveVoxServerError",
    "LiveVoxTimeoutError",
    "LiveVoxUnavailableError",
    "LoginDeniedError",
    "NotFoundError",
    "PermissionDeniedError",
    "SessionExpiredError",
    "UnexpectedResponseError",
    "in_outage",
]


class LiveVoxError(Exception):
    """A LiveVox REST call (or the AIA post) did not succeed.

    :param call: the short name of the call, such as ``login`` or ``term_code_save``.
    :param status: the HTTP status, or ``None`` when no response came.
    :param code: the ``code`` of LiveVox's error body, when it sent one.
    :param message: the ``message`` of LiveVox's error body, or a description
        of what went wrong when LiveVox sent none.
    :param attempts: how many requests were made for this call, retries
        included. More than one on a call that changes state means an
        earlier attempt may have been applied although its answer was lost.

    :attr:`during_outage` is set by the transport on a failure while LiveVox
    is down and the outage watch reports for everyone: callers then log it
    at debug, not once a retry each.
    """

    #: Failed while LiveVox was down and watched (the watch logs the outage once).
    during_outage = False

    def __init__(
        self,
        call: str,
        status: int | None = None,
        code: int | None = None,
        message: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(call, status, code, message)
        self.call = call
        self.status = status
        self.code = code
        self.message = message
        self.attempts = attempts

    def __str__(self) -> str:
        details: list[str] = []
        if self.status is not None:
            details.append(f"HTTP {self.status}")
        if self.code is not None and self.code != self.status:
            details.append(f"code {self.code}")
        if self.message:
            details.append(repr(self.message))
        if self.attempts > 1:
            details.append(f"after {self.attempts} attempts")
        text = f"LiveVox {self.call} failed"
        return f"{text}: {', '.join(details)}" if details else text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(call={self.call!r}, status={self.status!r}, "
            f"code={self.code!r}, message={self.message!r}, attempts={self.attempts!r})"
        )


class LiveVoxClientError(LiveVoxError):
    """LiveVox refused the request with a 4xx: the same request will be refused again."""


class SessionExpiredError(LiveVoxClientError):
    """LiveVox no longer accepts the session (401 on a call after login).

    The session timed out (2 idle hours), was logged out, or the password
    changed. Log in again with the same credentials, then re-join and set READY.
    """


class LoginDeniedError(LiveVoxClientError):
    """Login refused (401, 403 or 404): wrong client, user, password or API token.

    :attr:`message` carries LiveVox's reason.
    """


class PermissionDeniedError(LiveVoxClientError):
    """403 on a call after login: the session's role may not make it.

    The Contact API needs a Manager, Superuser or Sysadmin role: an agent
    session may get this there, and ``LiveVoxConfig.contact_user`` is the cure.
    """


class NotFoundError(LiveVoxClientError):
    """404: the contact, session or other thing named does not exist."""


class ContactExistsError(LiveVoxError):
    """Create Contact found the account already there.

    LiveVox answers with the body ``{"code":202,"message":"Contact already exists!"}``
    (probably with HTTP 202). Update the contact instead.
    """


class UnexpectedResponseError(LiveVoxError):
    """A success status whose body lacks what the call needs, or a status no call expects."""


class LiveVoxUnavailableError(LiveVoxError):
    """LiveVox did not answer usefully: a server error, a timeout or a broken connection.

    These are the failures worth trying again later; calls that are safe to
    repeat have already been retried (see :attr:`attempts`).
    """


class LiveVoxServerError(LiveVoxUnavailableError):
    """LiveVox answered 5xx."""


class LiveVoxTimeoutError(LiveVoxUnavailableError):
    """No whole response, body included, within the configured time.

    The request may or may not have been applied.
    """


class LiveVoxConnectionError(LiveVoxUnavailableError):
    """No connection could be made, or it broke before the whole response came."""


def in_outage(error: BaseException | str) -> bool:
    """Whether ``error`` is a LiveVox failure during a watched outage (log it at debug: the watch reports)."""
    return isinstance(error, LiveVoxError) and error.during_outage
