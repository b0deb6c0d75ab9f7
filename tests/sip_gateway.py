"""A SIP gateway under test: the real SIP part and media relay on loopback, fakes for the pool and the store.

SIPp plays LiveVox and the AI vendor; each run is bounded with
``-timeout`` and ``-timeout_error`` and waited on without blocking the reactor.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from lvgateway.agents.testing import FakeAgent, FakeAgentPool
from lvgateway.calls.testing import FakeCalls
from lvgateway.config import GatewayConfig, parse_config
from lvgateway.drain import OrderedDrain
from lvgateway.health import Readiness
from lvgateway.media.interfaces import IMediaRelay
from lvgateway.media.select import make_media_relay
from lvgateway.metrics import new_registry
from lvgateway.sip.service import SipService
from lvgateway.sip.sippy_reactor import SippyOnReactor

SIPP = shutil.which("sipp") or "/usr/bin/sipp"
SCENARIOS = Path(__file__).resolve().parent / "sipp"

CONFIG = """
[gateway]
state_dir = "{state}"
drain_timeout = 10
call_drain_timeout = 5
[sip]
listen_host = "127.0.0.1"
listen_port = 0
allowed_networks = {allowed}
[livevox]
base_url = "http://127.0.0.1:1"
client_name = "test"
token_env = "LVGW_TEST_TOKEN"
[[agent_ranges]]
user_name = "AIVA{{n}}"
count = 3
phone_number_first = "+18990000001"
service_id = "1234567"
password_env = "LVGW_TEST_TOKEN"
[hours]
time_zone = "UTC"
always_open = true
[vendor]
health_interval = {health_interval}
health_failures = 2
no_progress_time = {no_progress}
no_answer_time = 10
pass_through_headers = ["Carrier-Name"]
max_invite_bytes = {max_invite}
{endpoints}
[media]
engine = "{engine}"
listen_host = "127.0.0.1"
port_min = {port_min}
port_max = {port_max}
initial_timeout = {initial_timeout}
timeout = {initial_timeout}
[wrapup]
fallback_term_code = "done"
transfer_term_code = "transfer"
[wrapup.term_codes]
done = "AI Completed"
transfer = "Transfer To Agent"
[wrapup.defaults]
caller_hangup = "done"
vendor_hangup = "done"
setup_failed = "transfer"
timeout = "transfer"
gateway_failure = "transfer"
"""


def free_udp_port(host: str) -> int:
    """A UDP port free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def gateway_config(tmp: Path, vendor_ports: Sequence[int], **kw: Any) -> GatewayConfig:
    """A gateway config whose vendor endpoints are SIPp instances on 127.0.0.3 (or ``vendor_host``)."""
    host = kw.get("vendor_host", "127.0.0.3")
    os.environ.setdefault("LVGW_TEST_TOKEN", "test-token-value")
    auth = kw.get("endpoint_auth", "")  # username and password_env lines, for digest
    endpoints = kw.get("endpoints") or "".join(
        f'[[vendor.endpoints]]\nuri = "sip:bot@{host}:{p}"\n{auth}' for p in vendor_ports
    )
    port_min = 40000 + (os.getpid() % 500) * 40
    text = CONFIG.format(
        state=tmp / "state",
        endpoints=endpoints,
        port_min=port_min,
        port_max=port_min + 39,
        health_interval=kw.get("health_interval", 60),
        no_progress=kw.get("no_progress", 5),
        initial_timeout=kw.get("media_timeout", 60),
        max_invite=kw.get("max_invite_bytes", 1300),
        # The media engine: twisted unless a test or LVGW_TEST_MEDIA_ENGINE says rtpio or auto.
        engine=kw.get("engine") or os.environ.get("LVGW_TEST_MEDIA_ENGINE", "twisted"),
        allowed=kw.get("allowed", '["127.0.0.1/32", "127.0.0.3/32"]'),
    )
    # More [sip] lines, at the end of that section.
    text = text.replace("\n[livevox]", f"\n{kw.get('sip_extra', '')}\n[livevox]", 1)
    text += kw.get("extra_toml", "")  # whole sections: [[media.rtpengine]], [edge]
    return parse_config(text, source=str(tmp / "gateway.toml"))


@attrs.define
class SipGateway:
    """The SIP part running in the test process, and the fakes around it."""

    config: GatewayConfig
    pool: FakeAgentPool
    calls: FakeCalls
    media: IMediaRelay
    sip: SipService
    drain: OrderedDrain
    readiness: Readiness
    registry: Any = None

    @property
    def port(self) -> int:
        """The gateway's SIP port."""
        return self.sip.stack.port

    def stop(self) -> Any:
        """Stop SIP and media."""
        self.sip.stopService()
        return self.media.stop()


def start_gateway(tmp: Path, vendor_ports: Sequence[int], **kw: Any) -> SipGateway:
    """Start the SIP part with agents AIVA1..3 on +18990000001..3, all ready."""
    config = gateway_config(tmp, vendor_ports, **kw)
    pool = FakeAgentPool(FakeAgent(f"AIVA{n}", f"+189900000{n:02d}") for n in range(1, 5))
    calls = FakeCalls(reactor.seconds)  # type: ignore[attr-defined]
    registry = new_registry(process_metrics=False)
    media = make_media_relay(
        reactor,
        config.media,
        registry,
        config.sip.allowed_networks,
        ensure_sippy=lambda: SippyOnReactor.for_reactor(reactor),
        poll_interval=0.25,  # rtp.io only: its counters, for media timeouts of a second
    )
    media.start()
    drain = OrderedDrain(reactor, config.gateway.drain_timeout)
    readiness = Readiness()
    sip = SipService(reactor, config, pool, calls, media, registry, drain, readiness)
    sip.startService()
    return SipGateway(config, pool, calls, media, sip, drain, readiness, registry)


@attrs.frozen
class SippResult:
    """What a SIPp run printed and how it exited (0: every call succeeded)."""

    code: int
    output: str

    def __str__(self) -> str:
        return f"sipp exited {self.code}:\n{self.output[-3000:]}"


def sipp(
    scenario: str,
    host: str,
    target: tuple[str, int] | None = None,
    *,
    port: int | None = None,
    service: str | None = None,
    calls: int = 1,
    hold_ms: int = 300,
    keys: dict[str, str] | None = None,
    timeout: int = 20,
    extra: Sequence[str] = (),
) -> Any:
    """Run SIPp bounded in calls and time; the Deferred fires with a :class:`SippResult`."""
    port = port or free_udp_port(host)
    args = [
        *(["-sf", str(SCENARIOS / scenario)] if scenario else []),  # "": a built-in one in extra
        "-i", host, "-p", str(port),
        "-mi", host, "-mp", str(free_udp_port(host)),
        "-m", str(calls), "-d", str(hold_ms),
        "-timeout", f"{timeout}s", "-timeout_error",
        "-nostdin", "-trace_err", "-error_file", f"/tmp/sipp-{os.getpid()}-{port}.err",
    ]  # fmt: skip
    for name, value in {"session_expires": "1800", **(keys or {})}.items():
        args += ["-key", name, value]
    if service is not None:
        args += ["-s", service]
    args += list(extra)
    if target is not None:
        args.append(f"{target[0]}:{target[1]}")
    d = getProcessOutputAndValue(SIPP, args, env=dict(os.environ), path=str(SCENARIOS))
    return d.addCallback(lambda r: SippResult(r[2], (r[0] + r[1]).decode(errors="replace")))


async def all_succeed(livevox: Any, *vendors: Any) -> None:
    """Wait for a SIPp LiveVox run, then its SIPp vendors; each must exit 0 (every call completed)."""
    for run in (livevox, *vendors):
        result = await run
        assert result.code == 0, result
