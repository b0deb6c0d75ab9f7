"""Operators' actions (Python and HTTP), the drain's agent steps, and the pool as the manhole shows it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from treq.testing import StubTreq
from twisted.internet.defer import Deferred

from lvgateway.agents.interfaces import Refusal
from lvgateway.agents.pool import UnknownAgentError
from lvgateway.agents.testing import probe
from lvgateway.control.agents_api import AgentsResource
from lvgateway.control.web import Routes
from lvgateway.drain import DrainPhase, OrderedDrain

from .test_agents_support import Rig, advance, rig


def test_operator_holds_an_agent_not_ready_and_readies_it() -> None:
    """force_not_ready sets the agent NOT READY and refuses its calls; force_ready lifts the hold."""
    r = rig(2)
    view = r.pool.force_not_ready("aiva1").result
    assert view.state.value == "paused" and view.hold is not None
    assert r.lv.state_of("AIVA1") == "NOTREADY" and r.lv.state_of("AIVA2") == "READY"
    assert probe(r.pool, "8990000001").refusal is Refusal.PAUSED
    view = r.pool.force_ready("AIVA1").result
    assert view.state.value == "ready" and view.hold is None
    assert probe(r.pool, "8990000001").allowed


def test_operator_logs_an_agent_out_and_back_in() -> None:
    """force_log_out logs out and keeps the agent out, even across a resume; force_log_in brings it back."""
    r = rig(1)
    assert r.pool.force_log_out("AIVA1").result.state.value == "logged_out"
    assert [q.op for q in r.lv.ops()][-2:] == ["not_ready", "logout"]
    assert probe(r.pool, "8990000001").refusal is Refusal.LOGGED_OUT
    r.pool.pause("operator")
    r.pool.resume("operator")
    advance(r.clock, 4000, step=50)
    assert r.lv.count("login") == 1
    view = r.pool.force_log_in("AIVA1").result
    assert view.state.value == "ready" and r.lv.count("login") == 2


def test_operator_log_out_of_an_agent_on_a_call_waits_for_its_wrapup() -> None:
    """An agent on a call is logged out only after its wrap-up, which leaves it NOT READY."""
    r = rig(1)
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    d = r.pool.force_log_out("AIVA1")
    assert d.called and d.result.state.value == "on_call"
    assert r.pool.move_to_not_ready_after_call("AIVA1") is True
    assert r.lv.count("logout") == 0
    r.pool.call_ended("AIVA1", "c1")
    r.lv.term_code("AIVA1", move_not_ready=True)
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=True)
    assert [q.op for q in r.lv.ops()][-1] == "logout"
    assert r.state("AIVA1") == "logged_out"


def test_unknown_agent_is_an_error() -> None:
    """An action on an agent the pool does not have raises UnknownAgentError."""
    r = rig(1)
    with pytest.raises(UnknownAgentError):
        r.pool.force_ready("AIVA9")
    failed = r.pool.session_for("AIVA9")
    assert isinstance(failed.result.value, UnknownAgentError)
    failed.addErrback(lambda f: None)


# -- HTTP ---------------------------------------------------------------------------


def http(r: Rig, wait: float = 10.0) -> StubTreq:
    """An in-memory client of the /agents resource, mounted as the gateway mounts it."""
    routes = Routes()
    routes.add_route("agents", AgentsResource(r.pool, r.clock, wait=wait))
    return StubTreq(routes)


def call(client: StubTreq, method: str, path: str) -> tuple[int, Any]:
    """Make a request and return its status and JSON body."""
    d = client.request(method, "http://control" + path)
    client.flush()
    response = d.result
    body = client.content(response)
    client.flush()
    return response.code, json.loads(body.result)


def test_get_agents_shows_every_agent_and_the_pause_causes() -> None:
    """GET /agents lists each agent's state, since, reason, last error and number, and the pool's pause causes."""
    r = rig(2)
    r.pool.pause("vendor health", Refusal.VENDOR_UNAVAILABLE)
    code, body = call(http(r), "GET", "/agents")
    assert code == 200
    assert body["pause_causes"] == [{"cause": "vendor health", "refusal": "vendor_unavailable"}]
    assert body["open"] is True and body["counts"]["paused"] == 2
    first = body["agents"][0]
    assert first["user_name"] == "AIVA1" and first["phone_number"] == "+18990000001"
    assert first["state"] == "paused" and first["since"] == r.clock.seconds()
    assert "vendor health" in first["reason"] and "last_error" in first
    session = r.pool.agent("AIVA1").session
    assert session is not None and first["session"] == session.short_id
    assert session.session_id not in json.dumps(body), "never a whole session id"
    code, one = call(http(r), "GET", "/agents/aiva2")
    assert code == 200 and one["agent"]["user_name"] == "AIVA2"


def test_post_actions_act_and_answer_with_the_settled_agent() -> None:
    """POST /agents/{user}/not-ready, ready, log-out and log-in each act and answer 200 with the agent."""
    r = rig(1)
    client = http(r)
    for action, state, lv_state in (
        ("not-ready", "paused", "NOTREADY"),
        ("ready", "ready", "READY"),
        ("log-out", "logged_out", "LOGOFF"),
        ("log-in", "ready", "READY"),
    ):
        code, body = call(client, "POST", f"/agents/AIVA1/{action}")
        assert code == 200, body
        assert body["settled"] is True and body["agent"]["state"] == state
        assert r.lv.state_of("AIVA1") == lv_state


def test_http_errors() -> None:
    """Unknown agents and actions are 404; GET on an action is 405."""
    r = rig(1)
    client = http(r)
    assert call(client, "POST", "/agents/NOBODY/ready")[0] == 404
    assert call(client, "POST", "/agents/AIVA1/dance")[0] == 404
    assert call(client, "GET", "/agents/AIVA1/ready")[0] == 405


def test_a_slow_action_answers_202_and_goes_on() -> None:
    """When LiveVox is slow the action answers 202 after the wait, and completes regardless."""
    r = rig(1)
    r.lv.holding = True
    client = http(r, wait=5.0)
    d = client.request("POST", "http://control/agents/AIVA1/not-ready")
    got: list[Any] = []
    d.addCallback(got.append)
    client.flush()
    assert got == []
    r.clock.advance(5)
    client.flush()
    [response] = got
    body = client.content(response)
    client.flush()
    assert response.code == 202
    assert json.loads(body.result)["settled"] is False
    r.lv.release()
    assert r.state("AIVA1") == "paused"


# -- drain and manhole --------------------------------------------------------------


def test_drain_pauses_then_logs_every_agent_out() -> None:
    """The pool's drain steps run in their phases: all NOT READY (calls refused as draining), then all logged out."""
    r = rig(3)
    drain = OrderedDrain(r.clock, 120.0)
    r.pool.register_drain(drain)
    assert [(s.name, s.phase) for s in drain.steps()] == [
        ("pause agents", DrainPhase.PAUSE_AGENTS),
        ("log agents out", DrainPhase.LOG_OUT_AGENTS),
    ]
    seen: list[str] = []
    r.pool.add_listener(lambda user, old, new: seen.append(new))
    outcomes = Deferred.fromCoroutine(drain.run()).result
    assert [o.result for o in outcomes] == ["done", "done"]
    assert seen.index("paused") < seen.index("closing")
    assert r.states() == {"logged_out"}
    assert {r.lv.state_of(f"AIVA{n}") for n in (1, 2, 3)} == {"LOGOFF"}
    assert probe(r.pool, "8990000001").refusal is Refusal.DRAINING


def test_drain_log_out_waits_for_a_wrapup_within_its_bound() -> None:
    """The log-out step waits for an agent still in wrap-up, and fires once it is logged out too."""
    r = rig(2)
    r.lv.dispatch("AIVA1")
    r.pool.call_started("AIVA1", "c1")
    r.pool.pause("drain", Refusal.DRAINING)
    d = r.pool.log_out_all()
    assert not d.called and r.state("AIVA2") == "logged_out"
    r.pool.call_ended("AIVA1", "c1")
    advance(r.clock, 10)
    r.lv.term_code("AIVA1", move_not_ready=True)
    r.pool.wrapup_done("AIVA1", "c1", moved_not_ready=True)
    assert d.called and r.states() == {"logged_out"}


def test_pool_reads_well_in_the_manhole() -> None:
    """repr gives counts, hours and pauses; table() lists every agent with its state and reason."""
    r = rig(2)
    r.pool.force_not_ready("AIVA2")
    text = repr(r.pool)
    assert "2 agents" in text and "ready 1" in text and "paused 1" in text and "open" in text
    table = r.pool.table()
    assert "AIVA1" in table and "held NOT READY by an operator" in table
