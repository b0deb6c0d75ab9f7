"""SIP headers as the gateway writes and reads them: documented case, context headers, dispositions.

Sippy re-cases every header it writes (``X-LV-Session-ID`` would go out as
``X-lv-session-id``); :func:`cased` makes one that keeps the case it was
given. :func:`context_headers` is docs/design.md's contract with the AI vendor for
the B leg's INVITE.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sippy.SipGenericHF import SipGenericHF
from sippy.SipHeader import SipHeader
from sippy.SipReason import SipReason

__all__ = ["cased", "context_headers", "reason", "request_headers"]


class _CasedBody(SipGenericHF):  # type: ignore[misc]
    """A generic header body whose name keeps the case it was given."""

    def __init__(self, body: str, name: str) -> None:
        super().__init__(body, name)
        self._cased = name

    def getCanName(self, name: str, compact: bool = False) -> str:
        """The name as given, not Sippy's capitalised form."""
        return self._cased

    def getCopy(self) -> _CasedBody:
        """A copy that keeps the case."""
        return _CasedBody(self.body, self._cased)


def cased(name: str, value: str) -> Any:
    """Return a Sippy header ``name: value`` that goes out with ``name`` in the case given."""
    return SipHeader(name=name, body=_CasedBody(value, name))


def reason(cause: int, text: str) -> Any:
    """Return an RFC 3326 ``Reason: SIP;cause=..;text=".."`` header body."""
    return SipReason(protocol="SIP", cause=cause, reason=text)


def request_headers(req: Any) -> list[tuple[str, str]]:
    """Return every header of a received Sippy message as ``(name, value)`` pairs, in order.

    Names are lower case (Sippy's); values are the text as received.
    """
    found: list[tuple[str, str]] = []
    for header in req.headers:
        try:
            found.append((header.name, str(header.body)))
        except Exception:  # a header Sippy cannot print: skip it, never fail the call for it
            continue
    return found


def context_headers(
    call_id: str,
    agent: str,
    dnis: str,
    ani: str | None,
    service_id: str | None,
    invite: Sequence[tuple[str, str]],
    static: Iterable[tuple[str, str]],
    pass_through: Iterable[str],
) -> list[Any]:
    """Return the B leg's extra headers: docs/design.md's context headers, then static and passed-through ones.

    A header whose value is unknown is left out.

    :param invite: the LiveVox INVITE's headers (lower-case names).
    :param static: configured ``(name, value)`` pairs.
    :param pass_through: configured names of LiveVox headers to copy.
    """
    h = {name.lower(): value for name, value in reversed(list(invite))}
    pairs: list[tuple[str, str | None]] = [
        ("X-LVGW-Call-ID", call_id),
        ("X-LV-Agent", agent),
        ("X-LV-DNIS", dnis),
        ("X-LV-ANI", ani),
        ("X-LV-Session-ID", h.get("session-id")),
        ("X-LV-Transaction-ID", h.get("x-transaction-id") or h.get("lv-transaction-id")),
        ("X-LV-Account", h.get("x-account") or h.get("lv-account")),
        ("X-LV-Service-ID", service_id),
    ]
    pairs.extend(static)
    pairs.extend((name, h.get(name.lower())) for name in pass_through)
    return [cased(name, value) for name, value in pairs if value]
