"""One call's media on the rtp.io engine: Sippy's ``Rtp_proxy_session``, wrapped to keep its contracts.

Sippy's session does the per-call SDP work, as in ``sippy/b2bua.py``: its
``caller`` side is LiveVox (the A leg), its ``callee`` side the vendor (the
B leg), and the SIP part attaches :class:`RtpioMediaSession` to the vendor
leg as it attaches the Twisted engine's sessions (docs/design.md, pitfall 6).
What the wrapper adds:

- *Both SDP hooks always answer through the callback.* Sippy's
  ``Rtp_proxy_session.on_caller_sdp_change`` and ``on_callee_sdp_change``
  drop what ``_on_sdp_change`` returns, and it returns the body
  synchronously when there is no RTP stream (or the body is a string): the
  call would then hang, nothing calling back. It also raises
  ``SdpParseError`` synchronously, which ``UacStateTrying`` and
  ``UacStateRinging`` do not catch. Here the hooks call
  ``_on_sdp_change`` themselves and route its return value and its
  exceptions to ``result_callback``; the vendor's hook always returns
  ``None`` and calls back on a later reactor turn.
- *Bounded hooks.* A hook whose rtpproxy reply has not come within the
  engine's ``command_timeout`` fails with :class:`RtpioError` (503): a hung
  engine fails the call instead of leaving it in Sippy's state machine for
  ever. rtpproxy's own refusals (``E<code>``, such as no free port) are 503
  too.
- *The same SDP rules as the Twisted engine.* Each body is first checked
  with :func:`~lvgateway.media.sdp.rewrite_sdp` on a copy (488 for no audio
  stream, a host name, unparseable text); every ``m=`` section but the first
  RTP audio one is disabled (port 0) and hidden from Sippy while it works,
  so rtpproxy relays one stream a call; the relay's address in ``c=``,
  ``a=rtcp:`` and ``o=`` is ``MediaConfig.advertised_host`` (rtpproxy's
  own ``-A`` is not reflected in its replies).
- *Gateway media timeouts.* rtpproxy's session timeouts are process-wide
  and reported on its notify socket; the per-call timeouts are the
  gateway's. The engine polls each session's counters with ``Q``
  (:meth:`RtpioMediaSession.poll`), and :meth:`RtpioMediaSession.silent_side`
  applies :func:`~lvgateway.media.counters.silent_side` at the time of the
  last poll. A side's "last heard" time is the poll that first saw its count
  grow, so a timeout is noticed up to one poll interval late, never early.

**Counters.** rtpproxy counts RTP packets, not bytes, and not RTCP: a
session's per-direction packets are the RTP packets relayed (split by what
each side sent when some were dropped), ``bytes`` stays 0, and rtpproxy's
drops are counted as ``no_destination``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from sippy.Exceptions.RtpProxyError import RtpProxyError
from sippy.Exceptions.SdpParseError import SdpParseError
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from lvgateway.media.counters import (
    DROP_REASONS,
    FlowCounters,
    MediaCounters,
    MediaSide,
    silence_of,
    silent_side,
)
from lvgateway.media.errors import (
    MediaError,
    MediaSdpError,
    MediaSessionReleasedError,
)
from lvgateway.media.interfaces import IMediaSession, SdpResultCallback
from lvgateway.media.profiles import PlainRtpOnly
from lvgateway.media.rtpio_client import parse_query
from lvgateway.media.sdp import RTP_TRANSPORTS, MediaTarget, rewrite_sdp, sdp_address_type

if TYPE_CHECKING:
    from lvgateway.media.rtpio import RtpioMediaRelay

__all__ = ["RtpioError", "RtpioMediaSession"]

log = Logger()


class RtpioError(RtpProxyError, MediaError):  # type: ignore[misc]
    """rtp.io did not answer in time, refused a command, or is shutting down (answered 503)."""

    code = 503
    msg = "Service Unavailable"


def _audio_index(sdp: Any) -> int:
    for i, sect in enumerate(sdp.sections):
        m = sect.m_header
        if m.stype.lower() == "audio" and m.transport.lower() in RTP_TRANSPORTS:
            return i
    raise MediaSdpError("no RTP audio stream in the SDP")


@attrs.define(eq=False)
class _SdpChange:
    """One SDP hook call in progress: delivers its result once, restores hidden sections."""

    session: RtpioMediaSession
    side: MediaSide
    body: Any
    deliver: Callable[..., Any]
    target: MediaTarget
    audio: Any
    hidden: list[tuple[int, Any]]
    done: bool = False
    timer: Any = None

    def finish(self, body: Any, *_: Any, ex: Exception | None = None) -> None:
        """Sippy's ``result_callback``: ``finish(body)`` or ``finish(None, ex=error)``."""
        if self.done:
            return
        self.done = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        sdp = self.body.content
        for index, sect in self.hidden:
            sdp.sections.insert(index, sect)
        self.session._sdp_finished(self, body, ex)

    def time_out(self) -> None:
        """No reply from rtpproxy in time."""
        self.timer = None
        relay = self.session._relay
        self.finish(
            None,
            ex=RtpioError(
                f"rtp.io did not answer within {relay.command_timeout:g} s"
                f" ({self.side}'s SDP, call {self.session.call_id})"
            ),
        )


@implementer(IMediaSession)
@attrs.define(eq=False)
class RtpioMediaSession(PlainRtpOnly):
    """One call's rtpproxy session; made by :meth:`RtpioMediaRelay.new_session`.

    :param call_id: the gateway's call id, for logs.
    :param rtpp_id: the session's call id in rtpproxy (the call id made safe, plus a suffix).
    """

    engine_name = "rtpio"

    call_id: str
    rtpp_id: str
    _relay: RtpioMediaRelay
    _rtpps: Any
    _answered_at: float | None = attrs.field(default=None, init=False)
    _released: bool = attrs.field(default=False, init=False)
    _closed: bool = attrs.field(default=False, init=False)
    _close_timer: Any = attrs.field(default=None, init=False)
    _waiters: list[Deferred[None]] = attrs.field(factory=list, init=False)
    _polling: bool = attrs.field(default=False, init=False)
    _polled_at: float | None = attrs.field(default=None, init=False)
    _from_livevox: int = attrs.field(default=0, init=False)
    _from_vendor: int = attrs.field(default=0, init=False)
    _relayed: int = attrs.field(default=0, init=False)
    _dropped: int = attrs.field(default=0, init=False)
    _mute_refused: bool = attrs.field(default=False, init=False)
    _heard_livevox: float | None = attrs.field(default=None, init=False)
    _heard_vendor: float | None = attrs.field(default=None, init=False)
    _pending: set[_SdpChange] = attrs.field(factory=set, init=False)
    #: The relay's RTP port put in each side's SDP (facing the other side).
    _ports: dict[MediaSide, int] = attrs.field(factory=dict, init=False)

    # -- SDP --------------------------------------------------------------

    def on_caller_sdp_change(self, sdp_body: Any, result_callback: SdpResultCallback) -> None:
        """See :meth:`IMediaSession.on_caller_sdp_change`: LiveVox's SDP, sent to the vendor.

        Errors found before rtpproxy is asked are called back before this
        returns; rtpproxy's answer comes on a later reactor turn.
        """
        self._sdp_change("livevox", self._rtpps.caller, sdp_body, result_callback)

    def on_callee_sdp_change(self, sdp_body: Any, result_callback: SdpResultCallback) -> Any:
        """See :meth:`IMediaSession.on_callee_sdp_change`: always ``None``, the result called back later."""
        reactor = self._relay.reactor

        def later(*args: Any, **kwargs: Any) -> None:
            reactor.callLater(0, result_callback, *args, **kwargs)

        self._sdp_change("vendor", self._rtpps.callee, sdp_body, result_callback, later)
        return None

    def _sdp_change(
        self,
        side: MediaSide,
        rtpps_side: Any,
        sdp_body: Any,
        result_callback: SdpResultCallback,
        now: Callable[..., Any] | None = None,
    ) -> None:
        """Check the body, hide the sections not relayed, and hand it to Sippy's side.

        ``now`` delivers an outcome known before rtpproxy is asked (the
        vendor's hook must not call back before it returns).
        """
        immediate = now or result_callback
        if self._released:
            immediate(
                None, ex=MediaSessionReleasedError(f"media of call {self.call_id} already released")
            )
            return
        relay = self._relay
        if not relay.running:
            immediate(None, ex=RtpioError("media relay (rtp.io) not running"))
            return
        try:
            try:
                sdp_body.parse()
            except Exception as e:
                raise MediaSdpError(f"unparseable SDP: {e}") from e
            target = rewrite_sdp(sdp_body.getCopy(), relay.address, 1)  # the checks only
            sdp = sdp_body.content
            audio_at = _audio_index(sdp)
        except MediaSdpError as e:
            log.warn(
                "media {call_id}: {side}'s SDP refused: {reason}",
                call_id=self.call_id,
                side=side,
                reason=str(e),
            )
            immediate(None, ex=e)
            return
        except Exception as e:
            log.failure(
                "media {call_id}: checking {side}'s SDP failed", call_id=self.call_id, side=side
            )
            immediate(None, ex=MediaSdpError(f"SDP could not be checked: {type(e).__name__}"))
            return
        atype = sdp_address_type(relay.address)
        hidden = []
        for index, sect in enumerate(sdp.sections):
            if index != audio_at:
                sect.m_header.port = 0
                sect.c_header.atype = atype
                sect.c_header.addr = relay.address
                hidden.append((index, sect))
        audio = sdp.sections[audio_at]
        sdp.sections = [audio]
        # A body or section marked done would make Sippy's finish return silently.
        sdp_body.needs_update = True
        audio.needs_update = True
        change = _SdpChange(self, side, sdp_body, immediate, target, audio, hidden)
        self._pending.add(change)
        try:
            returned = rtpps_side._on_sdp_change(self._rtpps, sdp_body, change.finish)
        except SdpParseError as e:
            error = e if isinstance(e, MediaSdpError) else MediaSdpError(str(e))
            change.finish(None, ex=error)
            return
        except Exception as e:
            log.failure(
                "media {call_id}: rtp.io refused {side}'s SDP", call_id=self.call_id, side=side
            )
            change.finish(None, ex=RtpioError(f"rtp.io could not take the SDP: {type(e).__name__}"))
            return
        if returned is not None:  # synchronous: Sippy's session would have dropped it
            change.finish(returned)
            return
        if not change.done:
            change.deliver = result_callback  # from here on, only replies on later turns
            change.timer = relay.reactor.callLater(relay.command_timeout, change.time_out)

    def _sdp_finished(self, change: _SdpChange, body: Any, ex: Exception | None) -> None:
        self._pending.discard(change)
        if ex is None and body is None:
            ex = RtpioError("rtp.io gave no answer")
        if ex is not None:
            if not isinstance(ex, (SdpParseError, MediaError)):
                # Sippy's own RtpProxyError (502) for rtpproxy's "E<code>" replies,
                # such as no free port: the relay's trouble, 503 as for a full range.
                ex = RtpioError(f"rtp.io refused: {ex}")
            log.warn(
                "media {call_id}: {side}'s SDP not relayed: {reason}",
                call_id=self.call_id,
                side=change.side,
                reason=str(ex),
            )
            change.deliver(None, ex=ex)
            return
        self._advertise(body)
        port = int(change.audio.m_header.port)
        if port:
            self._ports[change.side] = port
        log.debug(
            "media {call_id}: {side} wants RTP at {rtp} (hold: {hold}); relay port {port}",
            call_id=self.call_id,
            side=change.side,
            rtp=change.target.rtp,
            hold=change.target.hold,
            port=port,
        )
        change.deliver(body)

    def _advertise(self, body: Any) -> None:
        """Put the advertised address where rtpproxy's reply (its bound address) went."""
        address = self._relay.address
        atype = sdp_address_type(address)
        sdp = body.content
        for sect in sdp.sections:
            if sect.c_header is not None:
                sect.c_header.atype = atype
                sect.c_header.addr = address
            for a in sect.a_headers:
                if a.name == "rtcp" and a.value:
                    a.value = f"{a.value.split()[0]} IN {atype} {address}"
        if sdp.c_header is not None:
            sdp.c_header.atype = atype
            sdp.c_header.addr = address
        body.needs_update = False

    @property
    def livevox_port(self) -> int | None:
        """The LiveVox-facing RTP port (in the SDP sent to LiveVox), once the vendor's SDP was relayed."""
        return self._ports.get("vendor")

    @property
    def vendor_port(self) -> int | None:
        """The vendor-facing RTP port (in the SDP sent to the vendor), once LiveVox's SDP was relayed."""
        return self._ports.get("livevox")

    # -- counters and timeouts --------------------------------------------

    def _exists(self) -> bool:
        return bool(self._rtpps.caller.session_exists or self._rtpps.callee.session_exists)

    def _query(self) -> str:
        rtpps = self._rtpps
        return f"Q {self.rtpp_id}-0 {rtpps.from_tag} {rtpps.to_tag}"

    def poll(self) -> bool:
        """Ask rtpproxy for this session's counters, unless a poll is in flight; return whether asked."""
        if self._polling or self._released or not self._exists():
            return False
        client = self._relay._client
        if client is None:
            return False
        self._polling = True
        client.send_command(self._query(), self._polled)
        return True

    def _polled(self, reply: Any, *_: Any, **__: Any) -> None:
        self._polling = False
        counts = parse_query(reply)
        if counts is None:
            return  # not created yet, or already gone
        now = self._relay.monotonic()
        if counts["from_caller"] > self._from_livevox:
            self._heard_livevox = now
        if counts["from_callee"] > self._from_vendor:
            self._heard_vendor = now
        self._from_livevox = counts["from_caller"]
        self._from_vendor = counts["from_callee"]
        self._relayed = counts["relayed"]
        self._dropped = counts["dropped"]
        self._polled_at = now

    def mark_answered(self) -> None:
        """See :meth:`IMediaSession.mark_answered`."""
        if self._answered_at is None:
            self._answered_at = self._relay.monotonic()

    def silent_side(self) -> MediaSide | None:
        """See :meth:`IMediaSession.silent_side`: the rule applied at the last poll's time.

        ``None`` until a poll has completed after the answer, so a stalled
        engine (no polls) never ends calls on a guess.
        """
        answered = self._answered_at
        polled = self._polled_at
        if answered is None or self._released or polled is None or polled < answered:
            return None
        config = self._relay.config
        return silent_side(
            self.counters(), polled, answered, config.initial_timeout, config.timeout
        )

    def silence(self, side: MediaSide) -> float | None:
        """See :meth:`IMediaSession.silence`: as of the last poll, ``None`` until one after the answer."""
        answered = self._answered_at
        polled = self._polled_at
        if answered is None or self._released or polled is None or polled < answered:
            return None
        return silence_of(self.counters(), side, polled, answered)

    def mute(self, side: MediaSide) -> Deferred[None]:
        """See :meth:`IMediaSession.mute`: rtpproxy has no command to stop one direction, so this engine cannot."""
        if not self._mute_refused:
            self._mute_refused = True
            log.warn(
                "media {call_id}: rtp.io cannot mute the {side}; its audio still reaches the"
                " other side (the Twisted relay can)",
                call_id=self.call_id,
                side=side,
            )
        return succeed(None)

    def counters(self) -> MediaCounters:
        """See :meth:`IMediaSession.counters`: as of the last poll (RTP packets; no bytes, no RTCP)."""
        heard = self._from_livevox + self._from_vendor
        relayed = self._relayed
        if relayed >= heard:  # nothing dropped: exact
            to_vendor = self._from_livevox
        else:  # some dropped: split what went by what came
            to_vendor = round(relayed * self._from_livevox / heard)
        to_livevox = relayed - to_vendor
        return MediaCounters(
            livevox_to_vendor=FlowCounters(to_vendor, 0),
            vendor_to_livevox=FlowCounters(to_livevox, 0),
            dropped={**dict.fromkeys(DROP_REASONS, 0), "no_destination": self._dropped},
            last_from_livevox=self._heard_livevox,
            last_from_vendor=self._heard_vendor,
            livevox_port=self.livevox_port,
            vendor_port=self.vendor_port,
        )

    # -- release ----------------------------------------------------------

    def release(self) -> Deferred[None]:
        """See :meth:`IMediaSession.release`.

        Sends a last ``Q`` (the final counters) and ``D`` for the session;
        fires on the ``D`` reply, which gives rtpproxy its ports back (it
        closes their sockets and reuses them lazily), or after
        ``command_timeout`` if rtp.io does not answer.
        """
        waiter: Deferred[None] = Deferred()
        if self._closed:
            waiter.callback(None)
            return waiter
        self._waiters.append(waiter)
        if self._released:
            return waiter
        self._released = True
        relay = self._relay
        relay._session_released(self)
        rtpps = self._rtpps
        client = relay._client
        indices = range(rtpps.max_index + 1)
        # Detach Sippy's session: its sequencer sends nothing more, and its
        # __del__ has nothing left to delete.
        sequencer = rtpps.rtpp_seq
        if sequencer is not None:
            sequencer.comqueue.clear()
            sequencer.delete()
        rtpps.max_index = -1
        rtpps.rtp_proxy_client = None
        if client is None or not indices or relay._watch is None or relay._watch.closed:
            self._close()
            return waiter
        if not self._polling:
            self._polling = True
            client.send_command(self._query(), self._polled)
        for index in indices:
            last = index == indices[-1]
            client.send_command(
                f"D {self.rtpp_id}-{index} {rtpps.from_tag} {rtpps.to_tag}",
                self._deleted if last else None,
            )
        self._close_timer = relay.reactor.callLater(
            relay.command_timeout, self._close, "rtp.io did not answer its D"
        )
        return waiter

    def _deleted(self, reply: Any, *_: Any, **__: Any) -> None:
        self._close("deleted" if reply == "0" else f"rtp.io answered its D with {reply!r}")

    def _close(self, how: str = "never created in rtp.io") -> None:
        if self._closed:
            return
        self._closed = True
        if self._close_timer is not None and self._close_timer.active():
            self._close_timer.cancel()
        final = self.counters()
        self._relay._session_closed(self, final)
        emit = log.info if how in ("deleted", "never created in rtp.io") else log.warn
        emit(
            "media {call_id}: released rtp.io session {rtpp_id} ({how}; ports {livevox_port}"
            " LiveVox-facing, {vendor_port} vendor-facing); {lv_packets} RTP packets from LiveVox,"
            " {vd_packets} from the vendor; dropped {dropped}",
            how=how,
            call_id=self.call_id,
            rtpp_id=self.rtpp_id,
            livevox_port=final.livevox_port,
            vendor_port=final.vendor_port,
            lv_packets=self._from_livevox,
            vd_packets=self._from_vendor,
            dropped=self._dropped,
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
