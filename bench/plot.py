"""Draw docs/benchmarks.png from the latest figures under bench/results/.

    python bench/plot.py

Four panels, each one quantity on a zero-based (or logarithmic) axis:

- signalling: INVITE-to-200 p99 against the call rate, for the gateway's latest
  run, its first run, and Sippy's ``b2bua_simple`` (the floor); the rate where
  calls started to fail is marked with a cross;
- signalling: CPU per call against the call rate, the same runs;
- media: added latency p99 against concurrent calls, per engine;
- media: relay CPU per packet against concurrent calls, per engine
  (the media table's main figure).

Loss is not drawn when every point is zero: the media panels say so in their
title instead of drawing a flat line on a meaningless axis. Needs matplotlib
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

#: One colour per line, the same in every panel.
COLOURS = {
    "gateway, latest": "tab:blue",
    "gateway, before": "tab:cyan",
    "b2bua_simple (floor)": "tab:grey",
    "rtpio": "tab:green",
    "twisted": "tab:orange",
    "rtpengine": "tab:purple",
}


def load(name: str) -> dict[str, Any] | None:
    """The figures of one benchmark, if it has been run."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def signalling_runs() -> dict[str, dict[str, Any]]:
    """The signalling runs to draw: the latest gateway run and its floor (one run), and the run before."""
    runs: dict[str, dict[str, Any]] = {}
    latest, before = load("sip_signalling"), load("sip_signalling_before_stalls_work")
    if latest is not None:
        runs["gateway, latest"] = latest["gateway"]
    if before is not None:
        runs["gateway, before"] = before["gateway"]
    if latest is not None and latest.get("floor"):
        runs["b2bua_simple (floor)"] = latest["floor"]
    return runs


def signalling(latency: Any, cpu: Any, runs: dict[str, dict[str, Any]]) -> None:
    """Setup time and CPU per call against the call rate; a cross where calls failed."""
    for label, run in runs.items():
        steps = [s for s in run["steps"] if s.get("successful") is not None]
        passed = [s for s in steps if s["failed"] == 0]
        failed = [s for s in steps if s["failed"] > 0]
        colour = COLOURS[label]
        style = "--" if label == "gateway, before" else "-"
        latency.plot(
            [s["rate"] for s in passed],
            [s["invite_to_200_ms_p99"] for s in passed],
            "o" + style,
            color=colour,
            label=f"{label}: passed {run['highest_rate_cps']} calls/s",
        )
        cpu.plot(
            [s["rate"] for s in steps],
            [s["cpu_ms_per_call"] for s in steps],
            "o" + style,
            color=colour,
            label=label,
        )
        for s in failed:
            share = 100.0 * s["failed"] / (s["successful"] + s["failed"])
            latency.plot(s["rate"], s["invite_to_200_ms_p99"], "x", color=colour, markersize=10)
            latency.annotate(
                f"{share:.1f}% failed",
                (s["rate"], s["invite_to_200_ms_p99"]),
                textcoords="offset points",
                xytext=(-8, 6),
                ha="right",
                fontsize=8,
                color=colour,
            )
    latency.set_title("Signalling: INVITE-to-200 p99 (x: a step with failed calls)")
    latency.set_xlabel("calls per second (SIPp, 1 s hold)")
    latency.set_ylabel("INVITE to 200, p99 (ms, log scale)")
    latency.set_yscale("log")
    latency.legend(fontsize=8, loc="lower right")
    cpu.set_title("Signalling: CPU per call")
    cpu.set_xlabel("calls per second (SIPp, 1 s hold)")
    cpu.set_ylabel("CPU per call (ms)")
    cpu.set_ylim(bottom=0)
    cpu.legend(fontsize=8, loc="lower right")


def media(latency: Any, cpu: Any, figures: dict[str, Any]) -> None:
    """Added latency and relay CPU per packet against concurrent calls, per engine."""
    lossless = all(not r["loss"] for r in figures["table"])
    for engine in ("rtpio", "twisted", "rtpengine"):
        rows = sorted(
            (r for r in figures["table"] if r["engine"] == engine), key=lambda r: r["calls"]
        )
        if not rows:
            continue
        calls = [r["calls"] for r in rows]
        latency.plot(
            calls,
            [r["added_p99_us"] / 1000 for r in rows if r["added_p99_us"] is not None],
            "o-",
            color=COLOURS[engine],
            label=engine,
        )
        cpu.plot(
            calls,
            [r["relay_cpu_us_per_packet"] for r in rows],
            "o-",
            color=COLOURS[engine],
            label=engine,
        )
        if not lossless:
            for r in rows:
                if r["loss"]:
                    latency.annotate(
                        f"{100 * r['loss']:.2f}% lost",
                        (r["calls"], r["added_p99_us"] / 1000),
                        fontsize=8,
                        color=COLOURS[engine],
                    )
    lost = "no packet lost at any point" if lossless else "labels: packets lost"
    latency.axhline(20.0, color="red", linewidth=0.8, linestyle=":")
    latency.text(10, 23, "20 ms: one packet interval", color="red", fontsize=8)
    latency.set_title(f"Media: added latency p99 ({lost})")
    latency.set_xlabel("concurrent G.711 calls (50 packets/s each way)")
    latency.set_ylabel("added latency, p99 (ms, log scale)")
    latency.set_yscale("log")
    latency.legend(fontsize=8, loc="lower right")
    cpu.set_title("Media: relay CPU per packet")
    cpu.set_xlabel("concurrent G.711 calls (50 packets/s each way)")
    cpu.set_ylabel("CPU per relayed packet (µs)")
    cpu.set_ylim(bottom=0)
    cpu.legend(fontsize=8, loc="upper right")


def main() -> None:
    """Draw whatever figures exist."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    runs, med = signalling_runs(), load("media")
    if runs:
        signalling(axes[0][0], axes[0][1], runs)
    if med is not None:
        media(axes[1][0], axes[1][1], med)
    for ax in axes.flat:
        ax.grid(True, which="major", alpha=0.3)
        ax.set_xlim(left=0)
    fig.tight_layout()
    OUT.parent.mkdir(exist_ok=True)
    fig.savefig(OUT, dpi=100)
    print(f"wrote {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
