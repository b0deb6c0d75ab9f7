"""RFC 4475's torture messages, each sent to the gateway: every one gets the answer a UAS must give."""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.error import CannotListenError

from .rfc4475 import SECTIONS, TORTURE, message
from .sip_gateway import SipGateway, free_udp_port, start_gateway
from .sip_helpers import RawSipPeer, options_request, wait_until

pytestmark = pytest.mark.timeout(60)

_CALL_ID = re.compile(r"(?im)^(?:call-id|i)\s*:\s*(\S+)")


def listen_on_5060() -> tuple[RawSipPeer, Any]:
    """A peer on 127.0.0.x:5060: the RFC's Via headers name no port, so answers go to 5060."""
    rng = random.Random()
    for _ in range(50):
        host = f"127.0.0.{rng.randrange(20, 250)}"
        peer = RawSipPeer()
        try:
            port = reactor.listenUDP(5060, peer, interface=host)  # type: ignore[attr-defined]
        except CannotListenError:
            continue
        return peer, port
    raise AssertionError("no 127.0.0.x:5060 was free")


def call_id_of(data: bytes) -> str | None:
    """The first Call-ID of a message, if it has one."""
    match = _CALL_ID.search(data.decode("utf-8", "replace"))
    return match.group(1) if match else None


#: Every Call-ID in the table: an answer naming another message's is a retransmission of it.
_KNOWN = {call_id_of(message(name)) for name in TORTURE} - {None}


def final_code(peer: RawSipPeer, call_id: str | None) -> int | None:
    """The first final status code the peer received for ``call_id`` (if ``None``: for none known)."""
    for text in peer.responses():
        match = _CALL_ID.search(text)
        got = match.group(1) if match else None
        mine = got == call_id if call_id is not None else got not in _KNOWN
        if mine and text.startswith("SIP/2.0 "):
            code = int(text.split(" ", 2)[1])
            if code >= 200:
                return code
    return None


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path: Path) -> AsyncIterator[SipGateway]:
    """The SIP part, open to all of 127.0.0.0/8."""
    gw = start_gateway(tmp_path, [free_udp_port("127.0.0.3")], allowed='["127.0.0.0/8"]')
    yield gw
    await gw.stop()


def test_the_table_names_only_known_answers() -> None:
    """Every expectation is an answer the table's legend defines."""
    allowed = {"answered", "discarded", "400", "404", "416", "420", "481", "505"}
    assert set(TORTURE.values()) <= allowed


def probe(peer_port: Any, target: tuple[str, int], call_id: str) -> bytes:
    """A valid OPTIONS from the peer, to learn that everything sent before it has been handled."""
    local = peer_port.getHost()
    text = options_request(target, (local.host, local.port), call_id)
    return text.replace("\n", "\r\n").encode()


def test_every_section_has_an_expected_answer_and_a_file() -> None:
    """The table and the RFC's section list name the same messages, and each has its file."""
    assert set(TORTURE) == set(SECTIONS)
    assert all(message(name).endswith(b"\r\n") or name == "mpart01" for name in TORTURE)
    assert message("wsinv").startswith(b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam ")
    assert len(message("mpart01")) == 1290


@pytest_twisted.ensureDeferred
async def test_every_torture_message_gets_the_answer_a_uas_must_give(gateway: SipGateway) -> None:
    """Each RFC 4475 message is answered as the table says, and OPTIONS still works after."""
    peer, port = listen_on_5060()
    target = ("127.0.0.1", gateway.port)
    try:
        wrong: dict[str, object] = {}
        for name, expected in TORTURE.items():
            peer.received.clear()  # one message at a time: any answer now is to this one
            peer.transport.write(message(name), target)  # type: ignore[union-attr]
            if expected == "discarded":
                # Datagrams on loopback are handled in order: once the probe is answered,
                # any answer to the message would have come before it.
                call_id = f"probe-{name}"
                peer.transport.write(probe(port, target, call_id), target)  # type: ignore[union-attr]
                await wait_until(
                    lambda c=call_id: final_code(peer, c) == 200, 5.0, f"the probe after {name}"
                )
                mine = call_id_of(message(name))
                others = [r for r in peer.responses() if mine and mine in r]
                if others:
                    wrong[name] = f"answered {others[0].splitlines()[0]!r}, expected discarded"
                continue
            mine = call_id_of(message(name))
            try:
                await wait_until(lambda m=mine: final_code(peer, m), 5.0, f"an answer to {name}")
            except AssertionError:
                wrong[name] = f"no answer, expected {expected}"
                continue
            code = final_code(peer, mine)
            ok = (
                code is not None and code != 400
                if expected == "answered"
                else str(code) == expected
            )
            if not ok:
                wrong[name] = f"{code}, expected {expected}"
        assert not wrong, wrong
        peer.received.clear()
        peer.transport.write(probe(port, target, "after-torture"), target)  # type: ignore[union-attr]
        await wait_until(lambda: final_code(peer, "after-torture") == 200, 5.0, "OPTIONS 200")
        assert gateway.sip.stack.guard.refused.total() > 0
    finally:
        await port.stopListening()
