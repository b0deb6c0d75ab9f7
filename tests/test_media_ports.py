"""Media port allocation: even/odd pairs at random from the range, skipping ports in use, exhaustion and release."""

from __future__ import annotations

import random

import pytest
from twisted.internet.protocol import DatagramProtocol

from lvgateway.media.errors import MediaUnavailableError, PortsExhaustedError
from lvgateway.media.ports import PortAllocator
from lvgateway.media.testing import MemoryUdpReactor

HOST = "127.0.0.1"


def protocol(number: int) -> DatagramProtocol:
    """A plain protocol for a port."""
    return DatagramProtocol()


def allocator(
    reactor: MemoryUdpReactor, low: int = 20000, high: int = 20007, seed: int = 7
) -> PortAllocator:
    """An allocator over a small range on 127.0.0.1, its choices seeded."""
    return PortAllocator(reactor, HOST, low, high, rng=random.Random(seed))


def test_pairs_are_even_and_next() -> None:
    """Each pair is an even RTP port and the odd RTCP port after it, bound on the configured address."""
    reactor = MemoryUdpReactor()
    rtp, rtcp = allocator(reactor).listen_pair(protocol)
    assert rtp.number % 2 == 0 and rtcp.number == rtp.number + 1
    assert set(reactor.udp) == {(HOST, rtp.number), (HOST, rtcp.number)}
    assert rtp.listening is reactor.udp[(HOST, rtp.number)]


def test_pairs_are_picked_at_random() -> None:
    """Calls' ports cannot be guessed from the last call's: over a wide range, the first pairs are not in order."""
    reactor = MemoryUdpReactor()
    ports = PortAllocator(reactor, HOST, 30000, 39999)  # the operating system's randomness
    numbers = [ports.listen_pair(protocol)[0].number for _ in range(20)]
    assert len(set(numbers)) == 20
    assert numbers != sorted(numbers)
    steps = {b - a for a, b in zip(numbers, numbers[1:], strict=False)}
    assert steps != {2}, "not one after the other"


def test_odd_minimum_rounds_up() -> None:
    """An odd port_min starts at the next even port."""
    reactor = MemoryUdpReactor()
    ports = allocator(reactor, 20001, 20007)
    assert ports.pairs_total == 3
    assert sorted(ports.listen_pair(protocol)[0].number for _ in range(3)) == [20002, 20004, 20006]


def test_range_without_a_pair_is_refused() -> None:
    """A range too small for one pair is a configuration error."""
    with pytest.raises(ValueError, match="no RTP/RTCP pair"):
        allocator(MemoryUdpReactor(), 20001, 20002)


def test_ports_in_use_are_skipped() -> None:
    """A pair whose RTP or RTCP port another process holds is skipped, and the half bound is closed."""
    reactor = MemoryUdpReactor()
    reactor.taken = {(HOST, 20001), (HOST, 20002)}
    ports = allocator(reactor)
    bound = [ports.listen_pair(protocol) for _ in range(2)]
    assert sorted(rtp.number for rtp, _ in bound) == [20004, 20006]
    with pytest.raises(PortsExhaustedError):
        ports.listen_pair(protocol)
    reactor.advance(0)  # the half-bound 20000 closes on the next turn
    assert set(reactor.udp) == {(HOST, n) for n in (20004, 20005, 20006, 20007)}
    assert ports.ports_busy == 4


def test_exhaustion_then_release() -> None:
    """When every pair is held the allocator raises a 503 error; a closed pair is free again once closed."""
    reactor = MemoryUdpReactor()
    ports = allocator(reactor)
    pairs = [ports.listen_pair(protocol) for _ in range(4)]
    assert ports.pairs_free() == 0
    with pytest.raises(PortsExhaustedError) as raised:
        ports.listen_pair(protocol)
    assert isinstance(raised.value, MediaUnavailableError)
    assert raised.value.sip_code == 503

    closing = [ports.close(bound) for bound in pairs[1]]
    assert ports.pairs_free() == 0  # still closing
    reactor.advance(0)
    assert all(d.called for d in closing)
    assert ports.pairs_free() == 1
    assert ports.listen_pair(protocol)[0].number == pairs[1][0].number


@pytest.mark.parametrize("seed", range(5))
def test_a_pair_given_back_is_reused_last(seed: int) -> None:
    """A pair just given back is picked only once every other pair is taken."""
    reactor = MemoryUdpReactor()
    ports = allocator(reactor, seed=seed)
    first = ports.listen_pair(protocol)
    for bound in first:
        ports.close(bound)
    reactor.advance(0)
    numbers = [ports.listen_pair(protocol)[0].number for _ in range(4)]
    assert numbers[-1] == first[0].number and sorted(numbers) == [20000, 20002, 20004, 20006]


class CountingRandom(random.Random):
    """A seeded picker that counts what the allocator asks of it."""

    def __init__(self) -> None:
        super().__init__(11)
        self.draws = 0
        self.shuffled = 0

    def randrange(self, *args: object, **kwargs: object) -> int:  # type: ignore[override]
        self.draws += 1
        return super().randrange(*args, **kwargs)  # type: ignore[arg-type]

    def shuffle(self, x: list[object]) -> None:  # type: ignore[override]
        self.shuffled += len(x)
        super().shuffle(x)


def test_a_pair_from_a_mostly_free_range_costs_a_few_draws_not_a_shuffle_of_the_range() -> None:
    """With 5,000 pairs and 100 calls up, each new pair takes a draw or two; the range is never listed and shuffled."""
    reactor = MemoryUdpReactor()
    rng = CountingRandom()
    ports = PortAllocator(reactor, HOST, 20000, 29999, rng=rng)
    for _ in range(100):
        ports.listen_pair(protocol)
    assert rng.shuffled == 0
    assert rng.draws <= 110, rng.draws


def test_the_last_free_pair_of_a_nearly_full_range_is_still_found() -> None:
    """When the random draws miss (every pair but one held), the allocator lists the free pairs and finds it."""
    reactor = MemoryUdpReactor()
    ports = PortAllocator(reactor, HOST, 20000, 20199, rng=random.Random(3))
    held = [ports.listen_pair(protocol) for _ in range(99)]
    last = ports.listen_pair(protocol)[0].number
    assert last not in {rtp.number for rtp, _ in held}
    assert ports.pairs_free() == 0
