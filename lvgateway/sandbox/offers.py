"""Mid-call offer/answer on request, for the dialler and the echo bot: what they send, refuse and record.

Tests of the gateway's re-INVITE and UPDATE relaying ask a sandbox party
(through the admin API) to make a new offer in a call that is up, or to
refuse the next offer it receives, and then check that audio still flows.
Three kinds of offer (:data:`OFFER_KINDS`):

- ``reinvite``: a re-INVITE with a new SDP (the ``o=`` version bumped), sent
  through Sippy's own states, so that an INVITE crossing it meets 491
  (a glare);
- ``bodyless``: a re-INVITE without SDP (RFC 3261 section 14: it asks the
  peer for an offer); the answer goes in the ACK;
- ``update``: an UPDATE with a new SDP (RFC 3311).

An offer may name a *decoy* port instead of the party's RTP port: a socket
that only counts what reaches it. A gateway that keeps a refused offer's
address sends audio there (see :class:`DecoyPort`).

Each offer sent or received is an :class:`OfferRecord`, with the RTP the
party had received when it was settled, so a test can count what came after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
from sippy.CCEvents import CCEventFail, CCEventUpdate
from sippy.MsgBody import MsgBody
from twisted.internet.protocol import DatagramProtocol

__all__ = [
    "OFFER_KINDS",
    "DecoyPort",
    "OfferRecord",
    "check_kind",
    "check_reject_code",
    "refuse_offer",
    "send_offer",
]

#: The kinds of offer a party makes on request.
OFFER_KINDS = ("reinvite", "bodyless", "update")

_REASONS = {488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error"}

#: ``settled(code, phrase, body)``: the final response to an offer sent outside Sippy's states.
Settled = Callable[[int, str, Any], None]


@attrs.define
class OfferRecord:
    """One mid-call offer a party sent or received, and how it was settled.

    :param kind: one of :data:`OFFER_KINDS`, or ``received`` for one the party was sent.
    :param sent_at: clock time it was sent or received.
    :param decoy: whether it named a decoy port.
    :param code: its final status (``None`` while pending).
    :param phrase: the reason phrase.
    :param settled_at: clock time of the final status.
    :param rtp_received: RTP packets the party had received when it was settled.
    """

    kind: str
    sent_at: float
    decoy: bool = False
    code: int | None = None
    phrase: str | None = None
    settled_at: float | None = None
    rtp_received: int | None = None

    def settle(self, code: int, phrase: str, now: float, rtp_received: int) -> None:
        """Note the final status (the first one only)."""
        if self.code is not None:
            return
        self.code, self.phrase, self.settled_at, self.rtp_received = (
            code,
            phrase,
            now,
            rtp_received,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as the admin API shows it."""
        return {
            "kind": self.kind,
            "sentAt": self.sent_at,
            "decoy": self.decoy,
            "code": self.code,
            "phrase": self.phrase,
            "settledAt": self.settled_at,
            "rtpReceived": self.rtp_received,
        }


class DecoyPort(DatagramProtocol):
    """A UDP port named in an offer meant to be refused: it only counts what reaches it."""

    noisy = False

    def __init__(self) -> None:
        self.received = 0

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        """Count the datagram."""
        self.received += 1


def check_kind(kind: str) -> str:
    """``kind`` if it is one of :data:`OFFER_KINDS`.

    :raises ValueError: naming the kinds, for any other.
    """
    if kind not in OFFER_KINDS:
        raise ValueError(f"kind must be one of {', '.join(OFFER_KINDS)}, not {kind!r}")
    return kind


def check_reject_code(code: int) -> int:
    """``code`` if it is a final status that refuses an offer (300 to 699).

    :raises ValueError: otherwise.
    """
    if not 300 <= code <= 699:
        raise ValueError(f"code must be a final status from 300 to 699, not {code}")
    return code


def send_offer(ua: Any, kind: str, sdp: str | None, answer: str, settled: Settled) -> None:
    """Send an offer of ``kind`` in ``ua``'s dialog.

    A ``reinvite`` goes through Sippy's states: its outcome comes to the
    party's event callback (``CCEventConnect`` or ``CCEventFail``), and
    ``settled`` is not called. The others are sent as plain transactions,
    ``settled`` getting their final response.

    :param ua: the party's Sippy ``UA``, connected.
    :param kind: one of :data:`OFFER_KINDS`.
    :param sdp: the new SDP (ignored for ``bodyless``).
    :param answer: the SDP a ``bodyless`` re-INVITE's ACK answers with.
    :param settled: called with ``(code, phrase, body)`` of the final response.
    """
    if kind == "reinvite":
        ua.recvEvent(CCEventUpdate(MsgBody(sdp)))
        return
    body = MsgBody(sdp) if kind == "update" else None
    req = ua.genRequest("UPDATE" if kind == "update" else "INVITE", body)
    tr: Any = None

    def answered(resp: Any) -> None:
        code, phrase = resp.getSCode()
        if code < 200:
            return
        if kind == "bodyless" and code < 300:
            # The offer is in this 2xx; the answer goes in the ACK, which
            # Sippy's transaction layer sends once this callback returns.
            tr.ack.setBody(MsgBody(answer))
        settled(code, phrase, resp.getBody())

    tr = ua.newTransaction(req, resp_cb=answered)


def refuse_offer(ua: Any, code: int) -> None:
    """Refuse the offer ``ua`` is holding (a re-INVITE handed to the party as ``CCEventUpdate``)."""
    ua.recvEvent(CCEventFail((code, _REASONS.get(code, "Rejected"))))
