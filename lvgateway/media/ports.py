"""Media port allocation: RTP/RTCP pairs (even, even + 1) from a configured range, on the reactor.

The allocator binds each port with ``reactor.listenUDP`` and skips every
port it cannot bind (another process, or a socket of ours still closing), so
it needs no knowledge of the machine's other users. It picks each pair **at
random** from the free ones, so a stranger cannot guess a call's ports from
the last call's; pairs given back recently are picked only when no other is
free, so a late packet of an ended call is unlikely to reach the next one.
A port stays *busy* until its socket is really closed (``stopListening``
closes it on the next reactor turn).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol

from lvgateway.media.errors import PortsExhaustedError

__all__ = ["BoundPort", "PortAllocator"]

P = TypeVar("P", bound=DatagramProtocol)

#: Random draws from the whole range before the allocator lists every free
#: pair: while the range is mostly free, one or two draws find a pair, so a
#: bind costs a few random numbers instead of a shuffle of thousands of pairs.
RANDOM_DRAWS = 32


@attrs.frozen
class BoundPort(Generic[P]):
    """One bound media port.

    :param number: the local port number.
    :param listening: the reactor's listening port (``getHandle()`` is the socket).
    :param protocol: the protocol receiving its datagrams.
    """

    number: int
    listening: IListeningPort
    protocol: P


@attrs.define(eq=False)
class PortAllocator:
    """Allocates RTP/RTCP port pairs from ``[port_min, port_max]`` on one address.

    :param reactor: provides ``IReactorUDP``.
    :param interface: the address to bind.
    :param port_min: the lowest port; rounded up to even.
    :param port_max: the highest port; an RTP port needs its RTCP port at
        most ``port_max``.
    :param rng: picks the pairs (the operating system's randomness by default).
    """

    reactor: Any
    interface: str
    port_min: int
    port_max: int
    rng: random.Random = attrs.field(factory=random.SystemRandom)
    _busy: set[int] = attrs.field(factory=set, init=False)
    #: RTP ports given back lately, oldest first: picked last.
    _resting: deque[int] = attrs.field(init=False)
    #: The same ports, for membership tests.
    _resting_set: set[int] = attrs.field(factory=set, init=False)
    _resting_max: int = attrs.field(default=1, init=False)

    def __attrs_post_init__(self) -> None:
        first = self.port_min + (self.port_min % 2)
        if first + 1 > self.port_max:
            raise ValueError(
                f"media port range {self.port_min}-{self.port_max} holds no RTP/RTCP pair"
            )
        self.port_min = first
        self._resting_max = max(1, self.pairs_total // 2)
        self._resting = deque()

    @property
    def pairs_total(self) -> int:
        """How many pairs the range holds."""
        return (self.port_max - self.port_min + 1) // 2

    @property
    def ports_busy(self) -> int:
        """Ports held by us, including ports still closing."""
        return len(self._busy)

    def pairs_free(self) -> int:
        """Pairs not held by us (others' use of the range is seen only when binding)."""
        return self.pairs_total - len(self._busy) // 2

    def listen_pair(self, factory: Callable[[int], P]) -> tuple[BoundPort[P], BoundPort[P]]:
        """Bind the next free pair: RTP on an even port, RTCP on the next.

        :param factory: makes a fresh protocol for each port tried, given its
            number (a protocol
            whose bind failed is not reused: Twisted's ``doStop`` would clear
            its transport later).
        :returns: the RTP port and the RTCP port.
        :raises lvgateway.media.errors.PortsExhaustedError: when no pair of the
            range can be bound.
        """
        for rtp_number in self._candidates():
            rtp = self._bind(rtp_number, factory)
            if rtp is None:
                continue
            rtcp = self._bind(rtp_number + 1, factory)
            if rtcp is None:
                self.close(rtp)
                continue
            return rtp, rtcp
        raise PortsExhaustedError(
            f"no free RTP/RTCP pair in {self.port_min}-{self.port_max} on {self.interface}"
            f" ({len(self._busy)} ports held by this relay)"
        )

    def _free(self, rtp_number: int) -> bool:
        return rtp_number not in self._busy and rtp_number + 1 not in self._busy

    def _candidates(self) -> Iterator[int]:
        """The free RTP ports in the order to try them: at random, the resting ones last.

        First a few random draws from the whole range; should they all miss
        (a range nearly full), every other free pair, shuffled.
        """
        total = self.pairs_total
        drawn: set[int] = set()
        for _ in range(min(RANDOM_DRAWS, total)):
            number = self.port_min + 2 * self.rng.randrange(total)
            if number in drawn or number in self._resting_set or not self._free(number):
                continue
            drawn.add(number)
            yield number
        fresh = [
            number
            for number in range(self.port_min, self.port_min + 2 * total, 2)
            if number not in drawn and number not in self._resting_set and self._free(number)
        ]
        self.rng.shuffle(fresh)
        yield from fresh
        yield from [number for number in self._resting if self._free(number)]

    def _bind(self, number: int, factory: Callable[[int], P]) -> BoundPort[P] | None:
        protocol = factory(number)
        try:
            listening = self.reactor.listenUDP(number, protocol, interface=self.interface)
        except CannotListenError:
            return None
        self._busy.add(number)
        return BoundPort(number, listening, protocol)

    def close(self, bound: BoundPort[Any]) -> Deferred[None]:
        """Close a port; it is free again once the returned Deferred fires (never errbacks)."""
        closing = bound.listening.stopListening()
        if not isinstance(closing, Deferred):
            self._busy.discard(bound.number)
            if bound.number % 2 == 0:
                self._rest(bound.number)
            return succeed(None)

        def freed(result: object) -> None:
            self._busy.discard(bound.number)
            if bound.number % 2 == 0:
                self._rest(bound.number)

        closing.addBoth(freed)
        return closing

    def _rest(self, rtp_number: int) -> None:
        if rtp_number in self._resting_set:
            self._resting.remove(rtp_number)
        elif len(self._resting) >= self._resting_max:
            self._resting_set.discard(self._resting.popleft())
        self._resting.append(rtp_number)
        self._resting_set.add(rtp_number)
