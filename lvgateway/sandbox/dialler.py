"""LiveVox's side of a call: the SIP dialler that puts the simulator's calls through to the gateway.

A dial (:meth:`Dialler.dial`, ``POST /_sandbox/dial``, or the automatic
dialler at ``call_rate``) picks the READY agent that has been READY longest
(LiveVox's LONGEST_AVAILABLE_AGENT), or the one named, puts a call through
to it in the simulator (:meth:`Simulator.start_call`, which hands out a
fresh callTransactionId and a LiveVox-like callSessionId such as
``U2DB327T65F1A2B3@10.101.21.216``), and sends the gateway an INVITE shaped
like LiveVox's sample (docs/livevox-api.md, section 8): Request-URI
``sip:+1899...@gateway:port``; From the customer's number; the sample's
``Record-Route``, ``Session-ID`` (= the callSessionId),
``Session-Expires: 1800;refresher=uac``, ``Supported: timer``, ``Allow``,
``Carrier-Name``, ``Pool-Name``, ``Session-Privacy``, ``X-Lv-Destination-*``,
``Max-Forwards: 68`` and its extra ``Via`` rows; no ``X-transaction-id``
unless configured.

Once answered it streams PCMU with stamped payloads (:class:`RtpProbe`) to
the address of the answer's SDP and checks what comes back (the echo bot
echoes it through the gateway). It hangs up with BYE after the call
duration, or waits for the gateway's BYE, and then moves the simulator's
line to WRAPUP (:meth:`Simulator.end_call`). Each call's
:class:`CallResult` is kept for tests and ``GET /_sandbox/calls/results``.

Bounded, however asked: at most ``max_concurrent_calls`` up at once,
``max_call_rate`` started per second (a token bucket), ``max_calls`` in all.

Record-Route: LiveVox's proxy records two routes on its vendor side and one
on its own side. Here the top two name the dialler (so the gateway's
in-dialog requests come back to it) and the bottom one names the gateway,
so the dialler's ACK and BYE, which Sippy routes through the reversed
route set, go straight to the gateway, as they would arrive from LiveVox's
proxy.
"""

from __future__ import annotations

import itertools
import secrets
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import attrs
from sippy.CCEvents import (
    CCEventConnect,
    CCEventDisconnect,
    CCEventFail,
    CCEventRedirect,
    CCEventRing,
    CCEventTry,
    CCEventUpdate,
)
from sippy.MsgBody import MsgBody
from sippy.SipCallId import SipCallId
from sippy.SipHeader import SipHeader
from sippy.SipVia import SipVia
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lvgateway.sandbox.dial_records import (
    LIVEVOX_MAX_FORWARDS,
    CallResult,
    DialError,
    e164,
    livevox_invite_headers,
)
from lvgateway.sandbox.livevox_records import Call, LiveVoxError
from lvgateway.sandbox.offers import (
    DecoyPort,
    OfferRecord,
    check_kind,
    check_reject_code,
    refuse_offer,
    send_offer,
)
from lvgateway.sandbox.rtp_media import (
    ProbeStats,
    RtpProbe,
    listen_rtp,
    parse_sdp,
    sdp_body,
)
from lvgateway.sandbox.sandbox_config import DiallerConfig
from lvgateway.sandbox.simulator import Simulator
from lvgateway.sandbox.sip_messages import (
    CapturingUA,
    RawRequests,
    header_pairs,
    headers_of,
    plain_contact,
)

__all__ = ["CallResult", "DialError", "Dialler", "livevox_invite_headers"]

log = Logger()

#: A token bucket lets a dial through this much before its full token, for timer jitter.
RATE_SLACK = 0.1
#: In-dialog requests kept per call.
MAX_GATEWAY_REQUESTS = 20


@attrs.define
class _LiveCall:
    """A call in progress: its result and the things that must be let go of."""

    result: CallResult
    ua: Any
    probe: RtpProbe
    port: IListeningPort
    sdp: str
    call_duration: float
    timers: list[IDelayedCall] = attrs.field(factory=list)
    ending: str | None = None
    finished: bool = False
    session_id: int = 0
    sdp_version: int = 1
    #: The re-INVITE this call sent and awaits the answer to, with its SDP.
    pending_offer: tuple[OfferRecord, str] | None = None
    #: The status the next offer received is refused with, if asked.
    refuse_next: int | None = None
    decoy: DecoyPort | None = None
    decoy_port: IListeningPort | None = None


@attrs.define
class _AutoDialler:
    """The automatic dialler's progress."""

    loop: LoopingCall
    rate: float
    count: int
    placed: int = 0
    skipped: dict[str, int] = attrs.field(factory=dict)


class Dialler(Service):
    """Places LiveVox's calls to the gateway through the sandbox's SIP stack.

    A ``Service`` so that it starts the automatic dialler with the process
    when configured, and hangs up every call when it stops.

    :param config: the ``[dialler]`` settings.
    :param simulator: the LiveVox simulator whose agents and calls it uses.
    :param reactor: the clock and ``listenUDP``.
    :param global_config: returns Sippy's global config of the running SIP stack.
    :param local: returns the SIP stack's bound address (host, port).
    :param rtp_host: the IP literal RTP ports are bound on.
    :param raw: raw requests seen by the stack, for headers in their received case.
    """

    def __init__(
        self,
        config: DiallerConfig,
        simulator: Simulator,
        reactor: Any,
        global_config: Callable[[], dict[str, Any]],
        local: Callable[[], tuple[str, int]],
        rtp_host: str,
        raw: RawRequests | None = None,
    ) -> None:
        self.config = config
        self.simulator = simulator
        self._reactor = reactor
        self._global_config = global_config
        self._local = local
        self._rtp_host = rtp_host
        self._raw = raw
        self._ids = itertools.count(1)
        self._callers = itertools.count(0)
        self._live: dict[str, _LiveCall] = {}
        self._draining: dict[str, _LiveCall] = {}
        self._waiters: dict[str, list[Deferred[CallResult]]] = {}
        #: Every call's result, oldest first (bounded by ``results_kept``).
        self.results: deque[CallResult] = deque(maxlen=config.results_kept)
        #: Calls placed since start.
        self.placed = 0
        #: Dials refused, by reason.
        self.refused: dict[str, int] = {}
        self._tokens = 1.0
        self._tokens_at: float | None = None
        self._auto: _AutoDialler | None = None

    # -- the service ----------------------------------------------------------

    def startService(self) -> None:
        """Start the automatic dialler if ``auto_start`` is set."""
        Service.startService(self)
        if self.config.auto_start:
            self.start_auto()

    def stopService(self) -> None:
        """Stop the automatic dialler, hang up every call and complete every record now."""
        Service.stopService(self)
        self.stop_auto()
        for live in list(self._live.values()):
            self._end(live, "stopped")
            self._finish(live, "stopped")
        for live in list(self._draining.values()):
            self._finalize(live)

    # -- results --------------------------------------------------------------

    def live_calls(self) -> list[CallResult]:
        """The results of the calls not over yet."""
        return [live.result for live in self._live.values()]

    def result(self, call_id: str) -> CallResult | None:
        """A call's result by the dialler's id, its SIP Call-ID or its callSessionId."""
        for result in reversed(self.results):
            if call_id in (result.id, result.sip_call_id, result.call_session_id):
                return result
        return None

    def finished(self, call_id: str) -> Deferred[CallResult]:
        """A Deferred that fires with the call's final result (at once if it is final).

        :param call_id: as :meth:`result` takes it.
        :raises KeyError: for an unknown call.
        """
        result = self.result(call_id)
        if result is None:
            raise KeyError(call_id)
        if result.done:
            return succeed(result)
        d: Deferred[CallResult] = Deferred()
        self._waiters.setdefault(result.id, []).append(d)
        return d

    def summary(self) -> dict[str, Any]:
        """Counts over the results kept, the bounds, and the automatic dialler's progress."""
        results = list(self.results)
        auto = self._auto
        return {
            "placed": self.placed,
            "live": len(self._live),
            "done": sum(1 for r in results if r.done),
            "answered": sum(1 for r in results if r.answered_at is not None),
            "failed": sum(1 for r in results if r.state == "failed"),
            "audioOk": sum(1 for r in results if r.done and r.audio_ok),
            "refused": dict(self.refused),
            "bounds": {
                "maxCalls": self.config.max_calls,
                "maxConcurrentCalls": self.config.max_concurrent_calls,
                "maxCallRate": self.config.max_call_rate,
            },
            "auto": None
            if auto is None
            else {
                "running": auto.loop.running,
                "rate": auto.rate,
                "count": auto.count,
                "placed": auto.placed,
                "skipped": dict(auto.skipped),
            },
        }

    # -- dialling -------------------------------------------------------------

    def dial(
        self,
        agent: str | None = None,
        *,
        phone_number: str | None = None,
        customer_number: str | None = None,
        account_number: str | None = None,
        call_duration: float | None = None,
        include_transaction_id: bool | None = None,
        include_agent_login_id: bool | None = None,
    ) -> CallResult:
        """Put a call through to an agent in the simulator and INVITE the gateway.

        :param agent: the agent's login name; by default the READY agent READY longest.
        :param phone_number: or the agent's 899 number.
        :param customer_number: the caller (phoneDialed); by default the next
            configured contact's first phone, else ``9195550100``.
        :param account_number: the caller's account; by default that contact's.
        :param call_duration: seconds after the answer to hang up; 0 waits for
            the gateway's BYE; by default ``call_duration``.
        :param include_transaction_id: send ``X-transaction-id``; by default as configured.
        :param include_agent_login_id: send ``X-agent-login-id``; by default as configured.
        :return: the call's result record, updated as the call goes on.
        :raises DialError: if no call could be placed (nothing was changed then).
        """
        try:
            return self._dial(
                agent,
                phone_number,
                customer_number,
                account_number,
                self.config.call_duration if call_duration is None else call_duration,
                self.config.include_transaction_id
                if include_transaction_id is None
                else include_transaction_id,
                self.config.include_agent_login_id
                if include_agent_login_id is None
                else include_agent_login_id,
            )
        except DialError as e:
            self.refused[e.reason] = self.refused.get(e.reason, 0) + 1
            raise

    def _dial(
        self,
        agent: str | None,
        phone_number: str | None,
        customer_number: str | None,
        account_number: str | None,
        call_duration: float,
        include_transaction_id: bool,
        include_agent_login_id: bool,
    ) -> CallResult:
        if call_duration < 0:
            raise DialError(400, "bad_request", "callDuration must be >= 0")
        if not self.running:
            raise DialError(503, "not_running", "the dialler is not running")
        if self.config.max_calls and self.placed >= self.config.max_calls:
            raise DialError(503, "max_calls", f"max_calls ({self.config.max_calls}) reached")
        if len(self._live) >= self.config.max_concurrent_calls:
            raise DialError(
                503,
                "concurrency",
                f"max_concurrent_calls ({self.config.max_concurrent_calls}) are up",
            )
        self._refill()
        if self._tokens < 1.0 - RATE_SLACK:
            raise DialError(
                429, "rate", f"over max_call_rate ({self.config.max_call_rate} calls a second)"
            )
        if agent is None and phone_number is None:
            agent = self._pick_agent()
        number, account = self._caller(customer_number, account_number)
        try:
            call = self.simulator.start_call(
                agent, phone_number, customer_number=number, account_number=account
            )
        except LiveVoxError as e:
            reason = "unknown_agent" if e.status == 404 else "not_ready"
            raise DialError(e.status, reason, e.message) from e
        self._tokens -= 1.0
        try:
            live = self._invite(call, call_duration, include_transaction_id, include_agent_login_id)
        except Exception as e:
            log.failure("dialler: the INVITE for call {txn} failed", txn=call.call_transaction_id)
            try:
                self.simulator.end_call(call_transaction_id=call.call_transaction_id)
            except LiveVoxError:
                pass
            raise DialError(500, "error", f"the INVITE could not be sent: {e}") from e
        return live.result

    def _refill(self) -> None:
        now = self._reactor.seconds()
        if self._tokens_at is not None:
            gained = (now - self._tokens_at) * self.config.max_call_rate
            self._tokens = min(1.0, self._tokens + gained)
        self._tokens_at = now

    def _pick_agent(self) -> str:
        ready = [a for a in self.simulator.agent_states() if a["state"] == "READY"]
        if not ready:
            raise DialError(409, "no_ready_agent", "no agent is READY")
        name: str = min(ready, key=lambda a: a["stateChanged"])["user"]
        return name

    def _caller(self, number: str | None, account: str | None) -> tuple[str, str]:
        if number is not None:
            return number, account or ""
        contacts = self.simulator.config.contacts
        if not contacts:
            return "9195550100", account or ""
        contact = contacts[next(self._callers) % len(contacts)]
        phones = contact.get("phone")
        phone = "9195550100"
        if isinstance(phones, list) and phones and isinstance(phones[0], Mapping):
            phone = str(phones[0].get("phone") or phone)
        return phone, account if account is not None else str(contact.get("account", ""))

    def _invite(
        self,
        call: Call,
        call_duration: float,
        include_transaction_id: bool,
        include_agent_login_id: bool,
    ) -> _LiveCall:
        cfg = self.config
        local: tuple[str, int] = self._local()
        gateway = (cfg.gateway_host, cfg.gateway_port)
        probe = RtpProbe(self._reactor)
        port = listen_rtp(self._reactor, probe, self._rtp_host)
        try:
            rtp_port: int = port.getHost().port  # type: ignore[attr-defined]
            session_id = secrets.randbits(31)
            sdp = sdp_body(self._rtp_host, rtp_port, session_id=session_id)
            now = self._reactor.seconds()
            stamp = f"{int(now) & 0xFFFFFFFF:08x}"
            hexes = [secrets.token_hex(4) for _ in range(3)]
            sip_call_id = f"{stamp}-0000-{hexes[0]}-{hexes[1]}-{hexes[2]}@{local[0]}"
            from_tag = f"telstage-{secrets.token_hex(4)}-{stamp}"
            headers, vias = livevox_invite_headers(
                session_id=call.call_session_id,
                local=local,
                gateway=gateway,
                config=cfg,
                transaction_id=call.call_transaction_id if include_transaction_id else None,
                agent_login_id=call.agent if include_agent_login_id else None,
            )
            result = CallResult(
                id=f"d{next(self._ids)}",
                agent=call.agent,
                dnis=e164(call.dnis),
                ani=e164(call.phone_number),
                account_number=call.account_number,
                call_transaction_id=call.call_transaction_id,
                call_session_id=call.call_session_id,
                sip_call_id=sip_call_id,
                transaction_id_sent=include_transaction_id,
                started_at=now,
                rtp_port=rtp_port,
            )
            live = _LiveCall(result, None, probe, port, sdp, call_duration, session_id=session_id)
            ua = CapturingUA(
                self._global_config(),
                event_cb=partial(self._on_event, live),
                nh_address=gateway,
                disc_cbs=(partial(self._on_disconnected, live),),
                fail_cbs=(partial(self._on_failed, live),),
                ltag=from_tag,
            )
            ua.lContact = plain_contact()
            if cfg.session_refresh > 0:
                ua.kaInterval = cfg.session_refresh
            ua.on_request = partial(self._on_gateway_request, live)
            live.ua = ua
            event = CCEventTry(
                (SipCallId(sip_call_id), result.ani, result.dnis, MsgBody(sdp), None, None)
            )
            event.extra_headers = tuple(
                header_pairs(headers) + [SipHeader(name="via", body=SipVia(v)) for v in vias]
            )
            event.max_forwards = LIVEVOX_MAX_FORWARDS
        except Exception:
            port.stopListening()
            raise
        self._live[result.id] = live
        self.results.append(result)
        self.placed += 1
        live.timers.append(
            self._reactor.callLater(
                cfg.setup_timeout, self._guarded, self._end, live, "setup_timeout"
            )
        )
        log.info(
            "dialler: call {call} to {agent} ({dnis}) from {ani}: Session-ID {session}, "
            "transaction {txn}, SIP Call-ID {sip_call_id}",
            call=result.id,
            agent=result.agent,
            dnis=result.dnis,
            ani=result.ani,
            session=result.call_session_id,
            txn=result.call_transaction_id,
            sip_call_id=sip_call_id,
        )
        try:
            ua.recvEvent(event)
        except Exception:
            live.finished = True
            for timer in live.timers:
                timer.cancel()
            self._live.pop(result.id, None)
            result.state, result.done = "failed", True
            port.stopListening()
            raise
        return live

    def hangup(self, call_id: str) -> CallResult:
        """Hang up a call now: BYE if answered, CANCEL if not.

        :raises KeyError: if no such call is up.
        """
        result = self.result(call_id)
        live = self._live.get(result.id) if result is not None else None
        if live is None:
            raise KeyError(call_id)
        self._end(live, "dialler")
        return live.result

    def _end(self, live: _LiveCall, why: str) -> None:
        if live.finished:
            return
        live.ending = why
        live.ua.recvEvent(CCEventDisconnect())

    @staticmethod
    def _guarded(f: Callable[..., Any], *args: Any) -> None:
        try:
            f(*args)
        except Exception:
            log.failure("dialler: a scheduled action raised")

    # -- mid-call offers (lvgateway.sandbox.offers) -----------------------------

    def _answered_call(self, call_id: str) -> _LiveCall:
        result = self.result(call_id)
        live = self._live.get(result.id) if result is not None else None
        if live is None or live.result.answered_at is None:
            raise KeyError(call_id)
        return live

    def offer(self, call_id: str, kind: str, *, decoy: bool = False) -> CallResult:
        """Make a new offer in an answered call: ``reinvite``, ``bodyless`` or ``update``.

        The new SDP names the probe's port with the ``o=`` version bumped, or,
        with ``decoy``, a port that only counts what reaches it (for an offer
        meant to be refused). How it was settled goes to ``result.offers``.

        :raises KeyError: if no such call is up and answered.
        :raises ValueError: for an unknown kind, or while an offer is pending.
        """
        check_kind(kind)
        live = self._answered_call(call_id)
        if live.pending_offer is not None:
            raise ValueError(f"call {call_id} has an offer pending")
        port = live.result.rtp_port
        assert port is not None
        if decoy:
            live.decoy = live.decoy or DecoyPort()
            if live.decoy_port is None:
                live.decoy_port = listen_rtp(self._reactor, live.decoy, self._rtp_host)
            port = live.decoy_port.getHost().port  # type: ignore[attr-defined]
        live.sdp_version += 1
        sdp = sdp_body(self._rtp_host, port, session_id=live.session_id, version=live.sdp_version)
        record = OfferRecord(kind, self._reactor.seconds(), decoy=decoy)
        live.result.offers.append(record)
        log.info("dialler: call {call}: sending an offer ({kind})", call=live.result.id, kind=kind)
        if kind == "reinvite":
            live.pending_offer = (record, sdp)
        send_offer(live.ua, kind, sdp, live.sdp, partial(self._offer_settled, live, record, sdp))
        return live.result

    def refuse_next_offer(self, call_id: str, code: int) -> CallResult:
        """Refuse the next offer the gateway sends in this call with ``code`` (once).

        :raises KeyError: if no such call is up and answered.
        :raises ValueError: for a code that is not a final status.
        """
        live = self._answered_call(call_id)
        live.refuse_next = check_reject_code(code)
        return live.result

    def rtp_now(self, call_id: str) -> ProbeStats | None:
        """What a call's probe has sent and got back so far, while it is up."""
        result = self.result(call_id)
        live = self._live.get(result.id) if result is not None else None
        return live.probe.stats() if live is not None else None

    def _offer_settled(
        self, live: _LiveCall, record: OfferRecord, sdp: str, code: int, phrase: str, body: Any
    ) -> None:
        record.settle(code, phrase, self._reactor.seconds(), live.probe.received)
        log.info(
            "dialler: call {call}: offer ({kind}) answered {code}",
            call=live.result.id,
            kind=record.kind,
            code=code,
        )
        if 200 <= code < 300 and not live.finished:
            if record.kind != "bodyless":
                live.sdp = sdp
            if body is not None:
                self._media(live, body)

    # -- Sippy's callbacks ----------------------------------------------------

    def _on_event(self, live: _LiveCall, event: Any, ua: Any) -> None:
        r = live.result
        now = self._reactor.seconds()
        data = event.getData()
        if isinstance(event, CCEventRing):
            code = data[0] if data else None
            if code is not None and code != 100:
                r.provisional.append(int(code))
                if r.ringing_at is None:
                    r.ringing_at = now
                if r.state == "calling":
                    r.state = "ringing"
        elif isinstance(event, CCEventConnect):
            if live.pending_offer is not None and r.answered_at is not None:
                self._reinvite_settled(live, int(data[0]), str(data[1]), data[2])
                return
            if r.answered_at is not None or live.finished:
                return
            code, reason, body = data[0], data[1], data[2]
            r.final_code, r.final_reason = int(code), str(reason)
            r.answered_at = now
            r.state = "connected"
            for timer in live.timers:
                if timer.active():
                    timer.cancel()
            live.timers.clear()
            self._media(live, body)
            if live.call_duration > 0:
                live.timers.append(
                    self._reactor.callLater(
                        live.call_duration, self._guarded, self._end, live, "dialler"
                    )
                )
        elif isinstance(event, CCEventFail | CCEventRedirect):
            if live.pending_offer is not None and r.answered_at is not None:
                self._reinvite_settled(live, int(data[0]), str(data[1]), None)
            elif data and r.final_code is None:
                r.final_code, r.final_reason = int(data[0]), str(data[1])
        elif isinstance(event, CCEventUpdate) and not live.finished:
            # A re-INVITE from the gateway with a new offer: follow it, answer with
            # ours; or refuse it, as asked, and keep the media as it was.
            record = OfferRecord("received", now)
            r.offers.append(record)
            if live.refuse_next is not None:
                code, live.refuse_next = live.refuse_next, None
                refuse_offer(ua, code)
                record.settle(code, "refused", now, live.probe.received)
                return
            self._media(live, data)
            ua.recvEvent(CCEventConnect((200, "OK", MsgBody(live.sdp))))
            record.settle(200, "OK", now, live.probe.received)

    def _reinvite_settled(self, live: _LiveCall, code: int, phrase: str, body: Any) -> None:
        """The final response to this call's own re-INVITE, which Sippy's states handled."""
        assert live.pending_offer is not None
        (record, sdp), live.pending_offer = live.pending_offer, None
        if code >= 300:
            # Sippy forgets the local SDP when its re-INVITE is refused: the session keeps it.
            live.ua.lSDP = MsgBody(live.sdp)
        self._offer_settled(live, record, sdp, code, phrase, body)

    def _media(self, live: _LiveCall, body: Any) -> None:
        media = parse_sdp(str(body)) if body is not None else None
        if media is None:
            log.warn("dialler: call {call}: no audio in the SDP", call=live.result.id)
            return
        live.result.remote_media = media
        if media.port and media.host not in ("0.0.0.0", "::"):
            live.probe.start((media.host, media.port))

    def _on_gateway_request(self, live: _LiveCall, req: Any) -> None:
        if self._raw is not None:
            headers, _ = self._raw.headers(req)
        else:
            headers = headers_of(req)
        if len(live.result.gateway_requests) < MAX_GATEWAY_REQUESTS:
            live.result.gateway_requests.append((str(req.getMethod()), headers))

    def _on_disconnected(
        self, live: _LiveCall, ua: Any, rtime: Any, origin: Any, *rest: Any
    ) -> None:
        self._finish(live, live.ending or "gateway")

    def _on_failed(self, live: _LiveCall, ua: Any, rtime: Any, origin: Any, *rest: Any) -> None:
        if rest and isinstance(rest[0], int) and live.result.final_code is None:
            live.result.final_code = rest[0]
        self._finish(live, live.ending or "rejected")

    # -- the end of a call ----------------------------------------------------

    def _finish(self, live: _LiveCall, ended_by: str) -> None:
        """The SIP call is over: stop the media, move the line to WRAPUP, drain the echoes."""
        if live.finished:
            return
        live.finished = True
        r = live.result
        for timer in live.timers:
            if timer.active():
                timer.cancel()
        live.timers.clear()
        r.ended_at = self._reactor.seconds()
        r.ended_by = ended_by
        r.state = "ended" if r.answered_at is not None else "failed"
        self._live.pop(r.id, None)
        live.probe.stop()
        try:
            self.simulator.end_call(call_transaction_id=r.call_transaction_id)
            r.wrapup = "WRAPUP"
        except LiveVoxError as e:
            r.wrapup = f"not moved: {e.message}"
        self._draining[r.id] = live
        live.timers.append(
            self._reactor.callLater(self.config.rtp_drain, self._guarded, self._finalize, live)
        )

    def _finalize(self, live: _LiveCall) -> None:
        r = live.result
        if r.done:
            return
        for timer in live.timers:
            if timer.active():
                timer.cancel()
        live.timers.clear()
        r.rtp = live.probe.stats(grace=max(self.config.rtp_drain, 0.2))
        live.port.stopListening()
        if live.decoy_port is not None and live.decoy is not None:
            r.decoy_received = live.decoy.received
            live.decoy_port.stopListening()
        self._draining.pop(r.id, None)
        r.done = True
        log.info(
            "dialler: call {call} {state} ({ended_by}, final {code}); RTP {rtp}; line {wrapup}",
            call=r.id,
            state=r.state,
            ended_by=r.ended_by,
            code=r.final_code,
            rtp=r.rtp.to_json(),
            wrapup=r.wrapup,
        )
        for d in self._waiters.pop(r.id, []):
            d.callback(r)

    # -- the automatic dialler ------------------------------------------------

    def start_auto(self, rate: float | None = None, count: int | None = None) -> None:
        """Place calls at ``rate`` a second (``call_rate``) until ``count`` (``auto_count``; 0: no limit).

        A tick that cannot place a call (no READY agent, a bound) is skipped and counted.

        :raises ValueError: for a rate above ``max_call_rate`` or a negative count.
        """
        rate = self.config.call_rate if rate is None else rate
        count = self.config.auto_count if count is None else count
        if not 0 < rate <= self.config.max_call_rate:
            raise ValueError(f"rate must be above 0 and at most {self.config.max_call_rate}")
        if count < 0:
            raise ValueError("count must be >= 0")
        self.stop_auto()
        loop = LoopingCall(self._auto_tick)
        loop.clock = self._reactor
        self._auto = _AutoDialler(loop, rate, count)
        log.info(
            "dialler: placing {rate} calls a second, {count} in all",
            rate=rate,
            count=count or "no limit",
        )
        loop.start(1.0 / rate, now=True).addErrback(
            lambda f: log.failure("dialler: the automatic dialler stopped", f)
        )

    def stop_auto(self) -> None:
        """Stop the automatic dialler (calls up go on)."""
        if self._auto is not None and self._auto.loop.running:
            self._auto.loop.stop()

    def _auto_tick(self) -> None:
        auto = self._auto
        if auto is None:
            return
        if auto.count and auto.placed >= auto.count:
            self.stop_auto()
            return
        try:
            self.dial()
            auto.placed += 1
        except DialError as e:
            auto.skipped[e.reason] = auto.skipped.get(e.reason, 0) + 1
            log.debug("dialler: automatic call skipped: {message}", message=e.message)
        except Exception:
            log.failure("dialler: an automatic call failed")
        if auto.count and auto.placed >= auto.count:
            self.stop_auto()
