"""The gate every SIP datagram passes before Sippy sees it: refuse garbage without keeping it.

Sippy parses headers lazily, so a header it cannot parse raises wherever it
is first read: in a request callback, after the server transaction exists,
which then lives forever and logs a traceback each time. :class:`MessageGuard`
parses every header of a request up front instead and answers, statelessly,
every request a UAS must refuse (RFC 3261 §8.2, RFC 4475):

- a malformed request line or a header that does not parse: 400, the reason
  phrase naming the header;
- a SIP version other than 2.0: 505; a Request-URI scheme other than sip or
  sips: 416;
- a Content-Length missing its body, negative, or given twice: 400; a CSeq
  method that is not the request's: 400; headers in the Request-URI (after
  the host: a "?" in the user part is legal): 400; a From, To, Contact or
  Route whose URI has a "?" but no ``<>``: 400;
- an option in ``Require`` the gateway does not support: 420 with
  ``Unsupported``. ``Proxy-Require`` is for proxies: the gateway ignores it.

A refusal is built from the request's own Via, From, To, Call-ID and CSeq
lines, copied as they came, and sent to the datagram's source; without a Via
and a CSeq no response can be formed and the message is dropped. Neither
keeps a transaction, a timer or a cache entry. A response that fails to
parse, or whose status code is not 100 to 699, is dropped too. Each refusal is counted by reason; the log gets one
summary line per interval with the counts by kind, never one per message.
"""

from __future__ import annotations

import re
import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any

from sippy.SipRequest import SipRequest
from sippy.SipResponse import SipResponse
from twisted.logger import Logger

__all__ = ["REASONS", "MessageGuard", "RefusedError", "SUPPORTED_OPTIONS"]

log = Logger()

#: Why a message was refused: the label values of the refused-messages counter.
REASONS = (
    "bad_request_line",
    "bad_header",
    "bad_version",
    "bad_uri_scheme",
    "content_length",
    "cseq_mismatch",
    "unsupported_require",
    "undecodable",
    "unanswerable",
    "bad_response",
)

#: The option tags the gateway supports (RFC 4028 session timers, answered here).
SUPPORTED_OPTIONS = frozenset({"timer"})

#: The largest refusal sent; a bigger one (huge copied headers) is dropped instead.
MAX_RESPONSE_BYTES = 1300

_COMPACT = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length", "m": "contact",
}  # fmt: skip
_COPIED = ("via", "from", "to", "call-id", "cseq")
_CANON = {
    "via": "Via",
    "from": "From",
    "to": "To",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "max-forwards": "Max-Forwards",
}
#: Headers a request may carry once only (RFC 3261 §7.3.1; RFC 4475 multi01).
_SINGLE = ("from", "to", "call-id", "cseq", "max-forwards")
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
#: A Via sent-protocol with the LWS RFC 3261 allows around its slashes, which Sippy cannot read.
_SENT_PROTOCOL = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)(?=\s)")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
#: A status line whose code is three digits, 100 to 699 (RFC 4475 bigcode).
_STATUS = re.compile(r"^SIP/2\.0 [1-6][0-9][0-9] ")
#: Headers whose value is a name-addr or an addr-spec (RFC 3261 §20.10).
_ADDRESSES = ("from", "to", "contact", "route", "record-route", "reply-to")


class RefusedError(Exception):
    """A request a UAS must refuse: the code, the phrase, extra header lines and the counted reason."""

    def __init__(self, code: int, phrase: str, reason: str, extra: tuple[str, ...] = ()) -> None:
        super().__init__(code, phrase)
        self.code = code
        self.phrase = phrase
        self.reason = reason
        self.extra = extra


def _split(text: str) -> tuple[str, list[tuple[str, str]], str | None]:
    """The start line, the unfolded header lines (lower-cased name, value) and the body."""
    body: str | None = None
    for sep in ("\r\n\r\n", "\n\n"):
        at = text.find(sep)
        if at != -1:
            text, body = text[:at], text[at + len(sep) :]
            break
    lines = text.splitlines()
    start = lines[0] if lines else ""
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if not colon:
            headers.append(("", line))
            continue
        key = name.strip().lower()
        headers.append((_COMPACT.get(key, key), value.strip()))
    return start, headers, body


def _values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key == name]


def _options(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [
        tag.strip() for value in _values(headers, name) for tag in value.split(",") if tag.strip()
    ]


class MessageGuard:
    """Check each datagram before Sippy parses it; refuse or drop what a UAS must not process.

    :param clock: ``callLater`` and ``seconds``, for the summary log.
    :param send: ``send(data, (host, port))`` writes a refusal.
    :param on_refused: called with each refusal's reason, e.g. to count it.
    :param server: the ``Server`` header of refusals.
    :param interval: seconds between summary log lines.
    """

    def __init__(
        self,
        clock: Any,
        send: Callable[[bytes, tuple[str, int]], None],
        on_refused: Callable[[str], None] = lambda reason: None,
        server: str = "lvgateway",
        interval: float = 60.0,
    ) -> None:
        self._clock = clock
        self._send = send
        self._on_refused = on_refused
        self._server = server
        self._interval = interval
        self._pending: Counter[str] = Counter()
        self._timer: Any = None
        #: Every refusal since start, by reason.
        self.refused: Counter[str] = Counter()

    def admit(self, data: bytes, source: tuple[str, int]) -> bytes | None:
        """What Sippy may have of ``data``, or ``None`` once it is answered or dropped here.

        A body that is not UTF-8 (a binary MIME part) would make Sippy's
        decoding raise: it is handed on as Latin-1 re-encoded, one character
        per octet, so Sippy's length checks still hold.
        """
        if len(data) < 32:
            return data  # keep-alives and stubs: Sippy ignores them without keeping anything
        head, sep, raw_body = data.partition(b"\r\n\r\n")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            try:
                text = head.decode("utf-8") + sep.decode() + raw_body.decode("latin-1")
            except UnicodeDecodeError:
                self._count("undecodable")
                return None
            data = text.encode("utf-8")
        if _SENT_PROTOCOL.search(head.decode("utf-8", "replace")):
            line_end = text.find("\n")
            text = text[: line_end + 1] + _SENT_PROTOCOL.sub(r"SIP/2.0/\1", text[line_end + 1 :])
            data = text.encode("utf-8")
        if text.startswith("SIP/2.0 "):
            try:
                if not _STATUS.match(text):
                    raise ValueError("status code out of range")
                SipResponse(text).getTId(True, True)
            except Exception:
                self._count("bad_response")
                return None
            return data
        try:
            start, headers, body = _split(text)
        except Exception:
            self._count("unanswerable")
            return None
        try:
            self._check(text, start, headers, raw_body if sep else None)
        except RefusedError as refusal:
            self._refuse(refusal, headers, source)
            return None
        return data

    def _check(
        self, text: str, start: str, headers: list[tuple[str, str]], body: bytes | None
    ) -> None:
        parts = start.split(" ")
        if len(parts) != 3 or not all(parts) or not _TOKEN.match(parts[0]):
            raise RefusedError(400, "Bad Request (malformed request line)", "bad_request_line")
        method, uri, version = parts
        if version.upper() != "SIP/2.0":
            raise RefusedError(505, "Version Not Supported", "bad_version")
        scheme = _SCHEME.match(uri)
        if scheme is None:
            raise RefusedError(400, "Bad Request (malformed Request-URI)", "bad_request_line")
        if scheme.group(1).lower() not in ("sip", "sips"):
            raise RefusedError(416, "Unsupported URI Scheme", "bad_uri_scheme")
        # The user part may hold "?" (RFC 4475 intmeth); headers come after the host.
        if "?" in uri.partition("@")[2 if "@" in uri else 0] or "<" in uri or ">" in uri:
            raise RefusedError(400, "Bad Request (headers in Request-URI)", "bad_request_line")
        lengths = _values(headers, "content-length")
        if len(lengths) > 1:
            raise RefusedError(400, "Bad Request (more than one Content-Length)", "content_length")
        if lengths:
            try:
                length = int(lengths[0])
            except ValueError:
                raise RefusedError(
                    400, "Bad Request (malformed Content-Length)", "content_length"
                ) from None
            if length < 0 or length > len(body or b""):
                raise RefusedError(
                    400, "Bad Request (Content-Length contradicts the body)", "content_length"
                )
        for name in _ADDRESSES:
            for value in _values(headers, name):
                # An addr-spec with a "?" must be in <> (RFC 3261 §20; RFC 4475 regbadct).
                if "<" not in value and "?" in value:
                    raise RefusedError(
                        400,
                        f"Bad Request (malformed {_CANON.get(name, name.title())} header)",
                        "bad_header",
                    )
        for name in _SINGLE:
            if len(_values(headers, name)) > 1:
                raise RefusedError(
                    400, f"Bad Request (more than one {_CANON.get(name, name)})", "bad_header"
                )
        self._parse(text)
        cseq_number = (_values(headers, "cseq") or ["0"])[0].split()[:1]
        hops = _values(headers, "max-forwards")
        try:
            too_big = int(cseq_number[0]) >= 2**31 or (bool(hops) and int(hops[0]) > 255)
        except (ValueError, IndexError):
            too_big = True
        if too_big:
            raise RefusedError(400, "Bad Request (CSeq or Max-Forwards out of range)", "bad_header")
        cseq = _values(headers, "cseq")
        if cseq and cseq[0].split()[-1:] != [method]:
            raise RefusedError(400, "Bad Request (CSeq method does not match)", "cseq_mismatch")
        if method not in ("ACK", "CANCEL"):
            unsupported = [
                tag for tag in _options(headers, "require") if tag.lower() not in SUPPORTED_OPTIONS
            ]
            if unsupported:
                raise RefusedError(
                    420,
                    "Bad Extension",
                    "unsupported_require",
                    (f"Unsupported: {', '.join(unsupported)}",),
                )

    def _parse(self, text: str) -> None:
        """Parse the request and every header now, as Sippy would later; name the first bad one."""
        try:
            req = SipRequest(text)
        except Exception as e:
            raise RefusedError(400, f"Bad Request ({_what(e)})", "bad_header") from None
        for header in req.headers:
            try:
                body = header.getBody()
                if header.name in ("from", "to", "contact", "route", "record-route"):
                    if not getattr(body, "asterisk", False):
                        body.getUrl()
                        if header.name in ("from", "to"):
                            body.getTag()
                elif header.name == "via":
                    body.getAddr()
                    body.getBranch()
                elif header.name == "cseq":
                    body.getCSeq()
            except Exception:
                name = _CANON.get(header.name, header.name.title())
                raise RefusedError(
                    400, f"Bad Request (malformed {name} header)", "bad_header"
                ) from None
        try:
            req.getTIds()
            req.getRURI()
            req.getBody()
        except Exception as e:
            raise RefusedError(400, f"Bad Request ({_what(e)})", "bad_header") from None

    def _refuse(
        self, refusal: RefusedError, headers: list[tuple[str, str]], source: tuple[str, int]
    ) -> None:
        copied = {name: _values(headers, name) for name in _COPIED}
        if not copied["via"] or not copied["cseq"]:
            self._count("unanswerable")
            return
        lines = [f"SIP/2.0 {refusal.code} {refusal.phrase}"]
        for name in _COPIED:
            for value in copied[name] if name == "via" else copied[name][:1]:
                if name == "to" and "tag=" not in value.lower():
                    value = f"{value};tag={secrets.token_hex(6)}"
                lines.append(f"{_CANON[name]}: {value}")
        lines += [*refusal.extra, f"Server: {self._server}", "Content-Length: 0", "", ""]
        data = "\r\n".join(lines).encode("utf-8", "replace")
        if len(data) > MAX_RESPONSE_BYTES:
            self._count("unanswerable")
            return
        self._count(refusal.reason)
        self._send(data, source)

    def _count(self, reason: str) -> None:
        self.refused[reason] += 1
        self._on_refused(reason)
        first = not self.refused.total() - 1
        self._pending[reason] += 1
        if first:
            self._flush()
        elif self._timer is None:
            self._timer = self._clock.callLater(self._interval, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if not self._pending:
            return
        counts, self._pending = self._pending, Counter()
        log.warn(
            "SIP messages refused or dropped before any transaction: {counts}"
            " ({total} since start; one line at most every {interval:g}s)",
            counts=", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            total=self.refused.total(),
            interval=self._interval,
        )

    def stop(self) -> None:
        """Log what is pending and cancel the summary timer."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._flush()


def _what(error: Exception) -> str:
    """A short, safe phrase for a parse error: the header it names, if any."""
    text = str(error)
    match = re.search(r"\b(Via|To|From|CSeq|Call-ID|Contact)\b", text, re.IGNORECASE)
    if match:
        name = _CANON.get(match.group(1).lower(), match.group(1))
        return f"malformed {name} header" if "missed" not in text else f"missing {name} header"
    return "malformed message"
