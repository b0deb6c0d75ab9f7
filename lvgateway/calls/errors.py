"""What the call store refuses, as typed exceptions its callers (SIP, the vendor API, admins) map to answers."""

from __future__ import annotations

__all__ = [
    "AlreadyWrappedUpError",
    "CallStoreUnavailableError",
    "CallsError",
    "DispositionError",
    "NotDeadLetterError",
    "UnknownCallError",
]


class CallsError(Exception):
    """Something the call store was asked could not be done."""


class UnknownCallError(CallsError):
    """No record has this call id (the vendor API answers 404).

    :param call_id: the id asked for.
    """

    def __init__(self, call_id: str) -> None:
        super().__init__(f"no call {call_id!r}")
        self.call_id = call_id


class AlreadyWrappedUpError(CallsError):
    """The call's wrap-up has begun: its disposition can no longer change (409).

    :param call_id: the call.
    :param state: the record's state, for the message.
    """

    def __init__(self, call_id: str, state: str) -> None:
        super().__init__(f"call {call_id!r} is already wrapped up ({state})")
        self.call_id = call_id
        self.state = state


class NotDeadLetterError(CallsError):
    """Re-drive or dismiss was asked of a record that is not a dead letter (409).

    :param call_id: the call.
    :param state: the record's state.
    """

    def __init__(self, call_id: str, state: str) -> None:
        super().__init__(f"call {call_id!r} is {state}, not a dead letter")
        self.call_id = call_id
        self.state = state


class DispositionError(CallsError, ValueError):
    """A disposition the vendor sent is malformed (400), naming the field at fault.

    :param field: the JSON field (or header) at fault, such as ``next_action``.
    :param message: what is wrong with it.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class CallStoreUnavailableError(CallsError):
    """The store is not open (starting, stopping, or its file failed): no call can be accepted."""
