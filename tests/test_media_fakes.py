"""The media fakes the SIP part tests with: verified against the interfaces, and faithful to the relay's contracts."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from sippy.MsgBody import MsgBody
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from lvgateway.media.counters import FlowCounters, MediaCounters, silent_side
from lvgateway.media.errors import (
    MediaNotRunningError,
    MediaSdpError,
    MediaSessionReleasedError,
    PortsExhaustedError,
)
from lvgateway.media.interfaces import IMediaRelay, IMediaSession
from lvgateway.media.testing import FakeMediaRelay


def offer(host: str = "192.0.2.10", port: int = 16384) -> MsgBody:
    """A one-stream audio SDP body."""
    return MsgBody(
        f"v=0\r\no=- 1 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )


class Results:
    """A Sippy-style ``result_callback`` that records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Exception | None]] = []

    def __call__(self, body: Any, ex: Exception | None = None) -> None:
        self.calls.append((body, ex))


def started(**kwargs: Any) -> FakeMediaRelay:
    """A started fake engine."""
    relay = FakeMediaRelay(**kwargs)
    relay.start()
    return relay


def test_fakes_provide_interfaces() -> None:
    """The fake engine and its sessions provide IMediaRelay and IMediaSession."""
    relay = started()
    assert verifyObject(IMediaRelay, relay)
    assert verifyObject(IMediaSession, relay.new_session("call-1"))


def test_deterministic_ports_and_rewrite() -> None:
    """Session n gets first_port + 4n and + 2, and SDP is rewritten to them as the relay would."""
    relay = started(address="203.0.113.5", first_port=40000)
    relay.new_session("call-0")
    s = relay.new_session("call-1", vendor_networks=[ipaddress.ip_network("198.51.100.0/24")])
    assert (s.livevox_port, s.vendor_port) == (40004, 40006)
    assert s.vendor_networks == (ipaddress.ip_network("198.51.100.0/24"),)

    body, done = offer(), Results()
    s.on_caller_sdp_change(body, done)
    assert done.calls == [(body, None)]
    assert "c=IN IP4 203.0.113.5\r\n" in str(body) and "m=audio 40006 " in str(body)
    assert s.livevox_targets[0].rtp == ("192.0.2.10", 16384)

    answer = offer("198.51.100.20", 50000)
    assert s.on_callee_sdp_change(answer, Results()) is answer
    assert "m=audio 40004 " in str(answer)
    assert s.vendor_targets[0].rtp == ("198.51.100.20", 50000)


def test_callee_errors_come_later() -> None:
    """A failing vendor-SDP hook returns None; its error arrives on the clock's next turn, or on run_pending."""
    clock = Clock()
    with_clock = started(clock=clock).new_session("a")
    done = Results()
    assert with_clock.on_callee_sdp_change(MsgBody("v=0\r\n"), done) is None
    assert done.calls == []
    clock.advance(0)
    assert isinstance(done.calls[0][1], MediaSdpError)

    without = started().new_session("b")
    without.fail_sdp = MediaSdpError("refused by test")
    done = Results()
    assert without.on_callee_sdp_change(offer(), done) is None
    without.run_pending()
    assert done.calls[0] == (None, without.fail_sdp)


def test_release_and_switches() -> None:
    """Released sessions refuse SDP; offline and full engines refuse sessions with 503 errors."""
    relay = started(max_sessions=1)
    s = relay.new_session("a")
    with pytest.raises(PortsExhaustedError):
        relay.new_session("b")
    assert s.release().called
    done = Results()
    s.on_caller_sdp_change(offer(), done)
    assert isinstance(done.calls[0][1], MediaSessionReleasedError)
    relay.new_session("c")

    relay.offline_reason = "rtp.io not answering"
    assert relay.online() == "rtp.io not answering"
    with pytest.raises(MediaNotRunningError):
        relay.new_session("d")
    assert relay.stop().called
    assert relay.live_sessions() == []
    assert relay.online() == "media relay not started"


def test_silence_and_counters() -> None:
    """silent_side reports the configured side only once answered; stats sum the fake counters."""
    relay = started()
    s = relay.new_session("a")
    s.silent = "vendor"
    assert s.silent_side() is None
    s.mark_answered()
    assert s.silent_side() == "vendor"
    s.fake_counters = MediaCounters(livevox_to_vendor=FlowCounters(5, 860))
    assert relay.stats().livevox_to_vendor == FlowCounters(5, 860)
    assert relay.stats().sessions == 1


def test_silent_side_rule() -> None:
    """The timeout rule: initial_timeout before a side's first packet, timeout after, measured from answer at the earliest."""
    heard_early = MediaCounters(last_from_livevox=5.0, last_from_vendor=95.0)
    assert (
        silent_side(heard_early, now=110.0, answered_at=100.0, initial_timeout=10.0, timeout=30.0)
        is None
    )
    assert (
        silent_side(heard_early, now=130.0, answered_at=100.0, initial_timeout=10.0, timeout=30.0)
        == "livevox"
    )
    never = MediaCounters(last_from_livevox=101.0)
    assert (
        silent_side(never, now=109.0, answered_at=100.0, initial_timeout=10.0, timeout=30.0) is None
    )
    assert (
        silent_side(never, now=110.0, answered_at=100.0, initial_timeout=10.0, timeout=30.0)
        == "vendor"
    )


def _fake_session() -> Any:
    relay = FakeMediaRelay()
    relay.start()
    return relay.new_session("call")


def _real_session() -> Any:
    from prometheus_client import CollectorRegistry

    from lvgateway.media.testing import MemoryUdpReactor
    from lvgateway.media.twisted_relay import TwistedMediaRelay

    from .test_media_relay_unit import media_config

    reactor = MemoryUdpReactor()
    relay = TwistedMediaRelay(reactor, media_config(), CollectorRegistry(), monotonic=reactor.seconds)
    relay.start()
    return relay.new_session("call")


@pytest.mark.parametrize("make", [_fake_session, _real_session], ids=["fake", "twisted"])
def test_mute_is_reported_once_and_kept(make: Any) -> None:
    """The fake and the real relay agree: ``mute`` shows in the counters, and again changes nothing."""
    session = make()
    assert session.counters().muted == frozenset()
    session.mute("vendor")
    session.mute("vendor")
    assert session.counters().muted == frozenset({"vendor"})


@pytest.mark.parametrize("make", [_fake_session, _real_session], ids=["fake", "twisted"])
def test_plain_engines_take_the_rtp_profile_and_refuse_srtp_and_codec_maps(make: Any) -> None:
    """The fake and the Twisted relay agree: rtp is a no-op; an SRTP profile or a codec map is refused, naming the endpoint."""
    from lvgateway.config.media_profiles import CodecMap

    session = make()
    session.use_vendor_profile("sip:bot@127.0.0.1:5080", "rtp")
    for profile, codec_map in (
        ("srtp-sdes", None),
        ("dtls-srtp", None),
        ("rtp", CodecMap("PCMU", "G722")),
    ):
        with pytest.raises(ValueError, match="sip:bot@127.0.0.1:5080.*rtpengine"):
            session.use_vendor_profile("sip:bot@127.0.0.1:5080", profile, codec_map)
    body = offer()
    results = Results()
    session.on_caller_sdp_change(body, results)
    assert results.calls[0][1] is None  # the session still relays plain RTP


def test_fake_records_each_vendor_profile() -> None:
    """The SIP part's tests read which profile each vendor-leg attempt was given."""
    session = _fake_session()
    session.use_vendor_profile("sip:a@127.0.0.1:5080", "rtp")
    session.use_vendor_profile("sip:b@127.0.0.1:5090", "rtp")
    assert [e for e, _, _ in session.vendor_profiles] == [
        "sip:a@127.0.0.1:5080",
        "sip:b@127.0.0.1:5090",
    ]
