"""The LiveVox simulator: LiveVox's REST routes over the model, with the journal and faults.

:class:`Simulator` is what tests, the demo and benchmarks hold. Its
:meth:`Simulator.handle` takes one HTTP request as a plain
:class:`SimRequest` and returns a :class:`SimResponse`, so the whole REST
behaviour runs without a socket; :mod:`lvgateway.sandbox.livevox_web` only
moves bytes and waits out the latency. Everything the ``/_sandbox/`` admin
API does is a method here too.

Routes accept an optional version segment after the category
(``/session/v6.0/login``) and ignore empty segments (``/contact/contacts/``).
Every error body is ``{"code": <status>, "message": "<text>"}``.

A request that breaks the gateway's contract with LiveVox (a
:class:`~lvgateway.sandbox.livevox_records.ContractError`: so far, a second
term code for a call already closed) is answered with its 400, counted in
:attr:`Simulator.contract_errors` (also in :meth:`Simulator.stats` and
``GET /_sandbox/stats``), and named in its journal entry's ``contract_error``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import unquote

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from lvgateway.config.secret import shorten
from lvgateway.sandbox.contacts import ContactStore
from lvgateway.sandbox.faults import Faults
from lvgateway.sandbox.journal import Journal, JournalEntry
from lvgateway.sandbox.livevox_records import (
    REPEATED_TERM_CODE,
    AgentLine,
    Call,
    ContractError,
    LiveVoxError,
    Session,
    id_field,
)
from lvgateway.sandbox.livevox_state import LiveVoxState
from lvgateway.sandbox.sandbox_config import SandboxConfig

_VERSION = re.compile(r"v\d+(\.\d+)*")

#: Extra fields the AIA body may carry besides Other1..Other20.
AIA_FIELDS = frozenset(
    ["transactionId", "sessionId", "ani", "accountNumber", "nextAction", "callOutcome", "lvresult"]
    + [f"Other{i}" for i in range(1, 21)]
)

CONTACT_FORBIDDEN = (
    "Permission denied: the Contact API needs a Manager, Superuser or Sysadmin user session"
)


def _error(status: int, message: str) -> dict[str, Any]:
    return {"code": status, "message": message}


@attrs.frozen
class SimRequest:
    """One HTTP request, as the simulator sees it.

    :param method: ``GET``, ``POST``...
    :param path: the URL path, still percent-encoded, without the query.
    :param query: the query arguments, first value of each.
    :param headers: the headers, names in lower case, first value of each.
    :param body: the raw body.
    """

    method: str
    path: str
    query: Mapping[str, str] = attrs.field(factory=dict)
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """Return a header's value by name, in any case."""
        return self.headers.get(name.lower())


@attrs.frozen
class SimResponse:
    """The simulator's answer.

    :param status: the HTTP status; 0 when ``drop``.
    :param body: the raw body (JSON, or empty).
    :param delay: seconds to wait on the clock before answering.
    :param drop: abort the connection instead of answering.
    :param entry: the journal entry of the request, if journaled.
    """

    status: int
    body: bytes = b""
    delay: float = 0.0
    drop: bool = False
    entry: JournalEntry | None = None

    def json(self) -> Any:
        """Return the body parsed as JSON (``None`` if empty)."""
        return json.loads(self.body) if self.body else None


def encode_json(body: Any) -> bytes:
    """Encode a JSON body compactly, as LiveVox does (``{"code":202,"message":...}``)."""
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


Reply = tuple[int, Any]
Auth = Literal["access", "session"]


@attrs.frozen
class _Route:
    name: str
    method: str
    category: str
    pattern: tuple[str, ...]
    auth: Auth
    handler: Callable[[Simulator, _Context], Reply]

    def match(self, segments: list[str]) -> dict[str, str] | None:
        if len(segments) != len(self.pattern):
            return None
        params = {}
        for want, got in zip(self.pattern, segments, strict=True):
            if want.startswith("{"):
                params[want[1:-1]] = got
            elif want != got:
                return None
        return params


@attrs.define
class _Context:
    request: SimRequest
    params: dict[str, str]
    entry: JournalEntry
    body: Mapping[str, Any]
    session: Session | None = None

    def user_session(self) -> Session:
        assert self.session is not None
        return self.session


def _split(path: str) -> list[str]:
    return [unquote(s) for s in path.split("/") if s]


_BODY_METHODS = ("POST", "PUT", "PATCH")


@attrs.define
class Simulator:
    """A simulated LiveVox for one client, on an injected clock.

    :param config: the sandbox configuration.
    :param clock: the clock for sessions, call times, latency and outages.
    """

    config: SandboxConfig
    clock: IReactorTime
    state: LiveVoxState = attrs.field(init=False)
    contacts: ContactStore = attrs.field(init=False)
    journal: Journal = attrs.field(init=False)
    faults: Faults = attrs.field(init=False)
    #: Every body accepted on the AIA endpoint, oldest first.
    aia_posts: list[dict[str, Any]] = attrs.field(init=False, factory=list)
    #: Whether agent sessions may use the Contact API (else 403); settable at runtime.
    agent_contact_access: bool = attrs.field(init=False)
    #: How many requests broke the contract (see :class:`ContractError`).
    contract_errors: int = attrs.field(init=False, default=0)
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self.contacts = ContactStore(self.clock)
        self.contacts.load(self.config.contacts)
        self.state = LiveVoxState(self.config, self.clock, self.contacts.get)
        self.journal = Journal(self.config.journal_size)
        self.faults = Faults(self.clock, self.config.fault_seed)
        self.agent_contact_access = self.config.agent_contact_access

    # -- the REST pipeline --------------------------------------------------

    def _route(
        self, request: SimRequest
    ) -> tuple[str, _Route | None, dict[str, str], Reply | None]:
        """Find the route: its name, the route, its path parameters, or an error reply."""
        segments = _split(request.path)
        aia = self.config.aia
        if aia is not None and segments == _split(aia.path):
            if request.method != aia.method:
                return "aia", None, {}, (405, _error(405, "Method not allowed"))
            return "aia", None, {}, None
        if not segments:
            return "unknown", None, {}, (404, _error(404, "Resource not found"))
        category, rest = segments[0], segments[1:]
        if rest and _VERSION.fullmatch(rest[0]):
            rest = rest[1:]
        allowed = False
        for route in _ROUTES:
            if route.category != category:
                continue
            params = route.match(rest)
            if params is None:
                continue
            if route.method == request.method:
                return route.name, route, params, None
            allowed = True
        if allowed:
            return "unknown", None, {}, (405, _error(405, "Method not allowed"))
        return "unknown", None, {}, (404, _error(404, "Resource not found"))

    def handle(self, request: SimRequest) -> SimResponse:
        """Answer one request to the LiveVox API or the AIA endpoint, and journal it.

        :param request: the request.
        :return: the answer, with the delay the latency faults ask for.
        """
        name, route, params, reply = self._route(request)
        path = request.path
        if "sessionId" in params:  # a session id is a credential: journal and log a prefix
            secret = params["sessionId"]
            path = "/" + "/".join(shorten(s) if s == secret else s for s in _split(path))
        entry = self.journal.record(self.clock.seconds(), request.method, path, name)
        outage = self.faults.current_outage()
        if outage is not None:
            entry.fault = "outage"
            if outage.mode == "drop":
                return SimResponse(0, drop=True, entry=entry)
            return self._answer(
                entry, (outage.status, _error(outage.status, "Service unavailable")), 0.0
            )
        delay = self.faults.latency_for(name)
        if reply is None:
            failure = self.faults.pick(name, "before")
            if failure is not None:
                entry.fault = failure.kind
                reply = (failure.status, _error(failure.status, "Simulated failure"))
        if reply is None:
            try:
                reply = self._dispatch(route, request, params, entry)
            except ContractError as e:
                self._breach(entry, e)
                reply = (e.status, e.body())
            except LiveVoxError as e:
                reply = (e.status, e.body())
            failure = self.faults.pick(name, "after")
            if failure is not None:
                entry.fault = failure.kind
                reply = (failure.status, _error(failure.status, "Simulated failure"))
        return self._answer(entry, reply, delay)

    def _breach(self, entry: JournalEntry, error: ContractError) -> None:
        self.contract_errors += 1
        entry.contract_error = error.breach
        self.log.error(
            "contract error #{n}: {breach} by {user} ({route}): {message}",
            n=self.contract_errors,
            breach=error.breach,
            user=entry.user,
            route=entry.route,
            message=error.message,
        )

    def _answer(self, entry: JournalEntry, reply: Reply, delay: float) -> SimResponse:
        status, body = reply
        entry.status = status
        self.log.debug(
            "{method} {path} ({route}) by {user} -> {status}",
            method=entry.method,
            path=entry.path,
            route=entry.route,
            user=entry.user,
            status=status,
        )
        raw = b"" if body is None else encode_json(body)
        return SimResponse(status, raw, delay=delay, entry=entry)

    def _dispatch(
        self,
        route: _Route | None,
        request: SimRequest,
        params: dict[str, str],
        entry: JournalEntry,
    ) -> Reply:
        if route is None:  # the AIA endpoint
            return self._aia(request, entry)
        if route.auth == "access":
            token_index = self.state.token_index(request.header("LV-Access"))
            entry.detail["token"] = token_index
            session = None
        else:
            presented = request.header("LV-Session")
            if presented:
                entry.session = shorten(presented)
            session = self.state.session(presented)
            entry.user = session.user.name
        body = self._body(request) if request.method in _BODY_METHODS else {}
        ctx = _Context(request, params, entry, body, session)
        return route.handler(self, ctx)

    @staticmethod
    def _body(request: SimRequest) -> Mapping[str, Any]:
        if not request.body.strip():
            return {}
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError) as e:
            raise LiveVoxError(400, "Malformed JSON body") from e
        if body is None:  # "null": as good as no body
            return {}
        if not isinstance(body, dict):
            raise LiveVoxError(400, "The request body must be a JSON object")
        return body

    # -- session routes -----------------------------------------------------

    def _login(self, ctx: _Context) -> Reply:
        user_name = ctx.body.get("userName")
        ctx.entry.user = user_name if isinstance(user_name, str) else None
        session = self.state.login(ctx.entry.detail["token"], ctx.body)
        ctx.entry.user = session.user.name
        ctx.entry.session = session.short_id
        ctx.entry.detail["agent"] = session.agent
        return 200, {
            "sessionId": session.session_id,
            "userId": session.user.user_id,
            "clientId": self.config.client_id,
            "daysUntilPasswordExpires": session.user.days_until_password_expires,
        }

    def _presented_session(self, ctx: _Context) -> str:
        session_id = ctx.params.get("sessionId") or ctx.request.query.get("sessionId")
        if not session_id:
            raise LiveVoxError(404, "Session not found")
        ctx.entry.session = shorten(session_id)
        return session_id

    def _validate(self, ctx: _Context) -> Reply:
        session = self.state.validate(self._presented_session(ctx))
        ctx.entry.user = session.user.name
        return 204, None

    def _logout(self, ctx: _Context) -> Reply:
        session = self.state.logout(self._presented_session(ctx))
        ctx.entry.user = session.user.name
        return 204, None

    # -- callControl routes -------------------------------------------------

    def _join(self, ctx: _Context) -> Reply:
        service_id = ctx.request.query.get("serviceId")
        phone = ctx.request.query.get("phoneNumber")
        ctx.entry.detail.update(serviceId=service_id, phoneNumber=phone)
        self.state.join(ctx.user_session(), service_id, phone)
        return 204, None

    def _leave(self, ctx: _Context) -> Reply:
        self.state.leave(ctx.user_session())
        return 204, None

    def _ready(self, ctx: _Context) -> Reply:
        self.state.ready(ctx.user_session())
        return 204, None

    def _not_ready(self, ctx: _Context) -> Reply:
        reason = ctx.request.query.get("reasonCode") or ctx.body.get("reasonCode")
        if reason is not None and not isinstance(reason, str):
            raise LiveVoxError(400, "reasonCode must be a string")
        ctx.entry.detail["reasonCode"] = reason
        self.state.not_ready(ctx.user_session(), reason or None)
        return 204, None

    def _status(self, ctx: _Context) -> Reply:
        after = ctx.body.get("stateChangedAfter", ctx.request.query.get("stateChangedAfter"))
        if after is not None:
            if isinstance(after, bool) or not (
                isinstance(after, int) or (isinstance(after, str) and after.strip().isdigit())
            ):
                raise LiveVoxError(400, "stateChangedAfter must be epoch milliseconds")
            ctx.entry.detail["stateChangedAfter"] = str(after).strip()
        status = self.state.agent_status(ctx.user_session())
        line = status["agentStatus"]["lines"][0]
        ctx.entry.detail["state"] = line["state"]
        return 200, status

    def _term_codes(self, ctx: _Context) -> Reply:
        return 200, self.state.term_codes(ctx.user_session(), ctx.request.query.get("serviceId"))

    def _save_term_code(self, ctx: _Context) -> Reply:
        for name in ("callTransactionId", "callSessionId", "termCodeId", "phoneDialed"):
            ctx.entry.detail[name] = id_field(ctx.body, name)
        ctx.entry.detail["moveAgentToNotReady"] = ctx.body.get("moveAgentToNotReady")
        try:
            result = self.state.save_term_code(ctx.user_session(), ctx.body)
        except ContractError as e:
            ctx.entry.repeat = e.breach == REPEATED_TERM_CODE
            raise
        ctx.entry.repeat = False
        if result.warnings:
            ctx.entry.detail["warnings"] = list(result.warnings)
        return 204, None

    def _end_call(self, ctx: _Context) -> Reply:
        call = self.state.end_customer_call(ctx.user_session())
        ctx.entry.detail["callTransactionId"] = call.call_transaction_id if call else None
        return 204, None

    def _conference(self, ctx: _Context) -> Reply:
        ctx.entry.detail["supervisorNumber"] = id_field(ctx.body, "supervisorNumber")
        call = self.state.manual_conference(ctx.user_session(), ctx.body)
        ctx.entry.detail["callTransactionId"] = call.call_transaction_id
        return 204, None

    def _screenpop(self, ctx: _Context) -> Reply:
        return 200, self.state.screenpop(ctx.user_session())

    # -- contact routes -----------------------------------------------------

    def _contact_session(self, ctx: _Context) -> None:
        if ctx.user_session().agent and not self.agent_contact_access:
            raise LiveVoxError(403, CONTACT_FORBIDDEN)

    def _create_contact(self, ctx: _Context) -> Reply:
        self._contact_session(ctx)
        details = ctx.body.get("createContactDetails")
        if details is None:
            raise LiveVoxError(400, "createContactDetails is required")
        if isinstance(details, Mapping):
            ctx.entry.detail["account"] = id_field(details, "account")
        contact_id, unknown = self.contacts.create(details)
        if unknown:
            ctx.entry.detail["unknownFields"] = unknown
        return 201, {"id": contact_id}

    def _update_contact(self, ctx: _Context) -> Reply:
        self._contact_session(ctx)
        account = ctx.params["account"]
        ctx.entry.detail["account"] = account
        details = ctx.body.get("updateContactDetails")
        if details is None:
            raise LiveVoxError(400, "updateContactDetails is required")
        unknown = self.contacts.update(account, details)
        if unknown:
            ctx.entry.detail["unknownFields"] = unknown
        ctx.entry.detail["fields"] = sorted(details) if isinstance(details, Mapping) else []
        return 204, None

    def _read_contact(self, ctx: _Context) -> Reply:
        self._contact_session(ctx)
        ctx.entry.detail["account"] = ctx.params["account"]
        return 200, {"readContactDetails": self.contacts.read(ctx.params["account"])}

    # -- the AIA endpoint ---------------------------------------------------

    def _aia(self, request: SimRequest, entry: JournalEntry) -> Reply:
        aia = self.config.aia
        assert aia is not None
        presented = request.header(aia.auth_header)
        if not presented or not aia.token.matches(presented):
            raise LiveVoxError(401, "Unauthorized")
        if not request.body.strip():
            raise LiveVoxError(400, "A JSON body is required")
        body = dict(self._body(request))
        entry.detail["body"] = body
        unknown = sorted(k for k in body if k not in AIA_FIELDS)
        if unknown:
            entry.detail["unknownFields"] = unknown
            self.log.warn("AIA post with unknown fields {fields}", fields=unknown)
        for key, value in body.items():
            if isinstance(value, dict | list):
                raise LiveVoxError(400, f"{key} must be a string")
        self.aia_posts.append(body)
        self.log.info(
            "AIA post for transaction {txn}: nextAction={next_action}",
            txn=body.get("transactionId"),
            next_action=body.get("nextAction"),
        )
        return 200, {"code": 200, "message": "OK"}

    # -- sandbox controls (the admin API calls these) -----------------------

    def _event(self, route: str, **detail: Any) -> JournalEntry:
        return self.journal.record(
            self.clock.seconds(), "SIM", "", route, status=200, detail=detail
        )

    def start_call(
        self,
        agent: str | None = None,
        phone_number: str | None = None,
        *,
        customer_number: str = "9195550100",
        account_number: str = "",
        call_transaction_id: str | None = None,
        call_session_id: str | None = None,
    ) -> Call:
        """Put a call through to a READY agent; see :meth:`LiveVoxState.start_call`.

        :raises LiveVoxError: 404 for an unknown agent, 409 unless it is READY.
        """
        call = self.state.start_call(
            agent,
            phone_number,
            customer_number=customer_number,
            account_number=account_number,
            call_transaction_id=call_transaction_id,
            call_session_id=call_session_id,
        )
        entry = self._event(
            "sandbox.startCall",
            callTransactionId=call.call_transaction_id,
            callSessionId=call.call_session_id,
        )
        entry.user = call.agent
        return call

    def end_call(
        self,
        agent: str | None = None,
        phone_number: str | None = None,
        call_transaction_id: str | None = None,
    ) -> Call:
        """End an agent's call: the line goes to WRAPUP until a term code arrives.

        :raises LiveVoxError: 404 if no such agent or call, 409 if no call is up.
        """
        call = self.state.end_call(agent, phone_number, call_transaction_id)
        entry = self._event("sandbox.endCall", callTransactionId=call.call_transaction_id)
        entry.user = call.agent
        return call

    def agent(self, name: str) -> AgentLine:
        """Return an agent's line by login name (any case).

        :raises LiveVoxError: 404 if there is no such agent.
        """
        return self.state.find_line(agent=name)

    def agent_states(self) -> list[dict[str, Any]]:
        """Return every agent line as JSON-ready mappings."""
        return self.state.agent_states()

    def stats(self) -> dict[str, Any]:
        """Return the simulator's counters, as ``GET /_sandbox/stats`` shows them.

        ``contractErrors``: how many requests broke the contract with LiveVox
        (:attr:`contract_errors`); the journal entries of the ones it still
        keeps name each breach in ``contract_error``.
        """
        return {"contractErrors": self.contract_errors}

    def journal_since(self, seq: int = 0, limit: int | None = None) -> list[JournalEntry]:
        """Return the journal entries after ``seq``."""
        return self.journal.since(seq, limit)

    def expire_sessions(self, user: str | None = None) -> int:
        """Expire every session now, or only ``user``'s; return how many ended."""
        count = self.state.expire_sessions(user)
        self._event("sandbox.expireSessions", target=user, count=count)
        return count

    def set_latency(self, seconds: float, route: str | None = None) -> None:
        """Delay answers by ``seconds`` on the clock; see :meth:`Faults.set_latency`."""
        self.faults.set_latency(seconds, route)

    def set_error_rate(
        self, route: str, status: int, probability: float, when: str = "before"
    ) -> None:
        """Fail a share of a route's requests; see :meth:`Faults.set_error_rate`."""
        self._check_route(route)
        self.faults.set_error_rate(route, status, probability, when)

    def fail_next(self, route: str, count: int, status: int, when: str = "before") -> None:
        """Fail the next ``count`` requests to ``route``; see :meth:`Faults.fail_next`."""
        self._check_route(route)
        self.faults.fail_next(route, count, status, when)

    def start_outage(
        self,
        until: float | None = None,
        *,
        duration: float | None = None,
        mode: str = "status",
        status: int = 503,
    ) -> None:
        """Fail every LiveVox request until clock time ``until``, for ``duration``, or until cleared.

        :param until: a clock time.
        :param duration: or seconds from now.
        :param mode: ``status`` answers ``status`` (503); ``drop`` aborts connections.
        :param status: the status of ``status`` mode.
        """
        if until is not None and duration is not None:
            raise ValueError("give until or duration, not both")
        if duration is not None:
            until = self.clock.seconds() + duration
        self.faults.start_outage(until, mode, status)
        self.log.info("outage started until {until} ({mode})", until=until, mode=mode)

    def clear_outage(self) -> None:
        """End the outage now."""
        self.faults.clear_outage()

    def clear_faults(self) -> None:
        """Remove every injected fault."""
        self.faults.clear()

    def _check_route(self, route: str) -> None:
        if route != "*" and route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {route!r}; one of {', '.join(sorted(ROUTE_NAMES))}")


_ROUTES: tuple[_Route, ...] = (
    _Route("session.login", "POST", "session", ("login",), "access", Simulator._login),
    _Route(
        "session.validate",
        "GET",
        "session",
        ("validate", "{sessionId}"),
        "access",
        Simulator._validate,
    ),
    _Route("session.validate", "GET", "session", ("validate",), "access", Simulator._validate),
    _Route(
        "session.logout",
        "DELETE",
        "session",
        ("logout", "{sessionId}"),
        "access",
        Simulator._logout,
    ),
    _Route(
        "agent.join",
        "POST",
        "callControl",
        ("agent", "service", "join"),
        "session",
        Simulator._join,
    ),
    _Route(
        "agent.leave",
        "POST",
        "callControl",
        ("agent", "service", "leave"),
        "session",
        Simulator._leave,
    ),
    _Route(
        "agent.ready",
        "POST",
        "callControl",
        ("agent", "status", "ready"),
        "session",
        Simulator._ready,
    ),
    _Route(
        "agent.notReady",
        "POST",
        "callControl",
        ("agent", "status", "notReady"),
        "session",
        Simulator._not_ready,
    ),
    _Route(
        "agent.status", "POST", "callControl", ("agent", "status"), "session", Simulator._status
    ),
    _Route(
        "agent.termCodes",
        "GET",
        "callControl",
        ("agent", "termCode"),
        "session",
        Simulator._term_codes,
    ),
    _Route(
        "agent.saveTermCode",
        "PUT",
        "callControl",
        ("agent", "call", "termCode"),
        "session",
        Simulator._save_term_code,
    ),
    _Route(
        "agent.endCall",
        "POST",
        "callControl",
        ("agent", "customer", "call", "end"),
        "session",
        Simulator._end_call,
    ),
    _Route(
        "agent.conference",
        "POST",
        "callControl",
        ("agent", "conference", "manual"),
        "session",
        Simulator._conference,
    ),
    _Route(
        "agent.screenpop",
        "GET",
        "callControl",
        ("agent", "screenpop"),
        "session",
        Simulator._screenpop,
    ),
    _Route(
        "contact.create", "POST", "contact", ("contacts",), "session", Simulator._create_contact
    ),
    _Route("contact.create", "PUT", "contact", ("contacts",), "session", Simulator._create_contact),
    _Route(
        "contact.update",
        "PUT",
        "contact",
        ("contacts", "{account}"),
        "session",
        Simulator._update_contact,
    ),
    _Route(
        "contact.read",
        "GET",
        "contact",
        ("contacts", "{account}"),
        "session",
        Simulator._read_contact,
    ),
)

#: Every route name a fault may target (besides ``*``).
ROUTE_NAMES = frozenset(r.name for r in _ROUTES) | {"aia"}
