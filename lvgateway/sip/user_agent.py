"""Sippy's ``UA`` with the in-dialog behaviour a LiveVox call needs.

Sippy 2.5.0, left alone, would hurt a LiveVox call in three ways (docs/design.md,
pitfalls 5, 7 and 8):

- an in-dialog ``UPDATE`` gets no response at all, so LiveVox's session
  refresh would be retransmitted and the call dropped: here a refreshing
  UPDATE is answered 200 at once, echoing ``Session-Expires``, and not
  relayed, while one with a new SDP is relayed like a re-INVITE;
- a ``BYE`` keeps only its ``Reason``: here its headers are kept, for the
  vendor's disposition;
- a ``REFER`` becomes a BYE with ``Also`` towards the other leg, a hang-up on
  the customer: here it is answered 202 and handed to the call instead, and
  its implicit subscription (RFC 3515, RFC 7647) gets a NOTIFY with
  ``SIP/2.0 100 Trying`` at once and the transfer's final status when the
  call knows it (:meth:`GatewayUA.refer_done`); ``Refer-Sub: false``
  (RFC 4488) means no NOTIFY at all, and a REFER without exactly one
  ``Refer-To`` gets 400.

And, as RFC 3261 requires of a UAS: an in-dialog method Sippy's states leave
unanswered (NOTIFY, MESSAGE, PRACK, SUBSCRIBE...) gets 405 with ``Allow``,
and any request but ACK and BYE on a dialog that has ended gets 481, where Sippy
would answer an UPDATE after BYE with 200 or say nothing at all.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from sippy.CCEvents import CCEventFail, CCEventUpdate
from sippy.Exceptions.SdpParseError import SdpHandlingErrors
from sippy.MsgBody import MsgBody
from sippy.SipAddress import SipAddress
from sippy.SipConf import SipConf
from sippy.SipContact import SipContact
from sippy.SipHeader import hf_types as _sippy_hf_types
from sippy.SipURL import SipURL
from sippy.UA import UA
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from lvgateway.sip import session_timer
from lvgateway.sip.edge_reason import reason_from_edge
from lvgateway.sip.headers import cased, request_headers
from lvgateway.sip.session_timer import SessionTerms, SessionTimer, TooSmall
from lvgateway.sip.ua_states import (
    GatewayConnected,
    GatewayUacRinging,
    GatewayUacTrying,
    GatewayUacUpdating,
    GatewayUasUpdating,
    refusal_of,
)

__all__ = ["GatewayUA"]


class _WeakResponder:
    """Sippy's ``req.sendResponse(code, reason, ...)``, holding the request weakly (no cycle)."""

    __slots__ = ("_req", "_ua")

    def __init__(self, req: weakref.ref[Any], ua: Any) -> None:
        self._req = req
        self._ua = ua

    def __call__(self, *rcode: Any) -> None:
        req = self._req()
        if req is None:  # nobody holds the request: nobody can answer it
            return
        ua = self._ua
        resp = req.genResponse(*rcode, server=ua.local_ua)
        ua.global_config["_sip_tm"].sendResponse(resp, lossemul=ua.uas_lossemul)

log = Logger()

# Sippy parses Refer-To as a SIP address and answers a REFER whose Refer-To is
# a tel: URI, or carries embedded headers it cannot parse, with "400 Bad Request
# (malformed Refer-To header)" before any callback runs. The gateway reads
# Refer-To itself (lvgateway.calls.disposition.parse_refer_to): keep it as text.
for _name in ("refer-to", "r"):
    _sippy_hf_types.pop(_name, None)

#: The in-dialog methods the gateway answers or relays; others get 405 with these.
ALLOWED = ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "UPDATE", "REFER")

#: ``on_refer(headers)``: the REFER's headers, once it is answered 202.
ReferHandler = Callable[[list[tuple[str, str]]], None]

#: The NOTIFY body's type for a REFER's progress (RFC 3515 section 2.4.5).
SIPFRAG = "message/sipfrag;version=2.0"
#: How long the REFER's implicit subscription is said to last while the transfer runs.
REFER_EXPIRES = 60


class GatewayUA(UA):  # type: ignore[misc]
    """One leg of a bridged call.

    A finished leg lingers ``godead_timeout`` seconds before Sippy drops it.
    Sippy's 32 s kept every finished call's messages alive long enough to
    make garbage collection pause the reactor for most of a second at
    80 calls a second; retransmissions after the end are answered by the
    transaction layer's own cache (retransmitted requests) and the
    transactions themselves (late responses), not by the leg: 1 s is enough.
    At 100 calls a second, 4 s kept 145,000 objects for each collection to
    walk, 1 s 95,000, and the longest full collection went from 287 ms to
    87 ms (docs/benchmarks.md).

    :param call_id: the gateway's call id, for logs.
    :param on_refer: called with a REFER's headers; ``None`` answers REFER 603.
    Other arguments are ``sippy.UA.UA``'s.
    """

    godead_timeout = 1.0

    # Sippy's connected and re-INVITE states, corrected (see lvgateway.sip.ua_states).
    UaStateConnected = GatewayConnected
    UasStateUpdating = GatewayUasUpdating
    UacStateUpdating = GatewayUacUpdating
    UacStateTrying = GatewayUacTrying
    UacStateRinging = GatewayUacRinging

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
        #: Why the edge failed the INVITE (its ``Warning``), if it did.
        self.edge_reason: str | None = None
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
        #: The session timer a relayed UPDATE asked for (GatewayConnected reads it).
        self.pending_update_terms: SessionTerms | None = None
        self._clock = clock
        #: The ``Event: refer;id=`` of each REFER whose final NOTIFY is still due.
        self.refer_subscriptions: list[str] = []
        #: Every NOTIFY sent for a REFER: ``(event id, status line, final)``.
        self.refer_notifies: list[tuple[str, str, bool]] = []
        self._notify_queue: list[tuple[str, int, str, bool]] = []

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

    def cleanup(self) -> None:
        """Sippy's hook when the leg is dead: drop what refers back to this UA.

        Sippy's dead state breaks its own references to the UA; the session
        timer (the UA's bound methods) and the call's callbacks would keep it
        in a cycle that only a full collection frees, with every message the
        leg kept.
        """
        self.stop_session_timer()
        self.session_timer = None
        self.on_refer = None
        self.on_session_expired = None
        self._notify_queue = []
        super().cleanup()

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

    # -- the media refusing a mid-call offer -----------------------------------

    def delayed_local_sdp_update(self, event: Any, local_sdp_body: Any, ex: Any = None) -> Any:
        """Sippy's, but the media refusing the other leg's mid-call offer refuses that offer only.

        Sippy turns the SDP hook's error into a ``CCEventFail`` for the call
        *and* feeds it to this leg, whose connected state then sends BYE: a
        re-INVITE whose SDP the relay cannot take (a host name in ``c=``)
        would end the call. Here it goes back to the leg that made the offer
        as that offer's refusal (the error's code, 488 for an SDP), and the
        call goes on.
        """
        if ex is None or not isinstance(event, CCEventUpdate) or not self._connected_now():
            return super().delayed_local_sdp_update(event, local_sdp_body, ex)
        if not isinstance(ex, SdpHandlingErrors):
            raise ex
        self._refuse_offer(event, ex)
        return None

    def delayed_remote_sdp_update(self, event: Any, remote_sdp_body: Any, ex: Any = None) -> Any:
        """Sippy's, but the media refusing this leg's peer's mid-call offer refuses that offer only.

        As :meth:`delayed_local_sdp_update`: Sippy would hand the call a
        ``CCEventFail`` that reads as the vendor failing. Here the peer gets the
        error's code for its offer, and this leg keeps its SDP.
        """
        updating = getattr(self.state, "sname", None) == "Updating(UAS)"
        if ex is None or not isinstance(event, CCEventUpdate) or not updating:
            return super().delayed_remote_sdp_update(event, remote_sdp_body, ex)
        if not isinstance(ex, SdpHandlingErrors):
            raise ex
        fail = CCEventFail((ex.code, ex.msg), rtime=event.rtime, origin=self.origin)
        fail.reason_rfc3326 = ex.getReason()
        self.recvEvent(fail)  # GatewayUasUpdating answers the peer and restores the SDP
        return None

    def _connected_now(self) -> bool:
        return getattr(self.state, "sname", None) == "Connected"

    def _refuse_offer(self, event: Any, ex: Any) -> None:
        """Give the call the refusal of the offer ``event`` carried."""
        fail = refusal_of(self, event, ex.code, ex.msg)
        fail.reason_rfc3326 = ex.getReason()
        log.info(
            "call {call_id}: the media refused an offer ({code}); the call goes on",
            call_id=self.call_id,
            code=ex.code,
        )
        self.equeue.append(fail)
        self.emitPendingEvents()

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
        if method == "INVITE" and code >= 300:
            self.edge_reason = reason_from_edge(resp)
            # Sippy's transaction layer sends the ACK of a non-2xx final response
            # to its Contact (and Record-Route): a 302 would send the ACK to the
            # redirect target. RFC 3261 section 17.1.1.3: it goes where the
            # INVITE went. The call has read the Contact already.
            resp.delHFs("contact")
            resp.delHFs("record-route")
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
            return self._answer_update(req, sip_t)
        elif method == "REFER" and self.state is not None:
            return self._answer_refer(req)
        return self._sippy_receives(req, sip_t)

    def _sippy_receives(self, req: Any, sip_t: Any) -> Any:
        """Sippy's ``recvRequest``, without the reference cycle it leaves on every request.

        Sippy gives each request a ``sendResponse`` closure that holds the
        request: a cycle that only the garbage collector frees, taking the
        request's parsed headers with it (some hundred objects a call, and
        the longest full collections under load). The closure is replaced by
        one that holds the request weakly: whoever can still call it holds
        the request.
        """
        result = super().recvRequest(req, sip_t)
        if "sendResponse" in vars(req):
            req.sendResponse = _WeakResponder(weakref.ref(req), self)
        return result

    def _answer_update(self, req: Any, sip_t: Any) -> Any:
        terms = self.negotiate(req)
        if isinstance(terms, TooSmall):
            return (terms.response(req, self.local_ua), None, None)
        self.refresh_target(req)
        body = req.getBody()
        if body is not None and self.rSDP is not None and str(body) != str(self.rSDP):
            if getattr(self.state, "sname", None) != "Connected":
                # RFC 3311 section 5.2: an offer while one of ours is pending.
                return (req.genResponse(491, "Request Pending", server=self.local_ua), None, None)
            # A new offer: relayed to the other leg (GatewayConnected); the
            # final response follows its answer.
            self.pending_update_terms = terms
            refused = self._sippy_receives(req, sip_t)  # a CSeq out of order gets 500
            # Sippy returns None for a non-INVITE, and its transaction manager
            # then drops the server transaction: keep it for the final response.
            return refused if refused is not None else (None, None, None)
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
        refer_to = [v for n, v in headers if n.lower() in ("refer-to", "r")]
        if len(refer_to) != 1:
            # RFC 3515 section 2.4.1: exactly one Refer-To.
            log.warn(
                "call {call_id}: REFER with {count} Refer-To headers refused 400",
                call_id=self.call_id,
                count=len(refer_to),
            )
            return (req.genResponse(400, "Bad Request", server=self.local_ua), None, None)
        subscribed = all(
            v.strip().lower() != "false" for n, v in headers if n.lower() == "refer-sub"
        )
        resp = req.genResponse(202, "Accepted", server=self.local_ua)
        if subscribed:
            event_id = str(req.getHFBody("cseq").getCSeq()[0])
            self.refer_subscriptions.append(event_id)
            self._queue_notify(event_id, 100, "Trying", final=False)
        else:
            # RFC 4488: no implicit subscription, and the 2xx says so.
            resp.appendHeader(cased("Refer-Sub", "false"))
        try:
            self.on_refer(headers)
        except Exception:
            log.failure("call {call_id}: handling the vendor's REFER failed", call_id=self.call_id)
        return (resp, None, None)

    # -- REFER's implicit subscription (RFC 3515, RFC 7647) ------------------------

    def refer_done(self, code: int, phrase: str) -> None:
        """Tell the REFER's sender how the transfer went: the final NOTIFY of each REFER still open.

        :param code: the status line's code (``200`` for a transfer LiveVox took).
        :param phrase: its reason phrase.
        """
        pending, self.refer_subscriptions = self.refer_subscriptions, []
        for event_id in pending:
            self._queue_notify(event_id, code, phrase, final=True, now=True)

    def _queue_notify(
        self, event_id: str, code: int, phrase: str, final: bool, now: bool = False
    ) -> None:
        """Send a NOTIFY now, or after the request being handled is answered; always in order.

        A final NOTIFY goes at once (a BYE may follow it in the same turn)
        unless an earlier one is still waiting, which it then follows.
        """
        self._notify_queue.append((event_id, code, phrase, final))
        if len(self._notify_queue) > 1:
            return  # a flush is already scheduled
        if self._clock is None or now:
            self._flush_notifies()
        else:
            self._clock.callLater(0, self._flush_notifies)

    def _flush_notifies(self) -> None:
        queue, self._notify_queue = self._notify_queue, []
        for event_id, code, phrase, final in queue:
            self._send_notify(event_id, code, phrase, final)

    def _send_notify(self, event_id: str, code: int, phrase: str, final: bool) -> None:
        if getattr(self.state, "sname", None) in ("Disconnected", "Failed", "Dead", None):
            log.info(
                "call {call_id}: the REFER's NOTIFY ({code}) not sent: the dialog has ended",
                call_id=self.call_id,
                code=code,
            )
            return
        status = f"SIP/2.0 {code} {phrase}"
        state = "terminated;reason=noresource" if final else f"active;expires={REFER_EXPIRES}"
        body = MsgBody(status + "\r\n", mtype=SIPFRAG)
        eh = (cased("Event", f"refer;id={event_id}"), cased("Subscription-State", state))
        # The vendor leg's INVITE headers (context, session timer) are not the NOTIFY's.
        saved = getattr(self, "extra_headers", None)
        setattr(self, "extra_headers", None)  # noqa: B010 (Sippy's attribute, untyped)
        try:
            req = self.genRequest("NOTIFY", body, extra_headers=eh)
        finally:
            setattr(self, "extra_headers", saved)  # noqa: B010
        self.refer_notifies.append((event_id, status, final))
        log.info(
            "call {call_id}: NOTIFY for the REFER: {status}", call_id=self.call_id, status=status
        )

        def answered(resp: Any) -> None:
            answer = resp.getSCode()[0]
            if answer >= 300:
                log.warn(
                    "call {call_id}: the vendor answered the REFER's NOTIFY {code}",
                    call_id=self.call_id,
                    code=answer,
                )

        self.newTransaction(req, resp_cb=answered)
