"""The Twisted relay without a reactor: SDP hooks, relaying, latching, drops, counters, metrics, timeouts."""

from __future__ import annotations

import errno
import ipaddress
from typing import Any

import attrs
import pytest
from prometheus_client import CollectorRegistry
from sippy.MsgBody import MsgBody
from zope.interface.verify import verifyObject

from lvgateway.config.model import MediaConfig
from lvgateway.media import MediaRelayService
from lvgateway.media.errors import (
    MediaNotRunningError,
    MediaSdpError,
    MediaSessionReleasedError,
    PortsExhaustedError,
)
from lvgateway.media.interfaces import IMediaRelay, IMediaSession
from lvgateway.media.testing import MemoryUdpReactor, PortsInOrder
from lvgateway.media.twisted_relay import TwistedMediaRelay, TwistedMediaSession

RELAY = "127.0.0.1"
ADVERTISED = "203.0.113.5"
LIVEVOX = ("192.0.2.10", 16384)
LIVEVOX_RTCP = ("192.0.2.10", 16385)
VENDOR = ("198.51.100.20", 40000)
VENDOR_RTCP = ("198.51.100.20", 40001)
STRANGER = ("203.0.113.99", 5004)

# Session 1 of a relay on 30000-...: LiveVox-facing 30000/30001, vendor-facing 30002/30003.
LV_RTP, LV_RTCP = (RELAY, 30000), (RELAY, 30001)
VD_RTP, VD_RTCP = (RELAY, 30002), (RELAY, 30003)


def offer(host: str, port: int, version: int = 1, extra: str = "") -> MsgBody:
    """An SDP body naming ``host:port`` for PCMU, PCMA and RFC 4733 events."""
    return MsgBody(
        f"v=0\r\no=peer 42 {version} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n{extra}"
    )


class Results:
    """A Sippy-style ``result_callback`` that records each call."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Exception | None]] = []

    def __call__(self, body: Any, ex: Exception | None = None) -> None:
        self.calls.append((body, ex))


def media_config(
    port_max: int = 30099, listen_host: str = RELAY, advertised: str | None = ADVERTISED
) -> MediaConfig:
    """Media settings on a port range starting at 30000."""
    return MediaConfig(
        engine="twisted",
        listen_host=listen_host,
        advertised_host=advertised,
        port_min=30000,
        port_max=port_max,
        initial_timeout=10.0,
        timeout=30.0,
    )


@pytest.fixture
def reactor() -> MemoryUdpReactor:
    """An in-memory reactor with UDP."""
    return MemoryUdpReactor()


@pytest.fixture
def registry() -> CollectorRegistry:
    """A registry of its own."""
    return CollectorRegistry()


@pytest.fixture
def relay(reactor: MemoryUdpReactor, registry: CollectorRegistry) -> TwistedMediaRelay:
    """A started relay allowing LiveVox from 192.0.2.0/24, on the in-memory reactor's clock."""
    media = TwistedMediaRelay(
        reactor,
        media_config(),
        registry,
        livevox_networks=[ipaddress.ip_network("192.0.2.0/24")],
        monotonic=reactor.seconds,
        port_rng=PortsInOrder(),
    )
    media.start()
    return media


@pytest.fixture
def session(relay: TwistedMediaRelay) -> TwistedMediaSession:
    """A session with both SDPs seen: LiveVox at LIVEVOX, the vendor at VENDOR (vendor network 198.51.100.0/28)."""
    s = relay.new_session("call-1", vendor_networks=[ipaddress.ip_network("198.51.100.16/28")])
    s.on_caller_sdp_change(offer(*LIVEVOX), Results())
    s.on_callee_sdp_change(offer(*VENDOR), Results())
    return s


def sent(reactor: MemoryUdpReactor) -> list[tuple[tuple[str, int], bytes, tuple[str, int]]]:
    """Every datagram sent so far, then forget them."""
    out, reactor.sent = reactor.sent, []
    return out


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """A sample's value, 0 when absent."""
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_interfaces_verified(relay: TwistedMediaRelay, session: TwistedMediaSession) -> None:
    """The engine and its session provide the interfaces they declare."""
    assert verifyObject(IMediaRelay, relay)
    assert verifyObject(IMediaSession, session)


def test_session_takes_two_pairs(relay: TwistedMediaRelay, reactor: MemoryUdpReactor) -> None:
    """A session binds four ports on the listen address: LiveVox-facing pair then vendor-facing pair."""
    s = relay.new_session("call-1")
    assert (s.livevox_port, s.vendor_port) == (30000, 30002)
    assert set(reactor.udp) == {LV_RTP, LV_RTCP, VD_RTP, VD_RTCP}
    assert relay.stats().ports_in_use == 4


def test_caller_hook_calls_back_at_once(relay: TwistedMediaRelay) -> None:
    """LiveVox's SDP is rewritten to the vendor-facing port and handed back before the hook returns."""
    s = relay.new_session("call-1")
    body, done = offer(*LIVEVOX), Results()
    s.on_caller_sdp_change(body, done)
    assert done.calls == [(body, None)]
    assert "m=audio 30002 RTP/AVP 0 8 101" in str(body)
    assert f"c=IN IP4 {ADVERTISED}" in str(body)


def test_callee_hook_returns_body(relay: TwistedMediaRelay) -> None:
    """The vendor's SDP is rewritten to the LiveVox-facing port and returned; the callback is not used."""
    s = relay.new_session("call-1")
    body, done = offer(*VENDOR), Results()
    assert s.on_callee_sdp_change(body, done) is body
    assert done.calls == []
    assert "m=audio 30000 RTP/AVP 0 8 101" in str(body)


def test_caller_hook_error(relay: TwistedMediaRelay) -> None:
    """A bad SDP from LiveVox is reported through the callback as a 488 error."""
    s = relay.new_session("call-1")
    done = Results()
    s.on_caller_sdp_change(MsgBody("v=0\r\n"), done)
    [(body, ex)] = done.calls
    assert body is None and isinstance(ex, MediaSdpError) and ex.code == 488


def test_callee_hook_error_comes_on_next_turn(
    relay: TwistedMediaRelay, reactor: MemoryUdpReactor
) -> None:
    """A bad SDP from the vendor returns None and is reported on the next reactor turn."""
    s = relay.new_session("call-1")
    done = Results()
    assert s.on_callee_sdp_change(MsgBody("v=0\r\n"), done) is None
    assert done.calls == []
    reactor.advance(0)
    [(body, ex)] = done.calls
    assert body is None and isinstance(ex, MediaSdpError)


def test_hooks_after_release(relay: TwistedMediaRelay, reactor: MemoryUdpReactor) -> None:
    """After release both hooks fail with a 503 error and the body is untouched."""
    s = relay.new_session("call-1")
    s.release()
    caller, callee = Results(), Results()
    body = offer(*LIVEVOX)
    s.on_caller_sdp_change(body, caller)
    assert s.on_callee_sdp_change(offer(*VENDOR), callee) is None
    reactor.advance(0)
    for done in (caller, callee):
        [(result, ex)] = done.calls
        assert result is None and isinstance(ex, MediaSessionReleasedError) and ex.code == 503
    assert LIVEVOX[0] in str(body)


def test_relays_both_ways(session: TwistedMediaSession, reactor: MemoryUdpReactor) -> None:
    """RTP from each side leaves the other side's facing port for the other side's SDP address."""
    reactor.deliver(LV_RTP, b"from livevox", LIVEVOX)
    reactor.deliver(VD_RTP, b"from vendor", VENDOR)
    assert sent(reactor) == [(VD_RTP, b"from livevox", VENDOR), (LV_RTP, b"from vendor", LIVEVOX)]


def test_rtcp_on_next_ports(session: TwistedMediaSession, reactor: MemoryUdpReactor) -> None:
    """RTCP is relayed between the +1 ports, to each side's RTP port + 1."""
    reactor.deliver(LV_RTCP, b"rtcp lv", LIVEVOX_RTCP)
    reactor.deliver(VD_RTCP, b"rtcp vd", VENDOR_RTCP)
    assert sent(reactor) == [
        (VD_RTCP, b"rtcp lv", VENDOR_RTCP),
        (LV_RTCP, b"rtcp vd", LIVEVOX_RTCP),
    ]


def test_strict_another_port_of_the_sdp_host_is_a_stranger(
    session: TwistedMediaSession, reactor: MemoryUdpReactor
) -> None:
    """Strict latching: only the address and port the SDP names; another port of the same host is dropped."""
    reactor.deliver(VD_RTP, b"other port", (VENDOR[0], 41234))
    reactor.deliver(LV_RTP, b"other port", (LIVEVOX[0], 41234))
    reactor.deliver(LV_RTP, b"livevox", LIVEVOX)
    assert sent(reactor) == [(VD_RTP, b"livevox", VENDOR)]
    assert session.counters().dropped["unknown_source"] == 2


def test_strict_a_host_inside_the_allowed_networks_is_a_stranger(
    session: TwistedMediaSession, reactor: MemoryUdpReactor
) -> None:
    """A source inside the side's allowed networks but not its SDP's address can neither take nor inject audio."""
    inside = ("198.51.100.21", 5000)
    reactor.deliver(VD_RTP, b"inject", inside)
    reactor.deliver(LV_RTP, b"inject", ("192.0.2.99", 5000))  # inside LiveVox's networks
    reactor.deliver(LV_RTP, b"livevox", LIVEVOX)
    assert sent(reactor) == [(VD_RTP, b"livevox", VENDOR)]
    assert session.counters().dropped["unknown_source"] == 2


def nat_relay(reactor: MemoryUdpReactor, registry: CollectorRegistry) -> TwistedMediaRelay:
    """A relay whose vendor side latches to its first packet (the NAT opt-in)."""
    media = TwistedMediaRelay(
        reactor,
        attrs.evolve(media_config(), vendor_latching="first_packet"),
        registry,
        monotonic=reactor.seconds,
        port_rng=PortsInOrder(),
    )
    media.start()
    return media


def test_nat_opt_in_latches_once_and_never_moves(
    reactor: MemoryUdpReactor, registry: CollectorRegistry
) -> None:
    """first_packet: the vendor's first datagram from its networks latches its port; later sources are strangers."""
    s = nat_relay(reactor, registry).new_session(
        "call-1", vendor_networks=[ipaddress.ip_network("198.51.100.16/28")]
    )
    s.on_caller_sdp_change(offer(*LIVEVOX), Results())
    s.on_callee_sdp_change(offer("10.0.0.5", 4000), Results())  # a private address: unreachable
    behind_nat = ("198.51.100.21", 61000)
    reactor.deliver(VD_RTP, b"vendor", behind_nat)
    reactor.deliver(LV_RTP, b"livevox", LIVEVOX)
    assert sent(reactor) == [(LV_RTP, b"vendor", LIVEVOX), (VD_RTP, b"livevox", behind_nat)]
    reactor.deliver(VD_RTP, b"hijack", ("198.51.100.22", 61000))
    s.on_callee_sdp_change(offer("10.0.0.6", 4000, version=2), Results())
    reactor.deliver(LV_RTP, b"still there", LIVEVOX)
    assert sent(reactor) == [(VD_RTP, b"still there", behind_nat)]
    assert s.counters().dropped["unknown_source"] == 1


def test_stranger_dropped(session: TwistedMediaSession, reactor: MemoryUdpReactor) -> None:
    """Datagrams from an unknown address, or from the other side on the wrong port, are dropped and counted."""
    reactor.deliver(VD_RTP, b"hijack", STRANGER)
    reactor.deliver(LV_RTP, b"hijack", STRANGER)
    reactor.deliver(VD_RTP, b"wrong port", LIVEVOX)
    reactor.deliver(LV_RTP, b"livevox", LIVEVOX)
    assert sent(reactor) == [(VD_RTP, b"livevox", VENDOR)]  # still to the vendor, not latched away
    counters = session.counters()
    assert counters.dropped["unknown_source"] == 3
    assert counters.vendor_source is None
    assert counters.livevox_to_vendor.packets == 1


def test_no_destination_before_vendor_sdp(
    relay: TwistedMediaRelay, reactor: MemoryUdpReactor
) -> None:
    """LiveVox's media before the vendor's SDP (and without vendor networks) has nowhere to go."""
    s = relay.new_session("call-1")
    s.on_caller_sdp_change(offer(*LIVEVOX), Results())
    reactor.deliver(LV_RTP, b"early", LIVEVOX)
    assert sent(reactor) == []
    assert s.counters().dropped["no_destination"] == 1
    assert s.counters().last_from_livevox == reactor.seconds()


def test_vendor_heard_before_its_sdp(relay: TwistedMediaRelay, reactor: MemoryUdpReactor) -> None:
    """Strict: nothing from the vendor is taken before its SDP names its address; afterwards it is."""
    s = relay.new_session("call-1", vendor_networks=[ipaddress.ip_network("198.51.100.20/32")])
    s.on_caller_sdp_change(offer(*LIVEVOX), Results())
    reactor.deliver(VD_RTP, b"too early", VENDOR)
    assert sent(reactor) == [] and s.counters().dropped["unknown_source"] == 1
    s.on_callee_sdp_change(offer(*VENDOR), Results())
    reactor.deliver(VD_RTP, b"ringback", VENDOR)
    reactor.deliver(LV_RTP, b"hello", LIVEVOX)
    assert sent(reactor) == [(LV_RTP, b"ringback", LIVEVOX), (VD_RTP, b"hello", VENDOR)]


def test_hold_by_address(session: TwistedMediaSession, reactor: MemoryUdpReactor) -> None:
    """LiveVox on hold with c=0.0.0.0 is sent nothing, its own media still relayed; resuming restores it."""
    session.on_caller_sdp_change(offer("0.0.0.0", LIVEVOX[1], version=2), Results())
    reactor.deliver(VD_RTP, b"to held side", VENDOR)
    reactor.deliver(LV_RTP, b"music on hold", LIVEVOX)
    assert sent(reactor) == [(VD_RTP, b"music on hold", VENDOR)]
    assert session.counters().dropped["no_destination"] == 1

    session.on_caller_sdp_change(offer(*LIVEVOX, version=3), Results())
    reactor.deliver(VD_RTP, b"resumed", VENDOR)
    assert sent(reactor) == [(LV_RTP, b"resumed", LIVEVOX)]


def test_refresh_keeps_the_sides(session: TwistedMediaSession, reactor: MemoryUdpReactor) -> None:
    """An unchanged SDP (a session refresh) changes nothing: media still flows both ways."""
    reactor.deliver(LV_RTP, b"x", LIVEVOX)
    session.on_caller_sdp_change(offer(*LIVEVOX), Results())
    sent(reactor)
    reactor.deliver(VD_RTP, b"back", VENDOR)
    reactor.deliver(LV_RTP, b"again", LIVEVOX)
    assert sent(reactor) == [(LV_RTP, b"back", LIVEVOX), (VD_RTP, b"again", VENDOR)]


def test_new_sdp_address_resets_latch(
    session: TwistedMediaSession, reactor: MemoryUdpReactor
) -> None:
    """A re-offer moving LiveVox's media elsewhere sends there, and trusts the new host, not the old."""
    reactor.deliver(LV_RTP, b"x", LIVEVOX)
    moved = ("192.0.2.77", 20000)
    session.on_caller_sdp_change(offer(*moved, version=2), Results())
    sent(reactor)
    reactor.deliver(VD_RTP, b"to new", VENDOR)
    assert sent(reactor) == [(LV_RTP, b"to new", moved)]


def test_send_error_counted(session: TwistedMediaSession, reactor: MemoryUdpReactor) -> None:
    """A datagram the kernel refuses to send is dropped and counted, and relaying goes on."""
    reactor.send_error = OSError(errno.ENETUNREACH, "unreachable")
    reactor.deliver(LV_RTP, b"x", LIVEVOX)
    reactor.send_error = None
    reactor.deliver(LV_RTP, b"y", LIVEVOX)
    assert [data for _, data, _ in sent(reactor)] == [b"y"]
    assert session.counters().dropped["send_error"] == 1


def test_counters_add_up(
    session: TwistedMediaSession,
    relay: TwistedMediaRelay,
    reactor: MemoryUdpReactor,
    registry: CollectorRegistry,
) -> None:
    """Session counters, engine stats and Prometheus counters agree on packets, bytes and drops."""
    for _ in range(3):
        reactor.deliver(LV_RTP, b"a" * 172, LIVEVOX)
    reactor.deliver(LV_RTCP, b"r" * 52, LIVEVOX_RTCP)
    reactor.deliver(VD_RTP, b"b" * 172, VENDOR)
    reactor.deliver(VD_RTP, b"z", STRANGER)
    c = session.counters()
    assert (c.livevox_to_vendor.packets, c.livevox_to_vendor.bytes) == (4, 3 * 172 + 52)
    assert (c.vendor_to_livevox.packets, c.vendor_to_livevox.bytes) == (1, 172)
    assert c.dropped_total == 1
    assert (c.livevox_port, c.vendor_port) == (30000, 30002)

    assert sample(registry, "lvgateway_rtp_packets_total", direction="livevox_to_vendor") == 0
    reactor.advance(1.0)  # the metrics catch up once a second
    assert sample(registry, "lvgateway_rtp_packets_total", direction="livevox_to_vendor") == 4
    assert (
        sample(registry, "lvgateway_rtp_bytes_total", direction="livevox_to_vendor") == 3 * 172 + 52
    )
    assert sample(registry, "lvgateway_rtp_packets_total", direction="vendor_to_livevox") == 1
    assert sample(registry, "lvgateway_rtp_dropped_total", reason="unknown_source") == 1
    assert sample(registry, "lvgateway_rtp_dropped_total", reason="send_error") == 0
    assert sample(registry, "lvgateway_media_sessions") == 1

    session.release()
    reactor.deliver(VD_RTP, b"b" * 172, VENDOR)  # still bound until the next turn, but shut
    stats = relay.stats()
    assert stats.sessions == 0
    assert stats.livevox_to_vendor.packets == 4
    assert stats.vendor_to_livevox.packets == 1
    assert sample(registry, "lvgateway_rtp_packets_total", direction="livevox_to_vendor") == 4
    assert sample(registry, "lvgateway_media_sessions") == 0


def test_every_series_registered_at_start(
    relay: TwistedMediaRelay, registry: CollectorRegistry
) -> None:
    """Every label value of the media metrics exists, at zero, before any traffic."""
    for direction in ("livevox_to_vendor", "vendor_to_livevox"):
        assert (
            registry.get_sample_value("lvgateway_rtp_packets_total", {"direction": direction}) == 0
        )
        assert registry.get_sample_value("lvgateway_rtp_bytes_total", {"direction": direction}) == 0
    for reason in ("unknown_source", "no_destination", "send_error"):
        assert registry.get_sample_value("lvgateway_rtp_dropped_total", {"reason": reason}) == 0
    for reason in ("ports_exhausted", "not_running"):
        assert (
            registry.get_sample_value(
                "lvgateway_media_allocation_failures_total", {"reason": reason}
            )
            == 0
        )
    assert registry.get_sample_value("lvgateway_media_sessions") == 0
    for profile in ("rtp", "srtp-sdes", "dtls-srtp"):
        assert registry.get_sample_value("lvgateway_media_calls_total", {"profile": profile}) == 0


def test_a_released_session_counts_under_the_rtp_profile(
    session: TwistedMediaSession, registry: CollectorRegistry
) -> None:
    """The Twisted relay carries plain RTP only: each released call counts once as rtp."""
    session.use_vendor_profile("sip:bot@127.0.0.1:5080", "rtp")
    session.release()
    session.release()
    assert sample(registry, "lvgateway_media_calls_total", profile="rtp") == 1
    assert sample(registry, "lvgateway_media_calls_total", profile="srtp-sdes") == 0


def test_release_closes_ports(
    session: TwistedMediaSession, relay: TwistedMediaRelay, reactor: MemoryUdpReactor
) -> None:
    """Release stops relaying at once, closes the four ports on the next turn, and then fires."""
    done = session.release()
    again = session.release()
    reactor.deliver(LV_RTP, b"late", LIVEVOX)
    assert sent(reactor) == []
    assert not done.called
    reactor.advance(0)
    assert done.called and again.called
    assert reactor.udp == {}
    assert relay.stats().ports_in_use == 0
    assert session.release().called
    assert session.counters().livevox_port == 30000  # the final counters stay readable


def test_exhaustion(reactor: MemoryUdpReactor, registry: CollectorRegistry) -> None:
    """With three pairs, a second call is refused 503, its first pair given back, and readiness says so."""
    media = TwistedMediaRelay(reactor, media_config(port_max=30005), registry, port_rng=PortsInOrder())
    media.start()
    media.new_session("call-1")
    assert media.online() is not None and "no free media ports" in str(media.online())
    with pytest.raises(PortsExhaustedError):
        media.new_session("call-2")
    reactor.advance(0)
    assert media.stats().ports_in_use == 4
    assert (
        sample(registry, "lvgateway_media_allocation_failures_total", reason="ports_exhausted") == 1
    )


def test_not_running(reactor: MemoryUdpReactor, registry: CollectorRegistry) -> None:
    """Before start and after stop the engine is not online and refuses sessions."""
    media = TwistedMediaRelay(reactor, media_config(), registry, port_rng=PortsInOrder())
    assert media.online() == "media relay not started"
    with pytest.raises(MediaNotRunningError):
        media.new_session("call-1")
    media.start()
    assert media.online() is None
    s = media.new_session("call-1")
    stopped = media.stop()
    assert media.online() == "media relay stopping"
    reactor.advance(0)
    assert stopped.called
    assert media.online() == "media relay not started"
    assert s.counters().livevox_port == 30000
    assert reactor.udp == {}
    assert sample(registry, "lvgateway_media_allocation_failures_total", reason="not_running") == 1


def test_service_wraps_engine(reactor: MemoryUdpReactor, registry: CollectorRegistry) -> None:
    """The service starts the engine with the tree and stops it with it."""
    media = TwistedMediaRelay(reactor, media_config(), registry, port_rng=PortsInOrder())
    service = MediaRelayService(media)
    service.startService()
    assert media.online() is None
    stopped = service.stopService()
    reactor.advance(0)
    assert stopped.called
    assert media.online() == "media relay not started"


@pytest.mark.parametrize(("listen", "advertised"), [("0.0.0.0", None), ("media.example", None)])
def test_unusable_advertised_address(
    listen: str, advertised: str | None, reactor: MemoryUdpReactor
) -> None:
    """A wildcard or a host name cannot go into SDP: the engine refuses to be built."""
    with pytest.raises(ValueError, match="media address"):
        TwistedMediaRelay(
            reactor, media_config(listen_host=listen, advertised=advertised), CollectorRegistry()
        )


def test_wildcard_listen_with_advertised_address(reactor: MemoryUdpReactor) -> None:
    """Listening on every address is fine when an address to advertise is given."""
    media = TwistedMediaRelay(reactor, media_config(listen_host="0.0.0.0"), CollectorRegistry(), port_rng=PortsInOrder())
    assert media.address == ADVERTISED


def test_media_timeouts(session: TwistedMediaSession, reactor: MemoryUdpReactor) -> None:
    """No side is silent before answer; after it, a side never heard times out at initial_timeout, a quiet one at timeout."""
    reactor.advance(100)
    assert session.silent_side() is None  # not answered yet
    session.mark_answered()
    reactor.deliver(VD_RTP, b"x", VENDOR)
    reactor.advance(9.9)
    assert session.silent_side() is None
    reactor.advance(0.1)
    assert session.silent_side() == "livevox"  # never heard, 10 s after answer
    reactor.deliver(LV_RTCP, b"rtcp", LIVEVOX_RTCP)  # RTCP counts as a sign of life
    assert session.silent_side() is None
    reactor.advance(20)
    assert session.silent_side() == "vendor"  # heard at answer, silent 30 s
    reactor.deliver(VD_RTP, b"x", VENDOR)
    assert session.silent_side() is None
    session.release()
    assert session.silent_side() is None


def test_stop_releases_sessions(relay: TwistedMediaRelay, reactor: MemoryUdpReactor) -> None:
    """Stopping the engine releases every live session and fires once their ports are closed."""
    a, b = relay.new_session("a"), relay.new_session("b")
    stopped = relay.stop()
    reactor.advance(0)
    assert stopped.called
    assert reactor.udp == {}
    for s in (a, b):
        done = Results()
        s.on_caller_sdp_change(offer(*LIVEVOX), done)
        assert isinstance(done.calls[0][1], MediaSessionReleasedError)
