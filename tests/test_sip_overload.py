"""Shedding new INVITEs under overload: the token bucket, the shedder, and a SIPp burst on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted
from twisted.logger import capturedLogs

from lvgateway.config import ConfigError
from lvgateway.sip.overload import InviteShedder, Shed, TokenBucket

from .sip_gateway import all_succeed, free_udp_port, gateway_config, sipp, start_gateway
from .sip_helpers import wait_until

LIVEVOX = "127.0.0.1"
VENDOR = "127.0.0.3"


def test_the_bucket_lets_a_burst_of_its_capacity_through_then_the_rate() -> None:
    """Capacity 3 at 2 a second: 3 at once, the 4th waits half a second, one more after it."""
    bucket = TokenBucket(rate=2.0, capacity=3.0)
    assert [bucket.take(10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(10.0) == pytest.approx(0.5)
    assert bucket.take(10.25) == pytest.approx(0.25)
    assert bucket.take(10.5) == 0.0
    assert bucket.take(10.5) > 0


def test_the_bucket_never_holds_more_than_its_capacity() -> None:
    """After a long idle time a burst is still capped at the capacity."""
    bucket = TokenBucket(rate=5.0, capacity=5.0)
    bucket.take(0.0)
    admitted = sum(1 for _ in range(20) if bucket.take(1000.0) == 0.0)
    assert admitted == 5


def test_a_bucket_without_a_rate_is_refused() -> None:
    """A rate of 0 is a configuration mistake, not a bucket that admits nothing."""
    with pytest.raises(ValueError, match="rate > 0"):
        TokenBucket(rate=0.0, capacity=1.0)


def test_no_limit_and_no_lag_sheds_nothing() -> None:
    """The default shedder admits every INVITE."""
    shedder = InviteShedder()
    assert all(shedder.check(float(n) / 1000) is None for n in range(1000))


def test_past_the_rate_invites_are_shed_with_a_retry_after_in_whole_seconds() -> None:
    """At 2 a second, the third INVITE in the same instant is shed for rate, Retry-After 1."""
    reasons: list[str] = []
    shedder = InviteShedder(2.0, on_shed=reasons.append)
    assert shedder.check(0.0) is None and shedder.check(0.0) is None
    assert shedder.check(0.0) == Shed("rate", 1)
    assert reasons == ["rate"]


def test_while_the_reactor_lags_every_new_invite_is_shed() -> None:
    """Lagging sheds regardless of the rate; when the lag ends INVITEs pass again."""
    lag = [True]
    shedder = InviteShedder(lagging=lambda: lag[0])
    assert shedder.check(0.0) == Shed("reactor_lag", 1)
    lag[0] = False
    assert shedder.check(0.1) is None


def test_a_rate_limit_alternating_admit_and_shed_logs_one_episode() -> None:
    """At 10 a second offered 30 a second for 3 s: one line when shedding begins, one when it ends."""
    shedder = InviteShedder(10.0)
    with capturedLogs() as events:
        for n in range(90):
            shedder.check(n / 30)
        assert len(events) == 1
        shedder.check(3.0 + 2.0)
    assert len(events) == 2
    assert 50 <= events[1]["count"] <= 60


def test_one_log_line_when_shedding_begins_and_one_with_the_count_when_it_ends() -> None:
    """100 shed INVITEs make two warn lines, not 100."""
    lag = [True]
    shedder = InviteShedder(lagging=lambda: lag[0])
    with capturedLogs() as events:
        for n in range(100):
            shedder.check(n / 100)
        lag[0] = False
        shedder.check(2.0)
    assert len(events) == 2
    assert events[1]["count"] == 100


@pytest.mark.timeout(60)
@pytest_twisted.ensureDeferred
async def test_a_burst_past_the_limit_gets_503_with_retry_after_and_accepted_calls_complete(
    tmp_path: Path,
) -> None:
    """12 INVITEs in about 60 ms at a limit of 2 a second: 2 calls complete, 10 get 503 + Retry-After."""
    vendor_port = free_udp_port(VENDOR)
    gw = start_gateway(tmp_path, [vendor_port], sip_extra="max_invites_per_second = 2")
    try:
        numbers = tmp_path / "numbers.csv"
        numbers.write_text("SEQUENTIAL\n" + "".join(f"+18990000{n:03d};\n" for n in (1, 2, 3, 4)))
        vendor = sipp("vendor_answer.xml", VENDOR, port=vendor_port, calls=2)
        livevox = sipp(
            "livevox_call_or_503.xml",
            LIVEVOX,
            ("127.0.0.1", gw.port),
            calls=12,
            hold_ms=300,
            extra=["-inf", str(numbers), "-r", "200"],
        )
        await all_succeed(livevox, vendor)
        await wait_until(lambda: not gw.sip.router.live, 5, "the calls to leave the call map")
    finally:
        await gw.stop()
    ended = [d for event, _, d in gw.calls.events if event == "ended"]
    assert [d["reason"] for d in ended] == ["caller_hangup", "caller_hangup"]
    value = gw.registry.get_sample_value
    assert value("lvgateway_sip_invites_shed_total", {"reason": "rate"}) == 10
    assert value("lvgateway_sip_invites_shed_total", {"reason": "reactor_lag"}) == 0
    assert value("lvgateway_calls_total", {"result": "refused", "code": "503"}) == 10
    assert value("lvgateway_calls_total", {"result": "completed", "code": "200"}) == 2


def test_the_overload_keys_are_read_from_sip_and_checked(tmp_path: Path) -> None:
    """[sip] sets the rate, the lag switch and the buffer; a negative rate names its key."""
    config = gateway_config(
        tmp_path,
        [5099],
        sip_extra="max_invites_per_second = 150\nshed_on_reactor_lag = false\n"
        "receive_buffer_bytes = 1048576",
    )
    assert config.sip.max_invites_per_second == 150.0
    assert config.sip.shed_on_reactor_lag is False
    assert config.sip.receive_buffer_bytes == 1048576
    default = gateway_config(tmp_path, [5099]).sip
    assert (default.max_invites_per_second, default.shed_on_reactor_lag) == (0.0, True)
    with pytest.raises(ConfigError, match="max_invites_per_second"):
        gateway_config(tmp_path, [5099], sip_extra="max_invites_per_second = -1")


@pytest.mark.timeout(30)
@pytest_twisted.ensureDeferred
async def test_the_sip_socket_gets_the_receive_buffer_asked(tmp_path: Path) -> None:
    """1 MiB asked: the kernel grants it, or net.core.rmem_max if that is less (reported doubled)."""
    cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    gw = start_gateway(
        tmp_path, [free_udp_port(VENDOR)], sip_extra="receive_buffer_bytes = 1048576"
    )
    try:
        assert gw.sip.stack.server.receive_buffer >= 2 * min(1048576, cap)
    finally:
        await gw.stop()
