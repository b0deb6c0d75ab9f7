"""Tests for the internal control listener: /healthz, /readyz, /metrics and added routes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import pytest_twisted
import treq
from prometheus_client import CollectorRegistry
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import Request

from lvgateway.control.internal import control_routes, control_service
from lvgateway.control.web import BaseResource, Routes, WebListener
from lvgateway.health import Readiness
from lvgateway.metrics import counter, histogram, new_registry

LOOPBACK_ANY_PORT = "tcp:0:interface=127.0.0.1"


@attrs.define
class Running:
    """A started control listener and what it serves."""

    service: WebListener
    base: str
    readiness: Readiness
    registry: CollectorRegistry


@pytest_twisted.async_yield_fixture
async def running() -> AsyncIterator[Running]:
    """Start the internal listener on a loopback port; stop it after the test."""
    readiness = Readiness()
    registry = new_registry(version="0.0.test", process_metrics=False)
    service = control_service(reactor, LOOPBACK_ANY_PORT, readiness, registry)
    service.startService()
    port = await service.when_listening()
    yield Running(service, f"http://127.0.0.1:{port.getHost().port}", readiness, registry)
    await service.stopService()


async def get(url: str, **kwargs: Any) -> tuple[Any, bytes]:
    """GET over a fresh connection, bounded in time; return the response and its body."""
    response = await treq.get(url, persistent=False, timeout=5, **kwargs)
    body = await response.content()
    return response, body


@pytest_twisted.ensureDeferred
async def test_healthz_answers_ok(running: Running) -> None:
    """/healthz answers 200 ok over real loopback HTTP."""
    response, body = await get(running.base + "/healthz")
    assert response.code == 200
    assert body == b"ok\n"


@pytest_twisted.ensureDeferred
async def test_readyz_turns_503_with_reasons_when_a_check_fails(running: Running) -> None:
    """/readyz is 200 while every check passes and 503 with the reasons once one fails."""
    response, body = await get(running.base + "/readyz")
    assert response.code == 200
    assert json.loads(body) == {"ready": True}

    running.readiness.add_check("sip", lambda: None)
    running.readiness.add_check("store", lambda: "call store not open")
    response, body = await get(running.base + "/readyz")
    assert response.code == 503
    assert response.headers.getRawHeaders("content-type") == ["application/json"]
    assert json.loads(body) == {"ready": False, "reasons": {"store": "call store not open"}}


@pytest_twisted.ensureDeferred
async def test_readyz_is_503_when_a_check_raises(running: Running) -> None:
    """A readiness check that raises makes /readyz answer 503, naming the check."""

    def broken() -> str | None:
        raise RuntimeError("boom")

    running.readiness.add_check("livevox", broken)
    response, body = await get(running.base + "/readyz")
    assert response.code == 503
    reasons = json.loads(body)["reasons"]
    assert list(reasons) == ["livevox"]
    assert "RuntimeError" in reasons["livevox"]


@pytest_twisted.ensureDeferred
async def test_metrics_exposes_the_registry(running: Running) -> None:
    """/metrics serves the registry passed in, in the Prometheus text format."""
    counter(running.registry, "lvgateway_test_scrapes_total", "Scrapes.", labels={"k": ["a"]})
    response, body = await get(running.base + "/metrics")
    assert response.code == 200
    [content_type] = response.headers.getRawHeaders("content-type")
    assert content_type.startswith("text/plain; version=0.0.4")
    text = body.decode("utf-8")
    assert 'lvgateway_test_scrapes_total{k="a"} 0.0' in text
    assert 'lvgateway_build_info{version="0.0.test"} 1.0' in text


@pytest_twisted.ensureDeferred
async def test_metrics_has_no_created_series(running: Running) -> None:
    """/metrics carries no "_created" series, in either format, for counters and histograms alike."""
    counter(running.registry, "lvgateway_test_created_total", "Scrapes.", labels={"k": ["a"]})
    histogram(running.registry, "lvgateway_test_created_seconds", "Durations.")
    for accept in ("text/plain", "application/openmetrics-text"):
        response, body = await get(running.base + "/metrics", headers={"Accept": accept})
        text = body.decode("utf-8")
        assert response.code == 200 and "lvgateway_test_created_seconds_bucket" in text, accept
        assert "lvgateway_test_created_total" in text, accept
        assert "_created" not in text.replace("lvgateway_test_created", ""), accept


def fired(d: Deferred[Any]) -> Any:
    """Return the result of a Deferred that has already fired, raising its failure."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def stub() -> tuple[StubTreq, Routes, CollectorRegistry]:
    """Return an in-memory client of the control routes, the routes and their registry."""
    registry = new_registry(process_metrics=False)
    routes = control_routes(Readiness(), registry)
    return StubTreq(routes), routes, registry


def test_metrics_speaks_openmetrics_when_asked() -> None:
    """A scraper that accepts OpenMetrics gets it, with its content type."""
    http, _, _ = stub()
    response = fired(http.get("http://control/metrics",
                              headers={"Accept": "application/openmetrics-text"}))
    [content_type] = response.headers.getRawHeaders("content-type")
    assert content_type.startswith("application/openmetrics-text")
    assert fired(response.content()).endswith(b"# EOF\n")


def test_unknown_path_is_json_404() -> None:
    """A path no route serves answers 404 with a JSON error."""
    http, _, _ = stub()
    response = fired(http.get("http://control/nowhere"))
    assert response.code == 404
    assert json.loads(fired(response.content())) == {"error": "not found"}


def test_root_lists_routes() -> None:
    """GET / lists the routes, so an operator can discover them."""
    http, _, _ = stub()
    response = fired(http.get("http://control/"))
    assert json.loads(fired(response.content())) == {"routes": ["healthz", "metrics", "readyz"]}


def test_wrong_method_is_405() -> None:
    """A POST to /healthz is refused with 405 in JSON, naming the allowed methods."""
    http, _, _ = stub()
    response = fired(http.post("http://control/healthz"))
    assert response.code == 405
    assert b"GET" in response.headers.getRawHeaders(b"allow")[0]
    assert json.loads(fired(response.content())) == {"error": "method not allowed"}


class Agents(BaseResource):
    """A stand-in for a route a later part adds."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        """Answer with a marker."""
        return b"agents here"


def test_a_later_part_adds_a_route_without_editing_the_module() -> None:
    """A route added to the listener's table is served; its name cannot be taken twice."""
    service = control_service(reactor, LOOPBACK_ANY_PORT, Readiness(), new_registry())
    service.routes.add_route("agents", Agents())
    http = StubTreq(service.routes)
    assert fired(fired(http.get("http://control/agents")).content()) == b"agents here"
    with pytest.raises(ValueError, match="already taken"):
        service.routes.add_route("healthz", Resource())


@pytest.mark.parametrize("name", ["", "a/b"])
def test_route_name_must_be_one_segment(name: str) -> None:
    """An empty name or one holding a slash is refused."""
    with pytest.raises(ValueError, match="path segment"):
        Routes().add_route(name, Resource())


def test_listen_beyond_loopback_is_warned() -> None:
    """A control listener built directly on every address without TLS logs a warning."""
    with capturedLogs() as events:
        control_service(reactor, "tcp:0", Readiness(), new_registry(process_metrics=False))
    assert any("without TLS" in e.get("log_format", "") for e in events)


def test_no_token_is_warned() -> None:
    """A control listener without a token says at start that its guarded paths answer 403."""
    with capturedLogs() as events:
        control_service(
            reactor, LOOPBACK_ANY_PORT, Readiness(), new_registry(process_metrics=False)
        )
    assert any("answer 403" in e.get("log_format", "") for e in events)


@pytest_twisted.ensureDeferred
async def test_when_listening_errbacks_when_the_port_is_taken(running: Running) -> None:
    """A listener whose port is already taken reports the error instead of a port."""
    taken = (await running.service.when_listening()).getHost().port
    second = control_service(
        reactor, f"tcp:{taken}:interface=127.0.0.1", Readiness(), new_registry()
    )
    second.startService()
    try:
        with pytest.raises(CannotListenError):
            await second.when_listening()
    finally:
        await second.stopService()
