"""An idle process's timer lag, for ``bench/sip_signalling.py``: the machine's own baseline.

    python bench/_idle_timer_proc.py OUT.json

A bare Twisted reactor runs a 10 ms timer, as the gateway's process does,
and nothing else. On SIGUSR1 it writes to ``OUT.json`` the percentiles of how
late the timer ran since the last SIGUSR1 (a busy machine delays even an
idle process), then starts afresh. Runs until SIGTERM.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import reactor, task  # noqa: E402

from bench._support import lag_figures  # noqa: E402

TICK = 0.01


def main() -> None:
    """Time the timer until SIGTERM; write the figures on SIGUSR1."""
    out = Path(sys.argv[1])
    lags: list[float] = []
    last = [time.monotonic()]

    def tick() -> None:
        now = time.monotonic()
        lags.append(max(0.0, now - last[0] - TICK))
        last[0] = now

    def write() -> None:
        figures: dict[str, Any] = lag_figures(sorted(lags))
        lags.clear()
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(figures))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, lambda signum, frame: reactor.callFromThread(write))  # type: ignore[attr-defined]
    task.LoopingCall(tick).start(TICK, now=False)
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
