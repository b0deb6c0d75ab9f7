"""Stranded agents: a call LiveVox holds that the gateway does not know is closed through LiveVox's API after the grace, and only then."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent

from lvgateway.agents.interfaces import Refusal
from lvgateway.agents.stranded import (
    INVITES_REMEMBERED,
    RecentInvites,
    StrandedSettings,
    stranded_call,
)
from lvgateway.agents.testing import FakeAgentPool, probe
from lvgateway.config import ConfigError, load_config
from lvgateway.livevox.errors import LiveVoxClientError, LiveVoxServerError
from lvgateway.livevox.parsing import (
    AgentStatus,
    CallDetails,
    LineStatus,
    TermCode,
    TermCodeCatalogue,
)
from lvgateway.livevox.termcode_catalogue import choose_term_code, find_term_code
from lvgateway.sandbox.livevox_records import LineState, LiveVoxError
from lvgateway.sandbox.testing import TRANSFER_CODE as SIM_TRANSFER_CODE
from lvgateway.sandbox.testing import SimDriver, make_sandbox_config

from .test_agents_support import (
    CUSTOMER,
    DONE_CODE,
    TERM_CODE_NAMES,
    TRANSFER_CODE,
    Rig,
    advance,
    rig,
    session_id_of,
)
from .test_config import MINIMAL, write_secret

GRACE = 60.0
SETTINGS = StrandedSettings(
    grace=GRACE, term_code="transfer", names=TERM_CODE_NAMES, fallback="done"
)
NUMBER = "8990000001"


def strand(r: Rig, user: str = "AIVA1") -> tuple[str, float]:
    """Put a call on the agent's line that no INVITE brings, and advance until a poll first sees it.

    :returns: the call's transaction id, and the time the gateway first saw it.
    """
    call = r.lv.dispatch(user)
    polls = r.lv.count("status", user)
    deadline = r.clock.seconds() + 300  # one reconcile interval
    while r.lv.count("status", user) == polls:
        assert r.clock.seconds() < deadline, "a reconcile poll came within its interval"
        r.clock.advance(1)
    return call, r.lv.ops("status", user)[polls].time


def until(r: Rig, at: float) -> None:
    """Advance the clock to ``at``, a second at a time."""
    advance(r.clock, at - r.clock.seconds(), step=1)


def ops_after(r: Rig, since: float, user: str = "AIVA1") -> list[str]:
    """The operations the agent sent from ``since`` on."""
    return [q.op for q in r.lv.ops(user=user) if q.time >= since]


def repair_lines(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The warn lines that say an agent was repaired."""
    return [
        e
        for e in events
        if e.get("log_level") is LogLevel.warn and "repaired:" in e.get("log_format", "")
    ]


def test_a_stranded_agent_is_repaired_after_the_grace() -> None:
    """Held past the grace with no INVITE: the transfer term code closes the call with its ids and number, the agent is READY, logged once and counted."""
    r = rig(1, repair=SETTINGS)
    call, seen = strand(r)
    until(r, seen + GRACE - 1)
    assert r.lv.count("term_code") == 0
    assert probe(r.pool, NUMBER).refusal is Refusal.ON_CALL
    with capturedLogs() as events:
        until(r, seen + GRACE + 1)
    assert [q.time - seen for q in r.lv.ops("term_code")] == [GRACE]
    assert r.lv.saved == [
        {
            "callTransactionId": call,
            "callSessionId": session_id_of(call),
            "termCodeId": TRANSFER_CODE,
            "phoneDialed": CUSTOMER,
            "moveAgentToNotReady": False,
        }
    ]
    assert r.lv.count("call_end") == 0, "the term code was accepted: no call end"
    assert r.state("AIVA1") == "ready" and r.lv.state_of("AIVA1") == "READY"
    assert probe(r.pool, NUMBER).allowed
    assert r.pool.agent("AIVA1").view().unknown_call is None
    assert r.metric("lvgateway_agent_repairs_total", outcome="term_code") == 1
    assert r.metric("lvgateway_agent_repairs_total", outcome="failed") == 0
    (line,) = repair_lines(events)
    text = formatEvent(line)
    for part in ("AIVA1", call, session_id_of(call), "Transfer To Agent", TRANSFER_CODE):
        assert part in text, (part, text)
    advance(r.clock, 1200, step=10)
    assert r.lv.count("term_code") == 1, "one term code for the call"
    assert r.state("AIVA1") == "ready"


def test_a_stranded_agent_is_not_repaired_before_the_grace() -> None:
    """With a longer grace, the call is confirmed unknown and reported at warn, but nothing is saved until the grace has passed."""
    r = rig(1, repair=attrs.evolve(SETTINGS, grace=200.0))
    call, seen = strand(r)
    with capturedLogs() as events:
        until(r, seen + 199)
    # Seen at every reconciliation for 199 s, yet counted and logged once.
    assert r.metric("lvgateway_agent_drifts_total", kind="unknown_call") == 1
    assert len([e for e in events if e.get("kind") == "unknown_call"]) == 1
    assert not [e for e in events if e.get("log_level") is LogLevel.error]
    assert r.lv.count("term_code") == 0 and r.lv.count("term_codes") == 0
    assert r.lv.state_of("AIVA1") == "INCALL" and r.state("AIVA1") == "on_call"
    until(r, seen + 201)
    assert [q.time - seen for q in r.lv.ops("term_code")] == [200.0]
    assert r.lv.state_of("AIVA1") == "READY"


def test_a_call_whose_invite_was_seen_is_left_to_a_person() -> None:
    """An INVITE carrying the call's Session-ID (any case) was seen: never repaired, an error for a person, counted once; an unrelated INVITE does not hold a repair back."""
    r = rig(2, repair=SETTINGS)
    first = r.lv.dispatch("AIVA1")
    r.pool.invite_seen("aiva1", "  " + session_id_of(first).upper())
    r.pool.invite_seen("AIVA2", "UOTHER@10.0.0.1")
    r.pool.invite_seen("AIVA2", None)
    r.lv.dispatch("AIVA2")
    with capturedLogs() as events:
        advance(r.clock, 1500, step=5)
    assert r.lv.count("term_code", "AIVA1") == 0 and r.lv.count("call_end", "AIVA1") == 0
    assert r.lv.state_of("AIVA1") == "INCALL"
    assert probe(r.pool, NUMBER).refusal is Refusal.ON_CALL
    errors = [
        formatEvent(e)
        for e in events
        if e.get("log_level") is LogLevel.error and e.get("agent") == "AIVA1"
    ]
    assert errors and all("INVITE" in text for text in errors)
    assert r.metric("lvgateway_agent_repairs_total", outcome="invite_seen") == 1
    assert r.lv.count("term_code", "AIVA2") == 1 and r.lv.state_of("AIVA2") == "READY"


def test_a_failed_status_poll_never_repairs() -> None:
    """LiveVox answering 503 to the polls past the grace: nothing is saved until a poll succeeds and still shows the call."""
    r = rig(1, repair=SETTINGS)
    call, seen = strand(r)
    until(r, seen + GRACE - 10)
    r.lv.down = True
    until(r, seen + 400)
    failed_polls = [q for q in r.lv.ops("status") if q.time >= seen + GRACE]
    assert 2 <= len(failed_polls) <= 15, "the polls went on, failed, and backed off"
    assert r.lv.count("term_code") == 0 and r.lv.count("term_codes") == 0
    assert r.lv.count("call_end") == 0
    back = r.clock.seconds()
    r.lv.down = False
    advance(r.clock, 120, step=1)
    assert ops_after(r, back)[:3] == ["status", "term_codes", "term_code"]
    assert r.lv.saved[0]["callTransactionId"] == call
    assert r.lv.state_of("AIVA1") == "READY" and r.state("AIVA1") == "ready"


def test_a_call_released_before_the_grace_is_not_repaired() -> None:
    """A person closes the call during the grace: the last poll sees the agent free and nothing is saved."""
    r = rig(1, repair=SETTINGS)
    _call, seen = strand(r)
    until(r, seen + 40)
    r.lv.term_code("AIVA1", move_not_ready=False)
    advance(r.clock, 600, step=5)
    assert r.lv.count("term_code") == 0 and r.lv.count("term_codes") == 0
    assert r.state("AIVA1") == "ready" and probe(r.pool, NUMBER).allowed


def test_the_call_end_comes_only_after_a_refusal_while_incall() -> None:
    """LiveVox refuses the term code while INCALL: a fresh status shows the call INCALL, the call is ended, and the term code saved again."""
    r = rig(1, repair=SETTINGS)
    r.lv.refuse_in_call = True
    call, seen = strand(r)
    until(r, seen + GRACE - 1)
    assert r.lv.count("call_end") == 0
    until(r, seen + GRACE + 1)
    assert ops_after(r, seen + GRACE) == [
        "status",
        "term_codes",
        "term_code",
        "status",
        "call_end",
        "term_code",
    ]
    assert [b["callTransactionId"] for b in r.lv.saved] == [call]
    assert r.lv.state_of("AIVA1") == "READY" and r.state("AIVA1") == "ready"
    assert r.metric("lvgateway_agent_repairs_total", outcome="call_end") == 1
    assert r.metric("lvgateway_agent_repairs_total", outcome="term_code") == 0


def test_a_refusal_in_wrapup_never_ends_the_call() -> None:
    """A term code refused while the line is in WRAPUP: no call end; counted failed, and the next poll's repair saves it."""
    r = rig(1, repair=SETTINGS)
    call, seen = strand(r)
    r.lv.hang_up("AIVA1")  # the customer hung up: WRAPUP
    r.lv.fail_next("term_code", LiveVoxClientError("term_code_save", status=400, message="Not now"))
    with capturedLogs() as events:
        until(r, seen + GRACE + 1)
    assert ops_after(r, seen + GRACE) == ["status", "term_codes", "term_code", "status"]
    assert r.metric("lvgateway_agent_repairs_total", outcome="failed") == 1
    assert [e for e in events if "failed" in e.get("log_format", "") and e.get("agent")]
    assert r.lv.state_of("AIVA1") == "WRAPUP"
    advance(r.clock, 300, step=5)  # the next reconcile poll
    assert r.lv.count("call_end") == 0
    assert [b["callTransactionId"] for b in r.lv.saved] == [call]
    assert r.lv.state_of("AIVA1") == "READY"
    assert r.metric("lvgateway_agent_repairs_total", outcome="term_code") == 1


def test_a_save_whose_answer_was_lost_is_looked_at_again_soon() -> None:
    """A 503 on the save: the status is read again after the recheck delay, and the call, still held, is closed then."""
    r = rig(1, repair=SETTINGS)
    _call, seen = strand(r)
    r.lv.fail_next("term_code", LiveVoxServerError("term_code_save", status=503))
    until(r, seen + GRACE + 29)
    assert r.lv.count("term_code") == 1 and r.lv.state_of("AIVA1") == "INCALL"
    until(r, seen + GRACE + 31)
    assert [q.time - seen for q in r.lv.ops("term_code")] == [GRACE, GRACE + 30]
    assert r.lv.count("call_end") == 0
    assert r.lv.state_of("AIVA1") == "READY"
    assert r.metric("lvgateway_agent_repairs_total", outcome="failed") == 1
    assert r.metric("lvgateway_agent_repairs_total", outcome="term_code") == 1


def test_a_paused_pool_repairs_with_move_to_not_ready() -> None:
    """While paused, the repair's term code leaves the agent NOT READY, as the pool decides for any call."""
    r = rig(1, repair=SETTINGS)
    r.pool.pause("operator")
    advance(r.clock, 5)
    r.lv.set_state("AIVA1", "READY")  # LiveVox routes a call to it all the same
    call = r.lv.dispatch("AIVA1")
    advance(r.clock, 900, step=5)
    assert [b["moveAgentToNotReady"] for b in r.lv.saved] == [True]
    assert r.lv.saved[0]["callTransactionId"] == call
    assert r.lv.state_of("AIVA1") == "NOTREADY" and r.state("AIVA1") == "paused"
    assert r.lv.count("ready") == 1, "only the READY before the pause"


def test_only_a_call_incall_or_in_wrapup_is_closed() -> None:
    """A line TRANSFERRING with the call is LiveVox's own doing: left alone past the grace; once INCALL again, closed at the next look."""
    r = rig(1, repair=SETTINGS)
    r.lv.dispatch("AIVA1")
    r.lv.set_state("AIVA1", "TRANSFERRING")
    with capturedLogs() as events:
        advance(r.clock, 700, step=5)
    assert r.lv.count("term_code") == 0 and r.lv.count("call_end") == 0
    assert [
        e
        for e in events
        if e.get("log_level") is LogLevel.error and "TRANSFERRING" in formatEvent(e)
    ]
    r.lv.set_state("AIVA1", "INCALL")
    advance(r.clock, 300, step=5)
    assert r.lv.count("term_code") == 1 and r.lv.state_of("AIVA1") == "READY"


def test_without_repair_settings_the_call_is_reported_only() -> None:
    """A pool given no call API or settings keeps the old behaviour: an error for a person, nothing saved."""
    r = rig(1)
    call, seen = strand(r)
    with capturedLogs() as events:
        until(r, seen + 600)
    assert r.lv.count("term_code") == 0 and r.lv.state_of("AIVA1") == "INCALL"
    assert (
        len(
            [
                e
                for e in events
                if e.get("log_level") is LogLevel.error and e.get("kind") == "unknown_call"
            ]
        )
        == 1
    )
    assert r.pool.agent("AIVA1").view().unknown_call == call


def test_an_unknown_term_code_falls_back_and_none_at_all_fails() -> None:
    """An unknown stranded term code saves the fallback with an error; with neither known, nothing is saved and the attempt counts failed."""
    r = rig(1, repair=attrs.evolve(SETTINGS, term_code="no such code"))
    with capturedLogs() as events:
        strand(r)
        advance(r.clock, 120)
    assert [b["termCodeId"] for b in r.lv.saved] == [DONE_CODE]
    assert [e for e in events if e.get("log_level") is LogLevel.error and "fallback" in e]
    r2 = rig(1, repair=attrs.evolve(SETTINGS, term_code="nope", fallback="nope either"))
    strand(r2)
    advance(r2.clock, 120)
    assert r2.lv.count("term_code") == 0 and r2.lv.state_of("AIVA1") == "INCALL"
    assert r2.metric("lvgateway_agent_repairs_total", outcome="failed") == 1


# -- the pieces -------------------------------------------------------------------------


def test_recent_invites_are_bounded_and_case_blind() -> None:
    """The pool keeps the latest INVITEs' Session-IDs per agent, the oldest forgotten, compared ignoring case and blanks."""
    invites = RecentInvites()
    for n in range(INVITES_REMEMBERED + 1):
        invites.add(f"U{n}T1@10.0.0.1")
    invites.add(None)
    invites.add("   ")
    assert len(invites) == INVITES_REMEMBERED
    assert "U0T1@10.0.0.1" not in invites
    assert " u1t1@10.0.0.1 " in invites
    invites.add("U99T1@10.0.0.1;remote=00000000000000000000000000000000")
    assert "U99T1@10.0.0.1" in invites


def test_fake_pool_keeps_invites_seen() -> None:
    """FakeAgentPool records invite_seen and keeps the Session-IDs as the real pool does."""
    fake = FakeAgentPool([("AIVA1", "+18990000001")])
    fake.invite_seen("aiva1", "S1@x")
    fake.invite_seen("AIVA1", None)
    assert fake.events_of("invite_seen") == [("aiva1", "S1@x"), ("AIVA1", None)]
    assert "s1@X" in fake.agent("AIVA1").invites


def test_stranded_call_reads_the_line_holding_the_call() -> None:
    """The call to close comes from a busy line holding the key's call, with its number, service and line."""
    details = CallDetails("147", "S@x", phone_number="9195550100", service_id="42")
    status = AgentStatus(
        lines=(
            LineStatus("ACD", "READY", None, None),
            LineStatus("EXT1", "WRAPUP", None, details),
        )
    )
    call = stranded_call(status, "147")
    assert call is not None and call.repairable
    assert (call.state, call.phone_number, call.service_id, call.line_number) == (
        "WRAPUP",
        "9195550100",
        "42",
        "EXT1",
    )
    assert stranded_call(status, "999") is None
    idle = AgentStatus(lines=(LineStatus("ACD", "READY", None, details),))
    assert stranded_call(idle, "147") is None


def test_term_codes_are_found_by_config_name_livevox_name_or_id() -> None:
    """The shared resolution: a config name maps to LiveVox's, a LiveVox name (any case) or id works, the fallback is flagged."""
    catalogue = TermCodeCatalogue(
        "1", (TermCode("11", "AI Completed"), TermCode("12", "Transfer To Agent"))
    )
    names = {"done": "AI Completed", "transfer": "12", "broken": "nothing"}
    assert find_term_code(catalogue, " transfer", names) == catalogue.codes[1]
    assert find_term_code(catalogue, "ai completed", names) == catalogue.codes[0]
    assert find_term_code(catalogue, "11", names) == catalogue.codes[0]
    assert find_term_code(catalogue, "broken", names) is None
    assert choose_term_code(catalogue, "transfer", names, "done") == (catalogue.codes[1], False)
    assert choose_term_code(catalogue, "broken", names, "done") == (catalogue.codes[0], True)
    assert choose_term_code(catalogue, "broken", names, "nothing") is None


def test_simulator_refuses_a_term_code_in_call_when_configured() -> None:
    """With refuse_term_code_in_call the simulator answers 400 to a term code for an INCALL call; after the call end it saves it."""
    for refuse in (False, True):
        sim = SimDriver.create(Clock(), make_sandbox_config(refuse_term_code_in_call=refuse))
        state = sim.simulator.state
        session = state.login(
            0,
            {
                "clientName": "demo",
                "userName": "AIVA1",
                "password": "test-agent-password",
                "agent": True,
            },
        )
        state.join(session, "1234567", None)
        state.ready(session)
        call = state.start_call("AIVA1")
        body = {
            "callTransactionId": call.call_transaction_id,
            "callSessionId": call.call_session_id,
            "termCodeId": SIM_TRANSFER_CODE,
            "phoneDialed": call.phone_number,
            "moveAgentToNotReady": False,
        }
        if refuse:
            with pytest.raises(LiveVoxError) as refused:
                state.save_term_code(session, body)
            assert refused.value.status == 400
            assert state.find_line("AIVA1").state is LineState.INCALL
            assert state.end_customer_call(session) is call
        state.save_term_code(session, body)
        assert state.find_line("AIVA1").state is LineState.READY


# -- config ------------------------------------------------------------------------------


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    """A folder with the secrets the minimal config refers to."""
    write_secret(tmp_path / "token", "tok-123456789")
    write_secret(tmp_path / "pw", "agent-pw-secret")
    return tmp_path


def _load(confdir: Path, text: str) -> Any:
    path = confdir / "gw.toml"
    path.write_text(text)
    return load_config(str(path))


def test_config_defaults_repair_with_the_transfer_term_code(confdir: Path) -> None:
    """By default stranded agents are repaired after 60 s with the transfer term code."""
    config = _load(confdir, MINIMAL)
    assert config.agent_timings.repair_stranded is True
    assert config.agent_timings.stranded_grace == 60.0
    assert config.wrapup.stranded_term_code is None
    settings = StrandedSettings.from_config(config.agent_timings, config.wrapup)
    assert settings is not None
    assert (settings.grace, settings.term_code, settings.fallback) == (60.0, "transfer", "done")


def test_config_names_the_stranded_term_code_and_can_turn_repair_off(confdir: Path) -> None:
    """stranded_term_code names a [wrapup.term_codes] entry; repair_stranded = false turns the repair off."""
    text = (
        MINIMAL.replace(
            'transfer_term_code = "transfer"\n',
            'transfer_term_code = "transfer"\nstranded_term_code = "done"\n',
        )
        + "\n[agent_timings]\nrepair_stranded = false\nstranded_grace = 5\n"
    )
    config = _load(confdir, text)
    assert config.wrapup.stranded_term_code == "done"
    assert StrandedSettings.from_config(config.agent_timings, config.wrapup) is None


def test_config_refuses_a_grace_within_call_setup(confdir: Path) -> None:
    """A grace not past confirm_within plus an INVITE's setup is an error naming both; an unknown term code name is one too."""
    text = MINIMAL + "\n[agent_timings]\nstranded_grace = 40\n"
    with pytest.raises(ConfigError) as raised:
        _load(confdir, text)
    message = str(raised.value)
    assert "agent_timings.stranded_grace" in message and "confirm_within" in message
    bad_name = MINIMAL.replace(
        'transfer_term_code = "transfer"\n',
        'transfer_term_code = "transfer"\nstranded_term_code = "hang up"\n',
    )
    with pytest.raises(ConfigError) as raised:
        _load(confdir, bad_name)
    assert "wrapup.stranded_term_code" in str(raised.value)
