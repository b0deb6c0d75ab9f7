# ruff: noqa: N805  (zope Interface methods are declared without self)
"""The media seams: an engine (:class:`IMediaRelay`) and one call's media (:class:`IMediaSession`).

A session's two SDP hooks have exactly the signatures and contracts of
Sippy's ``UA.on_local_sdp_change`` and ``UA.on_remote_sdp_change``, and of
Sippy's own ``Rtp_proxy_session``, so the SIP part attaches a session to the
**vendor leg** (docs/design.md, Sippy pitfall 6) as ``sippy/b2bua.py`` does::

    ua_vendor.on_local_sdp_change = media.on_caller_sdp_change
    ua_vendor.on_remote_sdp_change = media.on_callee_sdp_change

and passes the B leg a *copy* of LiveVox's body (``body.getCopy()``): the
hooks rewrite the body they are given in place.

The engines: :mod:`lvgateway.media.twisted_relay` (pure Twisted, here),
:mod:`lvgateway.media.rtpengine` (rtpengine daemons over the ng protocol),
and :mod:`lvgateway.media.rtpio` (in-process rtpproxy, whose session wraps
Sippy's ``Rtp_proxy_session``).
:mod:`lvgateway.media.testing` has a verified fake of both interfaces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from lvgateway.config.media_profiles import CodecMap, MediaProfile
from lvgateway.config.model import IPNetwork
from lvgateway.media.counters import MediaCounters, MediaSide, RelayStats

__all__ = ["IMediaRelay", "IMediaSession", "SdpResultCallback"]

#: ``result_callback(body)`` with the rewritten body, or
#: ``result_callback(None, ex=error)`` with a Sippy ``SdpParseError`` or
#: ``RtpProxyError`` subclass: Sippy's ``UA.delayed_*_sdp_update``.
SdpResultCallback = Callable[..., Any]


class IMediaSession(Interface):
    """The media of one bridged call: its relay ports, SDP rewriting, counters and release.

    *Caller* is LiveVox's side (the A leg), *callee* the AI vendor's (the B
    leg), as in Sippy's ``Rtp_proxy_session``.
    """

    call_id = Attribute("The gateway's id of the call, for logs (``str``).")

    def on_caller_sdp_change(sdp_body: Any, result_callback: SdpResultCallback) -> None:
        """Rewrite LiveVox's SDP, on its way to the vendor, to the relay's vendor-facing ports.

        Sippy's ``on_local_sdp_change`` contract: the return value is ignored,
        and ``result_callback`` is always called, exactly once, possibly
        before this method returns: ``result_callback(sdp_body)`` with the
        same body rewritten in place and its ``needs_update`` cleared, or
        ``result_callback(None, ex=error)``. LiveVox's addresses in it become
        where the relay sends LiveVox's media.

        :param sdp_body: a Sippy ``MsgBody`` of type ``application/sdp``.
        :param result_callback: Sippy's ``partial(ua.delayed_local_sdp_update, event)``.
        :errors: (through ``ex=``) :class:`~lvgateway.media.errors.MediaSdpError`
            (488) when the body cannot be relayed (unparseable, no audio
            stream, a host name instead of an address);
            :class:`~lvgateway.media.errors.MediaSessionReleasedError` (503)
            after :meth:`release`; an engine may add other ``RtpProxyError``
            subclasses (502).
        """

    def on_callee_sdp_change(sdp_body: Any, result_callback: SdpResultCallback) -> Any:
        """Rewrite the vendor's SDP, on its way to LiveVox, to the relay's LiveVox-facing ports.

        Sippy's ``on_remote_sdp_change`` contract: either return the body,
        rewritten in place, and never call ``result_callback``; or return
        ``None`` and call ``result_callback`` exactly once later, as for
        :meth:`on_caller_sdp_change`. Errors always take the second path
        (Sippy does not catch an exception from this hook everywhere).

        :param sdp_body: a Sippy ``MsgBody`` of type ``application/sdp``.
        :param result_callback: Sippy's ``partial(ua.delayed_remote_sdp_update, event)``.
        :returns: the rewritten ``sdp_body``, or ``None`` when the result
            comes through ``result_callback``.
        :errors: as :meth:`on_caller_sdp_change`.
        """

    def use_vendor_profile(
        endpoint: str, profile: MediaProfile, codec_map: CodecMap | None = None
    ) -> None:
        """Carry the vendor side's media as the endpoint about to be dialled asks.

        The SIP part calls it before each vendor-leg INVITE, so after a
        failover the next offer is made with the next endpoint's profile.
        Until the first call, the profile is ``rtp`` with no codec map. An
        engine that terminates SRTP offers the vendor ``profile`` (and
        ``codec_map``'s codec) and checks the vendor's answer against it
        (:func:`~lvgateway.media.srtp_answer.check_vendor_answer`): an answer
        without the profile's crypto fails the callee hook with the
        failure's :class:`~lvgateway.media.errors.MediaSdpError` (488). LiveVox's
        side stays plain RTP.

        :param endpoint: the endpoint's URI, for the log line of a failure.
        :param profile: the endpoint's ``media_profile``.
        :param codec_map: the endpoint's ``codec_map``, or None.
        :raises ValueError: the engine cannot carry ``profile`` (the config
            refuses such a pairing, so this is a bug).
        """

    def mark_answered() -> None:
        """Start the media timeouts: the call was answered (the B leg's 200 was relayed).

        Before this, :meth:`silent_side` never reports a side. Calling it
        again has no effect.
        """

    def silent_side() -> MediaSide | None:
        """Return the side silent past its media timeout, or ``None``.

        A side that has sent nothing since answer is silent after
        ``MediaConfig.initial_timeout``; one that has, after
        ``MediaConfig.timeout`` since its last datagram. The rule is
        :func:`lvgateway.media.counters.silent_side`, on the engine's clock.
        The SIP part polls it (a few seconds apart) and ends a call that has
        a silent side with the ``timeout`` end reason.
        """

    def silence(side: MediaSide) -> float | None:
        """Return how long ``side`` has sent no RTP or RTCP, counted from the answer; ``None`` before it.

        The SIP part asks it of the vendor's side, whose death it must notice
        in seconds: :func:`lvgateway.media.counters.silence_of` on the
        engine's clock.
        """

    def mute(side: MediaSide) -> Deferred[None]:
        """Stop relaying ``side``'s RTP to the other side, for the rest of the call.

        The SIP part mutes the vendor once a transfer to a person starts, so
        the customer does not hear the bot while LiveVox moves the call.
        Muted datagrams still count as heard from ``side`` (its media
        timeout does not fire) and are counted as dropped with reason
        ``muted``; RTCP still flows. Calling it again has no effect.

        :returns: ``Deferred[None]`` that fires once the engine applies it
            (at once in-process; after its answer for a daemon). It never
            errbacks: a failure is logged, and the call goes on.
        """

    def counters() -> MediaCounters:
        """Return a snapshot of the session's counters, also after release (the final ones)."""

    def release() -> Deferred[None]:
        """Stop relaying and give the session's ports back to the engine.

        Idempotent; the SDP hooks fail with
        :class:`~lvgateway.media.errors.MediaSessionReleasedError` afterwards.

        :returns: ``Deferred[None]`` that fires when every port is closed
            (re-bindable); it never errbacks, so a caller may drop it.
        """


class IMediaRelay(Interface):
    """A media engine: it makes one :class:`IMediaSession` per call and relays their RTP."""

    def start() -> None:
        """Start the engine (idempotent); :meth:`online` says when it is usable."""

    def stop() -> Deferred[None]:
        """Release every session and stop the engine.

        :returns: ``Deferred[None]`` that fires when every port is closed; it
            never errbacks.
        """

    def online() -> str | None:
        """Return ``None`` when a new call can get media, else a short reason why not.

        For the readiness check: "not started", "stopping", "no free media
        ports", or an engine's own trouble (rtp.io not answering).
        """

    def new_session(
        call_id: str, vendor_networks: Sequence[IPNetwork] = (), sip_call_id: str | None = None
    ) -> IMediaSession:
        """Allocate the media of one call, before its B leg is placed.

        Synchronous, so the SIP part can answer the INVITE from Sippy's
        request callback. An engine that must talk to something to allocate
        ports does so in the session's first SDP hook instead.

        :param call_id: the gateway's id of the call, for logs.
        :param vendor_networks: the networks the vendor's media may come from
            besides the address its SDP names: the addresses of the vendor
            endpoints the call may go to. LiveVox's allowed networks are the
            engine's, from ``sip.allowed_networks``.
        :param sip_call_id: the SIP ``Call-ID`` of the LiveVox leg, logged
            beside ``call_id`` as ``sip_call_id``.
        :returns: the session; the caller must :meth:`IMediaSession.release` it.
        :raises lvgateway.media.errors.MediaUnavailableError: (answer 503)
            :class:`~lvgateway.media.errors.PortsExhaustedError` when the
            port range is used up, or
            :class:`~lvgateway.media.errors.MediaNotRunningError` when the
            engine is not started or stopping.
        """

    def stats() -> RelayStats:
        """Return a snapshot of the engine's sessions, ports and totals."""
