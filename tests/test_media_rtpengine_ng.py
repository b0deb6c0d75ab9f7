"""The ng protocol client and the rtpengine engine's pure decisions, without a daemon."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.trial.unittest import SynchronousTestCase

from lvgateway.media.rtpengine_ng import (
    NgClient,
    NgError,
    NgProtocolError,
    NgTimeoutError,
    decode_reply,
    encode_request,
)
from lvgateway.media.rtpengine_policy import (
    counters_from_report,
    exchange,
    latching_flags,
    pick_weighted,
    sdp_port,
)

ENGINE = ("127.0.0.1", 2223)


def test_encode_then_decode_round_trip() -> None:
    """A request's dictionary comes back as sent, strings as str, the cookie apart."""
    datagram = encode_request("ab_1", {"command": "offer", "flags": ["strict source"], "n": 3})
    assert datagram.startswith(b"ab_1 d")
    cookie, message = decode_reply(datagram)
    assert cookie == "ab_1"
    assert message == {"command": "offer", "flags": ["strict source"], "n": 3}


def test_decode_keeps_non_utf8_values_as_bytes() -> None:
    """A value that is not UTF-8 stays bytes instead of failing the reply."""
    _, message = decode_reply(b"c d6:result2:ok3:raw2:\xff\xfee")
    assert message == {"result": "ok", "raw": b"\xff\xfe"}


@pytest.mark.parametrize(
    ("datagram", "why"),
    [
        (b"d6:result2:oke", "no cookie"),
        (b"c1 d6:result", "not bencode"),
        (b"c1 li1ee", "not a dictionary"),
    ],
)
def test_decode_refuses_what_is_not_a_reply(datagram: bytes, why: str) -> None:
    """No cookie, truncated bencode, or a list: a clear NgProtocolError."""
    with pytest.raises(NgProtocolError, match=why):
        decode_reply(datagram)


class ClientTests(SynchronousTestCase):
    """NgClient over a fake transport and a fake clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.client = NgClient(self.clock, interval=0.5, attempts=3)
        self.transport = FakeDatagramTransport()
        self.client.makeConnection(self.transport)  # type: ignore[no-untyped-call]

    def sent(self) -> list[tuple[str, dict[str, Any]]]:
        return [decode_reply(datagram) for datagram, _ in self.transport.written]

    def reply(self, cookie: str, message: dict[str, Any], source: Any = ENGINE) -> None:
        self.client.datagramReceived(encode_request(cookie, message), source)

    def test_reply_matched_by_cookie(self) -> None:
        """The reply with the request's cookie fires its Deferred; retransmissions stop."""
        d = self.client.command(ENGINE, {"command": "ping"})
        [(cookie, message)] = self.sent()
        assert message == {"command": "ping"}
        self.reply(cookie, {"result": "pong"})
        assert self.successResultOf(d) == {"result": "pong"}
        self.clock.advance(5)
        assert len(self.transport.written) == 1
        assert self.client.in_flight == 0

    def test_retransmits_same_cookie_then_times_out(self) -> None:
        """Unanswered, a request is sent three times with one cookie, then fails with NgTimeoutError."""
        d = self.client.command(ENGINE, {"command": "offer"})
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        assert len({cookie for cookie, _ in self.sent()}) == 1
        assert len(self.transport.written) == 3
        self.assertNoResult(d)
        self.clock.advance(0.5)
        failure = self.failureResultOf(d, NgTimeoutError)
        assert "did not answer 'offer' (3 sends, 1.5 s)" in str(failure.value)
        assert self.client.retransmissions == 2

    def test_error_result_is_an_ng_error(self) -> None:
        """result: error becomes NgError carrying the error-reason (a 502 for an SDP hook)."""
        d = self.client.command(ENGINE, {"command": "query"})
        [(cookie, _)] = self.sent()
        self.reply(cookie, {"result": "error", "error-reason": "Unknown call-id"})
        failure = self.failureResultOf(d, NgError)
        assert "Unknown call-id" in str(failure.value)
        assert failure.value.code == 502

    def test_late_and_foreign_replies_are_ignored(self) -> None:
        """A reply from another address, or to a request already answered, is counted and dropped."""
        d = self.client.command(ENGINE, {"command": "ping"})
        [(cookie, _)] = self.sent()
        self.reply(cookie, {"result": "pong"}, source=("127.0.0.9", 2223))
        self.assertNoResult(d)
        self.reply(cookie, {"result": "pong"})
        self.reply(cookie, {"result": "pong"})
        self.client.datagramReceived(b"garbage", ENGINE)
        assert self.successResultOf(d) == {"result": "pong"}
        assert self.client.unmatched == 3

    def test_cookies_differ_between_clients(self) -> None:
        """Two clients (or two runs) never share a cookie: rtpengine caches replies by cookie."""
        other = NgClient(self.clock)
        other.makeConnection(FakeDatagramTransport())  # type: ignore[no-untyped-call]
        waiting = [
            self.client.command(ENGINE, {"command": "ping"}),
            other.command(ENGINE, {"command": "ping"}),
        ]
        [(mine, _)] = self.sent()
        [(theirs, _)] = [decode_reply(d) for d, _ in other.transport.written]  # type: ignore[union-attr]
        assert mine != theirs
        self.client.stop()
        other.stop()
        for d in waiting:
            self.failureResultOf(d, CancelledError)

    def test_cancel_and_stop(self) -> None:
        """Cancelling stops retransmissions; stop() fails what is still waiting."""
        cancelled = self.client.command(ENGINE, {"command": "ping"})
        cancelled.cancel()
        self.failureResultOf(cancelled, CancelledError)
        waiting = self.client.command(ENGINE, {"command": "ping"})
        self.client.stop()
        self.failureResultOf(waiting, CancelledError)
        self.clock.advance(5)
        assert len(self.transport.written) == 2


def test_latching_flags() -> None:
    """Strict: learning off (only the SDP's address); NAT opt-in: learning immediate; both strict source."""
    assert latching_flags("strict") == ["strict source", "endpoint-learning-off"]
    assert latching_flags("first_packet") == ["strict source", "endpoint-learning-immediate"]


def test_exchange_offer_or_answer() -> None:
    """An SDP answers the other side's open offer, else it is an offer of its own (re-INVITEs either way)."""
    assert exchange("livevox", None) == ("offer", "livevox")
    assert exchange("vendor", "livevox") == ("answer", "livevox")
    assert exchange("vendor", None) == ("offer", "vendor")
    assert exchange("livevox", "vendor") == ("answer", "vendor")
    assert exchange("livevox", "livevox") == ("offer", "livevox")  # a re-offer replaces its own


def test_sdp_port() -> None:
    """The first audio port of an SDP rtpengine returned."""
    assert sdp_port("v=0\r\nm=video 9 RTP/AVP 96\r\nm=audio 30018 RTP/AVP 0\r\n") == 30018
    assert sdp_port("v=0\r\n") is None


def _stream(packets: int, size: int, errors: int, last: int, port: int) -> dict[str, Any]:
    return {
        "stats": {"packets": packets, "bytes": size, "errors": errors},
        "last packet": last,
        "endpoint": {"family": "IPv4", "address": "127.0.0.1", "port": port},
    }


def test_counters_from_report() -> None:
    """Per tag: packets less errors relayed, errors as unknown_source, last packet at the end of its second."""
    report = {
        "tags": {
            "livevox": {
                "medias": [
                    {"streams": [_stream(10, 1720, 2, 995, 4000), _stream(1, 80, 0, 990, 4001)]}
                ]
            },
            "vendor": {
                "medias": [
                    {"streams": [_stream(5, 860, 0, 999, 5000), _stream(0, 0, 0, 999, 5001)]}
                ]
            },
        }
    }
    c = counters_from_report(report, now_wall=1000.0, now_mono=50.0, ports=(30018, 30000))
    assert (c.livevox_to_vendor.packets, c.livevox_to_vendor.bytes) == (9, 1456)
    assert (c.vendor_to_livevox.packets, c.vendor_to_livevox.bytes) == (5, 860)
    assert c.dropped == {"unknown_source": 2, "no_destination": 0, "send_error": 0}
    assert c.last_from_livevox == 46.0  # second 995 ended at 996: four seconds ago
    assert c.last_from_vendor == 50.0  # this very second: never earlier than now
    assert c.livevox_source == ("127.0.0.1", 4000) and c.vendor_source == ("127.0.0.1", 5000)
    assert (c.livevox_port, c.vendor_port) == (30018, 30000)
    empty = counters_from_report({"tags": {}}, 1000.0, 50.0)
    assert empty.last_from_livevox is None and empty.livevox_to_vendor.packets == 0


def test_pick_weighted() -> None:
    """Draws land in proportion to weight; a weight of 0 (an instance down) is never picked."""
    assert pick_weighted([1, 3], 0.0) == 0
    assert pick_weighted([1, 3], 0.24) == 0
    assert pick_weighted([1, 3], 0.26) == 1
    assert pick_weighted([0, 3], 0.0) == 1
    assert pick_weighted([2, 0], 0.99) == 0
    assert pick_weighted([0, 0], 0.5) is None
    assert pick_weighted([], 0.5) is None
    picks = [pick_weighted([1, 3], n / 1000) for n in range(1000)]
    assert picks.count(1) == 750
