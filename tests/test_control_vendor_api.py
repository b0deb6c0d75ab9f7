"""Tests for the vendor API listener: every request needs the bearer token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.web.server import Request

from lvgateway.config.secret import Secret
from lvgateway.control.vendor_api import vendor_api_root, vendor_api_service, vendor_v1
from lvgateway.control.web import BaseResource, WebListener

TOKEN = Secret(value="vendor-token-3c9e51", source="test")
WRONG = "wrong-token-8d27f4a0"


@attrs.define
class Running:
    """A started vendor API listener."""

    service: WebListener
    base: str


@pytest_twisted.async_yield_fixture
async def running() -> AsyncIterator[Running]:
    """Start the vendor API on a loopback port; stop it after the test."""
    service = vendor_api_service(reactor, "tcp:0:interface=127.0.0.1", TOKEN)
    service.startService()
    port = await service.when_listening()
    yield Running(service, f"http://127.0.0.1:{port.getHost().port}")
    await service.stopService()


async def get(url: str, token: str | None) -> tuple[Any, bytes]:
    """GET over a fresh connection with an optional bearer token; return response and body."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    response = await treq.get(url, headers=headers, persistent=False, timeout=5)
    return response, await response.content()


@pytest_twisted.ensureDeferred
async def test_no_token_is_401_with_a_bearer_challenge(running: Running) -> None:
    """A request without a token gets 401, WWW-Authenticate: Bearer and a JSON error."""
    response, body = await get(running.base + "/v1/ping", None)
    assert response.code == 401
    [challenge] = response.headers.getRawHeaders("www-authenticate")
    assert challenge.startswith("Bearer")
    assert json.loads(body) == {"error": "missing bearer token"}


@pytest_twisted.ensureDeferred
async def test_wrong_token_is_401_and_never_logged(running: Running) -> None:
    """A wrong token gets 401; the refusal is logged, without the token's value."""
    with capturedLogs() as events:
        response, body = await get(running.base + "/v1/ping", WRONG)
    assert response.code == 401
    [challenge] = response.headers.getRawHeaders("www-authenticate")
    assert 'error="invalid_token"' in challenge
    assert json.loads(body) == {"error": "invalid bearer token"}
    refusals = [e for e in events if "refused" in e.get("log_format", "")]
    assert len(refusals) == 1
    assert "/v1/ping" in formatEvent(refusals[0])
    for event in events:
        assert WRONG not in formatEvent(event)
        assert WRONG not in repr(event)


@pytest_twisted.ensureDeferred
async def test_right_token_reaches_ping(running: Running) -> None:
    """With the right token, /v1/ping answers 200 {"ok":true}."""
    response, body = await get(running.base + "/v1/ping", TOKEN.reveal())
    assert response.code == 200
    assert body == b'{"ok":true}'


def fired(d: Deferred[Any]) -> Any:
    """Return the result of a Deferred that has already fired, raising its failure."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def stub() -> StubTreq:
    """Return an in-memory client of a fresh vendor API."""
    return StubTreq(vendor_api_root(TOKEN, vendor_v1()))


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic dmVuZG9yOnRva2Vu",
        "Bearer",
        "Bearer ",
        "vendor-token-3c9e51",
        "Bearer vendor-token-3c9e51x",
        "Bearer vendor-token-3c9e5",
    ],
)
def test_malformed_or_near_miss_credentials_are_refused(authorization: str) -> None:
    """Other schemes, empty tokens and tokens that nearly match are all refused."""
    response = fired(stub().get("http://api/v1/ping", headers={"Authorization": authorization}))
    assert response.code == 401


def test_scheme_is_case_insensitive() -> None:
    """``bearer`` in lower case is the same scheme (RFC 7235)."""
    headers = {"Authorization": "bearer " + TOKEN.reveal()}
    assert fired(stub().get("http://api/v1/ping", headers=headers)).code == 200


def test_two_authorization_headers_are_refused() -> None:
    """A request with two Authorization headers is refused, even if one is right."""
    headers = {"Authorization": ["Bearer " + TOKEN.reveal(), "Bearer " + WRONG]}
    assert fired(stub().get("http://api/v1/ping", headers=headers)).code == 401


@pytest.mark.parametrize("path", ["/", "/nowhere", "/v1/", "/v1/calls/abc/disposition"])
def test_every_path_needs_the_token(path: str) -> None:
    """Without the token even unknown paths answer 401, so none can be probed."""
    assert fired(stub().get("http://api" + path)).code == 401


def test_unknown_path_with_token_is_json_404() -> None:
    """With the token, a path no route serves answers 404 in JSON."""
    headers = {"Authorization": "Bearer " + TOKEN.reveal()}
    response = fired(stub().get("http://api/v1/nowhere", headers=headers))
    assert response.code == 404
    assert json.loads(fired(response.content())) == {"error": "not found"}


class Calls(BaseResource):
    """A stand-in for the calls resource a later issue mounts."""

    isLeaf = True

    def render_PUT(self, request: Request) -> bytes:
        """Answer with the path below /v1/calls."""
        return b"/".join(request.postpath)


def test_a_later_route_is_guarded_too() -> None:
    """A route added to the service's /v1 table is served with the token, refused without."""
    service = vendor_api_service(reactor, "tcp:0:interface=127.0.0.1", TOKEN)
    service.routes.add_route("calls", Calls())
    http = StubTreq(service.factory.resource)
    url = "http://api/v1/calls/c-1/disposition"
    assert fired(http.put(url)).code == 401
    response = fired(http.put(url, headers={"Authorization": "Bearer " + TOKEN.reveal()}))
    assert response.code == 200
    assert fired(response.content()) == b"c-1/disposition"


def test_empty_token_is_refused_at_start() -> None:
    """An empty configured token would let an empty credential in, so it is refused."""
    with pytest.raises(ValueError, match="empty"):
        vendor_api_service(reactor, "tcp:0", Secret(value="", source="env LVGW_TOKEN"))
