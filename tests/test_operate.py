"""Operating the gateway for real, as whole twistd processes on loopback.

One instance per state directory, JSON lines a shipper can read, systemd's
notify protocol on a socket the test owns, the unit's hardening score,
``--version``, ``--check-config`` on unwritable paths, and the drain's
feedback (progress lines, a second and a third SIGTERM).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from lvgateway.drain import DrainPhase, OrderedDrain
from lvgateway.instance import LOCK_NAME, StateDirectoryInUseError, StateLock
from lvgateway.logs import json_line
from lvgateway.systemd import Notifier

ROOT = Path(__file__).resolve().parent.parent
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]

pytestmark = pytest.mark.timeout(90)


def env(**extra: str) -> dict[str, str]:
    """The environment of a gateway run from the source tree."""
    base = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    return {**base, "PYTHONPATH": str(ROOT), **extra}


def wait_until(what: str, bound: float, check: Callable[[], Any]) -> Any:
    """Call ``check`` until it returns something truthy, up to ``bound`` seconds."""
    deadline = time.monotonic() + bound
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"gave up after {bound}s waiting for {what}: {last!r}")


def start(config: Path, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    """Start ``twistd -n lvgateway`` on ``config``, its output in ``log``."""
    with log.open("w") as out:
        return subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "lvgateway", "--config", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env(**extra),
            cwd=config.parent,
        )


@pytest.fixture
def livevox_listener(gateway_config_path: Path) -> Iterator[socket.socket]:
    """A TCP listener standing in for LiveVox: the config points at it, so any request shows."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        text = gateway_config_path.read_text().replace(
            'base_url = "http://127.0.0.1:1"', f'base_url = "http://127.0.0.1:{port}"'
        )
        gateway_config_path.write_text(text)
        yield listener


def accepted(listener: socket.socket) -> int:
    """Accept (and close) every pending connection; return how many there were."""
    count = 0
    while True:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


# -- one instance per state directory ---------------------------------------------------


def test_second_instance_on_a_held_state_directory_exits_at_once_and_asks_livevox_nothing(
    gateway_config_path: Path, livevox_listener: socket.socket
) -> None:
    """The lock's holder is named by PID; the second process exits non-zero within 5 s, no LiveVox request."""
    state = gateway_config_path.parent / "state"
    state.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        # The holder stands in for the first gateway: it holds the lock, its PID in the file.
        fd = os.open(state / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, f"{holder.pid}\n".encode())
        began = time.monotonic()
        result = subprocess.run(
            [*TWISTD, "-n", "--pidfile=", "lvgateway", "--config", str(gateway_config_path)],
            capture_output=True,
            text=True,
            env=env(),
            cwd=gateway_config_path.parent,
            timeout=30,
        )
        took = time.monotonic() - began
    finally:
        holder.kill()
        holder.wait()
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert took < 5, f"took {took:.1f}s"
    lines = [line for line in output.splitlines() if "in use" in line]
    assert lines == [
        f"lvgateway: not starting: state directory {state} is in use by PID {holder.pid}"
    ]
    assert accepted(livevox_listener) == 0, "the second instance talked to LiveVox"
    assert not (state / "calls.sqlite3").exists()
    os.close(fd)


def test_state_lock_is_exclusive_and_released() -> None:
    """Within one process too: a second acquire fails naming this PID, and works after release."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        first = StateLock.acquire(folder)
        with pytest.raises(StateDirectoryInUseError) as info:
            StateLock.acquire(folder)
        assert info.value.pid == os.getpid()
        first.release()
        StateLock.acquire(folder).release()


# -- systemd notify, JSON log, feedback ---------------------------------------------------


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket the test owns, as systemd's NOTIFY_SOCKET."""
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(0.2)
        yield s, path


def read_notifications(s: socket.socket, into: list[str]) -> list[str]:
    """Read every datagram waiting on ``s`` into ``into``; return ``into``."""
    while True:
        try:
            into.append(s.recv(4096).decode())
        except (TimeoutError, BlockingIOError):
            return into


def test_notify_json_log_feedback_and_three_sigterms(
    gateway_config_path: Path,
    notify_socket: tuple[socket.socket, str],
    livevox_listener: socket.socket,
) -> None:
    """READY=1, WATCHDOG=1 and STATUS= reach the socket; every JSON line parses; start-up and drain say what they do."""
    sock, path = notify_socket
    text = gateway_config_path.read_text().replace('level = "debug"', 'level = "info"')
    # A long drain: the agents' logout waits on a LiveVox that never answers.
    text = text.replace("drain_timeout = 5\n", "drain_timeout = 60\n")
    text = text.replace(
        'base_url = "http://127.0.0.1', 'request_timeout = 30\nbase_url = "http://127.0.0.1'
    )
    gateway_config_path.write_text(text)
    log = gateway_config_path.parent / "twistd.log"
    process = start(gateway_config_path, log, NOTIFY_SOCKET=path, WATCHDOG_USEC="400000")
    got: list[str] = []
    try:
        wait_until(
            "READY=1, WATCHDOG=1 and STATUS= on the notify socket",
            30,
            lambda: (
                read_notifications(sock, got)
                and any("READY=1" in m for m in got)
                and sum("WATCHDOG=1" in m for m in got) >= 2
                and any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in got)
            ),
        )
        status = [m for m in got if "READY=1" in m][0]
        assert re.search(r"STATUS=\d+/3 agents READY, 0 live calls", status), status
        process.send_signal(signal.SIGTERM)
        wait_until("the drain to begin", 10, lambda: "drain begins" in log.read_text())
        wait_until(
            "STOPPING=1", 10, lambda: any("STOPPING=1" in m for m in read_notifications(sock, got))
        )
        wait_until("a drain progress line", 15, lambda: "drain in progress:" in log.read_text())
        process.send_signal(signal.SIGTERM)
        wait_until(
            "the answer to a second SIGTERM", 10, lambda: "second SIGTERM" in log.read_text()
        )
        process.send_signal(signal.SIGTERM)
        status_code = process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    assert status_code == 1, output[-3000:]
    assert re.search(r"lvgateway \S+ starting", output)
    assert "gateway : 3 agents" in output or re.search(r"gateway \w*: 3 agents, SIP udp", output)
    assert "gateway ready: listeners up, call recovery done" in output
    progress = [line for line in output.splitlines() if "drain in progress:" in line]
    assert re.search(r"\d+ calls left, \d+ wrap-ups left, \d+s left of 60s", progress[0]), progress
    second = [line for line in output.splitlines() if "second SIGTERM" in line][0]
    assert "calls left" in second and "a third SIGTERM forces exit" in second
    assert "third SIGTERM: forcing exit now" in output
    # [logging] level governs the text log too: no debug line, no factory noise, no scrape lines.
    assert "#debug]" not in output and "Starting factory" not in output
    json_log = (gateway_config_path.parent / "gateway.jsonl").read_text()
    records = [json.loads(line) for line in json_log.splitlines()]
    assert records and "\x1e" not in json_log
    assert all({"time", "level", "namespace", "message"} <= set(r) for r in records)
    assert not [r for r in records if r["level"] == "debug"]


def test_json_line_renders_message_and_keeps_fields() -> None:
    """One object, newline-terminated, rendered message, ISO time, level name, fields kept."""
    from twisted.logger import LogLevel

    event = {
        "log_format": "call {call_id}: ended ({why})",
        "log_level": LogLevel.warn,
        "log_namespace": "lvgateway.sip.call",
        "log_time": 1_700_000_000.25,
        "call_id": "c1",
        "why": "bye",
        "odd": object(),
    }
    line = json_line(event)
    assert line.endswith("\n") and line.count("\n") == 1
    record = json.loads(line)
    assert record["message"] == "call c1: ended (bye)"
    assert record["time"] == "2023-11-14T22:13:20.250+00:00"
    assert record["level"] == "warn" and record["namespace"] == "lvgateway.sip.call"
    assert record["call_id"] == "c1" and record["odd"].startswith("<object")


def test_json_log_rotates_by_size_and_reopens(tmp_path: Path) -> None:
    """The JSON file rotates at max_bytes keeping a count, and reopen() starts a moved file again."""
    from twisted.logger import Logger, LogPublisher

    from lvgateway.logs import JsonLogService

    publisher = LogPublisher()
    path = tmp_path / "gw.jsonl"
    service = JsonLogService(str(path), "info", publisher, rotate="size", max_bytes=4096, keep=2)
    service.startService()
    logger = Logger(observer=publisher, namespace="t")
    for i in range(200):
        logger.info("line {i} {pad}", i=i, pad="x" * 100)
    assert (tmp_path / "gw.jsonl.1").exists() and (tmp_path / "gw.jsonl.2").exists()
    assert not (tmp_path / "gw.jsonl.3").exists()
    for name in ("gw.jsonl", "gw.jsonl.1"):
        for line in (tmp_path / name).read_text().splitlines():
            json.loads(line)
    path.rename(tmp_path / "moved.jsonl")
    service.reopen()
    logger.info("after reopen")
    service.stopService()
    assert "after reopen" in path.read_text()


def test_notifier_sends_to_an_abstract_or_path_socket(tmp_path: Path) -> None:
    """The datagram arrives as KEY=VALUE lines; WATCHDOG_USEC for another PID is ignored."""
    path = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
        assert notifier.watchdog_interval == 2.0
        assert notifier.notify(READY="1", STATUS="3/3 agents READY")
        assert s.recv(100) == b"READY=1\nSTATUS=3/3 agents READY"
        notifier.close()
    other = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None
    assert not Notifier({}).notify(READY="1")


def test_drain_reports_progress_every_interval() -> None:
    """While a step runs, a line every progress_interval says what is left and the time left."""
    from twisted.internet.defer import Deferred
    from twisted.logger import LogPublisher, globalLogPublisher

    clock = Clock()
    drain = OrderedDrain(clock, 30.0, progress=lambda: "2 calls left, 1 wrap-ups left")
    drain.progress_interval = 5.0
    step: Deferred[None] = Deferred()
    drain.register("let calls finish", DrainPhase.FINISH_CALLS, lambda: step, 20.0)
    lines: list[str] = []
    from twisted.logger import formatEvent

    def observe(event: dict[str, Any]) -> None:
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        done = Deferred.fromCoroutine(drain.run())
        clock.advance(5)
        clock.advance(5)
        step.callback(None)
        assert done.called
        clock.advance(5)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert isinstance(publisher := LogPublisher(), LogPublisher) and publisher
    progress = [line for line in lines if line.startswith("drain in progress")]
    assert progress == [
        "drain in progress: step let calls finish, 2 calls left, 1 wrap-ups left, 25s left of 30s",
        "drain in progress: step let calls finish, 2 calls left, 1 wrap-ups left, 20s left of 30s",
    ]


# -- command line -----------------------------------------------------------------------


def test_version_names_the_gateway() -> None:
    """twistd lvgateway --version prints lvgateway and its version, not only Twisted's."""
    from lvgateway.version import gateway_version

    result = subprocess.run(
        [*TWISTD, "lvgateway", "--version"], capture_output=True, text=True, env=env(), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"lvgateway {gateway_version()} (Twisted ")
    assert gateway_version() != "unknown"


@pytest.mark.parametrize("state_dir", ["/proc/nope", "{tmp}/file/state"])
def test_check_config_refuses_an_unwritable_state_dir(
    gateway_config_path: Path, tmp_path: Path, state_dir: str
) -> None:
    """--check-config fails, naming the path, when the state directory cannot be created."""
    (tmp_path / "file").write_text("not a folder")
    wanted = state_dir.format(tmp=tmp_path)
    text = gateway_config_path.read_text().replace('state_dir = "state"', f'state_dir = "{wanted}"')
    gateway_config_path.write_text(text)
    result = subprocess.run(
        [*TWISTD, "lvgateway", "--config", str(gateway_config_path), "--check-config"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert result.returncode == 1, result.stdout
    assert f"[gateway] state_dir: {wanted} cannot be created" in result.stderr
    assert "configuration is NOT valid" in result.stderr
    assert not Path(wanted).exists()


def test_check_config_creates_nothing_it_checks(gateway_config_path: Path) -> None:
    """A state directory that can be created passes, and is not left behind by the check."""
    result = subprocess.run(
        [*TWISTD, "lvgateway", "--config", str(gateway_config_path), "--check-config"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert not (gateway_config_path.parent / "state").exists()


# -- the systemd unit ---------------------------------------------------------------------


def test_unit_hardening_scores_2_5_or_lower(tmp_path: Path) -> None:
    """systemd-analyze security --offline=true rates etc/lvgateway.service 2.5 or lower."""
    analyze = shutil.which("systemd-analyze")
    assert analyze is not None, "systemd-analyze is required (Debian's systemd package)"
    result = subprocess.run(
        [analyze, "security", "--offline=true", str(ROOT / "etc" / "lvgateway.service")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    found = re.search(r"Overall exposure level for lvgateway\.service: (\d+\.\d+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 2.5, result.stdout


def test_example_config_and_unit_agree_on_paths() -> None:
    """The example's state_dir and json_file lie under the unit's StateDirectory= and LogsDirectory=."""
    import tomllib

    unit = (ROOT / "etc" / "lvgateway.service").read_text()
    example = tomllib.loads((ROOT / "etc" / "lvgateway.example.toml").read_text())
    state = re.search(r"^StateDirectory=(\S+)$", unit, re.M)
    logs = re.search(r"^LogsDirectory=(\S+)$", unit, re.M)
    assert state and logs
    assert example["gateway"]["state_dir"] == f"/var/lib/{state.group(1)}"
    assert example["logging"]["json_file"].startswith(f"/var/log/{logs.group(1)}/")
    assert re.search(r"^Type=notify$", unit, re.M) and re.search(r"^WatchdogSec=\d+", unit, re.M)
