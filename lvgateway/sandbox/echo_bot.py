"""The AI echo bot: the AI vendor's SIP endpoint in the sandbox.

It answers every INVITE the sandbox's SIP stack hands it (180 at once, 200
with its own SDP after the answer delay), records the INVITE's headers as
they came on the wire (the gateway's ``X-LVGW-Call-ID`` and ``X-LV-*``
context headers), echoes every RTP packet back to where it came from, and
after the call duration ends the call as docs/design.md's vendor contract says:
a BYE carrying the disposition headers (``X-LV-Term-Code``,
``X-LV-Next-Action: done``, ``X-LV-Call-Outcome``, ``X-LV-Result``,
``X-LV-Account``, ``X-LV-Other1``...), or, for a transfer to a human, a
REFER carrying them with ``X-LV-Next-Action: transfer``. Sippy follows a
REFER's final response with a plain BYE of its own.

What it does with a call is an :class:`EchoScript`: the default comes from
``[echo_bot]``; :meth:`EchoBot.script` queues others for the next calls, or
for calls whose ANI or DNIS match a pattern (answer late, reject with a
code, never answer, transfer...), so tests can make the vendor slow, busy
or down. A call is transferred when its script says so, else when its ANI
matches ``transfer_ani_pattern``, else for a ``transfer_share`` of calls.

Python::

    bot.script(EchoScript(reject=503), count=2)      # the next two calls get 503
    bot.script(EchoScript(transfer=True), ani=r"5550101$")
    call = bot.calls[-1]; call.headers.get("X-LVGW-Call-ID")
    bot.end_call(call.id, transfer=False)            # BYE with the disposition now
"""

from __future__ import annotations

import itertools
import random
import re
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
from sippy.CCEvents import (
    CCEventConnect,
    CCEventDisconnect,
    CCEventFail,
    CCEventRing,
    CCEventUpdate,
)
from sippy.MsgBody import MsgBody
from sippy.SipAddress import SipAddress
from twisted.internet.interfaces import IDelayedCall, IListeningPort
from twisted.logger import Logger

from lvgateway.sandbox.echo_records import EchoCall, EchoRule, EchoScript
from lvgateway.sandbox.offers import (
    DecoyPort,
    OfferRecord,
    check_kind,
    check_reject_code,
    refuse_offer,
    send_offer,
)
from lvgateway.sandbox.rtp_media import RtpEcho, listen_rtp, parse_sdp, sdp_body
from lvgateway.sandbox.sandbox_config import EchoBotConfig
from lvgateway.sandbox.sip_messages import (
    CapturingUA,
    RawRequests,
    header_pairs,
    headers_of,
    plain_contact,
)

__all__ = ["EchoBot", "EchoCall", "EchoRule", "EchoScript"]

log = Logger()

#: Seconds the RTP echo keeps going after a call ends, for packets still in flight.
ECHO_LINGER = 0.5
#: In-dialog requests kept per call.
MAX_PEER_REQUESTS = 20


class EchoBot:
    """The AI vendor's endpoint: answers INVITEs handed to :meth:`handle_invite`.

    :param config: the ``[echo_bot]`` settings.
    :param reactor: the clock for delays and ``listenUDP`` for RTP.
    :param global_config: returns Sippy's global config of the running SIP stack.
    :param rtp_host: the IP literal RTP ports are bound on.
    :param raw: raw requests seen by the stack, for headers in their received case.
    """

    def __init__(
        self,
        config: EchoBotConfig,
        reactor: Any,
        global_config: Callable[[], dict[str, Any]],
        rtp_host: str,
        raw: RawRequests | None = None,
    ) -> None:
        self.config = config
        self._reactor = reactor
        self._global_config = global_config
        self._rtp_host = rtp_host
        self._raw = raw
        self._random = random.Random(config.seed)
        self._ids = itertools.count(1)
        self._rule_ids = itertools.count(1)
        self._transfer_ani = (
            re.compile(config.transfer_ani_pattern) if config.transfer_ani_pattern else None
        )
        self.default = EchoScript(
            answer_delay=config.answer_delay,
            ring=config.ring,
            call_duration=config.call_duration,
        )
        #: Queued scripts, consulted in order.
        self.rules: list[EchoRule] = []
        #: Every call received, oldest first (bounded by ``calls_kept``).
        self.calls: deque[EchoCall] = deque(maxlen=config.calls_kept)
        self._live: dict[str, EchoCall] = {}
        self._lingering: dict[IListeningPort, IDelayedCall] = {}
        #: INVITEs answered 503 because ``max_concurrent_calls`` were up.
        self.refused = 0

    # -- scripting ----------------------------------------------------------

    def script(
        self,
        script: EchoScript,
        *,
        ani: str | None = None,
        dnis: str | None = None,
        count: int | None = 1,
    ) -> EchoRule:
        """Queue ``script`` for the next ``count`` calls (``None``: every call) matching the patterns.

        :param script: what to do.
        :param ani: a regular expression searched in the call's ANI.
        :param dnis: a regular expression searched in the call's DNIS.
        :param count: how many calls it applies to.
        :raises ValueError: on a bad pattern or count.
        """
        if count is not None and count < 1:
            raise ValueError("count must be at least 1, or null for every call")
        try:
            rule = EchoRule(
                next(self._rule_ids),
                script,
                re.compile(ani) if ani else None,
                re.compile(dnis) if dnis else None,
                count,
            )
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from e
        self.rules.append(rule)
        return rule

    def clear_scripts(self) -> None:
        """Forget every queued script: every call gets the default again."""
        self.rules.clear()

    def _choose(self, ani: str, dnis: str) -> tuple[EchoScript, int | None]:
        for rule in self.rules:
            if rule.matches(ani, dnis):
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.rules.remove(rule)
                return rule.script, rule.id
        return self.default, None

    def _resolve(self, script: EchoScript, ani: str) -> tuple[EchoScript, bool]:
        """Fill the script's unset fields from the defaults, and decide on a transfer."""
        resolved = attrs.evolve(
            script,
            answer_delay=(
                script.answer_delay if script.answer_delay is not None else self.config.answer_delay
            ),
            ring=script.ring if script.ring is not None else self.config.ring,
            call_duration=(
                script.call_duration
                if script.call_duration is not None
                else self.config.call_duration
            ),
        )
        if script.transfer is not None:
            return resolved, script.transfer
        if self._transfer_ani is not None and self._transfer_ani.search(ani):
            return resolved, True
        share = self.config.transfer_share
        return resolved, share > 0 and self._random.random() < share

    # -- calls --------------------------------------------------------------

    def live_calls(self) -> list[EchoCall]:
        """The calls not over yet."""
        return list(self._live.values())

    def call(self, call_id: str) -> EchoCall | None:
        """A call by the bot's id, its SIP Call-ID or the gateway's ``X-LVGW-Call-ID``."""
        for call in reversed(self.calls):
            if call_id in (call.id, call.sip_call_id, call.lvgw_call_id):
                return call
        return None

    def handle_invite(self, req: Any, sip_t: Any) -> Any:
        """Sippy's request callback for a new INVITE: take the call.

        :param req: the INVITE.
        :param sip_t: its server transaction.
        :return: what Sippy's request callback returns.
        """
        if self._raw is not None:
            headers, raw = self._raw.headers(req)
        else:
            headers, raw = headers_of(req), None
        if len(self._live) >= self.config.max_concurrent_calls:
            self.refused += 1
            log.warn(
                "echo bot: INVITE {sip_call_id} refused with 503: {live} calls up",
                sip_call_id=str(req.getHFBody("call-id")),
                live=len(self._live),
            )
            return (req.genResponse(503, "Service Unavailable"), None, None)
        ani = headers.get("X-LV-ANI") or str(req.getHFBody("from").getUrl().username or "")
        dnis = headers.get("X-LV-DNIS") or str(req.getRURI().username or "")
        chosen, rule = self._choose(ani, dnis)
        script, transfer = self._resolve(chosen, ani)
        body = req.getBody()
        call = EchoCall(
            id=f"e{next(self._ids)}",
            sip_call_id=str(req.getHFBody("call-id")),
            received_at=self._reactor.seconds(),
            ani=ani,
            dnis=dnis,
            request_uri=str(req.getRURI()),
            headers=headers,
            raw_invite=raw,
            remote_media=parse_sdp(str(body)) if body is not None else None,
            script=script,
            rule=rule,
            transfer=transfer,
        )
        if script.silent:
            call.state, call.ended_by, call.ended_at = "ended", "ignored", call.received_at
            self.calls.append(call)
            log.info("echo bot: INVITE {sip_call_id} ignored", sip_call_id=call.sip_call_id)
            return None
        answering = script.reject is None and not script.never_answer
        if answering:
            try:
                self._open_rtp(call)
            except OSError as e:
                log.error("echo bot: no RTP port for {call}: {error}", call=call.id, error=e)
                return (req.genResponse(503, "Service Unavailable"), None, None)
        ua = CapturingUA(
            self._global_config(),
            event_cb=partial(self._on_event, call),
            conn_cbs=(partial(self._on_connected, call),),
            disc_cbs=(partial(self._on_disconnected, call),),
            fail_cbs=(partial(self._on_failed, call),),
        )
        ua.lContact = plain_contact()
        call._ua = ua
        self.calls.append(call)
        self._live[call.id] = call
        log.info(
            "echo bot: call {call} ({sip_call_id}) from {ani} to {dnis}, gateway call "
            "{lvgw_call_id}: {script}",
            call=call.id,
            sip_call_id=call.sip_call_id,
            ani=ani,
            dnis=dnis,
            lvgw_call_id=call.lvgw_call_id,
            script=script.to_json(),
        )
        try:
            result = ua.recvRequest(req, sip_t)
        except Exception:
            self._ended(call, "failed")  # an INVITE Sippy cannot take (no Contact...)
            raise
        ua.on_request = partial(self._on_peer_request, call)
        if script.ring and script.reject is None:
            ua.recvEvent(CCEventRing((180, "Ringing", None)))
        if script.reject is not None:
            self._later(call, script.answer_delay or 0.0, self._reject, call)
        elif answering:
            self._later(call, script.answer_delay or 0.0, self._answer, call)
        return result

    def _later(self, call: EchoCall, delay: float, f: Callable[..., Any], *args: Any) -> None:
        call._timers.append(self._reactor.callLater(delay, self._guarded, f, *args))

    @staticmethod
    def _guarded(f: Callable[..., Any], *args: Any) -> None:
        try:
            f(*args)
        except Exception:
            log.failure("echo bot: a scheduled action raised")

    def _open_rtp(self, call: EchoCall) -> None:
        echo = RtpEcho()
        call._port = listen_rtp(self._reactor, echo, self._rtp_host)
        call.echo = echo
        call.rtp_port = call._port.getHost().port  # type: ignore[attr-defined]

    def _sdp(self, call: EchoCall, port: int | None = None) -> MsgBody:
        """The bot's SDP for ``call``: its RTP port (or ``port``), at the call's ``o=`` version."""
        assert call.rtp_port is not None
        session = int(call.received_at) & 0x7FFFFFFF
        return MsgBody(
            sdp_body(
                self._rtp_host,
                port or call.rtp_port,
                session_id=session,
                version=call.sdp_version,
            )
        )

    def _answer(self, call: EchoCall) -> None:
        if call.state != "ringing":
            return
        call._ua.recvEvent(CCEventConnect((200, "OK", self._sdp(call))))

    def _reject(self, call: EchoCall) -> None:
        if call.state != "ringing":
            return
        code = call.script.reject or 480
        reason = call.script.reject_reason or _REASONS.get(code, "Rejected")
        call._ending = "rejected"
        call._ua.recvEvent(CCEventFail((code, reason)))

    def disposition(self, call: EchoCall, transfer: bool) -> list[tuple[str, str]]:
        """The disposition headers the bot sends to end ``call``, in documented case."""
        c, s = self.config, call.script
        if transfer:
            code, outcome, result = c.transfer_term_code, c.transfer_call_outcome, c.transfer_result
        else:
            code, outcome, result = c.term_code, c.call_outcome, c.result
        headers = [
            ("X-LV-Term-Code", s.term_code or code),
            ("X-LV-Next-Action", "transfer" if transfer else "done"),
            ("X-LV-Call-Outcome", s.call_outcome or outcome),
            ("X-LV-Result", s.result or result),
        ]
        account = call.headers.get("X-LV-Account")
        if account:
            headers.append(("X-LV-Account", account))
        others = s.others if s.others is not None else c.others
        headers.extend((f"X-LV-Other{i}", value) for i, value in enumerate(others, 1))
        return headers

    def end_call(self, call_id: str, *, transfer: bool | None = None) -> EchoCall:
        """End a call now: BYE (or REFER, for a transfer) with the disposition headers.

        A call not answered yet is rejected with 480 instead.

        :param call_id: the bot's id, the SIP Call-ID or the gateway's call id.
        :param transfer: end with a REFER; ``None`` keeps the call's own choice.
        :raises KeyError: if no such call is up.
        """
        call = self.call(call_id)
        if call is None or not call.live:
            raise KeyError(call_id)
        if call.state == "ringing":
            call._ending = "rejected"
            call._ua.recvEvent(CCEventFail((480, "Temporarily Unavailable")))
            return call
        self._hang_up(call, call.transfer if transfer is None else transfer)
        return call

    def _hang_up(self, call: EchoCall, transfer: bool) -> None:
        if call.state != "answered":
            return
        headers = self.disposition(call, transfer)
        call.disposition = dict(headers)
        call.transfer = transfer
        call._ending = "refer" if transfer else "bye"
        target = SipAddress(self.config.refer_to) if transfer else None
        event = CCEventDisconnect(target)
        event.extra_headers = tuple(header_pairs(headers))
        call._ua.recvEvent(event)

    # -- mid-call offers (lvgateway.sandbox.offers) -----------------------------

    def _answered_call(self, call_id: str) -> EchoCall:
        call = self.call(call_id)
        if call is None or call.state != "answered":
            raise KeyError(call_id)
        return call

    def offer(self, call_id: str, kind: str, *, decoy: bool = False) -> EchoCall:
        """As :meth:`lvgateway.sandbox.dialler.Dialler.offer`, from the bot; see ``call.offers``."""
        check_kind(kind)
        call = self._answered_call(call_id)
        if call.pending_offer is not None:
            raise ValueError(f"call {call_id} has an offer pending")
        port = None
        if decoy:
            call.decoy = call.decoy or DecoyPort()
            if call._decoy_port is None:
                call._decoy_port = listen_rtp(self._reactor, call.decoy, self._rtp_host)
            port = call._decoy_port.getHost().port  # type: ignore[attr-defined]
        answer = str(self._sdp(call))
        call.sdp_version += 1
        sdp = str(self._sdp(call, port))
        record = OfferRecord(kind, self._reactor.seconds(), decoy=decoy)
        call.offers.append(record)
        log.info("echo bot: call {call}: sending an offer ({kind})", call=call.id, kind=kind)
        if kind == "reinvite":
            call.pending_offer = record
        send_offer(call._ua, kind, sdp, answer, partial(self._offer_settled, call, record))
        return call

    def refuse_next_offer(self, call_id: str, code: int) -> EchoCall:
        """As :meth:`lvgateway.sandbox.dialler.Dialler.refuse_next_offer`."""
        call = self._answered_call(call_id)
        call.refuse_next = check_reject_code(code)
        return call

    def _offer_settled(
        self, call: EchoCall, record: OfferRecord, code: int, phrase: str, body: Any
    ) -> None:
        received = call.echo.received if call.echo is not None else 0
        record.settle(code, phrase, self._reactor.seconds(), received)
        log.info(
            "echo bot: call {call}: offer ({kind}) answered {code}",
            call=call.id,
            kind=record.kind,
            code=code,
        )
        if 200 <= code < 300 and body is not None:
            call.remote_media = parse_sdp(str(body)) or call.remote_media

    # -- Sippy's callbacks --------------------------------------------------

    def _on_event(self, call: EchoCall, event: Any, ua: Any) -> None:
        pending = call.pending_offer
        if isinstance(event, CCEventConnect | CCEventFail) and pending is not None:
            # The final response to the bot's own re-INVITE (Sippy's states handled it).
            call.pending_offer = None
            code, phrase = event.getData()[:2]
            if code >= 300:
                # Sippy forgets the local SDP when its re-INVITE is refused: the
                # session goes on with the bot's own port.
                ua.lSDP = self._sdp(call)
            body = event.getData()[2] if len(event.getData()) > 2 else None
            self._offer_settled(call, pending, int(code), str(phrase), body)
        elif isinstance(event, CCEventUpdate) and call.state == "answered":
            # A re-INVITE with a new offer (or none, for hold): answer with our
            # SDP; or refuse it, as asked.
            record = OfferRecord("received", self._reactor.seconds())
            call.offers.append(record)
            received = call.echo.received if call.echo is not None else 0
            if call.refuse_next is not None:
                code, call.refuse_next = call.refuse_next, None
                refuse_offer(ua, code)
                record.settle(code, "refused", self._reactor.seconds(), received)
                return
            body = event.getData()
            if body is not None:
                call.remote_media = parse_sdp(str(body)) or call.remote_media
            ua.recvEvent(CCEventConnect((200, "OK", self._sdp(call))))
            record.settle(200, "OK", self._reactor.seconds(), received)

    def _on_peer_request(self, call: EchoCall, req: Any) -> None:
        if self._raw is not None:
            headers, _ = self._raw.headers(req)
        else:
            headers = headers_of(req)
        if len(call.peer_requests) < MAX_PEER_REQUESTS:
            call.peer_requests.append((str(req.getMethod()), headers))

    def _on_connected(self, call: EchoCall, ua: Any, rtime: Any, origin: Any, *rest: Any) -> None:
        if call.state != "ringing":
            return
        call.state = "answered"
        call.answered_at = self._reactor.seconds()
        call.final_code = 200
        duration = call.script.call_duration or 0.0
        if duration > 0:
            self._later(call, duration, self._hang_up, call, call.transfer)

    def _on_disconnected(
        self, call: EchoCall, ua: Any, rtime: Any, origin: Any, *rest: Any
    ) -> None:
        if call._ending is not None:
            ended_by = call._ending
        elif call.state == "ringing":
            ended_by = "cancelled"
            call.final_code = 487
        else:
            ended_by = "peer"
        self._ended(call, ended_by)

    def _on_failed(self, call: EchoCall, ua: Any, rtime: Any, origin: Any, *rest: Any) -> None:
        call.final_code = rest[0] if rest and isinstance(rest[0], int) else call.final_code
        self._ended(call, call._ending or "failed")

    def _ended(self, call: EchoCall, ended_by: str) -> None:
        if call.state == "ended":
            return
        call.state = "ended"
        call.ended_by = ended_by
        call.ended_at = self._reactor.seconds()
        for timer in call._timers:
            if timer.active():
                timer.cancel()
        call._timers.clear()
        self._live.pop(call.id, None)
        if call._port is not None:
            port, call._port = call._port, None
            self._lingering[port] = self._reactor.callLater(ECHO_LINGER, self._close, port)
        if call._decoy_port is not None:
            decoy, call._decoy_port = call._decoy_port, None
            self._lingering[decoy] = self._reactor.callLater(ECHO_LINGER, self._close, decoy)
        log.info(
            "echo bot: call {call} ended ({ended_by}); RTP {rtp}",
            call=call.id,
            ended_by=ended_by,
            rtp=call.echo.to_json() if call.echo is not None else None,
        )

    def _close(self, port: IListeningPort) -> None:
        self._lingering.pop(port, None)
        port.stopListening()

    def stop(self) -> None:
        """End every call: answered ones with a BYE, ringing ones with 480; close RTP ports."""
        for call in list(self._live.values()):
            try:
                if call.state == "answered":
                    self._hang_up(call, False)
                else:
                    self.end_call(call.id)
            except Exception:
                log.failure("echo bot: ending call {call} on stop raised", call=call.id)
            self._ended(call, call._ending or "stopped")
        for port, timer in list(self._lingering.items()):
            if timer.active():
                timer.cancel()
            self._close(port)


_REASONS = {
    404: "Not Found",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    500: "Server Internal Error",
    503: "Service Unavailable",
    600: "Busy Everywhere",
    603: "Decline",
}
