"""The LiveVox simulator's REST behaviour, driven in memory on task.Clock (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from lvgateway.sandbox.livevox_state import LineState, LiveVoxError
from lvgateway.sandbox.sandbox_config import sandbox_config_from_dict
from lvgateway.sandbox.testing import (
    AGENT_PASSWORD,
    CONTACT_ACCOUNT,
    DONE_CODE,
    SECOND_TOKEN,
    SERVICE_ID,
    TOKEN,
    TRANSFER_CODE,
    USER_NAME,
    USER_PASSWORD,
    SimDriver,
    agent_number,
    make_sandbox_config,
    sandbox_config_dict,
)

TWO_HOURS = 7200.0


@pytest.fixture
def clock() -> Clock:
    """A clock that starts at a realistic epoch time."""
    c = Clock()
    c.advance(1_700_000_000)
    return c


@pytest.fixture
def sim(clock: Clock) -> SimDriver:
    """A simulator with the test configuration on the fake clock."""
    return SimDriver.create(clock)


def _start_call(sim: SimDriver, user: str = "AIVA1", **kwargs: Any) -> tuple[str, str]:
    call = sim.simulator.start_call(user, **kwargs)
    return call.call_transaction_id, call.call_session_id


# -- sessions ------------------------------------------------------------------


def test_login_answers_documented_fields(sim: SimDriver) -> None:
    """A login answers 200 with sessionId, userId, clientId and daysUntilPasswordExpires."""
    response = sim.login_response("AIVA2")
    assert response.status == 200
    body = response.json()
    assert set(body) == {"sessionId", "userId", "clientId", "daysUntilPasswordExpires"}
    assert body["userId"] == 5002
    assert body["clientId"] == 4242
    assert body["daysUntilPasswordExpires"] == 32
    assert len(body["sessionId"]) == 36


def test_same_user_same_token_gets_same_session(sim: SimDriver) -> None:
    """Logging in again with the same token returns the live session's id."""
    first = sim.login("AIVA1")
    assert sim.login("aiva1", agent="true") == first


def test_different_tokens_get_different_sessions(sim: SimDriver) -> None:
    """The same agent logged in with two API tokens gets two sessions."""
    assert sim.login("AIVA1", token=TOKEN) != sim.login("AIVA1", token=SECOND_TOKEN)


def test_login_with_wrong_token_is_refused(sim: SimDriver) -> None:
    """A wrong or missing LV-Access answers 401 with the documented body."""
    for token in ("nope", ""):
        response = sim.login_response("AIVA1", token=token)
        assert response.status == 401
        assert response.body == b'{"code":401,"message":"Invalid access token"}'


def test_login_with_wrong_password_is_refused(sim: SimDriver) -> None:
    """A wrong password, user or client answers 401 with the same message."""
    for kwargs in ({"password": "wrong"}, {"client_name": "other"}):
        response = sim.login_response("AIVA1", **kwargs)
        assert response.status == 401
        assert response.json() == {
            "code": 401,
            "message": "Invalid client name, user name or password",
        }
    assert sim.login_response("nobody").status == 401


def test_user_login_is_not_an_agent_login(sim: SimDriver) -> None:
    """A user logs in with agent false; an agent flag for a user name is refused."""
    assert sim.login_response(USER_NAME, password=USER_PASSWORD, agent=False).status == 200
    assert sim.login_response(USER_NAME, password=USER_PASSWORD, agent=True).status == 401
    assert sim.login_response("AIVA1", agent="yes").status == 400


def test_session_expires_after_two_idle_hours(sim: SimDriver, clock: Clock) -> None:
    """A session unused for 2 hours is refused with 401 Session is not valid."""
    session = sim.login("AIVA1")
    clock.advance(TWO_HOURS - 1)
    assert sim.request("GET", "/callControl/agent/screenpop", session=session).status == 200
    clock.advance(TWO_HOURS)
    response = sim.request("GET", "/callControl/agent/screenpop", session=session)
    assert response.status == 401
    assert response.body == b'{"code":401,"message":"Session is not valid"}'
    assert sim.simulator.agent("AIVA1").state is LineState.LOGOFF


def test_every_request_extends_the_session(sim: SimDriver, clock: Clock) -> None:
    """Each accepted request restarts the 2-hour window: 5 hours of hourly use stay valid."""
    session = sim.login("AIVA1")
    for _ in range(5):
        clock.advance(3600)
        assert sim.request("GET", "/callControl/agent/screenpop", session=session).status == 200
    clock.advance(TWO_HOURS - 1)
    assert sim.request("GET", "/callControl/agent/screenpop", session=session).status == 200


def test_new_login_after_expiry_gets_new_session(sim: SimDriver, clock: Clock) -> None:
    """Once a session expired, the next login opens a new one."""
    first = sim.login("AIVA1")
    clock.advance(TWO_HOURS)
    assert sim.login("AIVA1") != first


def test_validate_and_logout(sim: SimDriver, clock: Clock) -> None:
    """Validate answers 204 or 404 and does not extend; logout ends the session (then 401)."""
    session = sim.login("AIVA1")
    path = f"/session/validate/{session}"
    assert sim.request("GET", path, token=TOKEN).status == 204
    assert sim.request("GET", path).status == 401
    assert (
        sim.request("GET", "/session/validate", token=TOKEN, query={"sessionId": session}).status
        == 204
    )
    clock.advance(TWO_HOURS - 10)
    assert sim.request("GET", path, token=TOKEN).status == 204
    clock.advance(10)
    assert sim.request("GET", path, token=TOKEN).status == 404

    session = sim.login("AIVA1")
    assert sim.request("DELETE", f"/session/logout/{session}", token=TOKEN).status == 204
    assert sim.request("DELETE", f"/session/logout/{session}", token=TOKEN).status == 404
    response = sim.request("POST", "/callControl/agent/status/ready", session=session)
    assert response.status == 401


# -- agent states --------------------------------------------------------------


def test_ready_and_not_ready_need_a_joined_service(sim: SimDriver) -> None:
    """ready or notReady before joining a service answers 400."""
    session = sim.login("AIVA1")
    for path in ("/callControl/agent/status/ready", "/callControl/agent/status/notReady"):
        response = sim.request("POST", path, session=session)
        assert response.status == 400
        assert response.json()["code"] == 400
    assert sim.simulator.agent("AIVA1").state is LineState.LOGON


def test_join_ready_not_ready_leave(sim: SimDriver) -> None:
    """join goes NOTREADY, ready READY, notReady NOTREADY with its reason, leave LOGON."""
    session = sim.login("AIVA1")
    join = sim.request(
        "POST",
        "/callControl/agent/service/join",
        session=session,
        query={"serviceId": SERVICE_ID, "phoneNumber": "8990000001"},
    )
    assert (join.status, join.body) == (204, b"")
    assert sim.status(session)["state"] == "NOTREADY"
    assert sim.request("POST", "/callControl/agent/status/ready", session=session).status == 204
    assert sim.status(session)["state"] == "READY"
    response = sim.request(
        "POST", "/callControl/agent/status/notReady", session=session, query={"reasonCode": "Break"}
    )
    assert response.status == 204
    assert sim.status(session)["state"] == "NOTREADY"
    assert sim.simulator.agent("AIVA1").reason_code == "Break"
    assert sim.request("POST", "/callControl/agent/service/leave", session=session).status == 204
    assert sim.status(session)["state"] == "LOGON"


def test_join_refuses_unknown_service_and_taken_number(sim: SimDriver) -> None:
    """join needs a known serviceId and an 899 number no other agent uses."""
    session = sim.login("AIVA1")
    bad = sim.request(
        "POST", "/callControl/agent/service/join", session=session, query={"serviceId": "999"}
    )
    assert bad.status == 400
    sim.ready_agent("AIVA2")
    taken = sim.request(
        "POST",
        "/callControl/agent/service/join",
        session=session,
        query={"serviceId": SERVICE_ID, "phoneNumber": agent_number(2)},
    )
    assert taken.status == 400


def test_ready_while_in_call_is_refused(sim: SimDriver) -> None:
    """ready (and notReady) while INCALL or WRAPUP answers 400 and changes nothing."""
    session = sim.ready_agent("AIVA1")
    _start_call(sim)
    assert sim.request("POST", "/callControl/agent/status/ready", session=session).status == 400
    assert sim.request("POST", "/callControl/agent/status/notReady", session=session).status == 400
    assert sim.status(session)["state"] == "INCALL"
    sim.simulator.end_call("AIVA1")
    assert sim.request("POST", "/callControl/agent/status/ready", session=session).status == 400
    assert sim.status(session)["state"] == "WRAPUP"


def test_start_call_only_on_ready_agent(sim: SimDriver) -> None:
    """The sandbox puts a call through only to a READY agent, by name or by 899 number."""
    session = sim.login("AIVA1")
    with pytest.raises(LiveVoxError) as refused:
        sim.simulator.start_call("AIVA1")
    assert refused.value.status == 409
    sim.request(
        "POST", "/callControl/agent/service/join", session=session, query={"serviceId": SERVICE_ID}
    )
    sim.request("POST", "/callControl/agent/status/ready", session=session)
    call = sim.simulator.start_call(phone_number="18990000001", account_number=CONTACT_ACCOUNT)
    assert call.agent == "AIVA1"
    assert call.call_transaction_id.isdigit()
    assert call.call_session_id.startswith("U") and "@10." in call.call_session_id
    assert (call.first_name, call.last_name) == ("John", "Doe")
    with pytest.raises(LiveVoxError):
        sim.simulator.start_call("AIVA1")


def test_status_shows_the_call_in_documented_shape(sim: SimDriver, clock: Clock) -> None:
    """status answers agentStatus.lines[0] with state, time and call ids as strings."""
    session = sim.ready_agent("AIVA1")
    clock.advance(5)
    txn, call_session = _start_call(
        sim, account_number=CONTACT_ACCOUNT, customer_number="2134634007"
    )
    response = sim.request(
        "POST",
        "/callControl/agent/status",
        session=session,
        json_body={"stateChangedAfter": "1573809480000"},
    )
    assert response.status == 200
    status = response.json()["agentStatus"]
    line = status["lines"][0]
    assert line["state"] == "INCALL"
    assert line["stateChangedTime"] == str(int(clock.seconds() * 1000))
    assert line["call"] == {
        "callTransactionId": txn,
        "callSessionId": call_session,
        "firstName": "John",
        "lastName": "Doe",
        "accountNumber": CONTACT_ACCOUNT,
        "phoneNumber": "2134634007",
        "serviceId": int(SERVICE_ID),
        "callCenterId": 1,
        "callRequiresAcceptance": False,
        "callAcceptanceTimeout": 0,
        "callRecordingStarted": True,
        "accountNumberRequired": False,
    }
    assert status["agentCallConnected"] is True
    by_query = sim.request(
        "POST",
        "/callControl/agent/status",
        session=session,
        query={"stateChangedAfter": "1573809480000"},
        body=b"{ }",
    )
    assert by_query.status == 200
    bad = sim.request(
        "POST",
        "/callControl/agent/status",
        session=session,
        json_body={"stateChangedAfter": "yesterday"},
    )
    assert bad.status == 400


def _status_after_calls(sim: SimDriver, session: str) -> dict[str, list[Any]]:
    """Walk AIVA1 through two calls; return the status line's (state, call ids) at each stage."""
    seen: dict[str, list[Any]] = {}

    def look(stage: str) -> None:
        line = sim.status(session)
        call = line["call"]
        ids = (call["callTransactionId"], call["callSessionId"]) if call else None
        seen[stage] = [line["state"], ids]

    look("ready, no call yet")
    first = _start_call(sim)
    look("first call up")
    sim.simulator.end_call("AIVA1")
    look("first call in wrap-up")
    assert sim.term_code(session, *first).status == 204
    look("first call closed, ready")
    assert sim.request("POST", "/callControl/agent/status/notReady", session=session).status == 204
    look("first call closed, not ready")
    assert sim.request("POST", "/callControl/agent/status/ready", session=session).status == 204
    second = _start_call(sim)
    look("second call up")
    assert sim.term_code(session, *second, moveAgentToNotReady=True).status == 204
    look("second call closed, not ready")
    seen["ids"] = [first, second]
    return seen


def test_status_drops_a_closed_call_by_default(sim: SimDriver) -> None:
    """By default a line shows only its call in progress: a closed call is gone from READY and NOTREADY."""
    session = sim.ready_agent("AIVA1")
    seen = _status_after_calls(sim, session)
    first, second = seen.pop("ids")
    assert seen == {
        "ready, no call yet": ["READY", None],
        "first call up": ["INCALL", first],
        "first call in wrap-up": ["WRAPUP", first],
        "first call closed, ready": ["READY", None],
        "first call closed, not ready": ["NOTREADY", None],
        "second call up": ["INCALL", second],
        "second call closed, not ready": ["NOTREADY", None],
    }


def test_status_shows_last_call_when_configured(clock: Clock) -> None:
    """With status_shows_last_call, a READY or NOTREADY line shows its last call once closed."""
    config = make_sandbox_config(status_shows_last_call=True)
    assert config.status_shows_last_call is True
    sim = SimDriver.create(clock, config)
    session = sim.ready_agent("AIVA1")
    seen = _status_after_calls(sim, session)
    first, second = seen.pop("ids")
    assert seen == {
        "ready, no call yet": ["READY", None],
        "first call up": ["INCALL", first],
        "first call in wrap-up": ["WRAPUP", first],
        "first call closed, ready": ["READY", first],
        "first call closed, not ready": ["NOTREADY", first],
        "second call up": ["INCALL", second],
        "second call closed, not ready": ["NOTREADY", second],
    }
    response = sim.request("POST", "/callControl/agent/status", session=session, json_body={})
    status = response.json()["agentStatus"]
    assert status["agentCallConnected"] is False
    assert status["lines"][0]["callControl"] is False
    assert status["lines"][0]["call"]["serviceId"] == int(SERVICE_ID)


def test_status_shows_no_unclosed_last_call(clock: Clock) -> None:
    """With status_shows_last_call, a call cut off by a logoff and not yet closed is not shown as closed."""
    sim = SimDriver.create(clock, make_sandbox_config(status_shows_last_call=True))
    session = sim.ready_agent("AIVA1")
    txn, call_session = _start_call(sim)
    assert sim.simulator.expire_sessions("AIVA1") == 1
    session = sim.ready_agent("AIVA1")
    line = sim.status(session)
    assert (line["state"], line["call"]) == ("READY", None)
    assert sim.term_code(session, txn, call_session).status == 204
    line = sim.status(session)
    assert (line["state"], line["call"]["callTransactionId"]) == ("READY", txn)


def test_term_code_catalogue(sim: SimDriver) -> None:
    """termCode lists the service's categories and codes in LVNET's shape."""
    session = sim.login("AIVA1")
    response = sim.request(
        "GET", "/callControl/agent/termCode", session=session, query={"serviceId": SERVICE_ID}
    )
    assert response.status == 200
    codes = response.json()["termCodeCategories"][0]["termCodes"]
    assert [c["name"] for c in codes] == ["AI Completed", "Transfer To Agent"]
    assert set(codes[0]) == {
        "id",
        "name",
        "lvResultId",
        "lvResult",
        "reportDisplayOrder",
        "previewDialEnabled",
        "actionType",
        "paymentAmtRequired",
    }
    assert (
        sim.request(
            "GET", "/callControl/agent/termCode", session=session, query={"serviceId": "42"}
        ).status
        == 400
    )


# -- term codes ----------------------------------------------------------------


def test_term_code_during_call_makes_agent_ready(sim: SimDriver) -> None:
    """A term code accepted while the call is still INCALL answers 204 and the agent is READY."""
    session = sim.ready_agent("AIVA1")
    txn, call_session = _start_call(sim)
    response = sim.term_code(session, txn, call_session, TRANSFER_CODE)
    assert (response.status, response.body) == (204, b"")
    line = sim.status(session)
    assert line["state"] == "READY"
    assert line["call"] is None
    assert sim.simulator.agent("AIVA1").last_call.term_code_id == TRANSFER_CODE  # type: ignore[union-attr]


def test_term_code_in_wrapup_with_move_to_not_ready(sim: SimDriver) -> None:
    """In WRAPUP, moveAgentToNotReady "true" leaves the agent NOTREADY with its reason."""
    session = sim.ready_agent("AIVA1")
    txn, call_session = _start_call(sim)
    assert (
        sim.request("POST", "/callControl/agent/customer/call/end", session=session).status == 204
    )
    assert sim.status(session)["state"] == "WRAPUP"
    response = sim.term_code(
        session, txn, call_session, moveAgentToNotReady="true", reasonCode="Break"
    )
    assert response.status == 204
    assert sim.status(session)["state"] == "NOTREADY"
    assert sim.simulator.agent("AIVA1").reason_code == "Break"


def test_term_code_must_match_the_call(sim: SimDriver) -> None:
    """Missing ids, another call's ids or a term code not in the catalogue answer 400."""
    session = sim.ready_agent("AIVA1")
    txn, call_session = _start_call(sim)
    base = {
        "callTransactionId": txn,
        "callSessionId": call_session,
        "termCodeId": DONE_CODE,
        "phoneDialed": "9195550100",
        "moveAgentToNotReady": False,
    }
    cases: list[dict[str, Any]] = [
        {"callTransactionId": None},
        {"callSessionId": None},
        {"termCodeId": None},
        {"callTransactionId": "1"},
        {"callSessionId": "U1T2@10.0.0.1"},
        {"termCodeId": "55555"},
        {"moveAgentToNotReady": "maybe"},
    ]
    for override in cases:
        body = {k: v for k, v in {**base, **override}.items() if v is not None}
        response = sim.request(
            "PUT", "/callControl/agent/call/termCode", session=session, json_body=body
        )
        assert response.status == 400, override
        assert response.json()["code"] == 400
    assert sim.status(session)["state"] == "INCALL"


def test_repeated_term_code_is_a_contract_error(sim: SimDriver) -> None:
    """A term code re-sent for a closed call is refused 400, changes nothing, and counts as a contract error."""
    session = sim.ready_agent("AIVA1")
    txn, call_session = _start_call(sim)
    assert sim.term_code(session, txn, call_session).status == 204
    assert sim.simulator.contract_errors == 0
    assert sim.request("POST", "/callControl/agent/status/notReady", session=session).status == 204
    # the id as a number this time, and another term code: refused all the same
    again = sim.term_code(session, int(txn), call_session, TRANSFER_CODE)
    assert again.status == 400
    assert again.json() == {
        "code": 400,
        "message": f"Call {txn} already has a term code ({DONE_CODE})",
    }
    assert sim.status(session)["state"] == "NOTREADY"
    last = sim.simulator.agent("AIVA1").last_call
    assert last is not None and (last.term_code_id, last.repeats) == (DONE_CODE, 1)
    entries = sim.simulator.journal.find("agent.saveTermCode")
    assert [(e.status, e.repeat, e.contract_error) for e in entries] == [
        (204, False, None),
        (400, True, "repeated term code"),
    ]
    assert sim.simulator.contract_errors == 1
    assert sim.simulator.stats() == {"contractErrors": 1}
    assert entries[-1].to_json()["contract_error"] == "repeated term code"


def test_other_refusals_are_not_contract_errors(sim: SimDriver) -> None:
    """A term code for an unknown call, or with a missing id, is a 400 but no contract error."""
    session = sim.ready_agent("AIVA1")
    txn, call_session = _start_call(sim)
    assert sim.term_code(session, "1", call_session).status == 400
    assert sim.term_code(session, txn, call_session, termCodeId=None).status == 400
    assert sim.simulator.contract_errors == 0
    entries = sim.simulator.journal.find("agent.saveTermCode")
    assert [(e.status, e.repeat, e.contract_error) for e in entries] == [(400, None, None)] * 2


def test_term_code_for_last_call_while_next_call_is_up(sim: SimDriver) -> None:
    """The last call still matches while the next one is up: a refused repeat, the new call untouched."""
    session = sim.ready_agent("AIVA1")
    first = _start_call(sim)
    sim.term_code(session, *first)
    second = _start_call(sim)
    assert second != first
    repeat = sim.term_code(session, *first)
    assert repeat.status == 400
    assert "already has a term code" in repeat.json()["message"]
    assert sim.status(session)["state"] == "INCALL"
    assert sim.term_code(session, *second).status == 204
    assert sim.simulator.contract_errors == 1
    unknown = sim.term_code(session, *first)  # two calls back: no longer known
    assert unknown.status == 400
    assert "No call" in unknown.json()["message"]
    assert sim.simulator.contract_errors == 1


def test_missing_phone_dialed_is_a_warning(sim: SimDriver) -> None:
    """A term code without phoneDialed is accepted and logged as a warning."""
    session = sim.ready_agent("AIVA1")
    txn, call_session = _start_call(sim)
    with capturedLogs() as events:
        response = sim.term_code(session, txn, call_session, phoneDialed=None)
    assert response.status == 204
    warnings = [e for e in events if e["log_level"].name == "warn"]
    assert any(e.get("warning") == "phoneDialed is missing" for e in warnings)
    entry = sim.simulator.journal.find("agent.saveTermCode")[-1]
    assert "phoneDialed is missing" in entry.detail["warnings"]


def test_end_call_and_manual_conference(sim: SimDriver) -> None:
    """conference/manual records the number during the call; call/end moves it to WRAPUP."""
    session = sim.ready_agent("AIVA1")
    _start_call(sim)
    response = sim.request(
        "POST",
        "/callControl/agent/conference/manual",
        session=session,
        json_body={
            "supervisorNumber": "4158395494",
            "putCallOnHold": "true",
            "secureTransfer": "false",
        },
    )
    assert (response.status, response.body) == (204, b"")
    assert sim.status(session)["supervisorPhoneNumber"] == "4158395494"
    end = sim.request("POST", "/callControl/v5.0/agent/customer/call/end", session=session)
    assert (end.status, end.body) == (204, b"")
    assert sim.status(session)["state"] == "WRAPUP"
    again = sim.request("POST", "/callControl/agent/customer/call/end", session=session)
    assert again.status == 204
    assert (
        sim.request(
            "POST",
            "/callControl/agent/conference/manual",
            session=session,
            json_body={"supervisorNumber": "1"},
        ).status
        == 400
    )


def test_screenpop(sim: SimDriver) -> None:
    """screenpop lists the call's names, account and phone; empty without a call."""
    session = sim.ready_agent("AIVA1")
    empty = sim.request("GET", "/callControl/agent/screenpop", session=session)
    assert empty.json() == {"screenPopRow": []}
    _start_call(sim, account_number=CONTACT_ACCOUNT)
    rows = sim.request("GET", "/callControl/agent/screenpop", session=session).json()
    assert {"key": "First Name", "value": "John"} in rows["screenPopRow"]


# -- contacts ------------------------------------------------------------------


def test_create_contact_and_duplicate(sim: SimDriver) -> None:
    """Create answers 201 {"id": n} by POST or PUT; a duplicate answers the exact 202 body."""
    session = sim.login("AIVA1")
    created = sim.request(
        "POST",
        "/contact/contacts",
        session=session,
        json_body={"createContactDetails": {"account": "2001", "active": "true"}},
    )
    assert created.status == 201
    assert isinstance(created.json()["id"], int)
    by_put = sim.request(
        "PUT",
        "/contact/contacts/",
        session=session,
        json_body={"createContactDetails": {"account": 2002}},
    )
    assert by_put.status == 201
    duplicate = sim.request(
        "POST",
        "/contact/contacts",
        session=session,
        json_body={"createContactDetails": {"account": "2001"}},
    )
    assert duplicate.status == 202
    assert duplicate.body == b'{"code":202,"message":"Contact already exists!"}'
    missing = sim.request(
        "POST",
        "/contact/contacts",
        session=session,
        json_body={"createContactDetails": {"active": True}},
    )
    assert missing.status == 400


def test_update_contact_merges_deeply(sim: SimDriver) -> None:
    """Update answers 204 empty and merges person, custom fields by field, phones by ordinal."""
    session = sim.login("AIVA1")
    update = {
        "updateContactDetails": {
            "person": {"firstName": "Jane"},
            "customFields": [{"field": "COL5", "value": "x"}, {"field": "COL1", "value": "silver"}],
            "phone": [{"phone": "5551234567", "ordinal": 2, "phoneBlock": "NONE"}],
            "city": "Raleigh",
        }
    }
    response = sim.request(
        "PUT", f"/contact/contacts/{CONTACT_ACCOUNT}", session=session, json_body=update
    )
    assert (response.status, response.body) == (204, b"")
    replace = {"updateContactDetails": {"phone": [{"phone": "5550000000", "ordinal": 1}]}}
    assert (
        sim.request(
            "PUT", f"/contact/contacts/{CONTACT_ACCOUNT}", session=session, json_body=replace
        ).status
        == 204
    )
    read = sim.request("GET", f"/contact/contacts/{CONTACT_ACCOUNT}", session=session)
    assert read.status == 200
    contact = read.json()["readContactDetails"]
    assert contact["person"] == {"firstName": "Jane", "lastName": "Doe", "email": "j@example.com"}
    assert contact["city"] == "Raleigh"
    assert [(p["ordinal"], p["phone"]) for p in contact["phone"]] == [
        (1, "5550000000"),
        (2, "5551234567"),
    ]
    customs = {c["field"]: c["value"] for c in contact["customFields"]}
    assert customs == {"COL1": "silver", "COL5": "x"}
    assert contact["account"] == CONTACT_ACCOUNT
    assert "modifyDate" in contact


def test_unknown_contact_is_404(sim: SimDriver) -> None:
    """Update or read of an unknown account answers 404 Contact not found."""
    session = sim.login("AIVA1")
    for method, body in (("PUT", {"updateContactDetails": {"city": "x"}}), ("GET", None)):
        response = sim.request(method, "/contact/contacts/404404", session=session, json_body=body)
        assert response.status == 404
        assert response.body == b'{"code":404,"message":"Contact not found"}'


def test_agent_sessions_refused_contacts_when_switched_off(clock: Clock) -> None:
    """With agent_contact_access off, an agent session gets 403 and a user session is served."""
    sim = SimDriver.create(clock, make_sandbox_config(agent_contact_access=False))
    agent = sim.login("AIVA1")
    user = sim.login(USER_NAME, password=USER_PASSWORD, agent=False)
    path = f"/contact/contacts/{CONTACT_ACCOUNT}"
    refused = sim.request("GET", path, session=agent)
    assert refused.status == 403
    assert refused.json()["code"] == 403
    assert sim.request("GET", path, session=user).status == 200
    sim.simulator.agent_contact_access = True
    assert sim.request("GET", path, session=agent).status == 200


def test_user_session_cannot_drive_an_agent(sim: SimDriver) -> None:
    """callControl with a user session answers 403."""
    user = sim.login(USER_NAME, password=USER_PASSWORD, agent=False)
    assert sim.request("POST", "/callControl/agent/status/ready", session=user).status == 403


# -- routing and errors --------------------------------------------------------


def test_versioned_paths_and_errors(sim: SimDriver) -> None:
    """Version segments are accepted; unknown routes 404, wrong methods 405, bad JSON 400."""
    response = sim.request(
        "POST",
        "/session/v6.0/login",
        token=TOKEN,
        json_body={
            "clientName": "demo",
            "userName": "AIVA1",
            "password": AGENT_PASSWORD,
            "agent": True,
        },
    )
    assert response.status == 200
    session = response.json()["sessionId"]
    assert sim.request("POST", "/callControl/v5.0/agent/status", session=session).status == 200
    unknown = sim.request("GET", "/callControl/agent/nothing", session=session)
    assert unknown.status == 404
    assert unknown.json() == {"code": 404, "message": "Resource not found"}
    assert sim.request("GET", "/callControl/agent/status/ready", session=session).status == 405
    malformed = sim.request(
        "PUT", "/callControl/agent/call/termCode", session=session, body=b"{not json"
    )
    assert malformed.status == 400
    assert malformed.json() == {"code": 400, "message": "Malformed JSON body"}
    no_session = sim.request("POST", "/callControl/agent/status/ready")
    assert no_session.body == b'{"code":401,"message":"Session is not valid"}'


def test_journal_records_requests_and_is_bounded(clock: Clock) -> None:
    """The journal keeps seq, time, route, user and status of each request, up to its size."""
    data = sandbox_config_dict()
    data["livevox"]["journal_size"] = 5
    sim = SimDriver(SimDriver.create(clock, sandbox_config_from_dict(data)).simulator)
    session = sim.login("AIVA1")
    entry = sim.simulator.journal_since(0)[0]
    assert (entry.seq, entry.method, entry.route, entry.user, entry.status) == (
        1,
        "POST",
        "session.login",
        "AIVA1",
        200,
    )
    assert entry.time == clock.seconds()
    assert entry.session is not None and session not in entry.session
    for _ in range(10):
        sim.request("GET", "/callControl/agent/screenpop", session=session)
    kept = sim.simulator.journal_since(0)
    assert len(kept) == 5
    assert [e.seq for e in kept] == list(range(7, 12))
    assert [e.seq for e in sim.simulator.journal_since(9)] == [10, 11]


def test_logs_carry_no_secrets(sim: SimDriver) -> None:
    """No log event mentions a password, a token or a whole session id."""
    with capturedLogs() as events:
        session = sim.ready_agent("AIVA1")
        sim.login_response("AIVA1", password="wrong-password")
        txn, call_session = _start_call(sim)
        sim.term_code(session, txn, call_session)
        sim.request("GET", f"/session/validate/{session}", token=TOKEN)
        sim.request("DELETE", f"/session/logout/{session}", token=TOKEN)
    journal = repr(list(sim.simulator.journal))
    assert session not in journal
    assert TOKEN not in journal
    text = "\n".join(
        (formatEvent(e) or "") + repr({k: v for k, v in e.items() if not k.startswith("log_")})
        for e in events
    )
    for secret in (AGENT_PASSWORD, "wrong-password", TOKEN, session):
        assert secret not in text
    assert session[:8] in text
