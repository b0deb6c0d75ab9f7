"""The vendor API's call routes and the internal admin routes, over treq's in-memory client."""

# treq's StubTreq builds its methods at run time.
# mypy: disable-error-code="no-untyped-call,attr-defined"

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from treq.testing import StubTreq

from lvgateway.calls.records import CallState
from lvgateway.config.secret import Secret
from lvgateway.control.calls_admin import CallsAdmin
from lvgateway.control.calls_api import VendorCalls
from lvgateway.control.vendor_api import vendor_api_root, vendor_v1
from lvgateway.control.web import Routes
from lvgateway.livevox.errors import LiveVoxClientError
from lvgateway.livevox.testing import result_of
from tests.calls_support import PAYMENT_ID, Harness, run

TOKEN = "vendor-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    """A call store with three READY agents over the in-memory LiveVox."""
    return Harness(str(tmp_path))


@pytest.fixture
def vendor(h: Harness) -> StubTreq:
    """The vendor API, guarded by its token, with the calls routes on /v1."""
    v1 = vendor_v1()
    v1.add_route("calls", VendorCalls(h.calls))
    return StubTreq(vendor_api_root(Secret(TOKEN, "test"), v1))


@pytest.fixture
def admin(h: Harness) -> StubTreq:
    """The internal listener's table with the admin calls routes."""
    routes = Routes()
    routes.add_route("calls", CallsAdmin(h.calls))
    return StubTreq(routes)


def answer(
    client: StubTreq, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, Any]:
    """Send one request; return its status and JSON body."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    d = client.request(method, "http://gw.test" + path, data=data, **kw)
    client.flush()
    response = result_of(d)
    content = result_of(response.content())
    return response.code, json.loads(content) if content else None


def put(vendor: StubTreq, call_id: str, body: Any) -> tuple[int, Any]:
    """PUT a disposition with the vendor's token."""
    return answer(vendor, "PUT", f"/v1/calls/{call_id}/disposition", body, headers=AUTH)


def test_put_disposition_then_end(h: Harness, vendor: StubTreq) -> None:
    """A valid disposition answers 200 with the record and decides the call's term code."""
    record = h.place()
    code, body = put(vendor, record.call_id, {"term_code": "AI Payment Taken", "other": {"1": "x"}})
    assert code == 200
    assert body["call_id"] == record.call_id
    assert body["disposition"] == {"term_code": "AI Payment Taken", "other": {"1": "x"}}
    assert body["disposition_source"] == "api"
    run(h.source.caller_hangs_up(record.call_id))
    assert [s["term_code_id"] for s in h.saved()] == [PAYMENT_ID]


def test_get_call(h: Harness, vendor: StubTreq) -> None:
    """GET /v1/calls/{id} answers the record: ids, state, steps."""
    record = h.place()
    code, body = answer(vendor, "GET", f"/v1/calls/{record.call_id}", headers=AUTH)
    assert code == 200
    assert body["state"] == "connected"
    assert body["call_session_id"] == record.call_session_id
    assert body["call_transaction_id"] == "147516594301"
    assert body["steps"] == {
        "aia": "pending",
        "contact": "pending",
        "term_code": "pending",
        "hangup": "skipped",
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        ({"next_action": "escalate"}, "next_action"),
        ({"nextAction": "done"}, "nextAction"),
        ({"other": {"42": "x"}}, "other.42"),
        ({"contact": ["Jane"]}, "contact"),
    ],
)
def test_malformed_disposition_is_400_naming_the_field(
    h: Harness, vendor: StubTreq, body: Any, field: str
) -> None:
    """A malformed disposition answers 400 with the field at fault, and changes nothing."""
    record = h.place()
    code, answered = put(vendor, record.call_id, body)
    assert code == 400
    assert answered["field"] == field and answered["error"]
    assert h.record(record.call_id).disposition is None


def test_unknown_call_is_404(vendor: StubTreq) -> None:
    """A disposition for, or a look-up of, an unknown call answers 404."""
    assert put(vendor, "no-such-call", {"term_code": "done"})[0] == 404
    assert answer(vendor, "GET", "/v1/calls/no-such-call", headers=AUTH)[0] == 404
    assert answer(vendor, "GET", "/v1/calls/", headers=AUTH)[0] == 404


def test_disposition_after_the_end_is_409(h: Harness, vendor: StubTreq) -> None:
    """Once the call has ended its wrap-up has begun: a disposition answers 409 with the state."""
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    code, body = put(vendor, record.call_id, {"term_code": "done"})
    assert code == 409 and body["state"] == "done"


def test_body_too_large_is_413(h: Harness, vendor: StubTreq) -> None:
    """A disposition body over 64 KiB is refused before it is parsed."""
    record = h.place()
    code, _ = put(vendor, record.call_id, b"{" + b" " * 70_000 + b"}")
    assert code == 413


def test_vendor_calls_need_the_token(h: Harness, vendor: StubTreq) -> None:
    """Without the bearer token the call routes answer 401, like every vendor route."""
    record = h.place()
    assert answer(vendor, "GET", f"/v1/calls/{record.call_id}")[0] == 401


def test_wrong_method_is_405(h: Harness, vendor: StubTreq) -> None:
    """Dispositions are PUT; another method answers 405."""
    record = h.place()
    code, _ = answer(vendor, "POST", f"/v1/calls/{record.call_id}/disposition", {}, headers=AUTH)
    assert code == 405


# -- the internal admin routes ----------------------------------------------------------------


def dead_letter(h: Harness) -> str:
    """Make a call whose term code LiveVox refuses; return its id."""
    h.livevox.fail_next("save_term_code", LiveVoxClientError("term_code_save", 400, 400, "no"))
    record = h.place()
    run(h.source.caller_hangs_up(record.call_id))
    return record.call_id


def test_admin_lists_by_state_and_since(h: Harness, admin: StubTreq) -> None:
    """GET /calls filters by state and since, and names a bad parameter."""
    dead = dead_letter(h)
    h.clock.advance(5)
    live = h.place("AIVA2")
    code, body = answer(admin, "GET", "/calls?state=dead")
    assert code == 200 and [c["call_id"] for c in body["calls"]] == [dead]
    code, body = answer(admin, "GET", f"/calls?since={h.clock.seconds()}")
    assert [c["call_id"] for c in body["calls"]] == [live.call_id]
    code, body = answer(admin, "GET", "/calls?state=dead,connected&limit=10")
    assert body["count"] == 2
    for query, field in (("since=soon", "since"), ("state=lost", "state"), ("limit=0", "limit")):
        code, body = answer(admin, "GET", f"/calls?{query}")
        assert (code, body["field"]) == (400, field)


def test_admin_redrive_and_dismiss(h: Harness, admin: StubTreq) -> None:
    """POST /calls/{id}/redrive and /dismiss act on dead letters; 409 otherwise, 404 for none."""
    first = dead_letter(h)
    code, body = answer(admin, "POST", f"/calls/{first}/redrive")
    assert code == 200 and h.record(first).state is CallState.DONE
    assert answer(admin, "POST", f"/calls/{first}/redrive")[0] == 409
    second = dead_letter(h)
    code, body = answer(admin, "POST", f"/calls/{second}/dismiss")
    assert code == 200 and body["state"] == "dismissed"
    assert answer(admin, "POST", "/calls/nope/dismiss")[0] == 404
    assert answer(admin, "GET", f"/calls/{second}")[1]["state"] == "dismissed"
    assert answer(admin, "GET", f"/calls/{second}/other")[0] == 404
    assert answer(admin, "GET", f"/calls/{second}/redrive")[0] == 405
