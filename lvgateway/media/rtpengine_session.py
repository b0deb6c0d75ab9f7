"""One call's media on the rtpengine engine: offer, answer, query and delete on the instance it was given.

A session belongs to one rtpengine instance for its whole life, chosen when
the call arrives (:meth:`~lvgateway.media.rtpengine.RtpengineMediaRelay.new_session`).
Its SDP hooks send each side's SDP to that instance (``offer`` or
``answer``, :func:`~lvgateway.media.rtpengine_policy.exchange`) and hand
on the SDP rtpengine returns, which names rtpengine's ports: both hooks
answer through ``result_callback`` on a later reactor turn. A body the
Twisted relay would refuse (no audio stream, a host name, unparseable) is
refused here too, 488, before rtpengine sees it; rtpengine's own refusal is
502, no reply 503.

**Media profiles.** Before each vendor-leg INVITE the SIP part says which
vendor endpoint it dials (:meth:`RtpengineMediaSession.use_vendor_profile`):
each ``offer`` and ``answer`` carries
:func:`~lvgateway.media.profiles.ng_flags` for the side its SDP goes to
(the endpoint's profile and codec map toward the vendor, plain RTP toward
LiveVox). The vendor's answer is checked against the profile
(:func:`~lvgateway.media.srtp_answer.check_vendor_answer`) before rtpengine
sees it: one without the crypto the profile requires fails the hook with
488 and one warning naming the endpoint and the cause, and the call fails
over or ends.

The engine polls the session (``query``) for its counters, which feed the
media metrics and the media-timeout rule (:func:`~lvgateway.media.counters.silent_side`);
:meth:`RtpengineMediaSession.release` deletes the call on rtpengine and
keeps the counters of the ``delete`` reply as the final ones.
"""

from __future__ import annotations

import time
from secrets import token_hex
from typing import TYPE_CHECKING, Any

import attrs
from sippy.SdpBody import SdpBody
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from lvgateway.config.media_profiles import CodecMap, MediaProfile
from lvgateway.media.answered import AnsweredSession
from lvgateway.media.counters import MediaCounters, MediaSide
from lvgateway.media.errors import MediaSdpError, MediaSessionReleasedError
from lvgateway.media.interfaces import IMediaSession, SdpResultCallback
from lvgateway.media.latching import LatchMode
from lvgateway.media.profiles import ng_flags
from lvgateway.media.rtpengine_ng import NgError
from lvgateway.media.rtpengine_policy import (
    BASE_OPTIONS,
    TAGS,
    counters_from_report,
    exchange,
    latching_flags,
    other_side,
    sdp_port,
)
from lvgateway.media.sdp import DTLS_SRTP_TRANSPORTS, RTP_TRANSPORTS, rewrite_sdp
from lvgateway.media.srtp_answer import SrtpAnswerFailure, check_vendor_answer

if TYPE_CHECKING:
    from lvgateway.media.rtpengine import RtpengineInstanceState, RtpengineMediaRelay

__all__ = ["RtpengineMediaSession"]

log = Logger()

#: Only checks a body the way the Twisted relay would; nothing is sent to this address.
_CHECK_ADDRESS = "192.0.2.1"
#: What each side's ``m=audio`` may carry: rtpengine terminates DTLS-SRTP
#: toward the vendor; LiveVox's side is RTP (its SRTP, if any, passes as is).
_TAKEN: dict[MediaSide, frozenset[str]] = {
    "livevox": RTP_TRANSPORTS,
    "vendor": RTP_TRANSPORTS | DTLS_SRTP_TRANSPORTS,
}


@implementer(IMediaSession)
@attrs.define(eq=False)
class RtpengineMediaSession(AnsweredSession):
    """One call on one rtpengine instance; made by :meth:`RtpengineMediaRelay.new_session`.

    :param call_id: the gateway's call id, for logs.
    :param relay: the engine it belongs to.
    :param instance: the rtpengine instance carrying the call.
    :param vendor_latching: the vendor side's latching (LiveVox's is strict).
    """

    call_id: str
    _relay: RtpengineMediaRelay
    instance: RtpengineInstanceState
    vendor_latching: LatchMode = "strict"
    #: The vendor endpoint being dialled, its media profile and codec map.
    endpoint: str = attrs.field(default="", init=False)
    profile: MediaProfile = attrs.field(default="rtp", init=False)
    codec_map: CodecMap | None = attrs.field(default=None, init=False)
    #: rtpengine's call id: the gateway's, made unique (a deleted call lingers there a while).
    ng_call_id: str = attrs.field(init=False)
    _open_offer_from: MediaSide | None = attrs.field(default=None, init=False)
    _answered_once: bool = attrs.field(default=False, init=False)
    _ports: dict[MediaSide, int | None] = attrs.field(
        factory=lambda: {"livevox": None, "vendor": None}, init=False
    )
    _counters: MediaCounters = attrs.field(factory=MediaCounters, init=False)
    _answered_at: float | None = attrs.field(default=None, init=False)
    _released: bool = attrs.field(default=False, init=False)
    _final: bool = attrs.field(default=False, init=False)
    _polling: bool = attrs.field(default=False, init=False)
    _signalled: bool = attrs.field(default=False, init=False)
    _waiters: list[Deferred[None]] = attrs.field(factory=list, init=False)
    _muted: set[MediaSide] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        self.ng_call_id = f"{self.call_id}-{token_hex(4)}"

    @property
    def livevox_port(self) -> int | None:
        """rtpengine's LiveVox-facing RTP port, once the SDP toward LiveVox is known."""
        return self._ports["livevox"]

    @property
    def vendor_port(self) -> int | None:
        """rtpengine's vendor-facing RTP port, once the SDP toward the vendor is known."""
        return self._ports["vendor"]

    def use_vendor_profile(
        self, endpoint: str, profile: MediaProfile, codec_map: CodecMap | None = None
    ) -> None:
        """See :meth:`IMediaSession.use_vendor_profile`: the next offers and answers carry it.

        After a failover the session starts a new call on rtpengine, and
        deletes the one the last endpoint was offered: with rtpengine 10.5,
        a DTLS-SRTP re-offer on a call first offered SDES was answered but
        its handshake with baresip never completed
        (``tests/test_sip_srtp_gateway.py``); a fresh call did.
        """
        self.endpoint, self.profile, self.codec_map = endpoint, profile, codec_map
        if self._signalled and not self._released:
            self._start_over()

    def _start_over(self) -> None:
        """Drop the call on rtpengine (in the background) and continue under a fresh call id."""
        old = self.ng_call_id
        deleted = self._relay.command(self.instance, {"command": "delete", "call-id": old})
        deleted.addErrback(
            lambda f: log.debug(
                "media {call_id}: deleting {ng_call_id} on rtpengine failed: {reason}",
                call_id=self.call_id,
                ng_call_id=old,
                reason=str(f.value),
            )
        )
        self.ng_call_id = f"{self.call_id}-{token_hex(4)}"
        self._open_offer_from = None
        self._answered_once = False
        self._signalled = False
        self._ports = {"livevox": None, "vendor": None}
        log.debug(
            "media {call_id}: a new vendor endpoint: on rtpengine as {ng_call_id}",
            call_id=self.call_id,
            ng_call_id=self.ng_call_id,
        )

    def on_caller_sdp_change(self, sdp_body: Any, result_callback: SdpResultCallback) -> None:
        """See :meth:`IMediaSession.on_caller_sdp_change`; calls back on a later turn."""
        self._update("livevox", sdp_body, result_callback)

    def on_callee_sdp_change(self, sdp_body: Any, result_callback: SdpResultCallback) -> Any:
        """See :meth:`IMediaSession.on_callee_sdp_change`: always returns ``None``, calls back later."""
        self._update("vendor", sdp_body, result_callback)
        return None

    def _fail_later(self, result_callback: SdpResultCallback, error: Exception) -> None:
        self._relay.reactor.callLater(0, result_callback, None, ex=error)

    def _update(self, side: MediaSide, sdp_body: Any, result_callback: SdpResultCallback) -> None:
        if self._released:
            error = MediaSessionReleasedError(f"media of call {self.call_id} already released")
            self._fail_later(result_callback, error)
            return
        try:
            rewrite_sdp(sdp_body.getCopy(), _CHECK_ADDRESS, 9, _TAKEN[side])
        except MediaSdpError as e:
            log.warn(
                "media {call_id}: {side}'s SDP refused: {reason}",
                call_id=self.call_id,
                side=side,
                reason=str(e),
            )
            self._fail_later(result_callback, e)
            return
        command, offerer = exchange(side, self._open_offer_from)
        refused = self._refused_answer(side, command, str(sdp_body))
        if refused is not None:
            log.warn(refused.log_format, call_id=self.call_id, **refused.log_fields())
            self._fail_later(result_callback, refused.as_error())
            return
        mode: LatchMode = self.vendor_latching if side == "vendor" else "strict"
        message: dict[str, Any] = {
            "command": command,
            "call-id": self.ng_call_id,
            "from-tag": TAGS[offerer],
            "sdp": str(sdp_body),
            "flags": latching_flags(mode),
            **BASE_OPTIONS,
            **ng_flags(self.profile, self.codec_map, command, toward=other_side(side)),
        }
        if command == "answer" or self._answered_once:
            message["to-tag"] = TAGS[other_side(offerer)]
        self._signalled = True
        sent = self._relay.command(self.instance, message)
        sent.addCallbacks(
            self._updated,
            self._update_failed,
            callbackArgs=(side, command, sdp_body, result_callback),
            errbackArgs=(side, command, result_callback),
        )

    def _refused_answer(self, side: MediaSide, command: str, sdp: str) -> SrtpAnswerFailure | None:
        """Why the vendor's answer cannot carry the profile's media, or None (offers are not checked)."""
        if side != "vendor" or command != "answer":
            return None
        return check_vendor_answer(self.endpoint or "the vendor", self.profile, sdp)

    def _updated(
        self,
        reply: dict[str, Any],
        side: MediaSide,
        command: str,
        sdp_body: Any,
        result_callback: SdpResultCallback,
    ) -> None:
        text = reply.get("sdp")
        if not isinstance(text, str):
            error = NgError(f"rtpengine's {command} reply has no SDP")
            self._update_failed(Failure(error), side, command, result_callback)  # type: ignore[no-untyped-call]
            return
        if command == "offer":
            self._open_offer_from = side
        else:
            self._open_offer_from = None
            self._answered_once = True
        facing = other_side(side)  # the SDP goes to the other side, naming the ports it sends to
        self._ports[facing] = sdp_port(text)
        sdp_body.content = SdpBody(text)
        sdp_body.parsed = True
        sdp_body.needs_update = False
        log.debug(
            "media {call_id}: {side}'s SDP {command}ed on rtpengine {instance}: {facing}-facing"
            " port {port}",
            call_id=self.call_id,
            side=side,
            command=command,
            instance=self.instance.name,
            facing=facing,
            port=self._ports[facing],
        )
        result_callback(sdp_body)

    def _update_failed(
        self, failure: Failure, side: MediaSide, command: str, result_callback: SdpResultCallback
    ) -> None:
        error = failure.value
        if not isinstance(error, NgError):
            log.failure(
                "media {call_id}: {command} of {side}'s SDP failed",
                failure,
                call_id=self.call_id,
                command=command,
                side=side,
            )
            error = NgError(f"{command} failed: {type(error).__name__}")
        else:
            log.warn(
                "media {call_id}: {command} of {side}'s SDP on rtpengine {instance} failed: {reason}",
                call_id=self.call_id,
                command=command,
                side=side,
                instance=self.instance.name,
                reason=str(error),
            )
        result_callback(None, ex=error)

    def poll(self) -> Deferred[None] | None:
        """Ask rtpengine for the call's counters (``query``); ``None`` when one is in flight or released."""
        if self._polling or self._released or self._ports["vendor"] is None:
            return None
        self._polling = True
        asked = self._relay.command(self.instance, {"command": "query", "call-id": self.ng_call_id})

        def done(result: dict[str, Any] | Failure) -> None:
            self._polling = False
            if isinstance(result, Failure):
                log.debug(
                    "media {call_id}: query failed: {reason}",
                    call_id=self.call_id,
                    reason=str(result.value),
                )
            elif not self._final:
                self._counters = self._from_report(result)

        return asked.addBoth(done)

    def _from_report(self, report: dict[str, Any]) -> MediaCounters:
        ports = (self._ports["livevox"], self._ports["vendor"])
        return counters_from_report(report, time.time(), self._relay.monotonic(), ports)

    def mute(self, side: MediaSide) -> Deferred[None]:
        """See :meth:`IMediaSession.mute`: rtpengine's ``block media`` for that side's tag.

        rtpengine drops what the side sends from then on (its RTCP too) and
        does not report the drops; a failure is logged, and the call goes on.
        """
        if side in self._muted or self._released:
            return succeed(None)
        self._muted.add(side)
        blocked = self._relay.command(
            self.instance,
            {"command": "block media", "call-id": self.ng_call_id, "from-tag": TAGS[side]},
        )

        def done(result: dict[str, Any] | Failure) -> None:
            if isinstance(result, Failure):
                log.warn(
                    "media {call_id}: muting the {side} on rtpengine {instance} failed: {reason}",
                    call_id=self.call_id,
                    side=side,
                    instance=self.instance.name,
                    reason=str(result.value),
                )
            else:
                log.info("media {call_id}: {side} muted", call_id=self.call_id, side=side)

        return blocked.addBoth(done)

    def counters(self) -> MediaCounters:
        """See :meth:`IMediaSession.counters`: the last poll's, or the ``delete`` reply's after release."""
        if self._muted:
            return attrs.evolve(self._counters, muted=frozenset(self._muted))
        return self._counters

    def release(self) -> Deferred[None]:
        """See :meth:`IMediaSession.release`: ``delete`` on rtpengine; fires when it answered or gave up."""
        waiter: Deferred[None] = Deferred()
        if self._final:
            waiter.callback(None)
            return waiter
        self._waiters.append(waiter)
        if self._released:
            return waiter
        self._released = True
        if not self._signalled:  # rtpengine never heard of the call
            self._deleted({})
            return waiter
        deleted = self._relay.command(
            self.instance, {"command": "delete", "call-id": self.ng_call_id}
        )
        deleted.addBoth(self._deleted)
        return waiter

    def _deleted(self, result: dict[str, Any] | Failure) -> None:
        if isinstance(result, Failure):
            log.warn(
                "media {call_id}: delete on rtpengine {instance} failed: {reason}"
                " (rtpengine ends the call itself when its media times out)",
                call_id=self.call_id,
                instance=self.instance.name,
                reason=str(result.value),
            )
        elif "tags" in result:
            self._counters = self._from_report(result)
        self._final = True
        final = self._counters
        self._relay._session_released(self, final)
        log.info(
            "media {call_id}: released on rtpengine {instance}; relayed {lv_packets} packets from"
            " LiveVox, {vd_packets} from the vendor; dropped {dropped}",
            call_id=self.call_id,
            instance=self.instance.name,
            lv_packets=final.livevox_to_vendor.packets,
            vd_packets=final.vendor_to_livevox.packets,
            dropped=dict(final.dropped),
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
