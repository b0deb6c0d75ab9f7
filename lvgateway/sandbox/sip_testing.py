"""Raw SIP peers for tests of the dialler and the echo bot: plain UDP, no Sippy, on loopback.

The dialler and the echo bot share the sandbox's one Sippy stack and cannot
call each other through it (Sippy sees a loop). So tests meet each with a
small raw peer that writes SIP text by hand and keeps every message as
received (case included):

- :class:`RawUas` stands in for the gateway in front of the dialler: it
  answers INVITEs (100, 180, then 200 with an SDP on its own RTP echo, or a
  rejection, or nothing), answers BYE and CANCEL, and can send a BYE;
- :class:`RawUac` stands in for the gateway in front of the echo bot: it
  sends INVITEs with the headers a test gives, ACKs final answers, answers
  the bot's BYE (200) and REFER (202), and can send BYE or CANCEL.

Neither retransmits: on loopback nothing is lost, and Sippy's own
retransmissions are answered like the first copy.
"""

from __future__ import annotations

import itertools
import secrets
from typing import Any

import attrs
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol

from lvgateway.sandbox.rtp_media import RtpEcho, listen_rtp, sdp_body
from lvgateway.sandbox.sandbox_config import SandboxConfig, sandbox_config_from_dict
from lvgateway.sandbox.sip_messages import HeaderList, parse_raw_message
from lvgateway.sandbox.testing import sandbox_config_dict

__all__ = ["RawMessage", "RawUac", "RawUas", "sip_test_config", "uri_address"]


def sip_test_config(
    *,
    sip: dict[str, Any] | None = None,
    dialler: dict[str, Any] | None = None,
    echo_bot: dict[str, Any] | None = None,
) -> SandboxConfig:
    """The test configuration of :mod:`.testing` with a SIP half on 127.0.0.2, port picked by the kernel.

    :param sip: ``[sip]`` keys to set.
    :param dialler: ``[dialler]`` keys to set (``gateway_port`` is the raw peer's, usually).
    :param echo_bot: ``[echo_bot]`` keys to set.
    """
    data = sandbox_config_dict()
    data["sip"] = {"listen_host": "127.0.0.2", "listen_port": 0, **(sip or {})}
    data["dialler"] = {"rtp_drain": 0.2, **(dialler or {})}
    data["echo_bot"] = {"answer_delay": 0.0, **(echo_bot or {})}
    return sandbox_config_from_dict(data, "<sip test config>", environ={})


@attrs.frozen
class RawMessage:
    """A SIP message as received.

    :param text: the whole message.
    :param source: where it came from.
    :param start: its start line.
    :param headers: its headers, case kept.
    :param body: its body.
    """

    text: str
    source: tuple[str, int]
    start: str
    headers: HeaderList
    body: str

    @classmethod
    def parse(cls, data: bytes, source: tuple[str, int]) -> RawMessage:
        """Parse a datagram."""
        text = data.decode("utf-8", "replace")
        start, headers, body = parse_raw_message(text)
        return cls(text, source, start, headers, body)

    @property
    def is_response(self) -> bool:
        """Whether it is a response."""
        return self.start.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        """A request's method, or a response's CSeq method."""
        if self.is_response:
            return (self.headers.get("CSeq") or " ").split()[-1]
        return self.start.split()[0]

    @property
    def status(self) -> int:
        """A response's status (0 for a request)."""
        return int(self.start.split()[1]) if self.is_response else 0

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return self.headers.get("Call-ID") or ""

    @property
    def request_uri(self) -> str:
        """A request's Request-URI."""
        return self.start.split()[1]


def _tag(value: str) -> str | None:
    for part in value.split(";")[1:]:
        name, _, tag = part.strip().partition("=")
        if name.lower() == "tag":
            return tag
    return None


def _uri(value: str) -> str:
    """The URI inside a name-addr (``"x" <sip:a@b>;tag=1``) or an addr-spec."""
    if "<" in value:
        return value[value.index("<") + 1 : value.index(">")]
    return value.split(";")[0].strip()


def uri_address(uri: str) -> tuple[str, int]:
    """The host and port a SIP URI points at (5060 by default).

    :param uri: such as ``sip:+1899@127.0.0.1:5070;transport=udp`` or ``<sip:127.0.0.2;lr>``.
    """
    uri = _uri(uri)
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split(";")[0].split("?")[0]
    hostport = rest.rsplit("@", 1)[-1]
    host, _, port = hostport.partition(":")
    return host, int(port) if port else 5060


def _branch() -> str:
    return "z9hG4bK" + secrets.token_hex(8)


class _RawPeer(DatagramProtocol):
    """A UDP socket that keeps every SIP message it receives and can answer requests."""

    noisy = False

    def __init__(self, reactor: Any, host: str) -> None:
        self.reactor = reactor
        self.host = host
        self.messages: list[RawMessage] = []
        self.sent: list[str] = []
        self.listening: IListeningPort = reactor.listenUDP(0, self, interface=host)
        self._cseq = itertools.count(1)
        self._rtp_ports: list[IListeningPort] = []

    @property
    def port(self) -> int:
        """The UDP port bound."""
        return int(self.listening.getHost().port)  # type: ignore[attr-defined]

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) bound."""
        return self.host, self.port

    def send(self, text: str, to: tuple[str, int]) -> None:
        """Send SIP text with CRLF line ends, setting Content-Length."""
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        head = "\n".join(
            line for line in head.split("\n") if not line.lower().startswith("content-length:")
        )
        body = body.replace("\r\n", "\n").replace("\n", "\r\n")
        wire = head.replace("\n", "\r\n") + f"\r\nContent-Length: {len(body.encode())}\r\n\r\n"
        wire += body
        self.sent.append(wire)
        self.transport.write(wire.encode(), to)  # type: ignore[union-attr]

    def requests(self, method: str | None = None) -> list[RawMessage]:
        """The requests received, of ``method`` if given."""
        return [
            m for m in self.messages if not m.is_response and (method is None or m.method == method)
        ]

    def responses(self, method: str | None = None) -> list[RawMessage]:
        """The responses received, to ``method`` if given."""
        return [
            m for m in self.messages if m.is_response and (method is None or m.method == method)
        ]

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Keep the message and handle it."""
        message = RawMessage.parse(datagram, (addr[0], addr[1]))
        self.messages.append(message)
        if message.is_response:
            self.on_response(message)
        else:
            self.on_request(message)

    def on_request(self, message: RawMessage) -> None:
        """Handle a request (override)."""

    def on_response(self, message: RawMessage) -> None:
        """Handle a response (override)."""

    def respond(
        self,
        request: RawMessage,
        status: int,
        reason: str,
        *,
        to_tag: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        body: str = "",
    ) -> None:
        """Answer ``request`` to its top Via's address (or its source)."""
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in request.headers.get_all("Via")]
        lines.append(f"From: {request.headers.get('From')}")
        to = request.headers.get("To") or ""
        if to_tag is not None and _tag(to) is None:
            to = f"{to};tag={to_tag}"
        lines.append(f"To: {to}")
        lines.append(f"Call-ID: {request.call_id}")
        lines.append(f"CSeq: {request.headers.get('CSeq')}")
        if request.method == "INVITE" and 100 < status < 300:
            lines += [f"Record-Route: {rr}" for rr in request.headers.get_all("Record-Route")]
            lines.append(f"Contact: <sip:{self.host}:{self.port}>")
        lines += [f"{n}: {v}" for n, v in headers or []]
        if body:
            lines.append("Content-Type: application/sdp")
        self.send("\n".join(lines) + "\n\n" + body, request.source)

    def open_echo(self) -> tuple[RtpEcho, int]:
        """Listen an RTP echo on this peer's host; return it and its port."""
        echo = RtpEcho()
        port = listen_rtp(self.reactor, echo, self.host)
        self._rtp_ports.append(port)
        return echo, int(port.getHost().port)  # type: ignore[attr-defined]

    async def close(self) -> None:
        """Stop listening, RTP ports included."""
        for port in [*self._rtp_ports, self.listening]:
            stopped = port.stopListening()
            if stopped is not None:
                await stopped
        self._rtp_ports.clear()


@attrs.define
class UasDialog:
    """A call :class:`RawUas` took.

    :param invite: the INVITE.
    :param to_tag: the tag it answered with.
    :param echo: its RTP echo, if it answered with SDP.
    :param rtp_port: the echo's port.
    """

    invite: RawMessage
    to_tag: str
    echo: RtpEcho | None = None
    rtp_port: int | None = None
    final: int | None = None
    acked: bool = False
    bye: RawMessage | None = None
    cancelled: bool = False


class RawUas(_RawPeer):
    """A gateway stand-in answering the dialler's INVITEs.

    :param reactor: listens and times.
    :param host: the address to bind (port picked by the kernel).
    :param answer: the final status to answer with: 200 (with SDP and an RTP
        echo), a rejection, or ``None`` for no final answer.
    :param ring: send 180 first.
    """

    def __init__(
        self, reactor: Any, host: str = "127.0.0.1", answer: int | None = 200, ring: bool = True
    ) -> None:
        super().__init__(reactor, host)
        self.answer = answer
        self.ring = ring
        self.dialogs: dict[str, UasDialog] = {}

    def on_request(self, message: RawMessage) -> None:
        """Answer INVITE, ACK, BYE, CANCEL and in-dialog requests."""
        dialog = self.dialogs.get(message.call_id)
        method = message.method
        if method == "INVITE" and dialog is None:
            self._invite(message)
        elif dialog is None:
            if method != "ACK":
                self.respond(message, 481, "Call Leg/Transaction Does Not Exist")
        elif method == "INVITE":  # a retransmission or a re-INVITE
            self._answer(dialog, message)
        elif method == "ACK":
            dialog.acked = True
        elif method == "BYE":
            dialog.bye = message
            self.respond(message, 200, "OK")
        elif method == "CANCEL":
            self.respond(message, 200, "OK")
            if dialog.final is None:
                dialog.cancelled = True
                dialog.final = 487
                self.respond(dialog.invite, 487, "Request Terminated", to_tag=dialog.to_tag)
        else:
            self.respond(message, 200, "OK")

    def _invite(self, message: RawMessage) -> None:
        dialog = UasDialog(message, secrets.token_hex(4))
        self.dialogs[message.call_id] = dialog
        self.respond(message, 100, "Trying")
        if self.ring:
            self.respond(message, 180, "Ringing", to_tag=dialog.to_tag)
        if self.answer == 200:
            dialog.echo, dialog.rtp_port = self.open_echo()
        self._answer(dialog, message)

    def _answer(self, dialog: UasDialog, message: RawMessage) -> None:
        if self.answer is None:
            return
        if self.answer == 200 and dialog.rtp_port is not None:
            body = sdp_body(self.host, dialog.rtp_port, session_id=1)
            self.respond(message, 200, "OK", to_tag=dialog.to_tag, body=body)
        else:
            self.respond(message, self.answer, "Rejected", to_tag=dialog.to_tag)
        dialog.final = self.answer

    def send_bye(self, call_id: str, headers: list[tuple[str, str]] | None = None) -> None:
        """Hang up a call with a BYE carrying ``headers``, routed as the INVITE's Record-Route says."""
        self.send_request(call_id, "BYE", headers)

    def send_request(
        self,
        call_id: str,
        method: str,
        headers: list[tuple[str, str]] | None = None,
        body: str = "",
    ) -> None:
        """Send an in-dialog request (BYE, a re-INVITE with ``body``...), routed by Record-Route."""
        dialog = self.dialogs[call_id]
        invite = dialog.invite
        contact = _uri(invite.headers.get("Contact") or "")
        routes = invite.headers.get_all("Record-Route")
        target = uri_address(routes[0]) if routes else uri_address(contact)
        lines = [
            f"{method} {contact} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={_branch()}",
            f"From: {invite.headers.get('To')};tag={dialog.to_tag}",
            f"To: {invite.headers.get('From')}",
            f"Call-ID: {call_id}",
            f"CSeq: {next(self._cseq)} {method}",
            "Max-Forwards: 70",
            f"Contact: <sip:{self.host}:{self.port}>",
        ]
        lines += [f"Route: {r}" for r in routes]
        lines += [f"{n}: {v}" for n, v in headers or []]
        if body:
            lines.append("Content-Type: application/sdp")
        self.send("\n".join(lines) + "\n\n" + body, target)

    def on_response(self, message: RawMessage) -> None:
        """ACK a final answer to an in-dialog INVITE (a re-INVITE) this UAS sent."""
        dialog = self.dialogs.get(message.call_id)
        if dialog is None or message.method != "INVITE" or message.status < 200:
            return
        contact = _uri(message.headers.get("Contact") or dialog.invite.headers.get("Contact") or "")
        routes = dialog.invite.headers.get_all("Record-Route")
        number = (message.headers.get("CSeq") or "0").split()[0]
        lines = [
            f"ACK {contact} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={_branch()}",
            f"From: {message.headers.get('From')}",
            f"To: {message.headers.get('To')}",
            f"Call-ID: {message.call_id}",
            f"CSeq: {number} ACK",
            "Max-Forwards: 70",
        ]
        lines += [f"Route: {r}" for r in routes]
        target = uri_address(routes[0]) if routes else uri_address(contact)
        self.send("\n".join(lines) + "\n\n", target)


@attrs.define
class UacDialog:
    """A call :class:`RawUac` placed.

    :param call_id: its Call-ID.
    :param from_tag: its From tag.
    :param invite: the INVITE as sent.
    :param target: where it went.
    """

    call_id: str
    from_tag: str
    invite: str
    target: tuple[str, int]
    branch: str
    ruri: str
    from_value: str
    to_value: str
    to_tag: str | None = None
    remote_contact: str | None = None
    final: int | None = None
    answer_sdp: str | None = None
    reinvite_cseq: int | None = None
    reinvite_answer: RawMessage | None = None


class RawUac(_RawPeer):
    """A gateway stand-in placing calls to the echo bot.

    :param reactor: listens and times.
    :param host: the address to bind (port picked by the kernel).
    """

    def __init__(self, reactor: Any, host: str = "127.0.0.1") -> None:
        super().__init__(reactor, host)
        self.dialogs: dict[str, UacDialog] = {}
        #: Leave the bot's requests unanswered (a gateway gone away).
        self.silent = False

    def invite(
        self,
        target: tuple[str, int],
        *,
        user: str = "echo",
        from_user: str = "+19195550100",
        headers: list[tuple[str, str]] | None = None,
        sdp: str | None = None,
    ) -> UacDialog:
        """Send an INVITE to ``target``; ``sdp`` defaults to none (pass :func:`sdp_body`'s)."""
        call_id = f"{secrets.token_hex(8)}@{self.host}"
        from_tag = secrets.token_hex(4)
        branch = _branch()
        ruri = f"sip:{user}@{target[0]}:{target[1]}"
        from_value = f"<sip:{from_user}@{self.host}:{self.port}>"
        to_value = f"<{ruri}>"
        lines = [
            f"INVITE {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch}",
            f"From: {from_value};tag={from_tag}",
            f"To: {to_value}",
            f"Call-ID: {call_id}",
            "CSeq: 1 INVITE",
            f"Contact: <sip:gw@{self.host}:{self.port}>",
            "Max-Forwards: 70",
        ]
        lines += [f"{n}: {v}" for n, v in headers or []]
        if sdp:
            lines.append("Content-Type: application/sdp")
        text = "\n".join(lines) + "\n\n" + (sdp or "")
        dialog = UacDialog(call_id, from_tag, text, target, branch, ruri, from_value, to_value)
        self.dialogs[call_id] = dialog
        self.send(text, target)
        return dialog

    def on_response(self, message: RawMessage) -> None:
        """Note the answer to an INVITE and ACK a final one."""
        dialog = self.dialogs.get(message.call_id)
        if dialog is None or message.method != "INVITE":
            return
        number = (message.headers.get("CSeq") or "0").split()[0]
        if dialog.reinvite_cseq is not None and number == str(dialog.reinvite_cseq):
            if message.status >= 200:  # the answer to a re-INVITE: keep it and ACK it
                dialog.reinvite_answer = message
                self._ack(dialog, new_branch=True, cseq=dialog.reinvite_cseq)
            return
        to_tag = _tag(message.headers.get("To") or "")
        if to_tag is not None and message.status > 100:
            dialog.to_tag = to_tag
        if message.status < 200:
            return
        dialog.final = message.status
        if message.status < 300:
            dialog.remote_contact = _uri(message.headers.get("Contact") or dialog.ruri)
            dialog.answer_sdp = message.body or None
            self._ack(dialog, new_branch=True)
        else:
            self._ack(dialog, new_branch=False)

    def _ack(self, dialog: UacDialog, *, new_branch: bool, cseq: int = 1) -> None:
        ruri = dialog.remote_contact if new_branch and dialog.remote_contact else dialog.ruri
        branch = _branch() if new_branch else dialog.branch
        lines = [
            f"ACK {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={branch}",
            f"From: {dialog.from_value};tag={dialog.from_tag}",
            f"To: {dialog.to_value};tag={dialog.to_tag}",
            f"Call-ID: {dialog.call_id}",
            f"CSeq: {cseq} ACK",
            "Max-Forwards: 70",
        ]
        target = uri_address(ruri) if new_branch else dialog.target
        self.send("\n".join(lines) + "\n\n", target)

    def on_request(self, message: RawMessage) -> None:
        """Answer the bot: 202 to REFER, 200 to the rest (481 outside a dialog)."""
        if message.method == "ACK" or self.silent:
            return
        if message.call_id not in self.dialogs:
            self.respond(message, 481, "Call Leg/Transaction Does Not Exist")
        elif message.method == "REFER":
            self.respond(message, 202, "Accepted")
        else:
            self.respond(message, 200, "OK")

    def bye(self, call_id: str, headers: list[tuple[str, str]] | None = None) -> None:
        """Hang up an answered call."""
        dialog = self.dialogs[call_id]
        assert dialog.remote_contact is not None, "the call was not answered"
        lines = [
            f"BYE {dialog.remote_contact} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={_branch()}",
            f"From: {dialog.from_value};tag={dialog.from_tag}",
            f"To: {dialog.to_value};tag={dialog.to_tag}",
            f"Call-ID: {call_id}",
            f"CSeq: {1 + next(self._cseq)} BYE",
            "Max-Forwards: 70",
        ]
        lines += [f"{n}: {v}" for n, v in headers or []]
        self.send("\n".join(lines) + "\n\n", uri_address(dialog.remote_contact))

    def reinvite(self, call_id: str, sdp: str) -> None:
        """Send a re-INVITE with a new offer; the answer is ACKed when it comes."""
        dialog = self.dialogs[call_id]
        assert dialog.remote_contact is not None, "the call was not answered"
        dialog.reinvite_cseq = 1 + next(self._cseq)
        lines = [
            f"INVITE {dialog.remote_contact} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={_branch()}",
            f"From: {dialog.from_value};tag={dialog.from_tag}",
            f"To: {dialog.to_value};tag={dialog.to_tag}",
            f"Call-ID: {call_id}",
            f"CSeq: {dialog.reinvite_cseq} INVITE",
            f"Contact: <sip:gw@{self.host}:{self.port}>",
            "Max-Forwards: 70",
            "Content-Type: application/sdp",
        ]
        self.send("\n".join(lines) + "\n\n" + sdp, uri_address(dialog.remote_contact))

    def cancel(self, call_id: str) -> None:
        """Cancel an INVITE not answered yet."""
        dialog = self.dialogs[call_id]
        lines = [
            f"CANCEL {dialog.ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};branch={dialog.branch}",
            f"From: {dialog.from_value};tag={dialog.from_tag}",
            f"To: {dialog.to_value}",
            f"Call-ID: {call_id}",
            "CSeq: 1 CANCEL",
            "Max-Forwards: 70",
        ]
        self.send("\n".join(lines) + "\n\n", dialog.target)
