"""The pool as the gateway wires it: a named child service, in the namespace, with its drain steps, route and metrics."""

from __future__ import annotations

from treq.testing import StubTreq
from twisted.internet.testing import MemoryReactorClock

from lvgateway.agents.pool import AgentPool
from lvgateway.config import GatewayConfig
from lvgateway.drain import DrainPhase
from lvgateway.gateway import build_gateway
from lvgateway.metrics import new_registry


def test_gateway_builds_the_pool_with_its_steps_route_and_metrics(
    gateway_config: GatewayConfig,
) -> None:
    """build_gateway adds the pool as 'agents', registers its two drain steps, mounts /agents and its metrics."""
    registry = new_registry(version="test", process_metrics=False)
    root = build_gateway(gateway_config, MemoryReactorClock(), registry=registry)
    pool = root.getServiceNamed("agents")
    assert isinstance(pool, AgentPool)
    assert root.namespace["agents"] is pool
    steps = [(s.name, s.phase) for s in root.drain.steps() if "agents" in s.name]
    assert steps == [
        ("pause agents", DrainPhase.PAUSE_AGENTS),
        ("log agents out", DrainPhase.LOG_OUT_AGENTS),
    ]
    assert [v.user_name for v in pool.views()] == ["AIVA1", "AIVA2", "AIVA3"]
    assert registry.get_sample_value("lvgateway_agents", {"state": "logged_out"}) == 3
    routes = root.getServiceNamed("control").routes
    assert "agents" in routes.route_names()
    response = StubTreq(routes).get("http://control/agents").result
    assert response.code == 200
