"""Drive ``tests/sip_process_gateway.py`` from a test: start it, ask it, measure it, stop it.

Everything here blocks with a bound: reads wait on the pipe with ``select``,
never longer than the caller allows, and say what they waited for when they
give up.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    """The process's resident set size (``VmRSS``), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class GatewayProcess:
    """The SIP part in a process of its own; its log, output and answers.

    :param state_dir: where its log and state go.
    :param vendor_port: the vendor endpoint's port on 127.0.0.3.
    """

    def __init__(self, state_dir: Path, vendor_port: int = 9) -> None:
        self.state_dir = state_dir
        self.err_path = state_dir / "stderr.txt"
        self._err = self.err_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.sip_process_gateway", "--state-dir", str(state_dir),
             "--vendor-port", str(vendor_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        self._buffer = b""
        #: Lines the process wrote to standard output that are not answers: log lines.
        self.stray: list[str] = []
        ready = self._answer("READY", 30.0)
        self.port = int(ready.split()[1])
        self.pid = self.process.pid

    def _answer(self, kind: str, bound: float) -> str:
        """Read standard output until the answer line ``@@ kind ...``; keep other lines."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + bound
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(f"@@ {kind}"):
                    return text[3:]
                if not text.startswith("@@ "):
                    self.stray.append(text)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"gave up after {bound}s waiting for {kind} from the gateway")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(
                        f"the gateway exited ({self.process.wait()}) before {kind}"
                    )
                self._buffer += chunk

    def command(self, command: str, answer: str, bound: float = 10.0) -> str:
        """Send one command and return its answer line."""
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self._answer(answer, bound)

    def status(self) -> dict[str, Any]:
        """The gauge, the refusals and the calls, as the process reports them."""
        result: dict[str, Any] = json.loads(self.command("status", "STATUS").split(" ", 1)[1])
        return result

    def wait_status(self, condition: Any, bound: float, what: str) -> dict[str, Any]:
        """Ask for the status until ``condition(status)`` holds, or fail after ``bound`` seconds."""
        deadline = time.monotonic() + bound
        while True:
            current = self.status()
            if condition(current):
                return current
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up after {bound}s waiting for {what}: {current}")
            self._idle(0.1)

    def _idle(self, bound: float) -> None:
        """Wait up to ``bound`` for the process's output (log lines), keeping what comes."""
        assert self.process.stdout is not None
        readable, _, _ = select.select([self.process.stdout.fileno()], [], [], bound)
        if readable:
            chunk = os.read(self.process.stdout.fileno(), 65536)
            self._buffer += chunk

    def log_lines(self) -> int:
        """Lines written so far: the log file, standard error and stray standard output."""
        log = self.state_dir / "gateway.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        err = self.err_path.read_text(errors="replace")
        return len(text.splitlines()) + len(err.splitlines()) + len(self.stray)

    def all_output(self) -> str:
        """The log file, standard error and stray standard output, for failure messages."""
        log = self.state_dir / "gateway.log"
        parts = [log.read_text(errors="replace") if log.exists() else ""]
        parts += [self.err_path.read_text(errors="replace"), "\n".join(self.stray)]
        return "\n".join(parts)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def stop(self) -> int:
        """Close its input (it stops and exits) and wait; kill it if it does not exit."""
        assert self.process.stdin is not None
        try:
            self.process.stdin.close()
            code = self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        finally:
            self._err.close()
        return code


class Sender:
    """A UDP socket on 127.0.0.1 that sends datagrams and keeps every answer."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind((host, 0))
        self.address: tuple[str, int] = self.sock.getsockname()
        self.received: list[bytes] = []

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        """Send one datagram."""
        self.sock.sendto(data, to)

    def receive_until(self, deadline: float) -> None:
        """Keep every answer that arrives until ``deadline`` (``time.monotonic()``)."""
        while True:
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self.sock], [], [], max(left, 0))
            if not readable:
                return
            while True:
                try:
                    self.received.append(self.sock.recv(65536, socket.MSG_DONTWAIT))
                except BlockingIOError:
                    break

    def wait_for(self, condition: Any, bound: float, what: str) -> None:
        """Keep answers until ``condition()`` holds, or fail after ``bound`` seconds."""
        deadline = time.monotonic() + bound
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"gave up after {bound}s waiting for {what}")
            self.receive_until(min(deadline, time.monotonic() + 0.05))

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()
