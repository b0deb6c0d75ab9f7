"""A secret value that cannot leak into a log line, a repr or a traceback by accident."""

from __future__ import annotations

import hmac

import attrs


@attrs.frozen(repr=False, eq=False)
class Secret:
    """A password or token, loaded from a file or the environment.

    Its ``repr`` and ``str`` name only where it came from, so passing one to a
    log event, a format string or an exception message shows no value. Read the
    value with :meth:`reveal`, at the one place it goes on the wire.

    :param value: the secret itself.
    :param source: where it was found, such as ``file /etc/lvgateway/token``
        or ``env LV_TOKEN``: safe to print.
    """

    _value: str
    source: str

    def reveal(self) -> str:
        """Return the value, for the one place that sends it."""
        return self._value

    def matches(self, candidate: str | bytes) -> bool:
        """Compare in constant time, for checking a presented credential."""
        if isinstance(candidate, str):
            candidate = candidate.encode("utf-8")
        return hmac.compare_digest(self._value.encode("utf-8"), candidate)

    def __repr__(self) -> str:
        return f"<Secret from {self.source}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self.matches(other._value)

    def __hash__(self) -> int:
        return hash(("Secret", self.source))


def shorten(identifier: str, keep: int = 8) -> str:
    """Return the first characters of a session id or similar, enough to correlate logs.

    LiveVox session ids are bearer credentials: a log line carries only this
    prefix, never the whole id.
    """
    if len(identifier) <= keep:
        return "…"
    return identifier[:keep] + "…"
