"""Unit tests of the AIA client: configured URL, method, headers and field names."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET

from lvgateway.config.model import AIA_FIELDS, AiaConfig
from lvgateway.config.secret import Secret
from lvgateway.livevox.aia import AiaClient, AiaRecord, aia_body
from lvgateway.livevox.errors import (
    LiveVoxClientError,
    LiveVoxServerError,
    LiveVoxTimeoutError,
    SessionExpiredError,
)
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.testing import (
    Handler,
    RecordedRequest,
    RecordingResource,
    StubHTTP,
    failure_of,
    result_of,
    stub_http,
)


def aia_config(**overrides: Any) -> AiaConfig:
    """An AIA config for tests; keyword arguments replace fields."""
    values: dict[str, Any] = {
        "url": "https://aia.livevox.test/client/acme/result",
        "method": "POST",
        "auth_header": "X-AIA-Token",
        "token": Secret("aia-secret", "test"),
        "headers": (("X-Client", "acme"),),
        "field_names": {},
        "timeout": 5.0,
    }
    values.update(overrides)
    return AiaConfig(**values)


def make(
    handler: Handler | None = None, **overrides: Any
) -> tuple[AiaClient, RecordingResource, Clock, StubHTTP, CollectorRegistry]:
    """An AIA client over an in-memory server."""
    resource = RecordingResource(handler or (lambda r: (200, {"code": 200, "message": "OK"})))
    stub = stub_http(resource)
    clock = Clock()
    registry = CollectorRegistry()
    client = AiaClient(aia_config(**overrides), clock, stub.client, LiveVoxMetrics(registry))
    return client, resource, clock, stub, registry


RECORD = AiaRecord(
    transaction_id="147516594361",
    session_id="UF200T64DE3A63@10.1.1.1",
    ani="9195550100",
    account_number="1001",
    next_action="transfer",
    call_outcome="needs human",
    lvresult="Transfer To Agent",
    other={1: "billing", 20: "last", 5: None},
)


def test_record_fields_in_guide_order_omitting_unknown() -> None:
    """fields() gives the guide's names in its order, leaving out None values."""
    fields = RECORD.fields()
    assert list(fields) == [
        "transactionId",
        "sessionId",
        "ani",
        "accountNumber",
        "nextAction",
        "callOutcome",
        "lvresult",
        "Other1",
        "Other20",
    ]
    assert set(fields) <= set(AIA_FIELDS)
    assert AiaRecord(ani="1").fields() == {"ani": "1"}


def test_other_fields_outside_1_to_20_are_refused() -> None:
    """Other numbers outside 1..20 are a ValueError."""
    with pytest.raises(ValueError):
        AiaRecord(other={21: "x"})
    with pytest.raises(ValueError):
        AiaRecord(other={0: "x"})


def test_body_renames_fields_as_configured() -> None:
    """field_names renames the fields it lists and keeps the others."""
    body = aia_body(RECORD, {"transactionId": "TransID", "Other1": "Reason"})
    assert body["TransID"] == "147516594361"
    assert body["Reason"] == "billing"
    assert body["ani"] == "9195550100"
    assert "transactionId" not in body and "Other1" not in body


def test_post_sends_configured_url_method_headers_and_body() -> None:
    """The post goes to the configured URL with the token header, static headers and JSON."""
    client, resource, _, _, registry = make(field_names={"lvresult": "LVResult"}, method="PUT")
    answer = result_of(client.post(RECORD))
    assert answer == {"code": 200, "message": "OK"}
    req = resource.requests[-1]
    assert (req.method, req.path) == ("PUT", "/client/acme/result")
    assert req.header("X-AIA-Token") == "aia-secret"
    assert req.header("X-Client") == "acme"
    assert req.header("Content-Type") == "application/json"
    assert req.header("LV-Access") is None and req.header("LV-Session") is None
    assert req.json()["LVResult"] == "Transfer To Agent"
    assert (
        registry.get_sample_value(
            "lvgateway_livevox_requests_total", {"call": "aia_post", "outcome": "success"}
        )
        == 1
    )


def test_post_without_token_sends_no_auth_header() -> None:
    """With no token configured, no auth header is sent."""
    client, resource, _, _, _ = make(token=None)
    result_of(client.post(RECORD))
    assert resource.requests[-1].header("X-AIA-Token") is None


@pytest.mark.parametrize("body", [None, b"OK", b"<html/>"])
def test_non_json_or_empty_success_is_none(body: Any) -> None:
    """A 2xx without a JSON body is a success answering None."""
    client, _, _, _, _ = make(lambda r: (204 if body is None else 200, body))
    assert result_of(client.post(RECORD)) is None


def test_401_is_a_client_error_not_session_expired() -> None:
    """A 401 from the AIA is a plain client error: there is no LiveVox session to renew."""
    client, _, _, _, _ = make(lambda r: (401, {"code": 401, "message": "Unauthorized"}))
    error = failure_of(client.post(RECORD))
    assert type(error) is LiveVoxClientError and not isinstance(error, SessionExpiredError)
    assert (error.call, error.status, error.message) == ("aia_post", 401, "Unauthorized")


def test_5xx_is_not_retried() -> None:
    """A 5xx fails at once: the outbox retries the AIA."""
    client, resource, clock, _, _ = make(lambda r: (502, None))
    d = client.post(RECORD)
    clock.advance(60)
    assert isinstance(failure_of(d), LiveVoxServerError)
    assert len(resource.requests) == 1


def test_timeout_on_the_whole_request() -> None:
    """An AIA that never answers times out after AiaConfig.timeout on the clock."""

    def stall(r: RecordedRequest) -> object:
        r.request.setResponseCode(200)
        r.request.write(b"{")
        return NOT_DONE_YET

    client, _, clock, stub, _ = make(stall, timeout=2.0)
    d = client.post(RECORD)
    stub.flush()
    clock.advance(1.9)
    assert not d.called
    clock.advance(0.1)
    error = failure_of(d)
    assert isinstance(error, LiveVoxTimeoutError) and error.call == "aia_post"


def test_token_never_in_logs() -> None:
    """The AIA token appears in no log event."""
    from twisted.logger import capturedLogs, formatEvent

    client, _, _, _, _ = make(lambda r: (500, None))
    with capturedLogs() as events:
        failure_of(client.post(RECORD))
    text = " ".join(formatEvent(e) + repr(e) for e in events)
    assert "aia-secret" not in text and "147516594361" in text
