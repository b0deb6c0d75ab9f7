"""A minimal SIP UAC over UDP on loopback: INVITE with a given SDP, ACK, BYE.

Just enough SIP to set up one call with a real peer (baresip) from a
synchronous test, without the gateway: no retransmissions (loopback does not
lose datagrams), no authentication, every wait bounded.
"""

from __future__ import annotations

import re
import socket
import time
import uuid

__all__ = ["SipCall", "UacError"]


class UacError(AssertionError):
    """The peer did not answer as a call set-up needs, or not in time."""


class SipCall:
    """One outgoing call from ``127.0.0.1`` to ``target_uri`` at ``target``."""

    def __init__(self, target: tuple[str, int], target_uri: str) -> None:
        self.target = target
        self.target_uri = target_uri
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.call_id = uuid.uuid4().hex
        self.from_tag = uuid.uuid4().hex[:10]
        self.to_header = f"<{target_uri}>"
        self.to_tag: str | None = None
        self.final_status: int | None = None
        self.final_response = ""
        self.cseq = 1

    def _headers(self, method: str, cseq: int, branch: str, uri: str) -> str:
        return (
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:dialler@127.0.0.1:{self.port}>;tag={self.from_tag}\r\n"
            f"To: {self.to_header}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:dialler@127.0.0.1:{self.port}>\r\n"
        )

    def _send(self, text: str) -> None:
        self.sock.sendto(text.encode(), self.target)

    def invite(self, sdp: str, bound: float = 10.0) -> str:
        """Send an INVITE with ``sdp`` and wait for its final response.

        :returns: the SDP of a 2xx answer (the ACK is sent).
        :raises UacError: on a non-2xx final response (after its ACK) or none in time.
        """
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        body = sdp.replace("\r\n", "\n").replace("\n", "\r\n")
        self._send(
            self._headers("INVITE", self.cseq, branch, self.target_uri)
            + f"Content-Type: application/sdp\r\nContent-Length: {len(body.encode())}\r\n\r\n{body}"
        )
        deadline = time.monotonic() + bound
        while self.final_status is None:
            message = self._receive(deadline, "a final response to the INVITE")
            status = _status(message)
            if status is None or status < 200 or _cseq_method(message) != "INVITE":
                continue
            self.final_status = status
            self.final_response = message
            to_line = _header(message, "To") or _header(message, "t")
            self.to_header = to_line
            tag = re.search(r";tag=([^;>\s]+)", to_line)
            self.to_tag = tag.group(1) if tag else None
        self._ack(branch)
        if not 200 <= self.final_status < 300:
            raise UacError(f"INVITE answered {self.final_status}: {self.final_response}")
        return self.final_response.split("\r\n\r\n", 1)[1]

    def _ack(self, invite_branch: str) -> None:
        # A 2xx is acknowledged in a new transaction; a failure in the INVITE's own.
        branch = (
            invite_branch
            if self.final_status and self.final_status >= 300
            else "z9hG4bK" + uuid.uuid4().hex[:16]
        )
        self._send(
            self._headers("ACK", self.cseq, branch, self.target_uri) + "Content-Length: 0\r\n\r\n"
        )

    def bye(self, bound: float = 5.0) -> int:
        """Send BYE and return the status of its final response."""
        self.cseq += 1
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        self._send(
            self._headers("BYE", self.cseq, branch, self.target_uri) + "Content-Length: 0\r\n\r\n"
        )
        deadline = time.monotonic() + bound
        while True:
            message = self._receive(deadline, "a response to the BYE")
            status = _status(message)
            if status is not None and status >= 200 and _cseq_method(message) == "BYE":
                return status

    def _receive(self, deadline: float, what: str) -> str:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise UacError(f"gave up waiting for {what} from {self.target_uri}")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            message = data.decode(errors="replace")
            if not message.startswith("SIP/2.0 "):
                self._answer_request(message)
                continue
            return message

    def _answer_request(self, message: str) -> None:
        """Answer an in-dialog request from the peer (a BYE, an OPTIONS) with 200."""
        if message.startswith("ACK "):
            return
        head = message.split("\r\n\r\n", 1)[0].split("\r\n")
        keep = [
            h
            for h in head[1:]
            if h.split(":", 1)[0].strip().lower()
            in ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")
        ]
        self._send("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        """Close the UAC's socket."""
        self.sock.close()


def _status(message: str) -> int | None:
    m = re.match(r"SIP/2\.0 (\d{3}) ", message)
    return int(m.group(1)) if m else None


def _header(message: str, name: str) -> str:
    for line in message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def _cseq_method(message: str) -> str:
    parts = (_header(message, "CSeq")).split()
    return parts[1] if len(parts) == 2 else ""
