"""The control plane's protection: the control token, open probes, rate-limited wrong tokens, TLS checks."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
import treq
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.web.resource import IResource

from lvgateway import tap
from lvgateway.config import ConfigError, load_config
from lvgateway.config.secret import Secret
from lvgateway.control.agents_api import AgentsResource
from lvgateway.control.auth import ControlGuard, FailedTokens
from lvgateway.control.internal import control_routes, control_service
from lvgateway.control.status_page import mask_number
from lvgateway.control.vendor_api import vendor_api_root, vendor_v1
from lvgateway.health import Readiness
from lvgateway.metrics import new_registry

from .conftest import write_secret
from .test_agents_support import rig

TOKEN = Secret(value="control-token-71b2c9", source="test")
WRONG = "wrong-token-0c83d1"


def guarded(token: Secret | None, clock: Clock, extra: dict[str, IResource] | None = None) -> Any:
    """The control listener's root over a fresh table, with ``extra`` routes; its limiter."""
    routes = control_routes(Readiness(), new_registry(process_metrics=False))
    for name, resource in (extra or {}).items():
        routes.add_route(name, resource)
    failures = FailedTokens(clock, "control listener")
    return ControlGuard(routes, token, failures), failures


def request(
    client: StubTreq, method: str, path: str, authorization: str | None = None
) -> tuple[int, Any, bytes]:
    """Make one in-memory request; return status, headers and body."""
    headers = {"Authorization": authorization} if authorization is not None else {}
    d = client.request(method, "http://control" + path, headers=headers)
    client.flush()
    response = d.result
    body = client.content(response)
    client.flush()
    return response.code, response.headers, body.result


def test_probes_stay_open_and_everything_else_needs_the_token() -> None:
    """/healthz, /readyz, /metrics answer without a token; /agents, /calls-like routes and / answer 401."""
    guard, _ = guarded(TOKEN, Clock())
    client = StubTreq(guard)
    assert request(client, "GET", "/healthz")[0] == 200
    assert request(client, "GET", "/readyz")[0] == 200
    assert request(client, "GET", "/metrics")[0] == 200
    for path in ("/", "/agents", "/calls", "/nothing-here"):
        code, headers, body = request(client, "GET", path)
        assert code == 401, path
        assert json.loads(body) == {"error": "missing bearer token"}
    challenges = request(client, "GET", "/")[1].getRawHeaders("www-authenticate")
    assert any(c.startswith("Basic") for c in challenges)
    [api_challenge] = request(client, "GET", "/agents")[1].getRawHeaders("www-authenticate")
    assert api_challenge.startswith("Bearer")


def test_admin_action_without_token_does_not_act_and_with_token_does() -> None:
    """POST /agents/X/not-ready: 401 without or with a wrong token (agent untouched); 200 with it."""
    r = rig(2)
    guard, _ = guarded(TOKEN, r.clock, {"agents": AgentsResource(r.pool, r.clock)})
    client = StubTreq(guard)
    assert request(client, "POST", "/agents/AIVA1/not-ready")[0] == 401
    assert request(client, "POST", "/agents/AIVA1/not-ready", f"Bearer {WRONG}")[0] == 401
    assert r.pool.agent("AIVA1").view().hold is None
    assert r.lv.state_of("AIVA1") == "READY"
    code, _, body = request(client, "POST", "/agents/AIVA1/not-ready", f"Bearer {TOKEN.reveal()}")
    assert code == 200 and json.loads(body)["agent"]["state"] == "paused"
    assert r.lv.state_of("AIVA1") == "NOTREADY"
    code, _, body = request(client, "GET", "/agents", f"bearer {TOKEN.reveal()}")
    assert code == 200 and len(json.loads(body)["agents"]) == 2


def test_basic_authentication_carries_the_token_for_browsers() -> None:
    """The token as a Basic password (any user name) opens the guarded paths; a wrong one does not."""
    guard, _ = guarded(TOKEN, Clock())
    client = StubTreq(guard)
    good = base64.b64encode(f"operator:{TOKEN.reveal()}".encode()).decode()
    bad = base64.b64encode(f"operator:{WRONG}".encode()).decode()
    assert request(client, "GET", "/", f"Basic {good}")[0] == 200
    assert request(client, "GET", "/", f"Basic {bad}")[0] == 401
    assert request(client, "GET", "/", "Basic !!!notbase64")[0] == 401


def test_without_a_configured_token_guarded_paths_are_403() -> None:
    """No token configured: probes answer, every other path is 403 naming the keys to set."""
    guard, _ = guarded(None, Clock())
    client = StubTreq(guard)
    assert request(client, "GET", "/healthz")[0] == 200
    code, _, body = request(client, "POST", "/agents/AIVA1/ready", f"Bearer {TOKEN.reveal()}")
    assert code == 403 and "token_file" in json.loads(body)["error"]


def test_wrong_tokens_are_rate_limited_per_source_and_summed_up() -> None:
    """After 10 wrong tokens in a minute a source gets 429 (even with the right one); one warning per minute."""
    clock = Clock()
    guard, failures = guarded(TOKEN, clock)
    client = StubTreq(guard)
    with capturedLogs() as events:
        for _ in range(failures.limit):
            assert request(client, "GET", "/agents", f"Bearer {WRONG}")[0] == 401
        code, headers, _ = request(client, "GET", "/agents", f"Bearer {TOKEN.reveal()}")
        assert code == 429
        assert 1 <= int(headers.getRawHeaders("retry-after")[0]) <= 60
        assert request(client, "GET", "/healthz")[0] == 200
        warnings = [e for e in events if e["log_level"].name == "warn"]
        assert warnings == []
        clock.advance(failures.interval)
    warnings = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert len(warnings) == 1
    assert "refused 10" in warnings[0] and "rate-limited 1" in warnings[0]
    assert WRONG not in warnings[0] and TOKEN.reveal() not in warnings[0]
    # The window is over: the right token gets through again.
    assert request(client, "GET", "/", f"Bearer {TOKEN.reveal()}")[0] == 200
    clock.advance(failures.interval)
    assert clock.getDelayedCalls() == []


def test_vendor_api_wrong_tokens_are_rate_limited_with_one_summary() -> None:
    """The vendor API answers 429 after the limit and logs one warning per interval, not one per refusal."""
    clock = Clock()
    failures = FailedTokens(clock, "vendor API", limit=3, interval=30.0)
    client = StubTreq(vendor_api_root(Secret("vendor-tok-5", "test"), vendor_v1(), failures))
    with capturedLogs() as events:
        codes = [request(client, "GET", "/v1/ping", f"Bearer {WRONG}")[0] for _ in range(5)]
        assert [e for e in events if e["log_level"].name == "warn"] == []
        clock.advance(30.0)
    assert codes == [401, 401, 401, 429, 429]
    warnings = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert len(warnings) == 1
    assert "vendor API" in warnings[0] and "refused 3" in warnings[0]
    assert "rate-limited 2" in warnings[0]
    assert request(client, "GET", "/v1/ping", "Bearer vendor-tok-5")[0] == 200


@pytest_twisted.ensureDeferred
async def test_real_listener_token_over_tcp() -> None:
    """Over a real loopback socket: probes open, /agents 401 without the token, 404 JSON with it."""
    service = control_service(
        reactor,
        "tcp:0:interface=127.0.0.1",
        Readiness(),
        new_registry(process_metrics=False),
        TOKEN,
    )
    service.startService()
    try:
        port = (await service.when_listening()).getHost().port
        base = f"http://127.0.0.1:{port}"
        health = await treq.get(base + "/healthz", persistent=False, timeout=5)
        assert health.code == 200
        await health.content()
        refused = await treq.post(base + "/agents/AIVA1/ready", persistent=False, timeout=5)
        assert refused.code == 401
        await refused.content()
        auth = {"Authorization": f"Bearer {TOKEN.reveal()}"}
        listing = await treq.get(base + "/", headers=auth, persistent=False, timeout=5)
        assert listing.code == 200
        assert "healthz" in json.loads(await listing.content())["routes"]
    finally:
        await service.stopService()


# -- config and --check-config -------------------------------------------------


@pytest.mark.parametrize(
    ("section", "listen"),
    [
        ("control", "tcp:9780"),
        ("control", "tcp:9780:interface=0.0.0.0"),
        ("vendor_api", "tcp:9781:interface=192.0.2.7"),
        ("vendor_api", "tcp6:9781:interface=\\:\\:"),
    ],
)
def test_check_config_refuses_cleartext_beyond_loopback(
    gateway_config_path: Path, section: str, listen: str
) -> None:
    """--check-config refuses a control or vendor API listener beyond loopback without TLS, naming the key."""
    text = gateway_config_path.read_text()
    start = text.index(f"[{section}]\nlisten = ")
    end = text.index("\n", start + len(section) + 3)
    toml_listen = listen.replace("\\", "\\\\")
    text = text[:start] + f'[{section}]\nlisten = "{toml_listen}"' + text[end:]
    gateway_config_path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    assert tap.check_config(str(gateway_config_path), out, err) == 1
    assert f"{section}.listen" in err.getvalue() or f"[{section}] listen" in err.getvalue()
    assert "without TLS" in err.getvalue()
    with pytest.raises(ConfigError):
        load_config(str(gateway_config_path))


def test_control_token_and_show_numbers_are_read(gateway_config_path: Path) -> None:
    """[control] token_file is read like every other secret; show_numbers defaults to false."""
    write_secret(gateway_config_path.parent / "control_token", "ctl-secret-9d1")
    text = gateway_config_path.read_text().replace(
        '[control]\nlisten = "tcp:0:interface=127.0.0.1"',
        '[control]\nlisten = "tcp:0:interface=127.0.0.1"\ntoken_file = "control_token"',
    )
    gateway_config_path.write_text(text)
    config = load_config(str(gateway_config_path))
    assert config.control_token is not None and config.control_token.matches("ctl-secret-9d1")
    assert config.control_show_numbers is False
    assert ("control.token", config.control_token) in config.secrets()
    out, err = io.StringIO(), io.StringIO()
    assert tap.check_config(str(gateway_config_path), out, err) == 0
    assert "ctl-secret-9d1" not in out.getvalue()


def test_inline_control_token_is_refused(gateway_config_path: Path) -> None:
    """A token written into the config itself is refused, as every secret is."""
    text = gateway_config_path.read_text().replace(
        '[control]\nlisten = "tcp:0:interface=127.0.0.1"',
        '[control]\nlisten = "tcp:0:interface=127.0.0.1"\ntoken = "inline"',
    )
    gateway_config_path.write_text(text)
    with pytest.raises(ConfigError, match="token_file or token_env"):
        load_config(str(gateway_config_path))


def test_callers_numbers_are_masked_unless_configured() -> None:
    """mask_number keeps only the last four digits; show_numbers shows the whole number."""
    assert mask_number("+15551230100") == "••••••••0100"
    assert mask_number("+15551230100", show=True) == "+15551230100"
    assert mask_number("123") == "•••" and mask_number(None) == "unknown"
