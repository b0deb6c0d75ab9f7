"""The SIP half's /_sandbox/ admin routes over real HTTP: dialling, results, the echo bot's scripts and calls."""

# pytest-twisted ships no types, and treq's are partial.
# mypy: disable-error-code="import-untyped,untyped-decorator,no-untyped-call"

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest_twisted
import treq
from twisted.internet import reactor

from lvgateway.sandbox.livevox_web import RunningSimulator, start_simulator
from lvgateway.sandbox.sandbox_admin import handle_admin
from lvgateway.sandbox.sandbox_sip import SandboxSip, attach_sip_admin
from lvgateway.sandbox.simulator import SimRequest, Simulator
from lvgateway.sandbox.sip_testing import RawUac, RawUas, sip_test_config
from lvgateway.sandbox.testing import SimDriver

from .sip_helpers import wait_until

REACTOR: Any = reactor


@attrs.define
class Sandbox:
    """A simulator over HTTP with the SIP half, a raw gateway stand-in for the dialler, and a raw UAC."""

    http: RunningSimulator
    sip: SandboxSip
    uas: RawUas
    uac: RawUac

    @property
    def simulator(self) -> Simulator:
        """The simulator."""
        return self.http.simulator

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Send one admin request; return the status and the JSON body."""
        url = self.http.base_url + path
        kwargs = {} if body is None else {"json": body}
        response = await treq.request(method, url, timeout=5, **kwargs)
        content = await response.content()
        return response.code, (await response.json() if content else None)


@pytest_twisted.async_yield_fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    """The sandbox's simulator on 127.0.0.1 (HTTP) and its SIP half on 127.0.0.2, dialling a raw UAS."""
    uas = RawUas(REACTOR, "127.0.0.1")
    uac = RawUac(REACTOR, "127.0.0.1")
    config = sip_test_config(dialler={"gateway_port": uas.port, "max_call_rate": 5.0})
    simulator = Simulator(config, REACTOR)
    http = await start_simulator(REACTOR, REACTOR, config, simulator=simulator)
    sip = SandboxSip(config, simulator, REACTOR)
    sip.startService()
    attach_sip_admin(http.site, sip)
    yield Sandbox(http, sip, uas, uac)
    await sip.stopService()
    await http.stop()
    await uas.close()
    await uac.close()


@pytest_twisted.ensureDeferred
async def test_dial_then_read_the_result(sandbox: Sandbox) -> None:
    """POST /_sandbox/dial places a call; GET /_sandbox/calls/results/{id} shows it done with audio both ways."""
    SimDriver(sandbox.simulator).ready_agent("AIVA2")
    status, body = await sandbox.call(
        "POST",
        "/_sandbox/dial",
        {"agent": "AIVA2", "callDuration": 0.5, "includeTransactionId": True},
    )
    assert status == 201, body
    call = body["call"]
    assert call["agent"] == "AIVA2" and call["dnis"] == "+18990000002" and call["transactionIdSent"]
    invite = (await wait_until(lambda: sandbox.uas.requests("INVITE"), 5, "the INVITE"))[0]
    assert invite.headers.get("Session-ID") == call["callSessionId"]
    assert invite.headers.get("X-transaction-id") == call["callTransactionId"]

    async def done() -> Any:
        _, result = await sandbox.call("GET", f"/_sandbox/calls/results/{call['id']}")
        return result["call"] if result["call"]["done"] else None

    deadline = REACTOR.seconds() + 6
    result = None
    while result is None and REACTOR.seconds() < deadline:
        result = await done()
    assert result is not None, "the call did not finish within 6 s"
    assert result["state"] == "ended" and result["endedBy"] == "dialler" and result["audioOk"]
    assert result["rtp"]["lost"] == 0 and result["rtp"]["received"] == result["rtp"]["sent"] > 0
    assert result["wrapup"] == "WRAPUP"
    status, listing = await sandbox.call("GET", "/_sandbox/calls/results?limit=5")
    assert status == 200 and [r["id"] for r in listing["results"]] == [call["id"]]
    assert listing["summary"]["placed"] == 1 and listing["summary"]["audioOk"] == 1
    _, agent = await sandbox.call("GET", "/_sandbox/agents/AIVA2")
    assert agent["state"] == "WRAPUP"


@pytest_twisted.ensureDeferred
async def test_dial_refusals_carry_their_status_and_reason(sandbox: Sandbox) -> None:
    """No READY agent is 409 with a reason; a wrong type is 400; an unknown result is 404."""
    status, body = await sandbox.call("POST", "/_sandbox/dial", {})
    assert status == 409 and body["reason"] == "no_ready_agent"
    status, body = await sandbox.call("POST", "/_sandbox/dial", {"callDuration": "long"})
    assert status == 400
    status, _ = await sandbox.call("GET", "/_sandbox/calls/results/d999")
    assert status == 404
    status, _ = await sandbox.call("POST", "/_sandbox/dial/d999/hangup")
    assert status == 404
    _, summary = await sandbox.call("GET", "/_sandbox/dialler")
    assert summary["refused"] == {"no_ready_agent": 1} and summary["placed"] == 0


@pytest_twisted.ensureDeferred
async def test_automatic_dialler_starts_and_stops_over_http(sandbox: Sandbox) -> None:
    """POST /_sandbox/dialler/start places calls at the rate asked, up to count; stop stops it."""
    driver = SimDriver(sandbox.simulator)
    driver.ready_agent("AIVA1")
    driver.ready_agent("AIVA3")
    status, body = await sandbox.call("POST", "/_sandbox/dialler/start", {"rate": 4, "count": 2})
    assert status == 200 and body["auto"]["rate"] == 4.0
    await wait_until(lambda: len(sandbox.sip.dialler.results) == 2, 5, "two automatic calls")
    _, summary = await sandbox.call("POST", "/_sandbox/dialler/stop")
    assert summary["auto"]["running"] is False and summary["auto"]["placed"] == 2
    status, _ = await sandbox.call("POST", "/_sandbox/dialler/start", {"rate": 50})
    assert status == 400
    for result in list(sandbox.sip.dialler.results):
        await sandbox.call("POST", f"/_sandbox/dial/{result.id}/hangup")
    await wait_until(lambda: all(r.done for r in sandbox.sip.dialler.results), 5, "the hang-ups")


@pytest_twisted.ensureDeferred
async def test_echo_bot_scripts_and_calls(sandbox: Sandbox) -> None:
    """A script posted over HTTP makes the next call busy; the call and the scripts are listed."""
    status, body = await sandbox.call(
        "POST", "/_sandbox/echo-bot/scripts", {"reject": 503, "ani": "0100$"}
    )
    assert status == 201 and body["script"]["remaining"] == 1
    assert body["script"]["script"] == {"reject": 503}
    status, _ = await sandbox.call("POST", "/_sandbox/echo-bot/scripts", {"reject": 200})
    assert status == 400
    _, scripts = await sandbox.call("GET", "/_sandbox/echo-bot/scripts")
    assert len(scripts["scripts"]) == 1 and scripts["default"]["answerDelay"] == 0.0
    dialog = sandbox.uac.invite(sandbox.sip.address(), headers=[("X-LV-ANI", "+19195550100")])
    await wait_until(lambda: dialog.final, 5, "the bot's answer")
    assert dialog.final == 503
    _, calls = await sandbox.call("GET", "/_sandbox/echo-bot/calls")
    (call,) = calls["calls"]
    assert call["finalCode"] == 503 and call["endedBy"] == "rejected" and call["rule"] == 1
    assert ["X-LV-ANI", "+19195550100"] in call["headers"]
    _, scripts = await sandbox.call("GET", "/_sandbox/echo-bot/scripts")
    assert scripts["scripts"] == []
    await sandbox.call("POST", "/_sandbox/echo-bot/scripts", {"neverAnswer": True, "count": None})
    _, cleared = await sandbox.call("DELETE", "/_sandbox/echo-bot/scripts")
    assert cleared == {"scripts": []} and sandbox.sip.echo_bot.rules == []


@pytest_twisted.ensureDeferred
async def test_echo_bot_call_hung_up_over_http_with_a_transfer(sandbox: Sandbox) -> None:
    """POST /_sandbox/echo-bot/calls/{id}/hangup with transfer sends a REFER; unknown calls are 404."""
    dialog = sandbox.uac.invite(sandbox.sip.address(), headers=[("X-LVGW-Call-ID", "gw-7")])
    await wait_until(lambda: dialog.final, 5, "the bot's answer")
    _, found = await sandbox.call("GET", "/_sandbox/echo-bot/calls/gw-7")
    assert found["call"]["lvgwCallId"] == "gw-7" and found["call"]["state"] == "answered"
    status, body = await sandbox.call(
        "POST", "/_sandbox/echo-bot/calls/gw-7/hangup", {"transfer": True}
    )
    assert status == 200 and body["call"]["endedBy"] == "refer"
    assert body["call"]["disposition"]["X-LV-Next-Action"] == "transfer"
    await wait_until(lambda: sandbox.uac.requests("REFER"), 5, "the REFER")
    status, _ = await sandbox.call("POST", "/_sandbox/echo-bot/calls/gw-7/hangup")
    assert status == 404


def test_sip_routes_answer_503_when_the_sandbox_runs_no_sip() -> None:
    """Without the SIP half (the simulator alone), its routes answer 503, the others as before."""
    config = sip_test_config()
    simulator = Simulator(config, REACTOR)
    response = handle_admin(simulator, SimRequest("GET", "/_sandbox/dialler"))
    assert response.status == 503
    assert handle_admin(simulator, SimRequest("GET", "/_sandbox/agents")).status == 200
