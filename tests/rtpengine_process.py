"""A real rtpengine daemon for tests: userspace (``--table=-1``), on loopback, free ports, checked to run.

``rtpengine`` is Debian's ``rtpengine-daemon``, which ``.ci/run`` installs:
a missing binary fails the test that needs it (no skip).
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor

from lvgateway.media.rtpengine_ng import NgClient

from .sip_helpers import wait_until, wait_until_async

RTPENGINE = shutil.which("rtpengine") or "/usr/sbin/rtpengine"
HOST = "127.0.0.1"


def free_udp_port(host: str = HOST) -> int:
    """A UDP port free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define
class Rtpengine:
    """A running rtpengine: its process, ng address, media port range and log file."""

    process: subprocess.Popen[bytes]
    ng: tuple[str, int]
    port_min: int
    port_max: int
    log: Path

    def text(self) -> str:
        """What it logged so far."""
        return self.log.read_text(errors="replace")

    def pause(self) -> None:
        """SIGSTOP: it stops answering, ng and media alike, as a hung or cut-off instance."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT."""
        self.process.send_signal(signal.SIGCONT)


async def ping(ng: tuple[str, int]) -> bool:
    """Whether rtpengine at ``ng`` answers one ping (three sends, 0.2 s apart)."""
    client = NgClient(reactor, interval=0.2, attempts=3)
    port = reactor.listenUDP(0, client, interface=HOST)  # type: ignore[attr-defined]
    try:
        reply = await client.command(ng, {"command": "ping"})
        return bool(reply.get("result") == "pong")
    except Exception:
        return False
    finally:
        await port.stopListening()


@asynccontextmanager
async def rtpengine(log_dir: Path, ports: int = 200) -> AsyncIterator[Rtpengine]:
    """Run rtpengine until the block ends; yields once it answers ping, and checks it ran."""
    assert Path(RTPENGINE).exists(), f"{RTPENGINE} missing: install rtpengine-daemon"
    ng = (HOST, free_udp_port())
    base = random.randrange(30000, 60000 - ports, 2)
    log = log_dir / f"rtpengine-{ng[1]}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                RTPENGINE,
                "--config-file=none",
                "--foreground",
                "--log-stderr",
                "--table=-1",
                f"--interface={HOST}",
                f"--listen-ng={HOST}:{ng[1]}",
                f"--port-min={base}",
                f"--port-max={base + ports - 1}",
                "--log-level=6",
                "--delete-delay=0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    engine = Rtpengine(process, ng, base, base + ports - 1, log)
    try:

        async def answers() -> bool:
            assert process.poll() is None, f"rtpengine exited {process.returncode}: {engine.text()}"
            return await ping(ng)

        await wait_until_async(answers, 10, f"rtpengine at {ng} to answer ping ({log})")
        assert "Startup complete" in engine.text(), engine.text()
        yield engine
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
        await wait_until(lambda: process.poll() is not None, 10, "rtpengine to exit")


def rtpengine_toml(engines: list[Rtpengine], weights: list[int] | None = None) -> str:
    """The ``[[media.rtpengine]]`` tables naming ``engines``."""
    weights = weights or [1] * len(engines)
    return "".join(
        f'[[media.rtpengine]]\naddress = "{e.ng[0]}:{e.ng[1]}"\nweight = {w}\n'
        for e, w in zip(engines, weights, strict=True)
    )


def running(engine: Any) -> bool:
    """Whether the process still runs."""
    return bool(engine.process.poll() is None)
