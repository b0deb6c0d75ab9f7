"""Draw docs/benchmarks.png from the latest figures under bench/results/.

    python bench/plot.py

Left: INVITE-to-200 time (p50, p99) and failed calls against the call rate,
for the gateway and Sippy's b2bua_simple. Right: added latency (p99) and
loss against concurrent calls, for each media engine. Needs matplotlib
(``pip install matplotlib``), which only this script uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUT = ROOT / "docs" / "benchmarks.png"


def load(name: str) -> dict[str, Any] | None:
    """The figures of one benchmark, if it has been run."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def signalling(ax: Any, twin: Any, figures: dict[str, Any]) -> None:
    """Setup time and failures against the call rate."""
    for target, colour in (("gateway", "tab:blue"), ("floor", "tab:grey")):
        steps = [s for s in figures[target]["steps"] if s.get("successful") is not None]
        rates = [s["rate"] for s in steps]
        ax.plot(
            rates,
            [s["invite_to_200_ms_p50"] for s in steps],
            "o-",
            color=colour,
            label=f"{target} p50",
        )
        ax.plot(
            rates,
            [s["invite_to_200_ms_p99"] for s in steps],
            "s--",
            color=colour,
            label=f"{target} p99",
        )
        failed = [100.0 * s["failed"] / max(1, s["successful"] + s["failed"]) for s in steps]
        twin.bar(
            [r + (1.5 if target == "floor" else -1.5) for r in rates],
            failed,
            width=3,
            color=colour,
            alpha=0.3,
        )
    ax.set_xlabel("calls per second (SIPp, 1 s hold)")
    ax.set_ylabel("INVITE to 200 (ms)")
    ax.set_yscale("log")
    twin.set_ylabel("failed calls (%, bars)")
    ax.set_title("Signalling: gateway vs b2bua_simple (floor)")
    ax.legend(fontsize=7, loc="upper left")


def media(ax: Any, twin: Any, figures: dict[str, Any]) -> None:
    """Added latency and loss against concurrent calls, per engine."""
    colours = {"rtpio": "tab:green", "twisted": "tab:orange", "rtpengine": "tab:purple"}
    for engine, colour in colours.items():
        rows = sorted(
            (r for r in figures["table"] if r["engine"] == engine), key=lambda r: r["calls"]
        )
        if not rows:
            continue
        calls = [r["calls"] for r in rows]
        ax.plot(
            calls,
            [(r["added_p99_us"] or 0) / 1000 for r in rows],
            "o-",
            color=colour,
            label=f"{engine} p99",
        )
        twin.plot(
            calls, [100 * r["loss"] for r in rows], "x:", color=colour, label=f"{engine} loss"
        )
    ax.axhline(1.0, color="red", linewidth=0.8)
    ax.set_xlabel("concurrent G.711 calls (50 packets/s each way)")
    ax.set_ylabel("added latency p99 (ms); red: 1 ms")
    twin.set_ylabel("loss (%, dotted)")
    ax.set_title("Media: relay engines")
    ax.legend(fontsize=7, loc="upper left")


def main() -> None:
    """Draw whatever figures exist."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    sig, med = load("sip_signalling"), load("media")
    if sig is not None:
        signalling(axes[0], axes[0].twinx(), sig)
    if med is not None:
        media(axes[1], axes[1].twinx(), med)
    fig.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=100)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
