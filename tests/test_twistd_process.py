"""The gateway as operators run it: a real ``twistd -n lvgateway`` process, started and stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def free_port() -> int:
    """Ask the kernel for a free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(url: str, bound: float) -> int:
    """Poll ``url`` until it answers, up to ``bound`` seconds; return its status."""
    deadline = time.monotonic() + bound
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                status: int = response.status
                return status
        except OSError as e:
            last = e
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {bound}s: {last}")


def gateway_env() -> dict[str, str]:
    """The environment for a gateway run from the source tree."""
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def test_twistd_runs_gateway_and_exits_cleanly_on_sigterm(gateway_config_path: Path) -> None:
    """twistd -n lvgateway serves /healthz, drains on SIGTERM, and exits as killed by SIGTERM."""
    port = free_port()
    text = gateway_config_path.read_text().replace(
        '[control]\nlisten = "tcp:0:', f'[control]\nlisten = "tcp:{port}:'
    )
    gateway_config_path.write_text(text)
    log = gateway_config_path.parent / "twistd.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "lvgateway", "--config", str(gateway_config_path)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=gateway_env(),
            cwd=gateway_config_path.parent,
        )
        try:
            assert wait_for(f"http://127.0.0.1:{port}/healthz", bound=30) == 200
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = log.read_text()
    assert status == -signal.SIGTERM, output
    assert "drain begins" in output and "drain ended" in output
    assert "Traceback" not in output


def test_port_in_use_stops_twistd_with_the_error(gateway_config_path: Path) -> None:
    """A listener that cannot bind stops the process at start-up instead of running half-deaf."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = gateway_config_path.read_text().replace(
            '[control]\nlisten = "tcp:0:', f'[control]\nlisten = "tcp:{port}:'
        )
        gateway_config_path.write_text(text)
        result = subprocess.run(
            [*TWISTD, "-n", "--pidfile=", "lvgateway", "--config", str(gateway_config_path)],
            capture_output=True,
            text=True,
            env=gateway_env(),
            cwd=gateway_config_path.parent,
            timeout=60,
        )
    assert result.returncode != 0
    assert "Address already in use" in result.stdout + result.stderr


@pytest.mark.parametrize("flag", ["--check-config", "-t"])
def test_check_config_command_binds_nothing(gateway_config_path: Path, flag: str) -> None:
    """twistd lvgateway --check-config prints the summary and exits 0 without starting."""
    result = subprocess.run(
        [*TWISTD, "lvgateway", "--config", str(gateway_config_path), flag],
        capture_output=True,
        text=True,
        env=gateway_env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "configuration is valid" in result.stdout
    assert "starting up" not in result.stdout + result.stderr
