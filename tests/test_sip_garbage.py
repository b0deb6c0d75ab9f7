"""A call leaves nothing for the garbage collector: its objects die by reference counting.

Sippy gives every request a ``sendResponse`` closure holding the request, a
UA and its states refer to each other, and the relay's two ports of a
stream refer to each other: each was a cycle that only a full collection
freed, with every parsed message of the call (some 280 objects a call, and
full collections of up to 250 ms under load). The SIP part and the relay
now break them when a leg or session ends; this test keeps it so.
"""

from __future__ import annotations

import gc
from collections import Counter
from pathlib import Path

import pytest
import pytest_twisted

from .sip_gateway import free_udp_port, sipp, start_gateway
from .sip_helpers import wait_until

pytestmark = pytest.mark.timeout(60)


def _kind(value: object) -> str:
    return f"{type(value).__module__}.{type(value).__qualname__}"


@pytest_twisted.ensureDeferred
async def test_four_calls_through_the_sip_part_and_relay_leave_no_cyclic_garbage(
    tmp_path: Path,
) -> None:
    """Calls set up, answered and hung up; then a full collection finds none of their objects in cycles."""
    vendor_port = free_udp_port("127.0.0.3")
    gateway = start_gateway(tmp_path, [vendor_port])
    try:
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        vendor = sipp("vendor_answer.xml", "127.0.0.3", port=vendor_port, calls=4)
        callers = [
            sipp(
                "livevox_call.xml",
                "127.0.0.1",
                ("127.0.0.1", gateway.port),
                service=f"+1899000000{n}",
            )
            for n in range(1, 5)
        ]
        for run in (*callers, vendor):
            result = await run
            assert result.code == 0, result.output
        await wait_until(lambda: not gateway.sip.router.live, 10, "the calls to leave the call map")
        await wait_until(
            lambda: gateway.media.stats().sessions == 0, 10, "the calls' media to be released"
        )
        gc.collect()
        ours = Counter(
            _kind(o) for o in gc.garbage if _kind(o).startswith(("sippy.", "lvgateway."))
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        await gateway.stop()
    assert [e for e, _, _ in gateway.calls.events].count("connected") == 4
    assert not ours, ours.most_common(10)
