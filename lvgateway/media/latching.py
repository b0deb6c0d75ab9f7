"""Whose media a relay port takes: the one rule every engine that claims strict latching follows.

A side's datagrams are accepted only from the address and port its SDP
names (RTCP from its ``a=rtcp`` or the RTP port + 1): a stranger, even from
inside the allowed networks, can neither take a call's audio nor inject
into it. For a side behind NAT, whose SDP names an address it cannot be
reached at, ``first_packet`` latching is the opt-in: the first datagram
from that side's allowed networks (or from its SDP address) latches the
port to its source, and the latch never moves during the call.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["LatchMode", "Address", "admits"]

#: ``strict``: only the SDP's address; ``first_packet``: latch once (NAT).
LatchMode = Literal["strict", "first_packet"]

Address = tuple[str, int]


def admits(
    source: Address,
    expected: Address | None,
    latched: Address | None,
    mode: LatchMode,
    from_allowed_network: bool,
) -> bool:
    """Return whether a datagram from ``source`` is the side's own.

    :param source: where the datagram came from.
    :param expected: the address the side's SDP names (``None`` before it).
    :param latched: where a ``first_packet`` port latched (``None`` before).
    :param mode: the side's latching.
    :param from_allowed_network: whether ``source`` is in the side's allowed networks.
    """
    if mode == "strict":
        return source == expected
    if latched is not None:
        return source == latched
    return source == expected or from_allowed_network
