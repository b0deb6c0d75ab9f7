"""The calls part's test doubles keep to their interfaces, and the store keeps to the real pool's contract."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from lvgateway.agents.interfaces import IAgentPool, Refusal
from lvgateway.agents.testing import FakeAgent, FakeAgentPool
from lvgateway.calls.blocking import InlineRunner
from lvgateway.calls.errors import AlreadyWrappedUpError, UnknownCallError
from lvgateway.calls.interfaces import ICallAdmin, ICallLegs, ICalls
from lvgateway.calls.outcome import CallEvent, EventKind, LegAction
from lvgateway.calls.records import CallState, Disposition, InviteFacts
from lvgateway.calls.service import CallService
from lvgateway.calls.store import CallStore
from lvgateway.calls.testing import (
    FakeCallLegs,
    FakeCalls,
    PlacedCall,
    StandInCallSource,
    StandInPool,
    agent_configs,
    wrapup_config,
)
from lvgateway.livevox.parsing import CallDetails
from lvgateway.livevox.testing import FakeLiveVox, failure_of, result_of
from tests.calls_support import DONE_ID, SERVICE, Harness, run


def test_doubles_provide_their_interfaces(tmp_path: Path) -> None:
    """Every double, and the real service, passes verifyObject."""
    h = Harness(str(tmp_path), bring_in=False)
    assert verifyObject(ICallLegs, FakeCallLegs())
    assert verifyObject(ICalls, FakeCalls())
    assert verifyObject(IAgentPool, h.pool)
    assert verifyObject(ICallLegs, h.source)
    assert verifyObject(ICalls, h.calls)
    assert verifyObject(ICallAdmin, h.calls)


def test_fake_calls_follows_the_call_order() -> None:
    """FakeCalls accepts, connects, takes dispositions while live, ends once, and refuses the rest."""
    calls = FakeCalls()
    record = result_of(calls.accept(InviteFacts("AIVA1", "+18990000001", call_session_id="U1")))
    assert result_of(calls.connected(record.call_id)).state is CallState.CONNECTED
    result_of(calls.set_disposition(record.call_id, Disposition(term_code="done")))
    ending = calls.end(record.call_id, CallEvent(EventKind.VENDOR_REFER))
    assert ending.outcome.livevox_leg is LegAction.HOLD_FOR_TRANSFER
    ended = result_of(ending.recorded)
    assert ended.state is CallState.WRAPUP and ended.transfer
    assert ended.disposition == Disposition(term_code="done", next_action="transfer")
    again = calls.end(record.call_id, CallEvent(EventKind.LIVEVOX_HANGUP))
    assert not again.outcome.ends_call and result_of(again.recorded) == ended
    assert isinstance(
        failure_of(calls.set_disposition(record.call_id, Disposition())), AlreadyWrappedUpError
    )
    assert isinstance(failure_of(calls.connected("nope")), UnknownCallError)
    assert [e[0] for e in calls.events] == ["accept", "connected", "set_disposition", "ended"]


def test_stand_in_pool_admits_and_logs_in_once() -> None:
    """The stand-in pool maps 899 numbers to agents and shares one login between waiters."""
    livevox = FakeLiveVox()
    gate = livevox.gate("login")
    pool = StandInPool(livevox, agent_configs(2, "pw"))
    assert pool.admit("8990000002").user_name == "AIVA2"
    assert pool.admit("+18990000009").refusal is Refusal.UNKNOWN_NUMBER
    first, second = pool.session_for("AIVA1"), pool.session_for("AIVA1")
    assert not first.called
    gate.callback(None)
    assert result_of(first) is result_of(second)
    assert [name for name, _ in livevox.log].count("login") == 1
    pool.call_started("AIVA1", "c1")
    assert pool.admit("8990000001").refusal is Refusal.ON_CALL


def test_the_store_tells_the_agents_fake_pool_what_the_real_one_expects(tmp_path: Path) -> None:
    """Against the agent part's own fake pool: call started, call ended, wrap-up done, in that order."""
    clock = Clock()
    livevox = FakeLiveVox()
    livevox.add_term_code(SERVICE, DONE_ID, "AI Completed")
    session = result_of(livevox.login("AIVA1", agent_configs(1, "pw")[0].password))
    result_of(livevox.join_service(session, SERVICE, "+18990000001"))
    result_of(livevox.ready(session))
    pool = FakeAgentPool([FakeAgent("AIVA1", "+18990000001", session=session)])
    calls = CallService(
        config=wrapup_config(),
        store=CallStore(str(tmp_path), InlineRunner()),
        agent_api=livevox,
        call_api=livevox,
        aia=None,
        pool=pool,
        clock=clock,
        registry=CollectorRegistry(),
    )
    calls.startService()

    async def dial(agent: str) -> PlacedCall:
        livevox.place_call(agent, CallDetails("900", "U9@x", "1001", "9195550100", SERVICE))
        return PlacedCall(agent, "+18990000001", "+19195550100", "U9@x")

    source = StandInCallSource(calls, dial, {"AIVA1": SERVICE})
    record = run(source.place("AIVA1"))
    result_of(calls.end(record.call_id, CallEvent(EventKind.LIVEVOX_HANGUP)).recorded)
    assert pool.events_of("call_started") == [("AIVA1", record.call_id)]
    assert pool.events_of("call_ended") == [("AIVA1", record.call_id)]
    assert pool.events_of("wrapup_done") == [("AIVA1", record.call_id, False)]
    assert pool.agent("AIVA1").state == "ready"
    result_of(calls.stopService())
