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

from lvgateway.sip import session_timer
from lvgateway.sip.headers import cased, request_headers
from lvgateway.sip.session_timer import SessionTerms, SessionTimer, TooSmall
from lvgateway.sip.ua_states import GatewayConnected, GatewayUacUpdating, GatewayUasUpdating

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

    # Sippy's connected and re-INVITE states, corrected (see lvgateway.sip.ua_states).
    UaStateConnected = GatewayConnected
    UasStateUpdating = GatewayUasUpdating
    UacStateUpdating = GatewayUacUpdating

    def __init__(
        self,
        *args: Any,
        call_id: str = "-",
        on_refer: ReferHandler | None = None,
        clock: Any = None,
        min_se: int = session_timer.RFC_MIN_SE,
        **kwargs: Any,
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
        #: The lowest Session-Expires accepted; lower gets 422 (RFC 4028).
        self.min_se = min_se
        #: The methods the peer's ``Allow`` named (INVITE or its 2xx).
        self.peer_allow: set[str] = set()
        #: Called when a refresh due from the peer did not come, or the gateway's failed.
        self.on_session_expired: Callable[[str], None] | None = None
        self.session_timer = (
            SessionTimer(clock, self._refresh_session, self._session_expired)
            if clock is not None
            else None
        )
        # Carried across Sippy's states by lvgateway.sip.ua_states.
        self.prev_lsdp: Any = None
        self.prev_rsdp: Any = None
        self.bodyless_in = False
        self.bodyless_out = False
        self.pending_terms: SessionTerms | None = None

    # -- session timers (RFC 4028; Sippy has none) ---------------------------

    def negotiate(self, req: Any) -> SessionTerms | TooSmall | None:
        """What this leg, as UAS, grants a refresh ``req`` (see :func:`session_timer.negotiate`)."""
        return session_timer.negotiate(req, self.min_se)

    def session_refreshed(self, terms: SessionTerms | None) -> None:
        """A 2xx granting ``terms`` went to the peer: the session runs on from now."""
        if self.session_timer is not None and terms is not None:
            self.session_timer.start(terms)

    def session_answered(self, resp: Any) -> None:
        """A 2xx to this leg's INVITE or UPDATE came: it refreshes the session, on its terms."""
        self._note_allow(resp)
        timer = self.session_timer
        if timer is None:
            return
        terms = session_timer.answered(resp, timer.terms.interval if timer.terms else 0)
        if terms is None:
            terms = timer.terms  # a 2xx without Session-Expires still refreshes
        if terms is not None and terms.interval > 0:
            timer.start(terms)

    def with_session_headers(self, eh: Any) -> Any:
        """``eh`` plus Session-Expires for a re-INVITE or UPDATE this leg sends, keeping the refresher."""
        terms = self.session_timer.terms if self.session_timer is not None else None
        if terms is None:
            return eh
        # In the gateway's own request the gateway is the UAC.
        refresher = "uac" if terms.we_refresh else "uas"
        extra = session_timer.offer_headers(terms.interval, self.min_se, refresher)
        return tuple(eh or ()) + tuple(extra)

    def stop_session_timer(self) -> None:
        """The leg is over: no refresh, no expiry."""
        if self.session_timer is not None:
            self.session_timer.stop()

    def _refresh_session(self) -> None:
        """Refresh the session: UPDATE when the peer allows it, else a re-INVITE with the current SDP."""
        if getattr(self.state, "sname", None) != "Connected":
            # A re-INVITE is under way: its 2xx refreshes the session.
            return
        eh = self.with_session_headers(())
        if "update" in self.peer_allow:
            req = self.genRequest("UPDATE", None, extra_headers=eh)
        else:
            req = self.genRequest("INVITE", self.lSDP, extra_headers=eh)
        log.info(
            "call {call_id}: refreshing the session ({method})",
            call_id=self.call_id,
            method=req.getMethod(),
        )
        self.newTransaction(req, resp_cb=self._session_refresh_answered)

    def _session_refresh_answered(self, resp: Any) -> None:
        code = resp.getSCode()[0]
        if code < 200 or self.session_timer is None:
            return
        if code < 300:
            self.session_answered(resp)
        elif code in (408, 481):
            # RFC 3261 section 12.2.1.2: the dialog is gone.
            self._session_expired(f"session refresh answered {code}")
        # Any other refusal: the session expires on time unless a refresh comes.

    def _session_expired(self, why: str = "session expired") -> None:
        self.stop_session_timer()
        if self.state is None or not getattr(self.state, "connected", False):
            return
        log.warn("call {call_id}: {why}", call_id=self.call_id, why=why)
        if self.on_session_expired is not None:
            self.on_session_expired(why)

    def _note_allow(self, msg: Any) -> None:
        allow = session_timer.tokens(msg, "allow")
        if allow:
            self.peer_allow = allow

    def refresh_target(self, msg: Any) -> None:
        """A target refresh (RFC 3261 section 12.2): the peer's new Contact is where requests go.

        Sippy keeps the remote target of the dialog's first INVITE for ever.
        """
        target: Any = getattr(self, "rTarget", None)
        if msg.countHFs("contact") == 0 or target is None:
            return
        url = msg.getHFBody("contact").getUrl().getCopy()
        if not self.routes:
            self.rTarget = url
            self.rAddr = url.getTAddr()
        elif self.routes[0].getUrl().lr:
            self.rTarget = url  # the next hop stays the first route

    def changeState(self, newstate: Any) -> None:
        """Sippy's, and a leg that has ended stops its session timer."""
        super().changeState(newstate)
        if getattr(self.state, "sname", None) in ("Disconnected", "Failed", "Dead"):
            self.stop_session_timer()

    def recvResponse(self, resp: Any, tr: Any) -> Any:
        """Sippy's; the 2xx to the first INVITE starts the session timer on its terms."""
        initial = self.state is not None and not getattr(self.state, "connected", False)
        result = super().recvResponse(resp, tr)
        code = resp.getSCode()[0]
        method = resp.getHFBody("cseq").getCSeq()[1]
        if initial and method == "INVITE" and 200 <= code < 300:
            self.session_answered(resp)
        return result

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
        if method == "INVITE" and self.state is None:
            self._note_allow(req)
            self.pending_terms = None
            terms = self.negotiate(req)  # the call refuses 422 or grants them in its 200
            self.pending_terms = terms  # type: ignore[assignment]
        if method == "BYE":
            self.bye_headers = request_headers(req)
        elif method == "UPDATE" and self.state is not None:
            return self._answer_update(req)
        elif method == "REFER" and self.state is not None:
            return self._answer_refer(req)
        return super().recvRequest(req, sip_t)

    def _answer_update(self, req: Any) -> Any:
        terms = self.negotiate(req)
        if isinstance(terms, TooSmall):
            return (terms.response(req, self.local_ua), None, None)
        self.refresh_target(req)
        body = req.getBody()
        if body is not None and self.rSDP is not None and str(body) != str(self.rSDP):
            # A real media change by UPDATE would need relaying, which Sippy
            # cannot do: refuse it, so the peer falls back to a re-INVITE.
            log.warn("call {call_id}: UPDATE with a new SDP refused (488)", call_id=self.call_id)
            return (req.genResponse(488, "Not Acceptable Here", server=self.local_ua), None, None)
        resp = req.genResponse(
            200, "OK", body=self.lSDP if body is not None else None, server=self.local_ua
        )
        if terms is not None:
            resp.appendHeaders(terms.headers())
        self.session_refreshed(terms)
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
