"""The simulator's admin API under ``/_sandbox/``: read its state, make calls happen, inject faults.

No LiveVox authentication: the simulator listens on loopback. Every action is
a :class:`~lvgateway.sandbox.simulator.Simulator` method too; this module
only maps JSON onto them. Admin requests are neither journaled (events they
cause are) nor subject to faults.

=======  ==============================  ===========================================
method   path (under ``/_sandbox``)      what
=======  ==============================  ===========================================
GET      ``/journal?since=N&limit=M``    ``{"lastSeq": n, "entries": [...]}``
GET      ``/agents``                     ``{"now": t, "agents": [...]}``
GET      ``/agents/{user}``              one agent line
POST     ``/calls``                      start a call: ``agent`` or ``phoneNumber``,
                                         optional ``customerNumber``,
                                         ``accountNumber``, ``callTransactionId``,
                                         ``callSessionId``; 201 ``{"call": {...}}``;
                                         409 unless the agent is READY
POST     ``/calls/end``                  ``agent``, ``phoneNumber`` or
                                         ``callTransactionId``; line to WRAPUP
GET      ``/contacts/{account}``         the stored contact
GET      ``/aia``                        ``{"posts": [...]}``
GET      ``/stats``                      the counters: ``{"contractErrors": n}``
PUT      ``/settings``                   ``{"agentContactAccess": bool}``
GET      ``/faults``                     the faults in force
DELETE   ``/faults``                     clear every fault
PUT      ``/faults/latency``             ``{"seconds": s, "route": optional}``
POST     ``/faults/error-rate``          ``{"route", "status", "probability", "when"}``
POST     ``/faults/fail-next``           ``{"route", "count", "status", "when"}``
POST     ``/faults/expire-sessions``     ``{"user": optional}``
POST     ``/faults/outage``              ``{"until" or "duration", "mode", "status"}``
DELETE   ``/faults/outage``              end the outage
=======  ==============================  ===========================================

The SIP half (:mod:`.sandbox_sip`), when the sandbox runs it (503 otherwise):

=======  ==================================  =======================================
method   path (under ``/_sandbox``)          what
=======  ==================================  =======================================
POST     ``/dial``                           place a call: optional ``agent`` or
                                             ``phoneNumber``, ``customerNumber``,
                                             ``accountNumber``, ``callDuration``,
                                             ``includeTransactionId``,
                                             ``includeAgentLoginId``; 201
                                             ``{"call": result}``; 409 no READY
                                             agent, 429 over the rate, 503 a bound
POST     ``/dial/{id}/hangup``               BYE (or CANCEL) now
POST     ``/dial/{id}/offer``                a new offer in the answered call:
                                             ``kind`` (``reinvite``, ``bodyless``,
                                             ``update``), ``decoy`` (bool); its
                                             outcome goes to the result's ``offers``
POST     ``/dial/{id}/refuse-offer``         refuse the next offer received with
                                             ``code`` (300-699), once
POST     ``/dial/{id}/glare``                the dialler and the echo bot (its call
                                             with the same Session-ID) re-INVITE
                                             at once
GET      ``/calls/results?limit=N``          ``{"summary": ..., "results": [...]}``
GET      ``/calls/results/{id}``             one result (by id, SIP Call-ID or
                                             callSessionId); ``rtpNow``: the
                                             probe's counts so far, while it is up
GET      ``/dialler``                        the dialler's summary
POST     ``/dialler/start``                  ``{"rate", "count"}`` (both optional)
POST     ``/dialler/stop``                   stop the automatic dialler
GET      ``/echo-bot/calls``                 ``{"calls": [...], "refused": n}``
GET      ``/echo-bot/calls/{id}``            one call (by id, SIP Call-ID or the
                                             gateway's X-LVGW-Call-ID)
POST     ``/echo-bot/calls/{id}/hangup``     BYE now, or REFER with
                                             ``{"transfer": true}``
POST     ``/echo-bot/calls/{id}/offer``      as ``/dial/{id}/offer``, from the bot
POST     ``/echo-bot/calls/{id}/refuse-offer`` as ``/dial/{id}/refuse-offer``
GET      ``/echo-bot/scripts``               the default and the queued scripts
POST     ``/echo-bot/scripts``               queue a script: ``ani``, ``dnis``
                                             (patterns), ``count`` (default 1,
                                             null for every call), ``answerDelay``,
                                             ``ring``, ``reject``, ``rejectReason``,
                                             ``neverAnswer``, ``silent``,
                                             ``callDuration``,
                                             ``transfer``, ``termCode``,
                                             ``callOutcome``, ``result``, ``others``
DELETE   ``/echo-bot/scripts``               forget the queued scripts
=======  ==================================  =======================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lvgateway.sandbox.journal import journal_page
from lvgateway.sandbox.livevox_records import LiveVoxError
from lvgateway.sandbox.simulator import SimRequest, SimResponse, Simulator, encode_json

if TYPE_CHECKING:
    from lvgateway.sandbox.sandbox_sip import SandboxSip

ADMIN_PREFIX = "_sandbox"

_MISSING: Any = object()


def _field(
    body: Mapping[str, Any], name: str, kinds: tuple[type, ...], default: Any = _MISSING
) -> Any:
    if name not in body or body[name] is None:
        if default is _MISSING:
            raise LiveVoxError(400, f"{name} is required")
        return default
    value = body[name]
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        raise LiveVoxError(400, f"{name} has the wrong type")
    return value


def _optional_str(body: Mapping[str, Any], name: str) -> str | None:
    value = _field(body, name, (str, int), None)
    return None if value is None else str(value)


def _int_query(request: SimRequest, name: str, default: int | None) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as e:
        raise LiveVoxError(400, f"{name} must be an integer") from e


def _body(request: SimRequest) -> Mapping[str, Any]:
    if not request.body.strip():
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as e:
        raise LiveVoxError(400, "Malformed JSON body") from e
    if not isinstance(body, dict):
        raise LiveVoxError(400, "The request body must be a JSON object")
    return body


def handle_admin(sim: Simulator, request: SimRequest, sip: SandboxSip | None = None) -> SimResponse:
    """Answer one admin request.

    :param sim: the simulator.
    :param request: a request whose path starts with ``/_sandbox``.
    :param sip: the SIP half (dialler and echo bot), if the sandbox runs it.
    """
    try:
        status, body = _dispatch(sim, request, sip)
    except LiveVoxError as e:
        status, body = e.status, e.body()
    except ValueError as e:
        status, body = 400, {"code": 400, "message": str(e)}
    return SimResponse(status, b"" if body is None else encode_json(body))


def _dispatch(sim: Simulator, request: SimRequest, sip: SandboxSip | None) -> tuple[int, Any]:
    segments = [s for s in request.path.split("/") if s]
    if not segments or segments[0] != ADMIN_PREFIX:
        raise LiveVoxError(404, "Resource not found")
    path = tuple(segments[1:])
    method = request.method
    body = _body(request) if method in ("POST", "PUT") else {}

    if path[:1] in (("dial",), ("dialler",), ("echo-bot",)) or path[:2] == ("calls", "results"):
        if sip is None:
            raise LiveVoxError(503, "The sandbox's SIP half is not running")
        return _sip(sip, path, method, body, request)
    if path == ("journal",) and method == "GET":
        since = _int_query(request, "since", 0) or 0
        limit = _int_query(request, "limit", None)
        return 200, journal_page(sim.journal, since, limit)
    if path == ("agents",) and method == "GET":
        return 200, {"now": sim.clock.seconds(), "agents": sim.agent_states()}
    if len(path) == 2 and path[0] == "agents" and method == "GET":
        return 200, sim.agent(path[1]).to_json()
    if path == ("calls",) and method == "POST":
        call = sim.start_call(
            _optional_str(body, "agent"),
            _optional_str(body, "phoneNumber"),
            customer_number=_optional_str(body, "customerNumber") or "9195550100",
            account_number=_optional_str(body, "accountNumber") or "",
            call_transaction_id=_optional_str(body, "callTransactionId"),
            call_session_id=_optional_str(body, "callSessionId"),
        )
        return 201, {"call": call.to_json()}
    if path == ("calls", "end") and method == "POST":
        call = sim.end_call(
            _optional_str(body, "agent"),
            _optional_str(body, "phoneNumber"),
            _optional_str(body, "callTransactionId"),
        )
        return 200, {"call": call.to_json()}
    if len(path) == 2 and path[0] == "contacts" and method == "GET":
        return 200, {"contact": sim.contacts.read(path[1])}
    if path == ("aia",) and method == "GET":
        return 200, {"posts": sim.aia_posts}
    if path == ("stats",) and method == "GET":
        return 200, sim.stats()
    if path == ("settings",) and method == "PUT":
        sim.agent_contact_access = _field(body, "agentContactAccess", (bool,))
        return 200, {"agentContactAccess": sim.agent_contact_access}
    if path and path[0] == "faults":
        return _faults(sim, path[1:], method, body)
    raise LiveVoxError(404, "Resource not found")


def _faults(
    sim: Simulator, path: tuple[str, ...], method: str, body: Mapping[str, Any]
) -> tuple[int, Any]:
    if path == () and method == "GET":
        return 200, sim.faults.describe()
    if path == () and method == "DELETE":
        sim.clear_faults()
        return 200, sim.faults.describe()
    if path == ("latency",) and method == "PUT":
        sim.set_latency(float(_field(body, "seconds", (int, float))), _optional_str(body, "route"))
    elif path == ("error-rate",) and method == "POST":
        sim.set_error_rate(
            _field(body, "route", (str,)),
            _field(body, "status", (int,)),
            float(_field(body, "probability", (int, float))),
            _field(body, "when", (str,), "before"),
        )
    elif path == ("fail-next",) and method == "POST":
        sim.fail_next(
            _field(body, "route", (str,)),
            _field(body, "count", (int,), 1),
            _field(body, "status", (int,)),
            _field(body, "when", (str,), "before"),
        )
    elif path == ("expire-sessions",) and method == "POST":
        count = sim.expire_sessions(_optional_str(body, "user"))
        return 200, {"expired": count}
    elif path == ("outage",) and method == "POST":
        until = _field(body, "until", (int, float), None)
        duration = _field(body, "duration", (int, float), None)
        sim.start_outage(
            None if until is None else float(until),
            duration=None if duration is None else float(duration),
            mode=_field(body, "mode", (str,), "status"),
            status=_field(body, "status", (int,), 503),
        )
    elif path == ("outage",) and method == "DELETE":
        sim.clear_outage()
    else:
        raise LiveVoxError(404, "Resource not found")
    return 200, sim.faults.describe()


def _sip(
    sip: SandboxSip,
    path: tuple[str, ...],
    method: str,
    body: Mapping[str, Any],
    request: SimRequest,
) -> tuple[int, Any]:
    dialler, bot = sip.dialler, sip.echo_bot
    if path == ("dial",) and method == "POST":
        duration = _field(body, "callDuration", (int, float), None)
        result = dialler.dial(
            _optional_str(body, "agent"),
            phone_number=_optional_str(body, "phoneNumber"),
            customer_number=_optional_str(body, "customerNumber"),
            account_number=_optional_str(body, "accountNumber"),
            call_duration=None if duration is None else float(duration),
            include_transaction_id=_field(body, "includeTransactionId", (bool,), None),
            include_agent_login_id=_field(body, "includeAgentLoginId", (bool,), None),
        )
        return 201, {"call": result.to_json()}
    if len(path) == 3 and path[0] == "dial" and path[2] == "hangup" and method == "POST":
        try:
            return 200, {"call": dialler.hangup(path[1]).to_json()}
        except KeyError:
            raise LiveVoxError(404, f"No call {path[1]} is up") from None
    if len(path) == 3 and path[0] == "dial" and path[2] == "glare" and method == "POST":
        try:
            result, bot_call = sip.glare(path[1])
        except KeyError:
            raise LiveVoxError(404, f"No answered call {path[1]} at both ends") from None
        return 200, {"call": result.to_json(), "echoBotCall": bot_call.to_json()}
    if len(path) == 3 and path[0] == "dial" and method == "POST":
        return _offer_action(dialler, path[1], path[2], body)
    if path == ("calls", "results") and method == "GET":
        limit = _int_query(request, "limit", None)
        results = list(dialler.results)
        if limit is not None:
            results = results[-limit:] if limit > 0 else []
        return 200, {"summary": dialler.summary(), "results": [r.to_json() for r in results]}
    if len(path) == 3 and path[:2] == ("calls", "results") and method == "GET":
        found = dialler.result(path[2])
        if found is None:
            raise LiveVoxError(404, f"No call result {path[2]}")
        now = dialler.rtp_now(path[2])
        return 200, {"call": found.to_json(), "rtpNow": now.to_json() if now else None}
    if path == ("dialler",) and method == "GET":
        return 200, dialler.summary()
    if path == ("dialler", "start") and method == "POST":
        rate = _field(body, "rate", (int, float), None)
        dialler.start_auto(
            None if rate is None else float(rate), _field(body, "count", (int,), None)
        )
        return 200, dialler.summary()
    if path == ("dialler", "stop") and method == "POST":
        dialler.stop_auto()
        return 200, dialler.summary()
    if path == ("echo-bot", "calls") and method == "GET":
        return 200, {"calls": [c.to_json() for c in bot.calls], "refused": bot.refused}
    if len(path) == 3 and path[:2] == ("echo-bot", "calls") and method == "GET":
        call = bot.call(path[2])
        if call is None:
            raise LiveVoxError(404, f"No echo bot call {path[2]}")
        return 200, {"call": call.to_json()}
    if len(path) == 4 and path[:2] == ("echo-bot", "calls") and method == "POST":
        if path[3] in ("offer", "refuse-offer"):
            return _offer_action(bot, path[2], path[3], body)
    if len(path) == 4 and path[:2] == ("echo-bot", "calls") and path[3] == "hangup":
        if method != "POST":
            raise LiveVoxError(405, "Method not allowed")
        try:
            call = bot.end_call(path[2], transfer=_field(body, "transfer", (bool,), None))
        except KeyError:
            raise LiveVoxError(404, f"No echo bot call {path[2]} is up") from None
        return 200, {"call": call.to_json()}
    if path == ("echo-bot", "scripts"):
        if method == "GET":
            return 200, {
                "default": bot.default.to_json(),
                "scripts": [r.to_json() for r in bot.rules],
            }
        if method == "POST":
            # Imported here: the simulator alone (tests, benchmarks) need not import Sippy.
            from lvgateway.sandbox.echo_bot import EchoScript

            every_call = "count" in body and body["count"] is None
            count = None if every_call else _field(body, "count", (int,), 1)
            rule = bot.script(
                EchoScript.from_json(body),
                ani=_field(body, "ani", (str,), None),
                dnis=_field(body, "dnis", (str,), None),
                count=count,
            )
            return 201, {"script": rule.to_json()}
        if method == "DELETE":
            bot.clear_scripts()
            return 200, {"scripts": []}
    raise LiveVoxError(404, "Resource not found")


def _offer_action(
    party: Any, call_id: str, action: str, body: Mapping[str, Any]
) -> tuple[int, Any]:
    """``offer`` or ``refuse-offer`` for the dialler's or the echo bot's call (:mod:`.offers`)."""
    try:
        if action == "offer":
            call = party.offer(
                call_id, _field(body, "kind", (str,)), decoy=_field(body, "decoy", (bool,), False)
            )
        elif action == "refuse-offer":
            call = party.refuse_next_offer(call_id, _field(body, "code", (int,)))
        else:
            raise LiveVoxError(404, "Resource not found")
    except KeyError:
        raise LiveVoxError(404, f"No answered call {call_id} is up") from None
    return 200, {"call": call.to_json()}
