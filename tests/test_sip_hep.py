"""HEP v3 capture: every SIP message of a call, both legs, reaches a collector with the call's id.

The packets are decoded here by a decoder of the test's own, written from the
HEP v3 chunk table, not with the gateway's encoder.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock

from lvgateway.config import ConfigError, parse_config
from lvgateway.sip.hep import HOLD_SECONDS, HepCapture, encode_hep3

from .sip_gateway import CONFIG, SipGateway, all_succeed, free_udp_port, sipp, start_gateway
from .sip_helpers import wait_until

pytestmark = pytest.mark.timeout(60)

LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"


@attrs.frozen
class Hep:
    """One decoded HEP v3 packet."""

    family: int
    proto: int
    src: tuple[str, int]
    dst: tuple[str, int]
    seconds: int
    micros: int
    proto_type: int
    capture_id: int
    payload: bytes
    correlation_id: str | None
    auth_key: str | None

    @property
    def first_line(self) -> str:
        """The SIP start line."""
        return self.payload.split(b"\r\n", 1)[0].decode()

    def header(self, name: str) -> str | None:
        """A SIP header's value."""
        found = re.search(rb"^" + name.encode() + rb"\s*:\s*(.*?)\r$", self.payload, re.I | re.M)
        return found.group(1).decode() if found else None

    @property
    def kind(self) -> str:
        """``INVITE``, ``ACK``, ``BYE``..., or ``200 INVITE`` for a response."""
        line = self.first_line
        if line.startswith("SIP/2.0 "):
            cseq = self.header("CSeq") or ""
            return f"{line.split()[1]} {cseq.split()[-1]}"
        return line.split()[0]


def decode_hep(packet: bytes) -> Hep:
    """Decode a HEP v3 packet, checking its framing."""
    assert packet[:4] == b"HEP3"
    (total,) = struct.unpack("!H", packet[4:6])
    assert total == len(packet)
    chunks: dict[int, bytes] = {}
    at = 6
    while at < total:
        vendor, kind, length = struct.unpack("!HHH", packet[at : at + 6])
        assert vendor == 0 and length >= 6 and at + length <= total
        chunks[kind] = packet[at + 6 : at + length]
        at += length
    ipv6 = chunks[1][0] == 10
    src_ip = chunks[5 if ipv6 else 3]
    dst_ip = chunks[6 if ipv6 else 4]
    return Hep(
        family=chunks[1][0],
        proto=chunks[2][0],
        src=(str(ipaddress.ip_address(src_ip)), struct.unpack("!H", chunks[7])[0]),
        dst=(str(ipaddress.ip_address(dst_ip)), struct.unpack("!H", chunks[8])[0]),
        seconds=struct.unpack("!I", chunks[9])[0],
        micros=struct.unpack("!I", chunks[10])[0],
        proto_type=chunks[11][0],
        capture_id=struct.unpack("!I", chunks[12])[0],
        payload=chunks[15],
        correlation_id=chunks[17].decode() if 17 in chunks else None,
        auth_key=chunks[14].decode() if 14 in chunks else None,
    )


class Collector(DatagramProtocol):
    """A HEP collector on loopback: keeps every datagram."""

    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.packets.append(datagram)

    def decoded(self) -> list[Hep]:
        """Every packet but the markers, decoded."""
        return [decode_hep(p) for p in self.packets if p.startswith(b"HEP3")]


@pytest.fixture
def collector() -> Any:
    """A listening collector; closed after the test."""
    c = Collector()
    port = reactor.listenUDP(0, c, interface="127.0.0.1")  # type: ignore[attr-defined]
    c.address = ("127.0.0.1", port.getHost().port)  # type: ignore[attr-defined]
    yield c
    port.stopListening()


@pytest.fixture
def vendor_port() -> int:
    """The UDP port the SIPp vendor listens on."""
    return free_udp_port(VENDOR)


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path: Path, vendor_port: int) -> AsyncIterator[SipGateway]:
    """The SIP part, its vendor the SIPp vendor on 127.0.0.3."""
    gw = start_gateway(tmp_path, [vendor_port])
    yield gw
    await gw.stop()


async def flushed(collector: Collector) -> None:
    """Wait until a marker sent now arrives: every packet sent before it has arrived too."""
    marker = f"marker-{len(collector.packets)}".encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(marker, collector.address)  # type: ignore[attr-defined]
    await wait_until(lambda: marker in collector.packets, 5, "the marker")


EXPECTED = {
    "livevox": ["INVITE", "200 INVITE", "ACK", "BYE", "200 BYE"],
    "vendor": ["INVITE", "200 INVITE", "ACK", "BYE", "200 BYE"],
}


@pytest_twisted.ensureDeferred
async def test_capture_sends_every_message_of_both_legs_with_the_call_id(
    gateway: SipGateway, vendor_port: int, collector: Collector
) -> None:
    """With capture on, the INVITE, 200, ACK and BYE (and BYE's 200) of both legs arrive, each with the call id."""
    hep = gateway.sip.hep
    hep.address = collector.address  # type: ignore[attr-defined]
    assert hep.on() is True
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    livevox = sipp("livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001")
    await all_succeed(livevox, vendor)
    await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    await flushed(collector)
    [call_id] = [cid for event, cid, _ in gateway.calls.events if event == "accept"]
    invite = gateway.calls.events[0][2]["invite"]
    gw = ("127.0.0.1", gateway.port)
    legs: dict[str, list[Hep]] = {"livevox": [], "vendor": []}
    for packet in collector.decoded():
        assert packet.family == 2 and packet.proto == 17 and packet.proto_type == 1
        assert packet.capture_id == 2001
        assert gw in (packet.src, packet.dst)
        peer = packet.dst if packet.src == gw else packet.src
        if not packet.kind.endswith("OPTIONS"):  # the vendor's health probes
            legs["vendor" if peer[0] == VENDOR else "livevox"].append(packet)
    for leg, packets in legs.items():
        kinds = [p.kind for p in packets if not p.kind.startswith("1")]
        assert kinds == EXPECTED[leg], (leg, kinds)
        assert {p.correlation_id for p in packets} == {call_id}, leg
    assert {p.header("Call-ID") for p in legs["livevox"]} == {invite.sip_call_id}
    [vendor_invite] = [p for p in legs["vendor"] if p.kind == "INVITE"]
    assert vendor_invite.header("X-LVGW-Call-ID") == call_id
    assert {p.header("Call-ID") for p in legs["vendor"]} == {vendor_invite.header("Call-ID")}
    # Direction: the LiveVox INVITE was received, the vendor INVITE sent.
    [lv_invite] = [p for p in legs["livevox"] if p.kind == "INVITE"]
    assert lv_invite.dst == gw and vendor_invite.src == gw
    assert hep.sent >= 10 and hep.errors == 0


@pytest_twisted.ensureDeferred
async def test_capture_off_sends_nothing(
    gateway: SipGateway, vendor_port: int, collector: Collector
) -> None:
    """Switched off (after being on), a whole call sends no HEP packet."""
    hep = gateway.sip.hep
    hep.address = collector.address  # type: ignore[attr-defined]
    hep.on()
    assert hep.off() is False and not hep.enabled
    vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port)
    livevox = sipp("livevox_call.xml", LIVEVOX, ("127.0.0.1", gateway.port), service="+18990000001")
    await all_succeed(livevox, vendor)
    await wait_until(lambda: not gateway.sip.router.live, 5, "the call to leave the call map")
    await flushed(collector)
    assert collector.decoded() == [] and hep.sent == 0


# -- the capture alone, on a Clock -------------------------------------------


def _sip(first: str, call_id: str, method: str) -> bytes:
    return (
        f"{first}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060\r\nCall-ID: {call_id}\r\n"
        f"CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
def receiver() -> Any:
    """A blocking loopback socket with a timeout, to read what a capture sends."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


def test_a_call_not_yet_accepted_is_held_until_its_id_is_known(receiver: Any) -> None:
    """The INVITE waits for the call's id; OPTIONS goes at once with its own Call-ID."""
    clock = Clock()
    clock.advance(1_700_000_000.25)
    ids: dict[str, str] = {}
    hep = HepCapture(clock, receiver.getsockname(), 7, enabled=True, correlate=ids.get)
    lv, gw = ("127.0.0.1", 5070), ("127.0.0.1", 5060)
    hep.received(_sip("INVITE sip:1@x SIP/2.0", "lv-1", "INVITE"), lv, gw)
    hep.received(_sip("OPTIONS sip:x SIP/2.0", "probe-1", "OPTIONS"), lv, gw)
    first = decode_hep(receiver.recv(65535))
    assert first.kind == "OPTIONS" and first.correlation_id == "probe-1"
    assert first.seconds == 1_700_000_000 and first.micros == 250_000
    ids["lv-1"] = "call-9"
    hep.sent_to(_sip("SIP/2.0 100 Trying", "lv-1", "INVITE"), gw, lv)
    got = [decode_hep(receiver.recv(65535)) for _ in range(2)]
    assert [(p.kind, p.correlation_id, p.capture_id) for p in got] == [
        ("INVITE", "call-9", 7),
        ("100 INVITE", "call-9", 7),
    ]
    assert got[0].src == lv and got[0].dst == gw and got[1].src == gw


def test_a_held_message_goes_out_uncorrelated_after_the_hold(receiver: Any) -> None:
    """An INVITE whose call is never accepted goes out with its own Call-ID after the hold."""
    clock = Clock()
    hep = HepCapture(clock, receiver.getsockname(), 1, enabled=True)
    hep.received(
        _sip("INVITE sip:1@x SIP/2.0", "lv-2", "INVITE"), ("127.0.0.1", 1), ("127.0.0.1", 2)
    )
    assert hep.sent == 0
    clock.advance(HOLD_SECONDS)
    assert decode_hep(receiver.recv(65535)).correlation_id == "lv-2" and hep.sent == 1
    assert clock.getDelayedCalls() == []


def test_send_failures_are_counted_not_raised() -> None:
    """A packet the socket refuses is counted; nothing reaches the SIP path."""
    hep = HepCapture(Clock(), ("127.0.0.1", 9), 1, enabled=True)
    hep.sent_to(b"x" * 70000, ("127.0.0.1", 1), ("127.0.0.1", 2))  # too big for HEP
    hep.sent_to(
        _sip("BYE sip:x SIP/2.0", "c", "BYE"), ("127.0.0.1", 1), ("::1", 2)
    )  # mixed families
    assert hep.errors == 2 and hep.sent == 0
    hep.off()


def test_encoding_ipv6_and_auth_key() -> None:
    """IPv6 addresses go in chunks 5 and 6 with family 10; the auth key in chunk 14."""
    packet = decode_hep(
        encode_hep3(
            b"OPTIONS sip:x SIP/2.0\r\n\r\n", ("::1", 5060), ("[::2]", 5070), 5.5, 3, "c", "k"
        )
    )
    assert packet.family == 10 and packet.src == ("::1", 5060) and packet.dst == ("::2", 5070)
    assert packet.auth_key == "k" and packet.correlation_id == "c" and packet.micros == 500_000


def test_config_hep_section(tmp_path: Path, monkeypatch: Any) -> None:
    """``[hep]`` sets the collector, capture id, switch and auth key; a host name is refused."""
    monkeypatch.setenv("LVGW_TEST_TOKEN", "test-token-value")
    monkeypatch.setenv("HEP_KEY", "s3cret")
    base = CONFIG.format(
        state=tmp_path / "s",
        endpoints='[[vendor.endpoints]]\nuri = "sip:bot@127.0.0.3:5099"\n',
        port_min=40000,
        port_max=40039,
        health_interval=60,
        no_progress=5,
        initial_timeout=60,
        max_invite=1300,
        engine="twisted",
        allowed='["127.0.0.1/32"]',
    )
    default = parse_config(base).hep
    assert default.address == ("127.0.0.1", 9060) and default.enabled is False
    config = parse_config(
        base
        + '[hep]\naddress = "[::1]:9061"\ncapture_id = 42\nenabled = true\nauth_key_env = "HEP_KEY"\n'
    )
    assert config.hep.address == ("::1", 9061) and config.hep.capture_id == 42
    assert config.hep.enabled and config.hep.auth_key is not None
    assert config.hep.auth_key.reveal() == "s3cret"
    assert ("hep.auth_key", config.hep.auth_key) in config.secrets()
    with pytest.raises(ConfigError, match="hep.address"):
        parse_config(base + '[hep]\naddress = "homer.example:9060"\n')
