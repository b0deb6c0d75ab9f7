"""SIP message helpers for the sandbox's dialler and echo bot: headers as documented, and as received.

Sippy re-cases header names on output (``X-LV-Term-Code`` would go out as
``X-lv-term-code``) and lower-cases them on input (docs/design.md, pitfall 3), so:

- :func:`cased_header` builds a header that goes out in the case given;
- :class:`RawRequests` keeps the raw text of requests the stack receives, so
  the echo bot and the dialler record the headers *as they came on the wire*
  (:class:`HeaderList`), which is what tests about header case need;
- :class:`CapturingUA` is Sippy's ``UA`` showing every in-dialog request to a
  hook before Sippy acts on it (Sippy keeps only ``Reason`` of a BYE: pitfall
  7), and answering in-dialog UPDATEs, which Sippy leaves unanswered (pitfall 5).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs
from sippy.SipAddress import SipAddress
from sippy.SipConf import SipConf
from sippy.SipContact import SipContact
from sippy.SipGenericHF import SipGenericHF
from sippy.SipHeader import SipHeader
from sippy.SipURL import SipURL
from sippy.UA import UA
from twisted.logger import Logger

__all__ = [
    "CapturingUA",
    "HeaderList",
    "RawRequests",
    "cased_header",
    "header_pairs",
    "headers_of",
    "parse_raw_message",
    "plain_contact",
]

log = Logger()

#: Compact header forms (RFC 3261 section 7.3.3 and extensions) and their full names.
COMPACT_FORMS = {
    "i": "Call-ID",
    "f": "From",
    "t": "To",
    "v": "Via",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
}


class _CasedHF(SipGenericHF):  # type: ignore[misc]
    """A generic header body whose name goes out exactly as given."""

    def __init__(self, body: str, name: str) -> None:
        super().__init__(body, name)
        self.cased_name = name

    def getCanName(self, name: str, compact: bool = False) -> str:
        """The name as given, whatever Sippy asks for."""
        return self.cased_name

    def getCopy(self) -> _CasedHF:
        """A copy that keeps the case."""
        return _CasedHF(self.body, self.cased_name)


def cased_header(name: str, value: str) -> Any:
    """Return a Sippy header that goes out as ``name: value``, ``name`` in the case given.

    For headers Sippy does not parse itself (Via, Contact, To... keep Sippy's own classes).

    :param name: the header name, in its documented case.
    :param value: the value, sent as is.
    """
    return SipHeader(name=name, body=_CasedHF(value, name))


@attrs.frozen
class HeaderList:
    """Header fields in order, names in the case received; lookups ignore case.

    :param fields: ``(name, value)`` pairs in message order.
    """

    fields: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (any case, compact forms too), or ``None``."""
        values = self.get_all(name)
        return values[0] if values else None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` (any case), in order."""
        wanted = _full_name(name).lower()
        return [v for n, v in self.fields if _full_name(n).lower() == wanted]

    def names(self) -> list[str]:
        """Every header name, as received, in order."""
        return [n for n, _ in self.fields]

    def has_exact(self, name: str) -> bool:
        """Whether a header of exactly this spelling (case included) is present."""
        return any(n == name for n, _ in self.fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def to_json(self) -> list[list[str]]:
        """``[[name, value], ...]``, for the admin API."""
        return [[n, v] for n, v in self.fields]


def _full_name(name: str) -> str:
    return COMPACT_FORMS.get(name.lower(), name) if len(name) == 1 else name


def parse_raw_message(text: str) -> tuple[str, HeaderList, str]:
    """Split a SIP message into its start line, its headers (case kept) and its body.

    :param text: the message as received.
    """
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    lines = head.split("\n")
    start = lines[0].strip() if lines else ""
    fields: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and fields:  # a folded continuation
            name, value = fields[-1]
            fields[-1] = (name, f"{value} {line.strip()}")
            continue
        name, sep, value = line.partition(":")
        if sep and name.strip():
            fields.append((name.strip(), value.strip()))
    return start, HeaderList(tuple(fields)), body


def headers_of(message: Any) -> HeaderList:
    """The headers of a message Sippy parsed, names lower case (the fallback when no raw text).

    :param message: a Sippy ``SipRequest`` or ``SipResponse``.
    """
    return HeaderList(tuple((str(h.name), str(h.body)) for h in message.headers))


@attrs.define
class RawRequests:
    """The raw text of the latest requests the SIP stack received, until someone takes it.

    :meth:`install` puts it in front of the stack's datagram handling: every
    datagram that passed the source filter is seen here first, on the reactor
    thread, before Sippy parses it; so when the request callback or a UA runs,
    the raw text of its request is already here. Bounded: the oldest entries
    (ACKs, requests nobody asked for) are dropped.

    :param limit: how many requests are kept.
    """

    limit: int = 1000
    _raw: OrderedDict[tuple[str, int, str], str] = attrs.field(factory=OrderedDict)

    def install(self, server: Any) -> None:
        """Observe every datagram handed to Sippy by ``server`` (a ``ReactorUdpServer``)."""
        original: Callable[..., Any] | None = server.uopts.data_callback
        if original is None:
            raise RuntimeError("the SIP server has no data callback yet: start the stack first")

        def observed(data: bytes, *args: Any) -> Any:
            try:
                self.observe(data)
            except Exception:
                log.failure("sandbox: could not keep a raw SIP request")
            assert original is not None
            return original(data, *args)

        server.uopts.data_callback = observed

    def observe(self, data: bytes | str) -> None:
        """Keep ``data`` if it is a request (not a response, not an ACK)."""
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        if text.startswith("SIP/2.0") or text.startswith("ACK "):
            return
        key = self._key(text)
        if key is None:
            return
        self._raw.pop(key, None)
        self._raw[key] = text
        while len(self._raw) > self.limit:
            self._raw.popitem(last=False)

    @staticmethod
    def _key(text: str) -> tuple[str, int, str] | None:
        start, headers, _ = parse_raw_message(text)
        call_id = headers.get("Call-ID")
        cseq = (headers.get("CSeq") or "").split()
        if not call_id or len(cseq) != 2 or not cseq[0].isdigit():
            return None
        return call_id, int(cseq[0]), cseq[1].upper()

    def take(self, request: Any) -> str | None:
        """Remove and return the raw text of ``request`` (a Sippy ``SipRequest``), if kept."""
        call_id = str(request.getHFBody("call-id"))
        number, method = request.getHFBody("cseq").getCSeq()
        return self._raw.pop((call_id, int(number), str(method).upper()), None)

    def headers(self, request: Any) -> tuple[HeaderList, str | None]:
        """The headers of ``request`` as received, and its raw text; Sippy's parse if not kept."""
        raw = self.take(request)
        if raw is None:
            return headers_of(request), None
        return parse_raw_message(raw)[1], raw

    def __len__(self) -> int:
        return len(self._raw)


def header_pairs(pairs: Iterable[tuple[str, str]]) -> list[Any]:
    """Turn ``(name, value)`` pairs into Sippy headers that keep their case."""
    return [cased_header(name, value) for name, value in pairs]


class CapturingUA(UA):  # type: ignore[misc]
    """Sippy's ``UA``, with a hook that sees every in-dialog request first.

    Set :attr:`on_request` to a callable taking the Sippy request; it runs
    before Sippy handles the request (a BYE's headers are readable only here).
    An in-dialog UPDATE (a session refresh) is answered 200 here, because Sippy
    would not answer it at all.
    """

    #: Called with each request the UA receives, before Sippy handles it.
    on_request: Callable[[Any], None] | None = None

    def recvRequest(self, req: Any, sip_t: Any) -> Any:
        """Show ``req`` to :attr:`on_request`, answer an UPDATE, then let Sippy handle the rest."""
        hook = self.on_request
        if hook is not None:
            try:
                hook(req)
            except Exception:
                log.failure("sandbox: the in-dialog request hook raised")
        if req.getMethod() == "UPDATE" and self.state is not None and not self.isDead():
            return (req.genResponse(200, "OK", server=self.local_ua), None, None)
        return super().recvRequest(req, sip_t)


def plain_contact() -> Any:
    """A ``Contact`` of the stack's own address without Sippy's ``Anonymous`` display name."""
    url = SipURL(host=SipConf.my_address, port=SipConf.my_port)
    return SipContact(address=SipAddress(url=url, hadbrace=True))
