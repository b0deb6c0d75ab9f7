"""A real rtpengine in userspace on loopback, and a minimal ng client to drive it from a test.

The ng protocol is bencode over UDP: a cookie, a space, a bencoded
dictionary; the reply carries the same cookie. This client is the test's own,
independent of any engine in the gateway, so that tests can prove what
rtpengine does with a set of flags before the gateway relies on them.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from lvgateway.media.rtpengine_ng import decode_reply, encode_request

__all__ = [
    "NgClient",
    "NgError",
    "RtpengineProcess",
    "free_udp_port",
    "stop_process",
]

RTPENGINE = "/usr/bin/rtpengine"


class NgError(Exception):
    """rtpengine answered ``result: error``, or did not answer in time."""


class NgClient:
    """Send ng commands to one rtpengine and wait (bounded) for each reply."""

    def __init__(self, address: tuple[str, int], timeout: float = 2.0) -> None:
        self.address = address
        self.timeout = timeout
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))

    def request(self, command: str, **fields: Any) -> dict[str, Any]:
        """Send ``command`` with ``fields`` (underscores become hyphens in keys: ``call_id`` is ``call-id``).

        :raises NgError: on ``result: error`` or no reply within the timeout.
        """
        body = {"command": command, **{k.replace("_", "-"): v for k, v in fields.items()}}
        cookie = uuid.uuid4().hex[:12]
        self._sock.sendto(encode_request(cookie, body), self.address)
        deadline = time.monotonic() + self.timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NgError(
                    f"no reply to {command!r} from rtpengine at {self.address} in {self.timeout}s"
                )
            self._sock.settimeout(left)
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                continue
            got_cookie, reply = decode_reply(data)
            if got_cookie != cookie:
                continue
            if reply.get("result") == "error":
                raise NgError(f"{command}: {reply.get('error-reason')}")
            return reply

    def close(self) -> None:
        """Close the client's socket."""
        self._sock.close()


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port the kernel calls free right now (for daemons that cannot take port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def stop_process(
    process: subprocess.Popen[bytes] | None, bound: float = 10.0, sig: int = signal.SIGTERM
) -> None:
    """Stop a child the test started: ``sig``, then SIGKILL if it is still there after ``bound``."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(bound)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(bound)


class RtpengineProcess:
    """Debian's rtpengine, run in userspace (``--table=-1``) on 127.0.0.1 for one test.

    Its media ports come from a random window of ``ports`` ports (four a
    call) so that concurrent runs on one machine rarely collide; stderr goes
    to ``workdir/rtpengine.log``.
    """

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = (), ports: int = 200) -> None:
        if shutil.which(RTPENGINE) is None:
            raise AssertionError(f"{RTPENGINE} is missing: install rtpengine-daemon")
        self.workdir = workdir
        self.ng_port = free_udp_port()
        self.port_min = random.randrange(30000, 40000 - ports, 2)
        self.port_max = self.port_min + ports - 1
        self.log_path = workdir / "rtpengine.log"
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None
        self.ng: NgClient | None = None

    def start(self, bound: float = 10.0) -> NgClient:
        """Start the daemon and wait until it answers ``ping``; return its ng client."""
        args = [
            RTPENGINE,
            "--config-file=none",
            "--foreground",
            "--log-stderr",
            "--table=-1",
            "--interface=127.0.0.1",
            f"--listen-ng=127.0.0.1:{self.ng_port}",
            f"--port-min={self.port_min}",
            f"--port-max={self.port_max}",
            "--log-level=6",
            *self.extra_args,
        ]
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        self.ng = NgClient(("127.0.0.1", self.ng_port), timeout=0.3)
        deadline = time.monotonic() + bound
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"rtpengine exited with {self.process.returncode}: {self.log()}"
                )
            try:
                if self.ng.request("ping").get("result") == "pong":
                    break
            except NgError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"rtpengine did not answer ping within {bound}s: {self.log()}")
        self.ng.timeout = 5.0
        return self.ng

    @property
    def pid(self) -> int:
        """The daemon's process id."""
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User plus system CPU time the daemon has used, from /proc/PID/stat."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def log(self) -> str:
        """The daemon's log so far (its tail, for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def stop(self, bound: float = 10.0) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL after ``bound``) and close the client."""
        if self.ng is not None:
            self.ng.close()
        stop_process(self.process, bound)
