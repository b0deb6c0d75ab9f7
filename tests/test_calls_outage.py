"""A ten-minute LiveVox outage, in process on one task.Clock: every wrap-up completes once LiveVox is back.

The simulator answers every LiveVox route and the AIA 503 for 600 s of clock
time. The gateway side is the real REST and AIA clients over treq's in-memory
client into the simulator's resource tree, the call store and its pipeline,
the stand-in pool and the stand-in SIP call source.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock

from lvgateway.calls.blocking import InlineRunner
from lvgateway.calls.records import CallState
from lvgateway.calls.store import CallStore
from lvgateway.calls.testing import PlacedCall, agent_configs, simulator_rig
from lvgateway.livevox.testing import stub_http
from lvgateway.sandbox.livevox_web import SimulatorRoot
from lvgateway.sandbox.simulator import Simulator
from lvgateway.sandbox.testing import (
    AGENT_PASSWORD,
    AIA_HEADER,
    AIA_PATH,
    AIA_TOKEN,
    CLIENT_NAME,
    DONE_CODE,
    SERVICE_ID,
    TOKEN,
    make_sandbox_config,
)
from tests.calls_support import run

OUTAGE = 600.0
BASE = "http://livevox.test"


def test_every_wrapup_completes_after_a_ten_minute_outage(tmp_path: Path) -> None:
    """Calls that end during a 10-minute 503 outage all get their AIA and one term code once it ends."""
    clock = Clock()
    clock.advance(1_700_000_000)
    sim = Simulator(make_sandbox_config(), clock)
    agents = agent_configs(3, AGENT_PASSWORD, SERVICE_ID)

    async def dial(agent: str) -> PlacedCall:
        call = sim.start_call(agent)
        return PlacedCall(
            agent, call.dnis, "+1" + call.phone_number, call.call_session_id, call.call_transaction_id
        )

    registry = CollectorRegistry()
    rig = simulator_rig(
        base_url=BASE,
        clock=clock,
        http=stub_http(SimulatorRoot(sim)).client,
        store=CallStore(str(tmp_path), InlineRunner()),
        agents=agents,
        client_name=CLIENT_NAME,
        token=TOKEN,
        aia_path=AIA_PATH,
        aia_token=AIA_TOKEN,
        aia_header=AIA_HEADER,
        dial=dial,
        leg_ended=lambda placed: sim.end_call(call_transaction_id=placed.call_transaction_id),
        registry=registry,
    )
    calls, pool, source = rig.calls, rig.pool, rig.source
    calls.startService()
    for agent in agents:
        run(pool.bring_in(agent.user_name))
    records = [run(source.place(a.user_name)) for a in agents]
    assert all(r.call_transaction_id for r in calls.book.records())

    sim.start_outage(duration=OUTAGE)
    ends = clock.seconds() + OUTAGE
    for record in records:
        run(source.caller_hangs_up(record.call_id))
    clock.pump([1.0] * int(OUTAGE - 1))
    assert sim.faults.current_outage() is not None
    assert all(calls.book.require(r.call_id).state is CallState.WRAPUP for r in records)
    assert sim.journal.find("agent.saveTermCode", status=204) == []
    retried = registry.get_sample_value(
        "lvgateway_wrapup_steps_total", {"step": "aia", "outcome": "retried"}
    )
    assert retried is not None and retried > 10

    clock.pump([1.0] * 61)
    assert clock.seconds() <= ends + 61
    assert sim.faults.current_outage() is None
    for record in records:
        assert calls.book.get(record.call_id) is None  # settled: done
        call = sim.agent(record.agent).last_call
        assert call is not None and call.call_transaction_id == record.call_transaction_id
        assert call.term_code_id == DONE_CODE
        applied = sim.journal.find(
            "agent.saveTermCode", status=204, repeat=False, user=record.agent
        )
        assert len(applied) == 1
        assert [p for p in sim.aia_posts if p["transactionId"] == record.call_transaction_id]
    assert pool.wrapups_done() == {r.call_id: False for r in records}
    assert {line["state"] for line in sim.agent_states()} == {"READY"}
    assert len(sim.journal.find("aia", status=503)) > 10
