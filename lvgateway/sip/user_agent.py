"""Sippy's ``UA`` with the in-dialog behaviour a LiveVox call needs.

Sippy 2.5.0, left alone, would hurt a LiveVox call in three ways (DESIGN.md,
pitfalls 5, 7 and 8):

- an in-dialog ``UPDATE`` gets no response at all, so LiveVox's session
  refresh would be retransmitted and the call dropped: here a refreshing
  UPDATE is answered 200 at once, echoing ``Session-Expires``, and not relayed;
- a ``BYE`` keeps only its ``Reason``: here its headers are kept, for the
  vendor's disposition;
- a ``REFER`` becomes a BYE with ``Also`` towards the other leg, a hang-up on
  the customer: here it is answered 202 and handed to the call instead.

And, as RFC 3261 requires of a UAS: an in-dialog method Sippy's states leave
unanswered (NOTIFY, MESSAGE, PRACK, SUBSCRIBE...) gets 405 with ``Allow``,
and any request but ACK and BYE on a dialog that has ended gets 481, where Sippy
would answer an UPDATE after BYE with 200 or say nothing at all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sippy.SipAddress import SipAddress
from sippy.SipConf import SipConf
from sippy.SipContact import SipContact
from sippy.SipURL import SipURL
from sippy.UA import UA
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from lvgateway.sip.headers import cased, request_headers

__all__ = ["GatewayUA"]

log = Logger()

#: The in-dialog methods the gateway answers or relays; others get 405 with these.
ALLOWED = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "REFER")

#: ``on_refer(headers)``: the REFER's headers, once it is answered 202.
ReferHandler = Callable[[list[tuple[str, str]]], None]


class GatewayUA(UA):  # type: ignore[misc]
    """One leg of a bridged call.

    A finished leg lingers ``godead_timeout`` seconds before Sippy drops it.
    Sippy's 32 s kept every finished call's messages alive long enough to
    make garbage collection pause the reactor for most of a second at
    80 calls a second; retransmissions after the end are answered by the
    transaction layer's own cache, so a few seconds are enough here.

    :param call_id: the gateway's call id, for logs.
    :param on_refer: called with a REFER's headers; ``None`` answers REFER 603.
    Other arguments are ``sippy.UA.UA``'s.
    """

    godead_timeout = 4.0

    def __init__(
        self, *args: Any, call_id: str = "-", on_refer: ReferHandler | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        # Sippy's default Contact carries the display name "Anonymous", which some
        # peers (SIPp among them) take into the Request-URI of their ACK and BYE.
        url = SipURL(host=SipConf.my_address, port=SipConf.my_port, transport=SipConf.my_transport)
        self.lContact = SipContact(address=SipAddress(url=url, hadbrace=True))
        self.call_id = call_id
        self.on_refer = on_refer
        #: The headers of the BYE that ended this leg, if the peer sent one.
        self.bye_headers: list[tuple[str, str]] | None = None
        #: How many refreshing UPDATEs were answered here.
        self.refreshes = 0

    def ping(self, clock: Any, timeout: float) -> Deferred[bool]:
        """Send an in-dialog OPTIONS: is the peer still there?

        Fires ``True`` on any final answer but 408 and 481 (a 405 or 501
        still shows a live peer), ``False`` on those or on silence past
        ``timeout`` (Sippy would wait its 32 s transaction timer).

        :param clock: runs the timeout.
        :param timeout: seconds to wait for an answer.
        """
        d: Deferred[bool] = Deferred()

        def answered(resp: Any) -> None:
            code = resp.getSCode()[0]
            if code >= 200 and not d.called:
                d.callback(code not in (408, 481))

        req = self.genRequest("OPTIONS")  # takes the next local CSeq
        self.newTransaction(req, resp_cb=answered)

        def silent() -> None:
            if not d.called:
                d.callback(False)

        timer = clock.callLater(timeout, silent)
        d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return d

    def recvRequest(self, req: Any, sip_t: Any) -> Any:
        """Handle UPDATE, REFER and BYE as the module says; everything else as Sippy does."""
        method = req.getMethod()
        state = getattr(self.state, "sname", None)
        if state in ("Disconnected", "Failed", "Dead") and method not in ("ACK", "BYE"):
            return (
                req.genResponse(481, "Call/Transaction Does Not Exist", server=self.local_ua),
                None,
                None,
            )
        if method not in ALLOWED and self.state is not None:
            resp = req.genResponse(405, "Method Not Allowed", server=self.local_ua)
            resp.appendHeader(cased("Allow", ", ".join(ALLOWED)))
            return (resp, None, None)
        if method == "BYE":
            self.bye_headers = request_headers(req)
        elif method == "UPDATE" and self.state is not None:
            return self._answer_update(req)
        elif method == "REFER" and self.state is not None:
            return self._answer_refer(req)
        return super().recvRequest(req, sip_t)

    def _answer_update(self, req: Any) -> Any:
        body = req.getBody()
        if body is not None and self.rSDP is not None and str(body) != str(self.rSDP):
            # A real media change by UPDATE would need relaying, which Sippy
            # cannot do: refuse it, so the peer falls back to a re-INVITE.
            log.warn("call {call_id}: UPDATE with a new SDP refused (488)", call_id=self.call_id)
            return (req.genResponse(488, "Not Acceptable Here", server=self.local_ua), None, None)
        resp = req.genResponse(
            200, "OK", body=self.lSDP if body is not None else None, server=self.local_ua
        )
        if req.countHFs("session-expires") > 0:
            resp.appendHeader(cased("Session-Expires", str(req.getHFBody("session-expires"))))
            resp.appendHeader(cased("Require", "timer"))
        self.refreshes += 1
        return (resp, None, None)

    def _answer_refer(self, req: Any) -> Any:
        if self.on_refer is None:
            return (req.genResponse(603, "Decline", server=self.local_ua), None, None)
        headers = request_headers(req)
        resp = req.genResponse(202, "Accepted", server=self.local_ua)
        try:
            self.on_refer(headers)
        except Exception:
            log.failure("call {call_id}: handling the vendor's REFER failed", call_id=self.call_id)
        return (resp, None, None)
