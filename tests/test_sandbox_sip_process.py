"""Two real ``twistd -n lvsandbox`` processes: one's dialler calls the other's echo bot, Sippy on both ends."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
TOKEN = "demo-api-token"  # etc/sandbox.toml's made-up demo values
PASSWORD = "demo-agent-password"


def free_port(host: str, kind: int) -> int:
    """Ask the kernel for a free port on ``host`` (TCP or UDP)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def sandbox_toml(replacements: dict[str, str]) -> str:
    """etc/sandbox.toml with whole lines replaced; each must be there exactly once."""
    text = (ROOT / "etc" / "sandbox.toml").read_text()
    lines = text.split("\n")
    for old, new in replacements.items():
        assert lines.count(old) == 1, f"{old!r} is not in etc/sandbox.toml exactly once"
        lines[lines.index(old)] = new
    return "\n".join(lines)


def http(
    base: str, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """One HTTP request to a sandbox; the status and the JSON body."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            content = response.read()
            return response.status, json.loads(content) if content else None
    except urllib.error.HTTPError as e:
        content = e.read()
        return e.code, json.loads(content) if content else None


def wait_for(what: str, bound: float, check: Any) -> Any:
    """Call ``check`` until it returns something truthy, up to ``bound`` seconds."""
    deadline = time.monotonic() + bound
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise AssertionError(f"gave up after {bound}s waiting for {what}: {last}")


def ready(base: str, agent: str) -> None:
    """Log an agent in, join it to the service and make it READY, over the simulated REST API."""
    status, body = http(
        base,
        "POST",
        "/session/login",
        {"clientName": "demo", "userName": agent, "password": PASSWORD, "agent": True},
        {"LV-Access": TOKEN},
    )
    assert status == 200, body
    session = {"LV-Session": body["sessionId"]}
    for path in (
        "/callControl/agent/service/join?serviceId=1234567",
        "/callControl/agent/status/ready",
    ):
        status, body = http(base, "POST", path, headers=session)
        assert status == 204, (path, status, body)


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A sandbox whose echo bot answers on 127.0.0.3, and one whose dialler calls it from 127.0.0.4."""
    bot_sip, caller_sip = (
        free_port("127.0.0.3", socket.SOCK_DGRAM),
        free_port("127.0.0.4", socket.SOCK_DGRAM),
    )
    bot_http, caller_http = (
        free_port("127.0.0.1", socket.SOCK_STREAM),
        free_port("127.0.0.1", socket.SOCK_STREAM),
    )
    configs = {
        "bot": sandbox_toml(
            {
                'listen_host = "127.0.0.2"': 'listen_host = "127.0.0.3"',
                "listen_port = 5080": f"listen_port = {bot_sip}",
                'rtp_host = "127.0.0.2"': 'rtp_host = "127.0.0.3"',
                "answer_delay = 0.5": "answer_delay = 0.2",
                "call_duration = 15.0": "call_duration = 1.0",
            }
        ),
        "caller": sandbox_toml(
            {
                'listen_host = "127.0.0.2"': 'listen_host = "127.0.0.4"',
                "listen_port = 5080": f"listen_port = {caller_sip}",
                'rtp_host = "127.0.0.2"': 'rtp_host = "127.0.0.4"',
                'gateway_host = "127.0.0.1"': 'gateway_host = "127.0.0.3"',
                "gateway_port = 5070": f"gateway_port = {bot_sip}",
            }
        ),
    }
    ports = {"bot": bot_http, "caller": caller_http}
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for name, text in configs.items():
            path = tmp_path / f"{name}.toml"
            path.write_text(text)
            logs[name] = tmp_path / f"{name}.log"
            with logs[name].open("w") as out:
                processes[name] = subprocess.Popen(
                    [
                        *TWISTD,
                        "-n",
                        "--pidfile=",
                        "lvsandbox",
                        "--config",
                        str(path),
                        "--listen",
                        f"tcp:{ports[name]}:interface=127.0.0.1",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                    cwd=tmp_path,
                )
        bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        for name, base in bases.items():
            wait_for(
                f"the {name} sandbox",
                20,
                lambda base=base: http(base, "GET", "/_sandbox/dialler")[0] == 200,
            )
        yield bases["bot"], bases["caller"]
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            assert process.wait(timeout=15) == -signal.SIGTERM, logs[name].read_text()
            output = logs[name].read_text()
            assert "Traceback" not in output and "Unhandled" not in output, output
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()


def test_dialler_calls_echo_bot_in_another_process(sandboxes: tuple[str, str]) -> None:
    """Two concurrent calls: INVITEs as LiveVox's, audio echoed with none lost or crossed, the bot's BYE disposition read."""
    bot, caller = sandboxes
    ready(caller, "AIVA1")
    ready(caller, "AIVA2")
    placed = []

    def dial(agent: str) -> bool:
        status, body = http(caller, "POST", "/_sandbox/dial", {"agent": agent, "callDuration": 0})
        if status == 429:  # max_call_rate is 10 calls a second: ask again shortly
            return False
        assert status == 201, body
        placed.append(body["call"])
        return True

    for agent in ("AIVA1", "AIVA2"):
        wait_for(f"the dialler to call {agent}", 5, lambda agent=agent: dial(agent))

    def results() -> list[dict[str, Any]] | None:
        _, body = http(caller, "GET", "/_sandbox/calls/results")
        done = [r for r in body["results"] if r["done"]]
        return done if len(done) == 2 else None

    finished = {r["id"]: r for r in wait_for("both calls to finish", 10, results)}
    _, bot_calls = http(bot, "GET", "/_sandbox/echo-bot/calls")
    by_session = {
        dict((n, v) for n, v in c["headers"]).get("Session-ID"): c for c in bot_calls["calls"]
    }
    for call in placed:
        result = finished[call["id"]]
        assert result["audioOk"] and result["rtp"]["lost"] == 0 and result["rtp"]["foreign"] == 0, (
            result
        )
        assert result["rtp"]["received"] >= 40
        assert result["endedBy"] == "gateway" and result["wrapup"] == "WRAPUP"
        bye = result["gatewayByeHeaders"]
        assert ["X-LV-Term-Code", "AI Completed"] in bye and ["X-LV-Next-Action", "done"] in bye
        answered = by_session[result["callSessionId"]]
        assert answered["endedBy"] == "bye" and answered["dnis"] == result["dnis"]
        names = [n for n, _ in answered["headers"]]
        assert {
            "Session-ID",
            "Session-Expires",
            "Carrier-Name",
            "Pool-Name",
            "Record-Route",
        } <= set(names)
        assert answered["rtp"]["streams"] and len(answered["rtp"]["streams"]) == 1
    _, agents = http(caller, "GET", "/_sandbox/agents")
    states = {a["user"]: a["state"] for a in agents["agents"]}
    assert states["AIVA1"] == states["AIVA2"] == "WRAPUP"
