"""One bridged call: the LiveVox leg, the vendor leg, their media, and how the call ends.

The LiveVox leg (``ua_a``, Sippy's UAS) is answered by Sippy; its events go
to the vendor leg (``ua_o``, a UAC) and back, as in Sippy's ``b2bua_simple``.
What this class adds:

- the call record is written before the vendor leg is placed;
- the vendor leg fails over across the configured endpoints on timeout or
  5xx, with the gateway's own setup timers (no progress, no answer) and a
  maximum call length, each ending the call with a ``Reason``;
- media is attached to the vendor leg (docs/design.md, pitfall 6), so LiveVox's
  session refreshes stay identical and are answered locally;
- every event that may end the call is reported to the call store, which
  decides once what it means (:mod:`lvgateway.calls.outcome`); this class
  carries out what each leg is told;
- the agent's :class:`~lvgateway.agents.interfaces.Reservation` is released
  once the call is over on the SIP side, never before its record is settled;
- a vendor REFER's dispositions come from every source a vendor may use
  (:func:`~lvgateway.calls.disposition.disposition_from_request`), and its
  final NOTIFY carries the transfer's status at LiveVox;
- a vendor's 3xx is followed only toward a configured endpoint; any other
  redirect is a failure of that endpoint (failover, else 503 to LiveVox),
  never relayed to LiveVox.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from sippy.CCEvents import (
    CCEventConnect,
    CCEventDisconnect,
    CCEventFail,
    CCEventRedirect,
    CCEventRing,
    CCEventTry,
)
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from lvgateway.agents.interfaces import Reservation
from lvgateway.calls.disposition import disposition_from_request
from lvgateway.calls.interfaces import ICalls
from lvgateway.calls.outcome import (
    CallEvent,
    Ending,
    EventKind,
    LegAction,
    Outcome,
    TransferStatus,
)
from lvgateway.calls.records import InviteFacts
from lvgateway.config.model import VendorConfig
from lvgateway.media.interfaces import IMediaSession
from lvgateway.sip.dialogs import snapshot
from lvgateway.sip.edge_reason import EdgeReasonLog
from lvgateway.sip.headers import cased, context_headers, reason
from lvgateway.sip.session_timer import SessionTerms, TooSmall, offer_headers
from lvgateway.sip.ua_states import rejected
from lvgateway.sip.user_agent import GatewayUA
from lvgateway.sip.vendor import ResolvedEndpoint

__all__ = ["BridgedCall", "CallPhase"]

log = Logger()


class CallPhase(enum.Enum):
    """Where a bridged call is."""

    ACCEPTING = "accepting"  # writing the record
    DIALLING = "dialling"  # the vendor leg is being placed
    CONNECTED = "connected"
    TRANSFERRING = "transferring"  # the vendor is done; LiveVox leg up until the store says
    ENDED = "ended"


class BridgedCall:
    """A LiveVox call bridged to the AI vendor.

    :param reactor: for the call's timers.
    :param global_config: Sippy's, from the SIP stack.
    :param calls: the call store.
    :param facts: what the INVITE said.
    :param invite_headers: the INVITE's headers, for pass-through.
    :param vendor: the vendor's configuration (timers, headers).
    :param endpoints: where to place the vendor leg, in failover order.
    :param media: the call's media session.
    :param on_finished: called once when both legs are down and the store told.
    :param reservation: the agent held for this call; released when it finishes.
    :param source: where the INVITE came from, for the log.
    :param session_min_se: the shortest session interval accepted (``[sip] session_min_se``).
    """

    def __init__(
        self,
        reactor: Any,
        global_config: dict[str, Any],
        calls: ICalls,
        facts: InviteFacts,
        invite_headers: Sequence[tuple[str, str]],
        vendor: VendorConfig,
        endpoints: Callable[[], Any],
        media: IMediaSession,
        on_finished: Callable[[BridgedCall], None],
        reservation: Reservation | None = None,
        source: tuple[str, int] | None = None,
        session_min_se: int = 90,
    ) -> None:
        self._reactor = reactor
        self._global_config = global_config
        self._calls = calls
        self.facts = facts
        self._invite_headers = list(invite_headers)
        self._vendor = vendor
        self._endpoints = endpoints
        self.media = media
        self._on_finished = on_finished
        self.reservation = reservation
        self.source = source
        self._session_min_se = session_min_se
        self.call_id: str | None = None
        #: Called with why when the vendor leg failed to set up with no
        #: endpoint left (5xx, 408, no progress); the router sets it.
        self.on_vendor_failure: Callable[[str], None] = lambda why: None
        #: Where the edge's reasons for failing a vendor are logged (the router's, shared).
        self.edge_reasons: EdgeReasonLog | None = None
        #: When the vendor last answered an in-dialog OPTIONS (reactor clock).
        self._vendor_alive_at: float | None = None
        self._pinging = False
        self.phase = CallPhase.ACCEPTING
        self.ua_a = GatewayUA(
            global_config,
            self._from_livevox,
            call_id="-",
            clock=reactor,
            min_se=session_min_se,
        )
        self.ua_a.local_ua = global_config.get("_uaname")
        self.ua_a.on_session_expired = lambda why: self._session_expired("LiveVox", why)
        self.ua_o: GatewayUA | None = None
        self._try_event: Any = None
        self._remaining: list[ResolvedEndpoint] = []
        self._all_endpoints: list[ResolvedEndpoint] = []
        self._redirects = 0
        self._transfer_pending = False
        self._timers: dict[str, IDelayedCall] = {}
        self._accepting = True  # the record is being written
        self._early_end: CallEvent | None = None  # what ended it meanwhile
        self._livevox_down = False
        self._vendor_down = True
        #: The media refused this vendor leg's answer (its SRTP); see :meth:`_vendor_answer_told`.
        self._answer_refused = False
        self.sip_code: int | None = None
        #: Per side (``livevox``, ``vendor``), the SDP the media was last told of, as that side sent it.
        self._media_sdp: dict[str, Any] = {}
        #: Per side, that SDP as of the last offer/answer both legs completed.
        self._agreed_sdp: dict[str, Any] = {}
        #: When the INVITE was accepted and the vendor answered, on the reactor's clock.
        self.started_at: float = reactor.seconds()
        self.connected_at: float | None = None

    # -- the LiveVox leg ----------------------------------------------------

    def _from_livevox(self, event: Any, ua: Any) -> None:
        """An event from the LiveVox leg: the INVITE itself, a hang-up, a re-INVITE."""
        if isinstance(event, CCEventTry) and self._try_event is None:
            self._try_event = event
            if isinstance(self.ua_a.pending_terms, TooSmall):
                self._too_small(self.ua_a.pending_terms)
                return
            self._accept()
            return
        if rejected(event):
            if self.ua_o is not None and self.phase is CallPhase.CONNECTED:
                self.ua_o.recvEvent(event)  # the vendor's re-INVITE: LiveVox's refusal goes back
                self._restore_media("vendor")
            return
        if isinstance(event, CCEventDisconnect | CCEventFail):
            self._livevox_down = True
            self._report(CallEvent(EventKind.LIVEVOX_HANGUP))
            return
        if self.ua_o is not None and self.phase in (CallPhase.DIALLING, CallPhase.CONNECTED):
            self.ua_o.recvEvent(event)
            if isinstance(event, CCEventConnect):
                self._media_agreed()  # LiveVox answered the vendor's offer
            self._note_dialogs()  # a relayed re-INVITE or UPDATE takes a vendor-leg CSeq

    def _too_small(self, too_small: TooSmall) -> None:
        """The INVITE's Session-Expires is under the floor: 422 with Min-SE, before any record."""
        log.info(
            "INVITE for {agent} refused 422: its Session-Expires is under {min_se}",
            agent=self.facts.agent,
            min_se=too_small.min_se,
        )
        self.ua_a.pending_terms = None
        event = CCEventFail((422, "Session Interval Too Small"))
        event.extra_headers = (cased("Min-SE", str(too_small.min_se)),)
        self.sip_code = 422
        self._livevox_down = True
        self._accepting = False
        self.phase = CallPhase.ENDED
        self.ua_a.recvEvent(event)
        self._maybe_finished()

    def _session_expired(self, leg: str, why: str) -> None:
        """A leg's session timer ran out (RFC 4028 section 10): end the call, both legs with a Reason."""
        if self.phase is not CallPhase.CONNECTED:
            return
        self._report(CallEvent(EventKind.SESSION_EXPIRED, text=f"{why} ({leg} leg)"))

    def _accept(self) -> None:
        """Write the record, then place the vendor leg."""
        d = self._calls.accept(self.facts)
        d.addCallbacks(self._accepted, self._not_accepted)
        d.addErrback(
            lambda f: log.failure("call {call_id}: accepting it failed", f, call_id=self.call_id)
        )

    def _accepted(self, record: Any) -> None:
        self.call_id = record.call_id
        self.ua_a.call_id = record.call_id
        self._accepting = False
        if self._early_end is not None:
            # Ended while the record was being written (a CANCEL, the drain):
            # now that the store knows the call, it hears the end.
            self._report(self._early_end)
            return
        self.phase = CallPhase.DIALLING
        self._timers["max_duration"] = self._reactor.callLater(
            self._vendor.max_call_duration,
            self._timed_out,
            EventKind.DURATION_TIMEOUT,
            "maximum call duration reached",
        )
        d = self._endpoints()
        d.addCallback(self._dial_first)
        d.addErrback(self._no_endpoint)

    def _not_accepted(self, failure: Any) -> None:
        log.error(
            "INVITE for {agent} refused with 503: the call record cannot be written: {error}",
            agent=self.facts.agent,
            error=failure.getErrorMessage(),
        )
        self._accepting = False
        self._report(CallEvent(EventKind.STORE_FAILED))

    def _no_endpoint(self, failure: Any) -> None:
        log.error(
            "call {call_id}: no vendor endpoint resolves: {error}",
            call_id=self.call_id,
            error=failure.getErrorMessage(),
        )
        self._report(CallEvent(EventKind.SETUP_FAILED, code=503, text="no vendor endpoint"))

    # -- the vendor leg -------------------------------------------------------

    def _dial_first(self, endpoints: list[ResolvedEndpoint]) -> None:
        self._remaining = list(endpoints)
        self._all_endpoints = list(endpoints)
        self._dial_next()

    def _dial_next(self) -> None:
        """Place the vendor leg on the next endpoint, or fail the call when none is left."""
        if self._livevox_down or self.phase is not CallPhase.DIALLING:
            return
        if not self._remaining:
            self._report(CallEvent(EventKind.SETUP_FAILED, code=503, text="Service Unavailable"))
            return
        endpoint = self._remaining.pop(0)
        assert self.call_id is not None
        headers = context_headers(
            self.call_id,
            self.facts.agent,
            self.facts.dnis,
            self.facts.ani,
            self.facts.service_id,
            self._invite_headers,
            self._vendor.static_headers,
            self._vendor.pass_through_headers,
        )
        if self._vendor.session_expires > 0:  # RFC 4028 towards the vendor too
            headers += offer_headers(self._vendor.session_expires, self._session_min_se)
        transport = {} if endpoint.transport == "udp" else {"nh_transport": endpoint.transport}
        ua = GatewayUA(
            self._global_config,
            self._from_vendor,
            endpoint.username,
            endpoint.password,
            (endpoint.address, endpoint.port),
            call_id=self.call_id,
            on_refer=self._vendor_referred,
            extra_headers=headers,
            clock=self._reactor,
            min_se=self._session_min_se,
            **transport,
        )
        if endpoint.via is not None:
            # Through the edge: the Request-URI and To keep the vendor's domain;
            # every request of the leg goes to the edge, which resolves it.
            ua.outbound_proxy = endpoint.via
        ua.on_session_expired = lambda why: self._session_expired("vendor", why)
        ua.local_ua = self._global_config.get("_uaname")
        ua.on_local_sdp_change = partial(self._tell_media, "livevox")
        ua.on_remote_sdp_change = partial(self._tell_media, "vendor")
        self.ua_o = ua
        self._vendor_down = False
        self.endpoint = endpoint
        self._answer_refused = False
        # Before the INVITE's offer: after a failover, it is the next endpoint's profile.
        self.media.use_vendor_profile(endpoint.uri, endpoint.media_profile, endpoint.codec_map)
        cid, cli, _cld, body, auth, caller_name = self._try_event.getData()
        event = CCEventTry(
            (
                None,
                cli,
                endpoint.user or self.facts.dnis,
                body.getCopy() if body is not None else None,
                None,
                caller_name,
            ),
            rtime=self._try_event.rtime,
        )
        if self._try_event.max_forwards is not None:  # RFC 7332: one hop less
            event.max_forwards = max(0, self._try_event.max_forwards - 1)
        self._arm("no_progress", self._vendor.no_progress_time, self._no_progress)
        self._arm(
            "no_answer",
            self._vendor.no_answer_time,
            self._timed_out,
            EventKind.SETUP_TIMEOUT,
            "vendor did not answer",
        )
        # Debug: "accepted", "connected" and "ended" are the info lines of a call (a failed
        # vendor leg says which endpoint at warn); a fourth line per call cost 1.5 % of its CPU.
        log.debug(
            "call {call_id}: placing the vendor leg to {uri} ({address}:{port})",
            call_id=self.call_id,
            uri=endpoint.uri,
            address=endpoint.next_hop[0],
            port=endpoint.next_hop[1],
        )
        ua.recvEvent(event)
        self._check_invite_size(ua)

    def _check_invite_size(self, ua: Any) -> None:
        if self.endpoint.transport != "udp":
            return  # over TLS or TCP from the edge, size does not fragment anything
        data = getattr(getattr(ua, "tr", None), "data", None)
        if data is not None and len(data) > self._vendor.max_invite_bytes:
            log.warn(
                "call {call_id}: the vendor INVITE is {size} bytes, over {limit}: UDP may fragment it;"
                " trim [vendor] headers or pass_through_headers",
                call_id=self.call_id,
                size=len(data),
                limit=self._vendor.max_invite_bytes,
            )

    def _from_vendor(self, event: Any, ua: Any) -> None:
        """An event from the vendor leg: progress, answer, failure, hang-up, re-INVITE."""
        if ua is not self.ua_o:
            return  # a leg abandoned by failover
        if isinstance(event, CCEventRing):
            self._cancel("no_progress")
            self.ua_a.recvEvent(event)
        elif isinstance(event, CCEventConnect):
            self._connected(event)
        elif rejected(event):
            if self.phase is CallPhase.CONNECTED:
                self.ua_a.recvEvent(event)  # LiveVox's re-INVITE: the vendor's refusal goes back
                self._restore_media("livevox")
        elif isinstance(event, CCEventRedirect):
            self._vendor_redirected(event)
        elif isinstance(event, CCEventFail):
            self._vendor_failed(event)
        elif isinstance(event, CCEventDisconnect):
            self._vendor_hung_up(event)
        else:
            self.ua_a.recvEvent(event)
            self._note_dialogs()  # a relayed re-INVITE takes a LiveVox-leg CSeq

    def _connected(self, event: Any) -> None:
        first = self.phase is CallPhase.DIALLING
        terms: SessionTerms | None = None
        self._cancel("no_progress")
        self._cancel("no_answer")
        if first:
            self.phase = CallPhase.CONNECTED
            self.connected_at = self._reactor.seconds()
            self.media.mark_answered()
            pending = self.ua_a.pending_terms
            self.ua_a.pending_terms = None
            if isinstance(pending, SessionTerms):
                terms = pending
                event.extra_headers = tuple(terms.headers())
            assert self.call_id is not None
            d = self._calls.connected(self.call_id)
            d.addErrback(
                lambda f: log.failure(
                    "call {call_id}: noting the answer failed", f, call_id=self.call_id
                )
            )
            log.info("call {call_id}: connected to the vendor", call_id=self.call_id)
        self.ua_a.recvEvent(event)
        self._media_agreed()  # the vendor answered LiveVox's offer
        if terms is not None:
            self.ua_a.session_refreshed(terms)  # the 200 granted them: LiveVox's session runs
        self._note_dialogs()  # both legs confirmed; later, a re-INVITE answered

    # -- media across offer/answer ------------------------------------------------

    def _tell_media(self, side: str, body: Any, result_callback: Callable[..., Any]) -> Any:
        """Sippy's SDP hook on the vendor leg: note the side's SDP as sent, then hand it to the media."""
        self._media_sdp[side] = body.getCopy() if body is not None else None
        if side == "livevox":
            return self.media.on_caller_sdp_change(body, result_callback)
        if self.phase is CallPhase.DIALLING:
            result_callback = partial(self._vendor_answer_told, result_callback)
        return self.media.on_callee_sdp_change(body, result_callback)

    def _vendor_answer_told(
        self, result_callback: Callable[..., Any], body: Any, ex: Any = None
    ) -> Any:
        """The media's verdict on the vendor's answer during set-up; a refusal is noted for failover.

        Sippy turns the refusal into a ``CCEventFail`` with the error's code
        (488) and BYEs the vendor leg itself; :meth:`_vendor_failed` must
        tell it from a 488 the vendor sent: it is this endpoint's media that
        failed, so the next endpoint is tried.
        """
        if ex is not None:
            self._answer_refused = True
        return result_callback(body, ex=ex) if ex is not None else result_callback(body)

    def _media_agreed(self) -> None:
        """An offer/answer completed on both legs: the SDPs the media has are the call's."""
        self._agreed_sdp = dict(self._media_sdp)

    def _restore_media(self, side: str) -> None:
        """``side``'s offer was refused: point its media back at the SDP both legs last agreed on.

        Sippy calls the SDP hook with the offer as it goes to the other leg,
        so the media already sends to the offer's address; when that leg
        refuses it, Sippy restores nothing (and the UA states here restore
        only the dialog's SDP). Left so, a refused offer naming a new address
        would send that side's audio where nobody listens.
        """
        agreed = self._agreed_sdp.get(side)
        told = self._media_sdp.get(side)
        if agreed is None or told is None or str(agreed) == str(told):
            return
        log.info(
            "call {call_id}: {side}'s offer was refused: its media goes back to the agreed SDP",
            call_id=self.call_id,
            side=side,
        )

        def restored(body: Any, ex: Any = None) -> None:
            if ex is not None:
                log.warn(
                    "call {call_id}: restoring {side}'s media failed: {error}",
                    call_id=self.call_id,
                    side=side,
                    error=ex,
                )

        self._tell_media(side, agreed.getCopy(), restored)

    def _vendor_failed(self, event: Any) -> None:
        code, phrase = event.getData()[:2]
        self._vendor_down = True
        why = getattr(self.ua_o, "edge_reason", None)
        if why is not None and self.edge_reasons is not None:
            self.edge_reasons.note(self.endpoint.uri, why)
        if self.phase is CallPhase.DIALLING and self._answer_refused:
            self._media_refused(event)
            return
        if self.phase is CallPhase.DIALLING and (code >= 500 or code == 408):
            if self._remaining:
                log.warn(
                    "call {call_id}: the vendor endpoint answered {code} {phrase}: failing over",
                    call_id=self.call_id,
                    code=code,
                    phrase=phrase,
                )
                self._dial_next()
                return
            log.warn(
                "call {call_id}: the vendor endpoint answered {code} {phrase};"
                " no endpoint left: the call fails",
                call_id=self.call_id,
                code=code,
                phrase=phrase,
            )
            self.on_vendor_failure(f"the vendor answered {code} {phrase}")
        self._report(CallEvent(EventKind.SETUP_FAILED, code=code, text=phrase))

    def _media_refused(self, event: Any) -> None:
        """The media refused the vendor's answer (SRTP missing): next endpoint, else fail with its Reason.

        The media logged the endpoint and the cause; Sippy BYEs the leg. Like
        a 488 from the vendor, it says nothing of the vendor's health.
        """
        code, phrase = event.getData()[:2]
        why = event.reason_rfc3326.reason if event.reason_rfc3326 is not None else phrase
        if self._remaining:
            self._dial_next()
            return
        self._report(CallEvent(EventKind.SETUP_FAILED, code=code, text=why))

    def _vendor_redirected(self, event: Any) -> None:
        """The vendor answered 3xx: follow it only to a configured endpoint, else fail over (never to LiveVox)."""
        code, phrase = event.getData()[:2]
        targets = event.getData()[3] if len(event.getData()) > 3 else ()
        self._vendor_down = True
        if self.phase is not CallPhase.DIALLING:
            return
        self._redirects += 1
        for target in targets or ():
            url = getattr(target, "url", target)  # Sippy gives SipAddress objects
            host, port = str(url.host).lower(), int(url.port or 5060)
            for endpoint in self._all_endpoints:
                configured = _uri_host(endpoint.uri)
                if port == endpoint.port and host in (endpoint.address, configured):
                    if self._redirects > len(self._all_endpoints):
                        break  # a redirect loop among configured endpoints
                    log.info(
                        "call {call_id}: the vendor redirected {code} to {uri}, a configured"
                        " endpoint: following it",
                        call_id=self.call_id,
                        code=code,
                        uri=endpoint.uri,
                    )
                    self._remaining.insert(0, endpoint)
                    self._dial_next()
                    return
        log.warn(
            "call {call_id}: the vendor redirected {code} {phrase} to {targets}, not a configured"
            " endpoint: treated as a failure of that endpoint",
            call_id=self.call_id,
            code=code,
            phrase=phrase,
            targets=", ".join(str(t) for t in targets or ()),
        )
        if self._remaining:
            self._dial_next()
            return
        self._report(CallEvent(EventKind.SETUP_FAILED, code=503, text="Service Unavailable"))

    def _disposition(self, headers: list[tuple[str, str]] | None) -> Any:
        if not headers:
            return None
        return disposition_from_request(headers, self.call_id, self._vendor.refer_targets)

    def _vendor_hung_up(self, event: Any) -> None:
        """The vendor sent BYE (or its leg dropped): report it with the disposition it carried."""
        self._vendor_down = True
        headers = self.ua_o.bye_headers if self.ua_o is not None else None
        self._report(CallEvent(EventKind.VENDOR_HANGUP, self._disposition(headers)))

    def _vendor_referred(self, headers: list[tuple[str, str]]) -> None:
        """The vendor sent REFER: a transfer to a human. The customer stays on the line.

        Its final NOTIFY waits for the transfer's posts at LiveVox; a REFER
        that starts no transfer (the call is ending otherwise) is declined
        there, unless a transfer is already under way, whose status it shares.
        """
        log.info("call {call_id}: the vendor asked for a transfer (REFER)", call_id=self.call_id)
        ending = self._end(CallEvent(EventKind.VENDOR_REFER, self._disposition(headers)))
        if ending.transferred is None and not self._transfer_pending and self.ua_o is not None:
            self.ua_o.refer_done(603, "Decline")

    def _transfer_settled(self, status: TransferStatus) -> None:
        """The transfer's posts are made (or given up): the REFER's final NOTIFY, before any BYE."""
        self._transfer_pending = False
        log.info(
            "call {call_id}: transfer at LiveVox: {status}",
            call_id=self.call_id,
            status=status.sipfrag,
        )
        if self.ua_o is not None and not self._vendor_down:
            self.ua_o.refer_done(status.code, status.phrase)

    # -- ending -----------------------------------------------------------

    def _timed_out(self, kind: EventKind, text: str) -> None:
        log.warn("call {call_id}: {text}: ending it", call_id=self.call_id, text=text)
        self._report(CallEvent(kind, text=text))

    def check_media(self) -> bool:
        """End the call if a side has sent no RTP past its media timeout; return whether it did."""
        if self.phase is not CallPhase.CONNECTED:
            return False
        side = self.media.silent_side()
        if side is None:
            return False
        text = f"no RTP from the {side} side"
        log.warn("call {call_id}: {text}: ending it", call_id=self.call_id, text=text)
        self._report(CallEvent(EventKind.MEDIA_SILENCE, text=text))
        return True

    def check_vendor(self) -> None:
        """Ask a vendor silent past ``silence_timeout`` (no RTP, no RTCP) whether it is still there.

        A bot may send nothing while it listens, and RTCP only every few
        seconds: silence alone proves nothing. An in-dialog OPTIONS does:
        unanswered (or 481), the vendor is gone and the customer goes to a
        person at once, instead of waiting out the media timeout.
        """
        ua = self.ua_o
        if self.phase is not CallPhase.CONNECTED or ua is None or self._vendor_down:
            return
        timeout = self._vendor.silence_timeout
        silent = self.media.silence("vendor")
        if silent is None or silent < timeout or self._pinging:
            return
        now = self._reactor.seconds()
        if self._vendor_alive_at is not None and now - self._vendor_alive_at < timeout:
            return
        self._pinging = True
        d = ua.ping(self._reactor, self._vendor.options_timeout)
        self._note_dialogs()  # the OPTIONS took a vendor-leg CSeq
        d.addCallback(self._pinged, ua, silent)
        d.addErrback(
            lambda f: log.failure(
                "call {call_id}: pinging the vendor failed", f, call_id=self.call_id
            )
        )

    def _pinged(self, alive: bool, ua: Any, silent: float) -> None:
        self._pinging = False
        if alive:
            self._vendor_alive_at = self._reactor.seconds()
            return
        if ua is self.ua_o:
            self.vendor_gone(f"no RTP or RTCP for {silent:.1f}s and no answer to OPTIONS")

    def vendor_gone(self, why: str) -> None:
        """The vendor is dead: hand the customer to a person (the outcome says how)."""
        if self.phase is not CallPhase.CONNECTED:
            return
        log.warn("call {call_id}: the vendor is gone ({why})", call_id=self.call_id, why=why)
        self._report(CallEvent(EventKind.VENDOR_DIED, text="vendor gone"))

    def _no_progress(self) -> None:
        """No provisional response from this endpoint in time: try the next one."""
        if self.phase is not CallPhase.DIALLING:
            return
        uri = self.endpoint.uri
        log.warn(
            "call {call_id}: no progress from {uri}: {next}",
            call_id=self.call_id,
            uri=uri,
            next="failing over" if self._remaining else "no endpoint left: the call fails",
        )
        abandoned = self.ua_o
        self.ua_o = None
        if abandoned is not None:
            abandoned.recvEvent(CCEventDisconnect())
        if self._remaining:
            self._dial_next()
        else:
            self.on_vendor_failure(f"no progress from {uri}")
            self._report(
                CallEvent(EventKind.SETUP_TIMEOUT, code=408, text="vendor did not progress")
            )

    def end_now(self, text: str) -> bool:
        """The drain's time is up: hand the call to a person; return whether this ended it."""
        return self._report(CallEvent(EventKind.DRAIN_TIMEOUT, text=text)).ends_call

    def hang_up_livevox(self, text: str) -> None:
        """End both legs now: the store has closed a transferred call with LiveVox."""
        self._send_to_vendor(self._bye(200, text))
        self._hang_up_livevox_now(200, text)

    def report(self, event: CallEvent) -> Outcome:
        """An event the call store learned of (LiveVox never routed the call): carry it out."""
        outcome = self._report(event)
        if event.kind is EventKind.NOT_ROUTED and outcome.ends_call:
            host, port = self.source or ("?", 0)
            log.warn(
                "call {call_id}: LiveVox shows agent {agent} with no such call: a call it never"
                " routed, from {host}:{port}, ended with nothing posted",
                call_id=self.call_id,
                agent=self.facts.agent,
                host=host,
                port=port,
            )
        return outcome

    def _report(self, event: CallEvent) -> Outcome:
        """Tell the call store what happened and carry out its decision."""
        return self._end(event).outcome

    def _end(self, event: CallEvent) -> Ending:
        """:meth:`_report`, returning the store's whole answer."""
        ending = self._calls.end(self.call_id, event)
        if ending.transferred is not None:
            self._transfer_pending = True
            ending.transferred.addCallback(self._transfer_settled)
            ending.transferred.addErrback(
                lambda f: log.failure(
                    "call {call_id}: reporting the transfer failed", f, call_id=self.call_id
                )
            )
        ending.recorded.addErrback(
            lambda f: log.failure(
                "call {call_id}: recording its {event} failed",
                f,
                call_id=self.call_id,
                event=event.kind.value,
            )
        )
        outcome = ending.outcome
        if outcome.ends_call and self.call_id is None:
            self._early_end = event
        if outcome.ends_call:
            for name in list(self._timers):
                self._cancel(name)
            if outcome.livevox_leg is LegAction.HOLD_FOR_TRANSFER:
                self.phase = CallPhase.TRANSFERRING
                if self._vendor.mute_on_transfer:
                    # The customer waits for a person: the bot no longer speaks to them.
                    self.media.mute("vendor")
            else:
                self.phase = CallPhase.ENDED
            log.info(
                "call {call_id}: ended ({reason}{transfer})",
                call_id=self.call_id,
                reason=outcome.end_reason,
                transfer=", transfer pending" if self.phase is CallPhase.TRANSFERRING else "",
            )
        if outcome.vendor_leg is LegAction.END:
            self._send_to_vendor(self._bye(outcome.cause, outcome.text))
        if outcome.livevox_leg is LegAction.END:
            if self.connected_at is None:
                self._fail_livevox(outcome.cause, outcome.text)
            else:
                self._hang_up_livevox_now(outcome.cause, outcome.text)
        self._maybe_finished()
        return ending

    def _note_dialogs(self) -> None:
        """Give the call store each leg's dialog, so a restart can end the legs with BYE (:mod:`lvgateway.sip.orphans`)."""
        if self.call_id is None or self.phase is not CallPhase.CONNECTED:
            return
        dialogs: dict[str, dict[str, Any]] = {}
        for leg, ua in (("livevox", self.ua_a), ("vendor", self.ua_o)):
            state = snapshot(ua) if ua is not None else None
            if state is not None:
                dialogs[leg] = state.to_json()
        if dialogs:
            call_id = self.call_id
            self._calls.note_dialogs(call_id, dialogs).addErrback(
                lambda f: log.failure(
                    "call {call_id}: noting its dialogs failed", f, call_id=call_id
                )
            )

    def _fail_livevox(self, code: int, phrase: str) -> None:
        self.sip_code = code
        if not self._livevox_down:
            self._livevox_down = True
            event = CCEventFail((code, phrase))
            event.reason_rfc3326 = reason(code, phrase)
            self.ua_a.recvEvent(event)
        self._maybe_finished()

    def _bye(self, cause: int, text: str) -> Any:
        event = CCEventDisconnect()
        event.reason_rfc3326 = reason(cause, text)
        return event

    def _send_to_vendor(self, event: Any) -> None:
        if self.ua_o is not None and not self._vendor_down:
            self._vendor_down = True
            self.ua_o.recvEvent(event)

    def _hang_up_livevox_now(self, cause: int, text: str) -> None:
        if not self._livevox_down:
            self._livevox_down = True
            self.ua_a.recvEvent(self._bye(cause, text))
        self._maybe_finished()

    def _maybe_finished(self) -> None:
        """Once both legs are down, the end decided and the record settled: release everything."""
        if (
            self._livevox_down
            and (self._vendor_down or self.ua_o is None)
            and self.phase in (CallPhase.ENDED, CallPhase.TRANSFERRING)
            and not self._accepting
        ):
            self.phase = CallPhase.ENDED
            for name in list(self._timers):
                self._cancel(name)
            for ua in (self.ua_a, self.ua_o):
                if ua is not None:
                    ua.stop_session_timer()
            self.media.release()
            if self.reservation is not None:
                self.reservation.release()
            callback, self._on_finished = self._on_finished, lambda call: None
            callback(self)

    # -- timers -------------------------------------------------------------

    def _arm(self, name: str, delay: float, f: Callable[..., None], *args: Any) -> None:
        self._cancel(name)
        self._timers[name] = self._reactor.callLater(delay, f, *args)

    def _cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()


def _uri_host(uri: str) -> str:
    """The host of a configured ``sip:user@host:port`` URI, lower case."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.rsplit("@", 1)[-1]
    rest = rest.split(";", 1)[0]
    if rest.startswith("["):
        return rest[1 : rest.find("]")].lower()
    return rest.split(":", 1)[0].lower()
