"""The calls part in the assembled gateway: named, routed, drained in order, checked for readiness."""

# Twisted's service tree and MemoryReactorClock are untyped.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import attrs
from twisted.internet.testing import MemoryReactorClock

from lvgateway.calls.service import CallService, catalogue_agents
from lvgateway.config import GatewayConfig
from lvgateway.drain import DrainPhase
from lvgateway.gateway import build_gateway
from lvgateway.metrics import new_registry


def test_gateway_wires_the_call_service(gateway_config: GatewayConfig) -> None:
    """The gateway has a "calls" service, its routes, its drain step, its readiness check, and holds the pool."""
    # Media on loopback needs no advertised address; the calls part does not care.
    media = attrs.evolve(gateway_config.media, listen_host="127.0.0.1")
    config = attrs.evolve(gateway_config, media=media)
    root = build_gateway(config, MemoryReactorClock(), registry=new_registry())
    calls = root.getServiceNamed("calls")
    assert isinstance(calls, CallService)
    assert root.namespace["calls"] is calls
    assert "calls" in root.getServiceNamed("control").routes.route_names()
    assert "calls" in root.getServiceNamed("vendor_api").routes.route_names()
    steps = [(s.name, s.phase) for s in root.drain.steps()]
    assert ("flush wrap-ups", DrainPhase.FLUSH_WRAPUPS) in steps
    names = [name for name, _ in steps]
    assert names.index("flush wrap-ups") < names.index("log agents out")
    readiness = root.namespace["readiness"]
    assert "call store open" in readiness.names()  # type: ignore[attr-defined]
    assert readiness.failures()["call store open"] == "the call store is not open"  # type: ignore[attr-defined]
    # Until the store has recovered, no agent may be set READY.
    agents = root.getServiceNamed("agents")
    assert [cause for cause, _ in agents.pause_causes] == ["call recovery"]


def test_catalogue_agents_picks_one_agent_per_service(gateway_config: GatewayConfig) -> None:
    """Each service's term codes are fetched with its first agent's session."""
    assert catalogue_agents(gateway_config.agents) == {"1234567": "AIVA1"}
