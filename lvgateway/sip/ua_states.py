"""Sippy's connected and re-INVITE states, corrected for a bridged call (docs/design.md, pitfalls 5 and 6).

:class:`~lvgateway.sip.user_agent.GatewayUA` uses these in place of Sippy's
``UaStateConnected``, ``UasStateUpdating`` and ``UacStateUpdating`` (Sippy
looks its states up on the UA, ``self.ua.UaStateConnected``, so a subclass
of ``UA`` can swap them without a fork). Each override says which Sippy
behaviour it corrects and why. The UAC's trying and ringing states keep a
loose route set when the leg goes through an outbound proxy (the TLS edge).

The UA (``self.ua``) carries the state these need across states:
``prev_lsdp``/``prev_rsdp`` (the SDP before a re-INVITE, restored when it is
rejected), ``bodyless_in``/``bodyless_out`` (a re-INVITE without an offer, as
UAS and as UAC), ``pending_terms`` (the session timer a 2xx grants).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sippy.CCEvents import CCEventConnect, CCEventFail, CCEventUpdate
from sippy.SipMaxForwards import SipMaxForwards
from sippy.UacStateRinging import UacStateRinging
from sippy.UacStateTrying import UacStateTrying
from sippy.UacStateUpdating import UacStateUpdating
from sippy.UasStateUpdating import UasStateUpdating
from sippy.UaStateConnected import UaStateConnected
from twisted.logger import Logger

from lvgateway.sip.session_timer import SessionTerms, TooSmall

__all__ = [
    "GatewayConnected",
    "GatewayUacRinging",
    "GatewayUacTrying",
    "GatewayUacUpdating",
    "GatewayUasUpdating",
    "refusal_of",
    "rejected",
]

log = Logger()


def rejected(event: Any) -> bool:
    """Whether ``event`` is a re-INVITE the peer rejected (the call goes on), not a failed leg."""
    return isinstance(event, CCEventFail) and getattr(event, "reinvite_rejected", False)


def refusal_of(ua: Any, event: Any, code: int, phrase: str) -> Any:
    """The ``CCEventFail`` that refuses the other leg's offer ``event``, for ``ua`` to hand the call.

    Marked a rejected re-INVITE (the call goes on). Sippy's UA drops an
    event numbered before the last it emitted (``emitPendingEvents``): a
    refusal numbered now would make an offer of this leg's own, numbered
    before it and still on its way, look stale and vanish. So the refusal
    takes the number of the offer it answers, unless that is already stale.
    """
    fail = CCEventFail((code, phrase), rtime=event.rtime, origin=ua.origin)
    fail.reinvite_rejected = True
    if ua.elast_seq is None or ua.elast_seq < event.seq:
        fail.seq = event.seq
    return fail


def _refuse_crossing_offer(state: Any, event: Any, eh: Any) -> Any:
    """The other leg's offer reached a leg with an offer of its own pending: refuse it 491.

    Sippy's ``UasStateUpdating`` and ``UacStateUpdating`` drop a
    ``CCEventUpdate``, so the peer that sent that offer would never get a
    final response. It happens in a glare across the bridge (both peers
    re-INVITE at once) when the media's SDP hook answers on a later turn:
    the offers then cross inside the gateway instead of on the wire. RFC
    3261 section 14.1 answers crossing offers 491; the call goes on.
    """
    ua = state.ua
    log.info("call {call_id}: offers crossed: the other leg's is refused 491", call_id=ua.call_id)
    ua.equeue.append(refusal_of(ua, event, 491, "Request Pending"))
    return None


class GatewayConnected(UaStateConnected):  # type: ignore[misc]
    """A connected leg."""

    def _recvRequestInvite(self, req: Any) -> Any:
        ua = self.ua
        terms = ua.negotiate(req)
        if isinstance(terms, TooSmall):
            # Sippy knows no Min-SE: a refresh under the floor is refused 422 (RFC 4028 section 9).
            ua.global_config["_sip_tm"].sendResponse(terms.response(req, ua.local_ua))
            return None
        ua.refresh_target(req)
        ua.uasResp = req.genResponse(100, "Trying", server=ua.local_ua)
        ua.global_config["_sip_tm"].sendResponse(ua.uasResp)
        body = req.getBody()
        if body is not None and ua.rSDP is not None and str(ua.rSDP) == str(body):
            # Sippy answers an identical re-INVITE (a session refresh) 200 without
            # Session-Expires: RFC 4028 section 9 wants it on every 2xx to a refresh.
            extra = terms.headers() if terms is not None else None
            ua.sendUasResponse(200, "OK", ua.lSDP, (ua.lContact,), extra_headers=extra)
            ua.session_refreshed(terms)
            return None
        return self._relay_offer(req, body, terms)

    def _recvRequestUpdate(self, req: Any) -> Any:
        # Sippy leaves an in-dialog UPDATE unanswered. GatewayUA answers a
        # refreshing one (no body, or the SDP it has) itself; one with a new
        # SDP reaches here and is relayed like a re-INVITE (RFC 3311 section
        # 5.2): the other leg gets a re-INVITE (one method per leg is the
        # B2BUA's choice), and its answer or rejection becomes this UPDATE's
        # final response. No 100 Trying: UPDATE is a non-INVITE transaction.
        ua = self.ua
        ua.uasResp = req.genResponse(100, "Trying", server=ua.local_ua)
        return self._relay_offer(req, req.getBody(), ua.pending_update_terms)

    def _relay_offer(self, req: Any, body: Any, terms: SessionTerms | None) -> Any:
        """Hand the peer's new offer (or its request for one) to the other leg and wait for the answer."""
        ua = self.ua
        ua.pending_terms = terms
        ua.prev_rsdp = ua.rSDP
        event = CCEventUpdate(body, rtime=req.rtime, origin=ua.origin)
        if req.countHFs("reason") > 0:
            event.reason_rfc3326 = req.getHFBody("reason")
        if req.countHFs("max-forwards") > 0:
            event.max_forwards = req.getHFBody("max-forwards").getNum()
        if body is None:
            # Sippy turns a re-INVITE without SDP into a fake hold (the old remote
            # SDP with c=0.0.0.0), which cuts the bot's audio. RFC 3261 section 14:
            # it asks for an offer. Relay it without a body; the offer comes back
            # in the other leg's 2xx, and the answer in this leg's ACK.
            ua.bodyless_in = True
            ua.equeue.append(event)
            return (ua.UasStateUpdating,)
        ua.bodyless_in = False
        if ua.on_remote_sdp_change is not None:
            body = ua.on_remote_sdp_change(body, partial(ua.delayed_remote_sdp_update, event))
            if body is None:
                return (ua.UasStateUpdating,)
        ua.rSDP = body.getCopy()
        ua.equeue.append(event)
        return (ua.UasStateUpdating,)

    def recvACK(self, req: Any) -> Any:
        # Sippy forgets the remote SDP on an ACK without a body; an ACK
        # without one changes nothing (RFC 3264), and the stored SDP is what
        # makes the next identical refresh answerable here.
        previous = self.ua.rSDP
        result = super().recvACK(req)
        if req.getBody() is None:
            self.ua.rSDP = previous
        return result

    def _recvEventUpdate(self, event: Any, eh: Any) -> Any:
        ua = self.ua
        body = event.getData()
        eh = ua.with_session_headers(eh)
        if body is None:
            # The other leg's body-less re-INVITE: Sippy would compare a None
            # SDP and raise. Send it on without a body, and hold the ACK for
            # the answer (see GatewayUacUpdating).
            max_forwards = None
            if event.max_forwards is not None:
                if event.max_forwards <= 0:
                    ua.equeue.append(CCEventFail((483, "Too Many Hops"), rtime=event.rtime))
                    return None
                max_forwards = SipMaxForwards(number=event.max_forwards - 1)
            req = ua.genRequest("INVITE", None, extra_headers=eh, max_forwards=max_forwards)
            ua.prev_lsdp = ua.lSDP
            ua.bodyless_out = True
            ua.newUacTransaction(req, req_extra_headers=eh)
            return (ua.UacStateUpdating,)
        if not getattr(body, "needs_update", False) or ua.on_local_sdp_change is None:
            ua.prev_lsdp = ua.lSDP
        ua.bodyless_out = False
        return super()._recvEventUpdate(event, eh)

    # Sippy dispatches through these tables of functions, not by method lookup.
    recv_request_handlers = {
        **UaStateConnected.recv_request_handlers,
        "INVITE": _recvRequestInvite,
        "UPDATE": _recvRequestUpdate,
    }
    recv_event_handlers = {**UaStateConnected.recv_event_handlers, CCEventUpdate: _recvEventUpdate}


class GatewayUacUpdating(UacStateUpdating):  # type: ignore[misc]
    """The gateway's re-INVITE on this leg awaits its answer."""

    def recvResponse(self, resp: Any, tr: Any) -> Any:
        ua = self.ua
        code, phrase = resp.getSCode()
        body = resp.getBody()
        if 200 <= code < 300:
            if ua.bodyless_out and body is not None:
                # The answer to this offer is in the other leg's ACK: hold our
                # ACK until it comes (Sippy's own late-media path, pending_tr).
                tr.uack = True
                ua.pending_tr = tr
            ua.bodyless_out = False
            ua.session_answered(resp)
            ua.refresh_target(resp)
            return super().recvResponse(resp, tr)
        if code < 300 or code == 481:
            # 1xx as Sippy does; 481: the dialog is gone, and Sippy ends it (RFC 3261 section 12.2.1.2).
            return super().recvResponse(resp, tr)
        # Sippy forgets the local SDP on a rejected re-INVITE and ends the call
        # on 408: the peer only refused this offer (488, 491, 5xx) or did not
        # answer it. The session goes on with the SDP both sides had, and the
        # rejection is relayed to the leg that asked.
        ua.lSDP = ua.prev_lsdp
        ua.bodyless_out = False
        event = CCEventFail((code, phrase), rtime=resp.rtime, origin=ua.origin)
        event.reinvite_rejected = True
        if resp.countHFs("reason") > 0:
            event.reason_rfc3326 = resp.getHFBody("reason")
        log.info(
            "call {call_id}: a re-INVITE was rejected {code} {phrase}; the call goes on",
            call_id=ua.call_id,
            code=code,
            phrase=phrase,
        )
        ua.equeue.append(event)
        return (ua.UaStateConnected,)

    def recvEvent(self, event: Any) -> Any:
        # Sippy's UacStateUpdating has no event table: a method handles every event.
        if isinstance(event, CCEventUpdate):
            return _refuse_crossing_offer(self, event, event.getExtraHeaders())
        return super().recvEvent(event)


class GatewayUasUpdating(UasStateUpdating):  # type: ignore[misc]
    """The peer's re-INVITE on this leg awaits the other leg's answer."""

    def _recvEventConnect(self, event: Any, eh: Any) -> Any:
        ua = self.ua
        cdata = self._getConnectData(event)
        if cdata is None:
            return None
        code, phrase, body = cdata
        terms: SessionTerms | None = ua.pending_terms
        if terms is not None:
            # Sippy's 2xx to a relayed refresh carries no Session-Expires (RFC 4028 section 9).
            eh = tuple(eh or ()) + tuple(terms.headers())
        # A body-less re-INVITE gets the offer in this 2xx: wait for the ACK and
        # its answer (Sippy's 2xx here does not listen for the ACK).
        ua.sendUasResponse(
            code, phrase, body, (ua.lContact,), extra_headers=eh, ack_wait=ua.bodyless_in
        )
        ua.bodyless_in = False
        ua.pending_terms = None
        ua.session_refreshed(terms)
        return (ua.UaStateConnected,)

    def _recvEventFail(self, event: Any, eh: Any) -> Any:
        # Sippy forgets the remote SDP when the other leg rejects the offer:
        # the session keeps the SDP it had, and the next identical refresh is
        # still answered here.
        ua = self.ua
        self._sendFailResponse(event, eh)
        ua.rSDP = ua.prev_rsdp
        ua.bodyless_in = False
        ua.pending_terms = None
        return (ua.UaStateConnected,)

    # Sippy dispatches through these tables of functions, not by method lookup.
    recv_event_handlers = {
        **UasStateUpdating.recv_event_handlers,
        CCEventConnect: _recvEventConnect,
        CCEventFail: _recvEventFail,
        CCEventUpdate: _refuse_crossing_offer,
    }


def _loose_routes(state: Any, resp: Any) -> None:
    """Sippy's route set from a 1xx/2xx, without its outbound-proxy rewrite.

    With ``outbound_proxy`` set (the vendor leg through the edge), Sippy puts
    the first Record-Route in the Request-URI and the peer's Contact in the
    Route set: strict routing, which the edge (a loose router, RFC 3261
    section 16.12) takes as a request for itself. The route set is kept as
    received instead; requests still go to the edge, the first route.
    """
    outbound = state.ua.outbound_proxy
    state.ua.outbound_proxy = None
    try:
        UacStateTrying.updateRoutes(state, resp)
    finally:
        state.ua.outbound_proxy = outbound


class GatewayUacTrying(UacStateTrying):  # type: ignore[misc]
    """The vendor leg's INVITE sent: routes kept loose (see :func:`_loose_routes`)."""

    def updateRoutes(self, resp: Any) -> None:
        _loose_routes(self, resp)


class GatewayUacRinging(UacStateRinging):  # type: ignore[misc]
    """The vendor leg ringing: routes kept loose (see :func:`_loose_routes`)."""

    def updateRoutes(self, resp: Any) -> None:
        _loose_routes(self, resp)
