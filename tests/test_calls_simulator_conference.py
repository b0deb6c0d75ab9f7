"""The simulator's answer to a manual conference once a term code has closed the call: what the conference order relies on."""

from __future__ import annotations

from twisted.internet.task import Clock

from lvgateway.sandbox.testing import SimDriver


def test_conference_after_the_term_code_is_refused_400() -> None:
    """A conference during the call is recorded (204); once the term code closed the call it is refused 400."""
    clock = Clock()
    clock.advance(1_700_000_000)
    sim = SimDriver.create(clock)
    session = sim.ready_agent("AIVA1")
    call = sim.simulator.start_call("AIVA1")
    body = {"supervisorNumber": "4155550100", "putCallOnHold": "true", "secureTransfer": "false"}
    path = "/callControl/agent/conference/manual"
    assert sim.request("POST", path, session=session, json_body=body).status == 204
    saved = sim.term_code(session, call.call_transaction_id, call.call_session_id)
    assert saved.status == 204
    late = sim.request("POST", path, session=session, json_body=body)
    assert late.status == 400
    assert late.json()["code"] == 400
    journal = [(e.route, e.status) for e in sim.simulator.journal if e.route == "agent.conference"]
    assert journal == [("agent.conference", 204), ("agent.conference", 400)]
