"""Shared plumbing for the benchmarks: a LiveVox simulator in its own process, and figures out."""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TOKEN = "bench-api-token"
PASSWORD = "bench-agent-password"
SERVICE_ID = "1234567"


def free_port() -> int:
    """Ask the kernel for a free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def sandbox_toml(port: int, agents: int) -> str:
    """A simulator config with ``agents`` agent users AIVA1..AIVAn on +1899000000n."""
    users = "".join(
        f'[[users]]\nname = "AIVA{n}"\npassword = "{PASSWORD}"\nagent = true\nuser_id = {5000 + n}\n'
        f'days_until_password_expires = 90\nphone_number = "+1899{n:07d}"\n'
        for n in range(1, agents + 1)
    )
    return (
        f'[server]\nlisten = "tcp:{port}:interface=127.0.0.1"\n'
        f'[livevox]\nclient_name = "bench"\nclient_id = 1\ntoken = "{TOKEN}"\njournal_size = 1000\n'
        + users
        + f'[[services]]\nid = "{SERVICE_ID}"\nname = "bench"\n'
        '[[services.term_code_categories]]\nname = "AI"\n'
        '[[services.term_code_categories.term_codes]]\nid = "101"\nname = "AI Completed"\n'
    )


@contextmanager
def simulator_process(agents: int, bound: float = 60.0) -> Iterator[str]:
    """Run the LiveVox simulator under twistd in its own process; yield its base URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "sandbox.toml"
        config.write_text(sandbox_toml(port, agents))
        log = Path(tmp) / "sandbox.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
        process = subprocess.Popen(
            [*cmd, "-n", "--pidfile=", "--logfile", str(log), "lvsandbox", "--config", str(config)],
            env=env,
            cwd=tmp,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + bound
            while True:
                try:
                    urllib.request.urlopen(base + "/_sandbox/agents", timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise RuntimeError(f"the simulator did not start; see {log}") from None
                    time.sleep(0.1)
            yield base
        finally:
            process.terminate()
            process.wait(timeout=30)


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def lag_figures(lags: list[float]) -> dict[str, Any]:
    """Percentiles of a timer's lags (seconds, sorted), in milliseconds."""
    if not lags:
        return {"ticks": 0}

    def at(p: float) -> float:
        return round(1000 * lags[min(len(lags) - 1, int(p / 100 * len(lags)))], 2)

    return {
        "ticks": len(lags),
        "p50": at(50),
        "p99": at(99),
        "p99_9": at(99.9),
        "max": round(1000 * lags[-1], 2),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def report(name: str, figures: dict[str, Any], line: str) -> None:
    """Write the figures as JSON under bench/results/ and print one line of text."""
    RESULTS.mkdir(exist_ok=True)
    figures = {"benchmark": name, "machine": machine(), **figures}
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    print(line)
