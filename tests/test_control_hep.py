"""The HEP switch on the control listener (behind the token) and in ``lvgatewayctl``."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from lvgateway import ctl
from lvgateway.config.secret import Secret
from lvgateway.control.auth import ControlGuard, FailedTokens
from lvgateway.control.hep_api import HepResource
from lvgateway.control.internal import control_routes
from lvgateway.health import Readiness
from lvgateway.metrics import new_registry
from lvgateway.sip.hep import HepCapture

TOKEN = "hep-test-token"


def fired(d: Deferred[Any]) -> Any:
    """The result of a Deferred that has already fired."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


@pytest.fixture
def setup() -> Any:
    """An in-memory client of the guarded control routes with /hep mounted, and the capture."""
    capture = HepCapture(Clock(), ("127.0.0.1", 9), 5)
    routes = control_routes(Readiness(), new_registry(process_metrics=False))
    routes.add_route("hep", HepResource(capture))
    guard = ControlGuard(routes, Secret(TOKEN, "test"), FailedTokens(Clock(), "control"))
    yield StubTreq(guard), capture
    capture.off()


def call(http: StubTreq, method: str, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    """Make a request; return its code and JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = fired(http.request(method, f"http://control{path}", headers=headers))
    return response.code, json.loads(fired(response.content()))


def test_post_on_and_off_switch_the_capture(setup: Any) -> None:
    """POST /hep/on switches capture on, /hep/off off; GET /hep reports it."""
    http, capture = setup
    code, body = call(http, "POST", "/hep/on")
    assert code == 200 and body["enabled"] is True and capture.enabled
    assert call(http, "GET", "/hep")[1] == {
        "enabled": True,
        "address": "127.0.0.1:9",
        "capture_id": 5,
        "sent": 0,
        "errors": 0,
    }
    code, body = call(http, "POST", "/hep/off")
    assert code == 200 and body["enabled"] is False and not capture.enabled


def test_the_switch_needs_the_token(setup: Any) -> None:
    """Without the token, or with a wrong one, the switch is refused and capture stays off."""
    http, capture = setup
    assert call(http, "POST", "/hep/on", token=None)[0] in (401, 403)
    assert call(http, "POST", "/hep/on", token="wrong")[0] in (401, 403)
    assert not capture.enabled


def test_unknown_action_is_404_and_get_on_a_switch_is_405(setup: Any) -> None:
    """Only on and off exist, and only as POST."""
    http, capture = setup
    assert call(http, "POST", "/hep/maybe")[0] == 404
    assert call(http, "GET", "/hep/on")[0] == 405
    assert not capture.enabled


@pytest.mark.parametrize(
    ("argv", "method", "path"),
    [
        (["hep", "on"], "POST", "/hep/on"),
        (["hep", "off"], "POST", "/hep/off"),
        (["hep"], "GET", "/hep"),
    ],
)
def test_ctl_hep_calls_the_control_api(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], method: str, path: str
) -> None:
    """``lvgatewayctl hep on|off`` posts the switch; ``hep`` alone reads the status."""
    monkeypatch.setenv("LVGW_CONTROL_TOKEN", TOKEN)
    seen: list[tuple[str, str, str]] = []
    status = {
        "enabled": argv[-1] == "on",
        "address": "127.0.0.1:9060",
        "capture_id": 1,
        "sent": 3,
        "errors": 0,
    }

    def request(args: Any, m: str, p: str, token: str) -> tuple[int, Any]:
        seen.append((m, p, token))
        return 200, status

    monkeypatch.setattr(ctl, "_request", request)
    out = io.StringIO()
    assert ctl.run(ctl._parser().parse_args(argv), out) == 0
    assert seen == [(method, path, TOKEN)]
    text = out.getvalue()
    assert ("capture     on" if argv[-1] == "on" else "capture     off") in text
    assert "127.0.0.1:9060" in text


def test_ctl_refuses_an_unknown_switch(capsys: pytest.CaptureFixture[str]) -> None:
    """``lvgatewayctl hep maybe`` is a usage error."""
    with pytest.raises(SystemExit) as exit_:
        ctl.main(["hep", "maybe"])
    assert exit_.value.code == 2


def test_the_gateway_mounts_the_switch_and_puts_it_in_the_manhole(gateway_config: Any) -> None:
    """The built gateway serves /hep on its control listener and names the capture ``hep`` in the manhole."""
    from twisted.internet import reactor

    from lvgateway.gateway import build_gateway

    root = build_gateway(gateway_config, reactor, registry=new_registry(process_metrics=False))
    hep = root.getServiceNamed("sip").hep
    assert root.namespace["hep"] is hep and not hep.enabled
    assert "hep" in root.getServiceNamed("control").routes.route_names()
    assert hep.on() is True and hep.off() is False
