"""Unit tests of LiveVoxClient: each call's request, answer and errors, over an in-memory server."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from lvgateway.config.secret import Secret
from lvgateway.livevox.client import LiveVoxClient, as_epoch_millis
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    LiveVoxServerError,
    LoginDeniedError,
    NotFoundError,
    PermissionDeniedError,
    SessionExpiredError,
    UnexpectedResponseError,
)
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.parsing import Session
from lvgateway.livevox.testing import (
    Handler,
    RecordedRequest,
    RecordingResource,
    failure_of,
    livevox_config,
    result_of,
    stub_http,
)

TOKEN = "test-api-token"
SESSION = Session(session_id="5eb4ad6c-50b7-45da-8d56-f4e9ac7d9cbd", user_name="AIVA1", agent=True)


@attrs.define
class Rig:
    """A client wired to a recording in-memory server."""

    client: LiveVoxClient
    resource: RecordingResource
    clock: Clock
    registry: CollectorRegistry

    @property
    def last(self) -> RecordedRequest:
        """The last request the server saw."""
        return self.resource.requests[-1]


def make_rig(handler: Handler | None = None, **overrides: Any) -> Rig:
    """Return a client whose server answers through ``handler``; overrides go to the config."""
    resource = RecordingResource(handler)
    clock = Clock()
    registry = CollectorRegistry()
    client = LiveVoxClient(
        livevox_config(**overrides),
        clock,
        stub_http(resource).client,
        LiveVoxMetrics(registry),
        jitter=lambda: 0.0,
    )
    return Rig(client, resource, clock, registry)


def login_ok(r: RecordedRequest) -> tuple[int, Any]:
    """Answer a login as LiveVox does, ids as numbers."""
    return 200, {
        "sessionId": "5eb4ad6c-50b7-45da-8d56-f4e9ac7d9cbd",
        "userId": 1234,
        "clientId": 5678,
        "daysUntilPasswordExpires": 30,
    }


# -- Session API ------------------------------------------------------------------


def test_login_sends_credentials_with_lv_access_and_parses_the_session() -> None:
    """Login posts clientName/userName/password/agent with LV-Access and returns a Session."""
    rig = make_rig(login_ok)
    session = result_of(rig.client.login("AIVA1", Secret("pw", "test")))
    req = rig.last
    assert (req.method, req.path) == ("POST", "/session/login")
    assert req.json() == {
        "clientName": "Training2",
        "userName": "AIVA1",
        "password": "pw",
        "agent": True,
    }
    assert req.header("LV-Access") == TOKEN
    assert req.header("LV-Session") is None
    assert req.header("Content-Type") == "application/json"
    assert req.header("Accept") == "application/json"
    assert session.session_id == "5eb4ad6c-50b7-45da-8d56-f4e9ac7d9cbd"
    assert (session.user_id, session.client_id) == ("1234", "5678")
    assert session.days_until_password_expires == 30
    assert session.user_name == "AIVA1" and session.agent


def test_login_as_user_sends_agent_false() -> None:
    """A user login (the contact user) sends agent false."""
    rig = make_rig(login_ok)
    result_of(rig.client.login("api-user", Secret("pw", "test"), agent=False))
    assert rig.last.json()["agent"] is False


@pytest.mark.parametrize("status", [401, 403, 404])
def test_login_refused_is_login_denied_with_livevox_message(status: int) -> None:
    """401, 403 and 404 on login become LoginDeniedError carrying LiveVox's code and message."""
    rig = make_rig(lambda r: (status, {"code": status, "message": "Invalid access token"}))
    error = failure_of(rig.client.login("AIVA1", Secret("pw", "test")))
    assert isinstance(error, LoginDeniedError)
    assert (error.call, error.status, error.code) == ("login", status, status)
    assert error.message == "Invalid access token"
    assert len(rig.resource.requests) == 1


def test_login_other_4xx_is_a_client_error_not_retried() -> None:
    """A 400 on login is a plain client error, not retried."""
    rig = make_rig(lambda r: (400, {"code": 400, "message": "clientName missing"}))
    error = failure_of(rig.client.login("AIVA1", Secret("pw", "test")))
    assert type(error) is LiveVoxClientError
    assert error.message == "clientName missing"
    assert len(rig.resource.requests) == 1


def test_login_without_session_id_is_unexpected_response() -> None:
    """A 200 login answer without sessionId is an UnexpectedResponseError."""
    rig = make_rig(lambda r: (200, {"userId": 1}))
    error = failure_of(rig.client.login("AIVA1", Secret("pw", "test")))
    assert isinstance(error, UnexpectedResponseError)
    assert error.call == "login" and error.status == 200


def test_login_never_logs_password_token_or_whole_session() -> None:
    """Log lines from a login hold neither the password, the token nor the whole session id."""
    rig = make_rig(login_ok)
    with capturedLogs() as events:
        result_of(rig.client.login("AIVA1", Secret("s3cret-pw", "test")))
    from twisted.logger import formatEvent

    text = " ".join(formatEvent(e) + repr(e) for e in events)
    assert "AIVA1" in text
    assert "s3cret-pw" not in text
    assert TOKEN not in text
    assert "5eb4ad6c-50b7-45da-8d56-f4e9ac7d9cbd" not in text
    assert "5eb4ad6c" in text


def test_user_login_warns_when_password_expires_soon() -> None:
    """A user (contact) login whose password expires within the window is warned about; an agent's is left to the pool."""
    rig = make_rig(lambda r: (200, {"sessionId": "abcdefghijkl", "daysUntilPasswordExpires": "3"}))
    with capturedLogs() as events:
        session = result_of(rig.client.login("api_user", Secret("pw", "test"), agent=False))
    assert session.days_until_password_expires == 3
    assert any("expires in" in e.get("log_format", "") and e.get("days") == 3 for e in events)
    with capturedLogs() as agent_events:
        result_of(rig.client.login("AIVA1", Secret("pw", "test")))
    assert not any("expires in" in e.get("log_format", "") for e in agent_events)


def test_version_prefix_goes_after_the_category() -> None:
    """A configured version gives /session/v6.0/login and /callControl/v6.0/agent/..."""
    rig = make_rig(login_ok, version="v6.0")
    result_of(rig.client.login("AIVA1", Secret("pw", "test")))
    assert rig.last.path == "/session/v6.0/login"
    rig.resource.handler = lambda r: (204, None)
    result_of(rig.client.ready(SESSION))
    assert rig.last.path == "/callControl/v6.0/agent/status/ready"
    result_of(rig.client.update_contact("A1", {"city": "X"}, SESSION))
    assert rig.last.path == "/contact/v6.0/contacts/A1"


def test_base_url_with_trailing_slash_and_path() -> None:
    """The base URL's trailing slash does not double, and a path prefix is kept."""
    rig = make_rig(login_ok, base_url="http://livevox.test/proxy/")
    result_of(rig.client.login("AIVA1", Secret("pw", "test")))
    assert rig.last.path == "/proxy/session/login"


@pytest.mark.parametrize(
    ("status", "valid"), [(204, True), (200, True), (404, False), (401, False)]
)
def test_validate(status: int, valid: bool) -> None:
    """Validate GETs /session/validate/{id} with LV-Access; 2xx is valid, 404 and 401 are not."""
    rig = make_rig(lambda r: (status, None))
    assert result_of(rig.client.validate(SESSION)) is valid
    req = rig.last
    assert (req.method, req.path) == ("GET", f"/session/validate/{SESSION.session_id}")
    assert req.header("LV-Access") == TOKEN


@pytest.mark.parametrize(("status", "ended"), [(204, True), (404, False), (401, False)])
def test_logout(status: int, ended: bool) -> None:
    """Logout DELETEs /session/logout/{id}; 404/401 mean it was already gone."""
    rig = make_rig(lambda r: (status, None))
    assert result_of(rig.client.logout(SESSION)) is ended
    req = rig.last
    assert (req.method, req.path) == ("DELETE", f"/session/logout/{SESSION.session_id}")
    assert req.header("LV-Access") == TOKEN


# -- Agent lifecycle --------------------------------------------------------------


def test_join_service_puts_service_and_899_number_in_the_query_verbatim() -> None:
    """Join POSTs serviceId and phoneNumber as query parameters, the number untouched, no body."""
    rig = make_rig()
    result_of(rig.client.join_service(SESSION, "1234567", "+18990000001"))
    req = rig.last
    assert (req.method, req.path) == ("POST", "/callControl/agent/service/join")
    assert req.query == {"serviceId": ["1234567"], "phoneNumber": ["+18990000001"]}
    assert req.header("LV-Session") == SESSION.session_id
    assert req.header("LV-Access") is None
    assert req.body == b""
    assert req.header("Content-Type") is None


def test_join_service_with_sip_id() -> None:
    """An optional sipId goes in the query too."""
    rig = make_rig()
    result_of(rig.client.join_service(SESSION, "1", "8990000001", sip_id="sip7"))
    assert rig.last.query["sipId"] == ["sip7"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("leave_service", "/callControl/agent/service/leave"),
        ("ready", "/callControl/agent/status/ready"),
        ("not_ready", "/callControl/agent/status/notReady"),
    ],
)
def test_state_calls(method: str, path: str) -> None:
    """Leave, ready and notReady POST their paths with LV-Session and no body."""
    rig = make_rig()
    result_of(getattr(rig.client, method)(SESSION))
    req = rig.last
    assert (req.method, req.path) == ("POST", path)
    assert req.header("LV-Session") == SESSION.session_id
    assert req.body == b"" and req.query == {}


def test_not_ready_with_reason_code() -> None:
    """A reason code goes in the query as reasonCode."""
    rig = make_rig()
    result_of(rig.client.not_ready(SESSION, "Tech Difficulties"))
    assert rig.last.query == {"reasonCode": ["Tech Difficulties"]}


def test_session_expired_is_typed_with_call_status_code_and_message() -> None:
    """A 401 after login becomes SessionExpiredError naming the call."""
    rig = make_rig(lambda r: (401, {"code": 401, "message": "Session is not valid"}))
    error = failure_of(rig.client.ready(SESSION))
    assert isinstance(error, SessionExpiredError)
    assert (error.call, error.status, error.code, error.message) == (
        "ready",
        401,
        401,
        "Session is not valid",
    )
    assert len(rig.resource.requests) == 1


def test_401_in_body_code_with_other_4xx_status_is_session_expired() -> None:
    """A 4xx whose body code is 401 (AZFUNC reads the body's code) is a SessionExpiredError."""
    rig = make_rig(lambda r: (400, {"code": 401, "message": "session no longer exists"}))
    error = failure_of(rig.client.ready(SESSION))
    assert isinstance(error, SessionExpiredError)
    assert (error.status, error.code) == (400, 401)


def test_client_error_with_non_json_body() -> None:
    """A 400 with a text body carries the text as the message."""
    rig = make_rig(lambda r: (400, b"Agent is not joined to a service"))
    error = failure_of(rig.client.ready(SESSION))
    assert type(error) is LiveVoxClientError
    assert error.status == 400 and error.code is None
    assert error.message == "Agent is not joined to a service"
    assert "ready" in str(error) and "400" in str(error)


def test_agent_status_sends_state_changed_after_in_body_and_query() -> None:
    """Status POSTs stateChangedAfter as a string in the body and in the query."""
    rig = make_rig(lambda r: (200, {"agentStatus": {"lines": []}}))
    result_of(rig.client.agent_status(SESSION, 1573809480000))
    req = rig.last
    assert (req.method, req.path) == ("POST", "/callControl/agent/status")
    assert req.json() == {"stateChangedAfter": "1573809480000"}
    assert req.query == {"stateChangedAfter": ["1573809480000"]}
    assert req.header("Content-Type") == "application/json"


def test_agent_status_without_time_sends_an_empty_object() -> None:
    """Without stateChangedAfter the body is {} (the body must exist)."""
    rig = make_rig(lambda r: (200, {"agentStatus": {"lines": []}}))
    result_of(rig.client.agent_status(SESSION))
    assert rig.last.body == b"{}" and rig.last.query == {}


def test_agent_status_parses_the_call() -> None:
    """Status returns the ACD line's state and call ids, numbers kept as strings."""
    answer = {
        "agentStatus": {
            "agentCallConnected": "true",
            "lines": [
                {
                    "lineNumber": "ACD",
                    "state": "INCALL",
                    "stateChangedTime": "1573809485123",
                    "call": {
                        "callTransactionId": 147516594361,
                        "callSessionId": "UF200T64DE3A63@10.1.21.1",
                        "accountNumber": "12345",
                        "phoneNumber": "9174645253",
                        "serviceId": 1234567,
                    },
                }
            ],
        }
    }
    rig = make_rig(lambda r: (200, answer))
    status = result_of(rig.client.agent_status(SESSION))
    assert status.state == "INCALL" and status.agent_call_connected
    call = status.find_call("uf200t64de3a63@10.1.21.1")
    assert call is not None
    assert call.call_transaction_id == "147516594361"
    assert call.service_id == "1234567"
    assert status.lines[0].state_changed_time == 1573809485123


def test_agent_status_empty_body_is_unchanged() -> None:
    """A 204 (or empty 200) to status is read as "nothing changed"."""
    rig = make_rig(lambda r: (204, None))
    status = result_of(rig.client.agent_status(SESSION, 1))
    assert status.unchanged and status.lines == () and status.state is None


def test_as_epoch_millis() -> None:
    """Epoch seconds become integer milliseconds."""
    assert as_epoch_millis(1573809480.0) == 1573809480000
    assert as_epoch_millis(1.25) == 1250


def test_term_codes_query_and_parse() -> None:
    """The catalogue is GET /callControl/agent/termCode?serviceId= and parsed leniently."""
    answer = {
        "termCodeCategories": [
            {
                "name": "Completed",
                "termCodes": [
                    {"id": 12345, "name": "Paid", "lvResult": "PAID", "reportDisplayOrder": "1"},
                    {"id": "678", "name": "Transfer", "paymentAmtRequired": "true"},
                ],
            }
        ]
    }
    rig = make_rig(lambda r: (200, answer))
    catalogue = result_of(rig.client.term_codes(SESSION, "1234567"))
    req = rig.last
    assert (req.method, req.path) == ("GET", "/callControl/agent/termCode")
    assert req.query == {"serviceId": ["1234567"]}
    assert catalogue.find("12345").name == "Paid"
    assert catalogue.find("transfer").id == "678"
    assert catalogue.find("678").payment_amt_required
    assert catalogue.by_id("12345").category == "Completed"


# -- Closing a call ---------------------------------------------------------------


def test_save_term_code_sends_required_and_optional_fields() -> None:
    """Term code save PUTs the required ids, a boolean moveAgentToNotReady and the optional fields."""
    rig = make_rig()
    result_of(
        rig.client.save_term_code(
            SESSION,
            call_transaction_id="108821676850",
            call_session_id="U5EF8FT5DFC07F9@10.101.21.216",
            term_code_id="101416228",
            phone_dialed="2134634007",
            move_agent_to_not_ready=False,
            service_id="1234567",
            account="A1",
            notes="bot handled",
            line_number="ACD",
        )
    )
    req = rig.last
    assert (req.method, req.path) == ("PUT", "/callControl/agent/call/termCode")
    assert req.query == {"lineNumber": ["ACD"]}
    assert req.json() == {
        "callTransactionId": "108821676850",
        "callSessionId": "U5EF8FT5DFC07F9@10.101.21.216",
        "termCodeId": "101416228",
        "phoneDialed": "2134634007",
        "moveAgentToNotReady": False,
        "serviceId": 1234567,
        "account": "A1",
        "notes": "bot handled",
    }


def test_save_term_code_omits_unknown_phone_dialed() -> None:
    """phoneDialed is left out when unknown, and moveAgentToNotReady true is sent."""
    rig = make_rig()
    result_of(
        rig.client.save_term_code(
            SESSION,
            call_transaction_id="1",
            call_session_id="S",
            term_code_id="2",
            phone_dialed=None,
            move_agent_to_not_ready=True,
        )
    )
    body = rig.last.json()
    assert "phoneDialed" not in body and body["moveAgentToNotReady"] is True


def test_end_call() -> None:
    """End call POSTs /callControl/agent/customer/call/end with no body."""
    rig = make_rig()
    result_of(rig.client.end_call(SESSION, line_number="ACD"))
    req = rig.last
    assert (req.method, req.path) == ("POST", "/callControl/agent/customer/call/end")
    assert req.query == {"lineNumber": ["ACD"]} and req.body == b""


def test_end_call_is_not_retried_on_5xx() -> None:
    """End call is not safe to repeat: a 503 fails at once."""
    rig = make_rig(lambda r: (503, None))
    error = failure_of(rig.client.end_call(SESSION))
    assert isinstance(error, LiveVoxServerError) and error.call == "call_end"
    assert len(rig.resource.requests) == 1


def test_manual_conference_sends_string_booleans() -> None:
    """The manual conference body carries the number and string booleans."""
    rig = make_rig()
    result_of(rig.client.manual_conference(SESSION, "4158395494"))
    req = rig.last
    assert (req.method, req.path) == ("POST", "/callControl/agent/conference/manual")
    assert req.json() == {
        "supervisorNumber": "4158395494",
        "putCallOnHold": "true",
        "secureTransfer": "false",
    }


# -- Contacts ---------------------------------------------------------------------


def test_read_contact_unwraps_read_contact_details() -> None:
    """Read GETs /contact/contacts/{account} (percent-encoded) and unwraps readContactDetails."""
    rig = make_rig(lambda r: (200, {"readContactDetails": {"account": "A 1", "city": "Austin"}}))
    contact = result_of(rig.client.read_contact("A 1", SESSION))
    assert contact == {"account": "A 1", "city": "Austin"}
    assert rig.last.method == "GET"
    assert rig.last.path == "/contact/contacts/A%201"
    assert rig.last.header("LV-Session") == SESSION.session_id


def test_read_unknown_contact_is_not_found() -> None:
    """A 404 on a contact read is NotFoundError."""
    rig = make_rig(lambda r: (404, {"code": 404, "message": "Contact not found"}))
    error = failure_of(rig.client.read_contact("nope", SESSION))
    assert isinstance(error, NotFoundError)
    assert (error.call, error.message) == ("contact_read", "Contact not found")


def test_create_contact_posts_the_wrapper_and_reads_the_id() -> None:
    """Create POSTs {"createContactDetails": ...} and returns the new id as a string."""
    rig = make_rig(lambda r: (201, {"id": 987}))
    created = result_of(rig.client.create_contact({"account": "A1", "active": "true"}, SESSION))
    assert (created.account, created.id) == ("A1", "987")
    req = rig.last
    assert (req.method, req.path) == ("POST", "/contact/contacts")
    assert req.json() == {"createContactDetails": {"account": "A1", "active": "true"}}


def test_create_contact_with_put_as_configured() -> None:
    """contact_create_method PUT sends the create with PUT."""
    rig = make_rig(lambda r: (201, None), contact_create_method="PUT")
    created = result_of(rig.client.create_contact({"account": "A1"}, SESSION))
    assert created.id is None
    assert rig.last.method == "PUT" and rig.last.path == "/contact/contacts"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (202, {"code": 202, "message": "Contact already exists!"}),
        (200, {"code": 202, "message": "Contact already exists!"}),
        (409, {"code": 409, "message": "Duplicate"}),
        (400, {"code": 400, "message": "Contact already exists"}),
    ],
)
def test_create_existing_contact_is_contact_exists(status: int, body: Any) -> None:
    """LiveVox's 202 body (any status), a 409, or an "already exists" 4xx is ContactExistsError."""
    rig = make_rig(lambda r: (status, body))
    error = failure_of(rig.client.create_contact({"account": "A1"}, SESSION))
    assert isinstance(error, ContactExistsError)
    assert (error.call, error.status) == ("contact_create", status)
    assert error.code == body["code"]


def test_create_contact_is_not_retried() -> None:
    """Create is not safe to repeat: a 500 fails at once."""
    rig = make_rig(lambda r: (500, {"code": 500, "message": "boom"}))
    error = failure_of(rig.client.create_contact({"account": "A1"}, SESSION))
    assert isinstance(error, LiveVoxServerError)
    assert len(rig.resource.requests) == 1


def test_create_contact_needs_an_account() -> None:
    """A contact without an account is refused before any request."""
    rig = make_rig()
    assert isinstance(failure_of(rig.client.create_contact({}, SESSION)), ValueError)
    assert rig.resource.requests == []


def test_update_contact() -> None:
    """Update PUTs {"updateContactDetails": ...} to /contact/contacts/{account}, account encoded."""
    rig = make_rig()
    details = {"person": {"firstName": "Jane"}, "customFields": [{"field": "COL5", "value": "x"}]}
    result_of(rig.client.update_contact("A/1", details, SESSION))
    req = rig.last
    assert req.method == "PUT"
    assert req.path == "/contact/contacts/A%2F1"
    assert req.json() == {"updateContactDetails": details}


def test_403_after_login_is_permission_denied() -> None:
    """A 403 on a contact call (an agent session without the role) is PermissionDeniedError."""
    message = "Permission denied: the Contact API needs a Manager, Superuser or Sysadmin"
    rig = make_rig(lambda r: (403, {"code": 403, "message": message}))
    error = failure_of(rig.client.read_contact("A1", SESSION))
    assert isinstance(error, PermissionDeniedError) and isinstance(error, LiveVoxClientError)
    assert (error.call, error.status, error.message) == ("contact_read", 403, message)


def test_update_unknown_contact_is_not_found() -> None:
    """A 404 on update is NotFoundError."""
    rig = make_rig(lambda r: (404, {"code": 404, "message": "Contact not found"}))
    error = failure_of(rig.client.update_contact("nope", {"city": "X"}, SESSION))
    assert isinstance(error, NotFoundError) and error.call == "contact_update"


class ContactUserServer:
    """A server whose contact routes accept only the contact user's current session."""

    def __init__(self) -> None:
        self.logins = 0
        self.valid: str | None = None

    def __call__(self, r: RecordedRequest) -> tuple[int, Any]:
        if r.path == "/session/login":
            self.logins += 1
            self.valid = f"contact-session-{self.logins:04d}"
            return 200, {"sessionId": self.valid, "userId": "9"}
        if r.path.startswith("/session/logout/"):
            return 204, None
        if r.header("LV-Session") != self.valid:
            return 401, {"code": 401, "message": "Session is not valid"}
        if r.method == "GET":
            return 200, {"readContactDetails": {"account": "A1"}}
        return 204, None


def test_contact_user_logs_in_once_as_user_and_is_used_for_contacts() -> None:
    """With contact_user set, contact calls log that user in (agent false) once and use its session."""
    server = ContactUserServer()
    rig = make_rig(server, contact_user=("api-user", "api-pw"))
    result_of(rig.client.read_contact("A1", SESSION))
    result_of(rig.client.update_contact("A1", {"city": "X"}, SESSION))
    assert server.logins == 1
    login = rig.resource.requests[0]
    assert login.json()["userName"] == "api-user" and login.json()["agent"] is False
    assert login.json()["password"] == "api-pw"
    assert rig.last.header("LV-Session") == "contact-session-0001"


def test_contact_user_logs_in_again_on_401() -> None:
    """When the contact user's session expires, the client logs in again and repeats the call once."""
    server = ContactUserServer()
    rig = make_rig(server, contact_user=("api-user", "api-pw"))
    result_of(rig.client.read_contact("A1", SESSION))
    server.valid = "something-else"  # LiveVox forgot the session
    result_of(rig.client.create_contact({"account": "A2"}, SESSION))
    assert server.logins == 2
    methods = [(r.method, r.path) for r in rig.resource.requests]
    assert methods[-3:] == [
        ("POST", "/contact/contacts"),
        ("POST", "/session/login"),
        ("POST", "/contact/contacts"),
    ]


def test_contact_user_close_logs_out() -> None:
    """close() logs the contact user's session out."""
    server = ContactUserServer()
    rig = make_rig(server, contact_user=("api-user", "api-pw"))
    result_of(rig.client.read_contact("A1", SESSION))
    result_of(rig.client.close())
    assert rig.last.method == "DELETE"
    assert rig.last.path == "/session/logout/contact-session-0001"


def test_contact_user_denied_login_surfaces() -> None:
    """A refused contact-user login fails the contact call with LoginDeniedError."""
    rig = make_rig(lambda r: (401, {"code": 401, "message": "bad"}), contact_user=("u", "p"))
    error = failure_of(rig.client.read_contact("A1", SESSION))
    assert isinstance(error, LoginDeniedError)
