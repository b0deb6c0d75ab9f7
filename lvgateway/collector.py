"""The garbage collector's settings for a process that must never pause long.

A full (generation 2) collection walks every container object the process
holds and stalls the reactor for as long: at 140 calls a second it took up
to 245 ms (docs/benchmarks.md). :func:`settle_heap`, run once the gateway
has started, collects the start-up garbage, then freezes what is left
(modules, config, long-lived parts: they never die) so that no later
collection walks it, and sets the thresholds :data:`THRESHOLDS`.
"""

from __future__ import annotations

import gc

__all__ = ["THRESHOLDS", "settle_heap"]

#: ``gc.set_threshold`` values. A call leaves no cyclic garbage (its SIP legs
#: and relay ports break their cycles when they end), so a full collection
#: finds almost nothing to free and is pure pause: it runs after 100 younger
#: ones instead of Python's 10 (and, as always, only once the old generation
#: has grown by a quarter). Measured in docs/benchmarks.md.
THRESHOLDS = (700, 10, 100)


def settle_heap(thresholds: tuple[int, int, int] = THRESHOLDS) -> int:
    """Collect, freeze the surviving heap out of future collections, set the thresholds.

    :return: how many objects were frozen.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*thresholds)
    return gc.get_freeze_count()
