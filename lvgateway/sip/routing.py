"""Where each new SIP request goes: the agent pool decides, the call map keeps the live calls.

:class:`CallRouter` is the SIP stack's request callback. An INVITE's 899
number is the Request-URI user, in any of its forms; the pool answers
whether its agent may take a call, and a refusal gets its own code: unknown
number 404, agent on a call 486, logged out, closed or paused 480, vendor
unavailable or draining 503. An accepted INVITE becomes a
:class:`~lvgateway.sip.call.BridgedCall`. The router is also the call
store's hold on the calls' legs (:class:`~lvgateway.calls.interfaces.ICallLegs`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from lvgateway.agents.interfaces import IAgentPool, Refusal
from lvgateway.calls.interfaces import ICallLegs, ICalls
from lvgateway.calls.outcome import CallEvent
from lvgateway.calls.records import InviteFacts, header_lookup
from lvgateway.config.model import VendorConfig
from lvgateway.media.errors import MediaUnavailableError
from lvgateway.media.interfaces import IMediaRelay
from lvgateway.sip import orphans
from lvgateway.sip.call import BridgedCall
from lvgateway.sip.edge_reason import EdgeReasonLog
from lvgateway.sip.headers import cased, request_headers
from lvgateway.sip.metrics import SipMetrics
from lvgateway.sip.overload import InviteShedder
from lvgateway.sip.vendor import VendorEndpoints

__all__ = ["REFUSAL_CODES", "CallRouter"]

log = Logger()

#: The SIP response to each of the pool's refusals.
REFUSAL_CODES: dict[Refusal, tuple[int, str]] = {
    Refusal.UNKNOWN_NUMBER: (404, "Not Found"),
    Refusal.ON_CALL: (486, "Busy Here"),
    Refusal.LOGGED_OUT: (480, "Temporarily Unavailable"),
    Refusal.CLOSED: (480, "Temporarily Unavailable"),
    Refusal.PAUSED: (480, "Temporarily Unavailable"),
    Refusal.VENDOR_UNAVAILABLE: (503, "Service Unavailable"),
    Refusal.DRAINING: (503, "Service Unavailable"),
}


def _new_call_id() -> str:
    return uuid.uuid4().hex


def _source(req: Any) -> tuple[str, int] | None:
    """Where a request came from (host, port), as Sippy recorded it."""
    source = getattr(req, "source", None)
    if not source:
        return None
    address = source[0]
    try:
        return (str(address[0]), int(address[1]))
    except (TypeError, IndexError, ValueError):
        return None


def _max_forwards(req: Any) -> int | None:
    """The request's Max-Forwards, if it has a readable one."""
    try:
        if req.countHFs("max-forwards") == 0:
            return None
        return int(req.getHFBody("max-forwards").getNum())
    except Exception:
        return None


@implementer(ICallLegs)
class CallRouter:
    """Route new requests and keep the map of live calls.

    :param reactor: for the calls' timers.
    :param pool: decides who may take a call.
    :param calls: the call store.
    :param media: the media engine.
    :param vendor: the vendor's configuration.
    :param endpoints: the vendor endpoints.
    :param metrics: the SIP metrics.
    :param new_call_id: makes the gateway's call ids (uuid4 hex by default);
        the id is made before the media session, so that every log line of
        the call carries it.
    """

    def __init__(
        self,
        reactor: Any,
        pool: IAgentPool,
        calls: ICalls,
        media: IMediaRelay,
        vendor: VendorConfig,
        endpoints: VendorEndpoints,
        metrics: SipMetrics,
        new_call_id: Callable[[], str] = _new_call_id,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._calls = calls
        self._media = media
        self._vendor = vendor
        self._endpoints = endpoints
        self._metrics = metrics
        self._new_call_id = new_call_id
        #: Called with why when a call's vendor leg failed to set up with no
        #: endpoint left (the SIP service points it at the vendor health).
        self.vendor_setup_failed: Callable[[str], None] = lambda why: None
        #: Sippy's configuration, set by the SIP service once its stack runs.
        self.global_config: dict[str, Any] = {}
        #: New INVITEs and OPTIONS get 503 once this is set (the drain).
        self.draining = False
        #: The shortest session interval a call accepts (``[sip] session_min_se``).
        self.session_min_se = 90
        #: Why /readyz would say 503 (its failing checks), or None: OPTIONS answers agree with it.
        self.unready: Callable[[], str | None] = lambda: None
        #: Decides which new INVITEs are shed for overload (none, by default).
        self.shedder = InviteShedder()
        self.live: set[BridgedCall] = set()
        #: The edge's reasons for failing a vendor, logged once per endpoint and minute.
        self.edge_reasons = EdgeReasonLog(reactor)
        self._idle_waiters: list[Deferred[None]] = []

    def handle_request(self, req: Any, sip_t: Any) -> Any:
        """Sippy's callback for each request outside a dialog.

        The guard in front of Sippy has parsed every header already; should one
        still fail here, the request gets 400 rather than an exception, which
        would leave its server transaction in Sippy's table for good.
        """
        try:
            to_tag = req.getHFBody("to").getTag()
        except Exception:
            return (req.genResponse(400, "Bad Request (malformed To header)"), None, None)
        method = req.getMethod()
        if to_tag is not None:
            return (req.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None)
        if method == "INVITE":
            hops = _max_forwards(req)
            if hops is not None and hops <= 1:
                # RFC 7332: the vendor leg carries one less; it would leave with 0.
                self._metrics.call_result("refused", 483)
                return (req.genResponse(483, "Too Many Hops"), None, None)
            return self._invite(req, sip_t)
        if method == "OPTIONS":
            # A peer that probes with OPTIONS (LiveVox, a dispatcher) sees what /readyz says.
            if self.draining or self.unready() is not None:
                return (req.genResponse(503, "Service Unavailable"), None, None)
            return (req.genResponse(200, "OK"), None, None)
        if method in ("ACK", "CANCEL"):
            return None
        return (req.genResponse(405, "Method Not Allowed"), None, None)

    def _refuse(self, req: Any, code: int, phrase: str, why: str, number: str) -> Any:
        log.info(
            "INVITE to {number} refused {code} {phrase}: {why}",
            number=number,
            code=code,
            phrase=phrase,
            why=why,
        )
        self._metrics.call_result("refused", code)
        return (req.genResponse(code, phrase), None, None)

    def _invite(self, req: Any, sip_t: Any) -> Any:
        number = str(req.getRURI().username or "")
        if self.draining:
            return self._refuse(req, 503, "Service Unavailable", Refusal.DRAINING.value, number)
        shed = self.shedder.check(self._reactor.seconds())
        if shed is not None:
            # No log line per INVITE: the shedder logs when shedding begins and ends.
            self._metrics.call_result("refused", 503)
            resp = req.genResponse(503, "Service Unavailable")
            resp.appendHeader(cased("Retry-After", str(shed.retry_after)))
            return (resp, None, None)
        admission = self._pool.admit(number)
        headers = request_headers(req)
        if admission.user_name is not None:
            session_id = header_lookup(headers).get("session-id") or None
            self._pool.invite_seen(admission.user_name, session_id)
        if admission.refusal is not None:
            code, phrase = REFUSAL_CODES[admission.refusal]
            return self._refuse(
                req, code, phrase, admission.detail or admission.refusal.value, number
            )
        agent = admission.user_name or ""
        reservation = admission.reservation
        call_id = self._new_call_id()
        sip_call_id = str(req.getHFBody("call-id"))
        try:
            media = self._media.new_session(
                call_id, self._endpoints.networks(), sip_call_id=sip_call_id
            )
        except MediaUnavailableError as e:
            if reservation is not None:
                reservation.release()
            return self._refuse(req, 503, "Service Unavailable", f"no media: {e}", number)
        from_url = req.getHFBody("from").getUrl()
        facts = InviteFacts.from_headers(
            agent,
            number,
            headers,
            service_id=admission.service_id,
            ani=from_url.username,
            sip_call_id=sip_call_id,
            call_id=call_id,
        )
        call = BridgedCall(
            self._reactor,
            self.global_config,
            self._calls,
            facts,
            headers,
            self._vendor,
            self._endpoints.in_order,
            media,
            self._finished,
            reservation,
            _source(req),
            self.session_min_se,
        )
        call.on_vendor_failure = self._vendor_setup_failed
        call.edge_reasons = self.edge_reasons
        self.live.add(call)
        self._metrics.active(len(self.live))
        log.info(
            "INVITE to {number} accepted for agent {agent} as call {call_id}",
            number=number,
            agent=agent,
            call_id=call_id,
            sip_call_id=sip_call_id,
        )
        return call.ua_a.recvRequest(req, sip_t)

    def _vendor_setup_failed(self, why: str) -> None:
        try:
            self.vendor_setup_failed(why)
        except Exception:
            log.failure("telling the vendor health of a failed call failed")

    def _finished(self, call: BridgedCall) -> None:
        self.live.discard(call)
        self._metrics.active(len(self.live))
        self._metrics.call_finished(call, self._reactor.seconds())
        if not self.live:
            waiters, self._idle_waiters = self._idle_waiters, []
            for d in waiters:
                d.callback(None)

    def check_media(self) -> None:
        """End every call with a side silent past its media timeout, and ask silent vendors if they are there."""
        for call in list(self.live):
            try:
                if call.check_media():
                    self._metrics.media_timeouts.inc()
                else:
                    call.check_vendor()
            except Exception:
                log.failure("call {call_id}: checking its media failed", call_id=call.call_id)

    def vendor_unavailable(self) -> None:
        """The health probe finds no vendor endpoint answering: every connected call goes to a person."""
        for call in list(self.live):
            call.vendor_gone("the vendor health probe finds no endpoint answering")

    def end_orphaned(
        self, call_id: str, dialogs: Mapping[str, Mapping[str, Any]], cause: int, text: str
    ) -> Deferred[None]:
        """ICallLegs: end with BYE the legs a previous run left up (:mod:`lvgateway.sip.orphans`)."""
        return orphans.end_orphaned(
            self.global_config, self._reactor, call_id, dialogs, cause, text
        )

    def tell(self, call_id: str, event: CallEvent) -> bool:
        """ICallLegs: carry out an event the call store learned of, if the call is still here."""
        call = self.by_call_id(call_id)
        if call is None:
            return False
        call.report(event)
        return True

    def by_call_id(self, call_id: str) -> BridgedCall | None:
        """The live call with this gateway call id, if any."""
        for call in self.live:
            if call.call_id == call_id:
                return call
        return None

    def hang_up_livevox(
        self, call_id: str, reason: str, dialog: Mapping[str, Any] | None = None
    ) -> Deferred[None]:
        """ICallLegs: end a call's LiveVox leg (and the vendor's, if up) with BYE.

        A transfer a previous run left held is not live here: its leg is
        ended from its noted dialog, as crash recovery ends an orphan's.
        """
        call = self.by_call_id(call_id)
        if call is not None:
            call.hang_up_livevox(reason)
        elif dialog is not None:
            return self.end_orphaned(call_id, {"livevox": dialog}, 200, reason)
        return succeed(None)

    def when_idle(self) -> Deferred[None]:
        """Fire once no call is live; cancelling it stops the wait and nothing else."""

        def cancel(d: Deferred[None]) -> None:
            if d in self._idle_waiters:
                self._idle_waiters.remove(d)

        d: Deferred[None] = Deferred(cancel)
        if not self.live:
            d.callback(None)
        else:
            self._idle_waiters.append(d)
        return d

    def finish_calls(self, timeout: float) -> Deferred[int]:
        """Let the live calls finish for up to ``timeout`` seconds, then hand the rest to people.

        The drain's step: a call still up when the time is up ends as a
        transfer (its outcome says how), and the count of calls cut is logged
        at warn and returned.
        """
        return Deferred.fromCoroutine(self._finish_calls(timeout))

    async def _finish_calls(self, timeout: float) -> int:
        idle = self.when_idle()
        timer = self._reactor.callLater(timeout, idle.cancel)
        try:
            await idle
        except CancelledError:
            pass
        else:
            timer.cancel()
            return 0
        cut = self.end_all("gateway shutting down")
        log.warn(
            "drain: {count} calls still up after call_drain_timeout ({timeout:g}s):"
            " cut and handed to a person as transfers",
            count=cut,
            timeout=timeout,
        )
        return cut

    def end_all(self, text: str) -> int:
        """Hand every live call to a person now (the drain's outcome); return how many that ended."""
        return sum(1 for call in list(self.live) if call.end_now(text))
