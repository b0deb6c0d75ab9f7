"""The simulated LiveVox's model: logins and sessions, agent lines, calls and term codes.

Pure Python on an injected clock (``IReactorTime``; ``task.Clock`` in tests):
no HTTP here. Each operation either returns what LiveVox would answer or
raises :class:`LiveVoxError` with the status and message LiveVox would send.
:mod:`lvgateway.sandbox.simulator` maps requests onto it; the records it keeps
and their JSON forms are in :mod:`lvgateway.sandbox.livevox_records`.

Agent line states and the transitions the simulator enforces (LiveVox's
exact rules are not public; see docs/livevox-unknowns.md)::

    LOGOFF --login--> LOGON --join--> NOTREADY <--ready/notReady--> READY
    READY --(sandbox starts a call)--> INCALL --call end--> WRAPUP
    INCALL or WRAPUP --term code--> READY, or NOTREADY with moveAgentToNotReady
    (INCALL refuses it with ``refuse_term_code_in_call``: call end first)
    any --last session expires or logs out--> LOGOFF

``ready`` and ``notReady`` without a joined service are refused with 400, and
so are they, ``join`` and ``leave`` while the line is INCALL or WRAPUP: a call
must be given its term code first.

A call takes exactly one term code. A second one for a call already closed
is a breach of that contract: it is refused with 400 as a
:class:`ContractError`, which the simulator counts.

Whether LiveVox's agent status still shows a closed call is not documented
(docs/livevox-api.md section 3.4): by default a line shows only a call in
progress; with ``status_shows_last_call`` a READY or NOTREADY line also shows
its last call once closed.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from lvgateway.sandbox.livevox_records import (
    REPEATED_TERM_CODE,
    AgentLine,
    Call,
    ContactLookup,
    ContractError,
    LineState,
    LiveVoxError,
    Session,
    TermCodeResult,
    agent_status_json,
    id_field,
    normalize_number,
    parse_bool,
    screenpop_json,
    term_codes_json,
)
from lvgateway.sandbox.sandbox_config import SandboxConfig, UserConfig

__all__ = [
    "REPEATED_TERM_CODE",
    "AgentLine",
    "Call",
    "ContractError",
    "LineState",
    "LiveVoxError",
    "LiveVoxState",
    "Session",
    "TermCodeResult",
    "id_field",
    "normalize_number",
    "parse_bool",
]

INVALID_ACCESS_TOKEN = "Invalid access token"
SESSION_NOT_VALID = "Session is not valid"
LOGIN_FAILED = "Invalid client name, user name or password"
SESSION_NOT_FOUND = "Session not found"
AGENT_SESSION_REQUIRED = "This request needs an agent session"

#: The IP address in generated callSessionIds, like LiveVox's media servers'.
CALL_SESSION_HOST = "10.101.21.216"


@attrs.define
class LiveVoxState:
    """Sessions, agent lines and calls of one simulated LiveVox client.

    :param config: the sandbox configuration.
    :param clock: the clock every time is read from.
    :param contact_lookup: finds a contact by account, for names on calls.
    """

    config: SandboxConfig
    clock: IReactorTime
    contact_lookup: ContactLookup = lambda account: None
    # repr=False: session ids are credentials and must not reach a log through a repr
    _sessions: OrderedDict[str, Session] = attrs.field(factory=OrderedDict, repr=False)
    _by_key: dict[tuple[str, bool, int], str] = attrs.field(factory=dict, repr=False)
    lines: dict[str, AgentLine] = attrs.field(factory=dict)
    _next_transaction: int = 0
    _next_call_session: int = 0x2DB327
    log = Logger()

    def __attrs_post_init__(self) -> None:
        for user in self.config.users:
            if user.agent:
                self.lines[user.key] = AgentLine(user, state_changed=self.clock.seconds())
        # Varied between runs on a real clock, fixed on task.Clock.
        self._next_transaction = 100_000_000_000 + int(self.clock.seconds() * 1000) % 10**11

    # -- sessions -----------------------------------------------------------

    def token_index(self, presented: str | None) -> int:
        """Return which configured API token ``presented`` is.

        :raises LiveVoxError: 401 :data:`INVALID_ACCESS_TOKEN` if none.
        """
        if presented:
            for i, token in enumerate(self.config.tokens):
                if token.matches(presented):
                    return i
        raise LiveVoxError(401, INVALID_ACCESS_TOKEN)

    def login(self, token_index: int, body: Mapping[str, Any]) -> Session:
        """Log a user or agent in, or return its live session for the same token.

        :param token_index: from :meth:`token_index`.
        :param body: ``clientName``, ``userName``, ``password``, ``agent``.
        :raises LiveVoxError: 400 for a missing field, 401 :data:`LOGIN_FAILED`
            for a wrong client, user or password.
        """
        fields = {}
        for name in ("clientName", "userName", "password"):
            value = body.get(name)
            if not isinstance(value, str) or not value:
                raise LiveVoxError(400, f"{name} is required")
            fields[name] = value
        agent = parse_bool(body.get("agent"), "agent")
        user = self._find_user(fields["userName"], agent)
        if (
            user is None
            or fields["clientName"].casefold() != self.config.client_name.casefold()
            or not user.password.matches(fields["password"])
        ):
            self.log.warn(
                "login refused for {user} (agent={agent})", user=fields["userName"], agent=agent
            )
            raise LiveVoxError(401, LOGIN_FAILED)
        self._sweep()
        key = (user.key, agent, token_index)
        existing = self._by_key.get(key)
        if existing is not None and existing in self._sessions:
            session = self._sessions[existing]
            self._touch(session)
            self.log.info(
                "login {user}: same session {session}", user=user.name, session=session.short_id
            )
            return session
        now = self.clock.seconds()
        session = Session(str(uuid.uuid4()), user, agent, token_index, now, now)
        self._sessions[session.session_id] = session
        self._by_key[key] = session.session_id
        if agent:
            line = self.lines[user.key]
            if line.state is LineState.LOGOFF:
                self._set_state(line, LineState.LOGON)
        self.log.info(
            "login {user} (agent={agent}): new session {session}",
            user=user.name,
            agent=agent,
            session=session.short_id,
        )
        return session

    def _find_user(self, name: str, agent: bool) -> UserConfig | None:
        key = name.casefold() if agent else name
        for user in self.config.users:
            if user.agent == agent and user.key == key:
                return user
        return None

    def session(self, session_id: str | None) -> Session:
        """Return the live session ``session_id`` and count this use as activity.

        :raises LiveVoxError: 401 :data:`SESSION_NOT_VALID` if unknown or expired.
        """
        self._sweep()
        session = self._sessions.get(session_id) if session_id else None
        if session is None:
            raise LiveVoxError(401, SESSION_NOT_VALID)
        self._touch(session)
        return session

    def validate(self, session_id: str) -> Session:
        """Check a session for ``GET /session/validate``.

        Counts as activity only if ``validate_extends_session`` is configured.

        :raises LiveVoxError: 404 :data:`SESSION_NOT_FOUND` if unknown or expired.
        """
        self._sweep()
        session = self._sessions.get(session_id)
        if session is None:
            raise LiveVoxError(404, SESSION_NOT_FOUND)
        if self.config.validate_extends_session:
            self._touch(session)
        return session

    def logout(self, session_id: str) -> Session:
        """End a session for ``DELETE /session/logout``.

        :raises LiveVoxError: 404 :data:`SESSION_NOT_FOUND` if unknown or expired.
        """
        self._sweep()
        session = self._sessions.get(session_id)
        if session is None:
            raise LiveVoxError(404, SESSION_NOT_FOUND)
        self._end_session(session, "logout")
        return session

    def expire_sessions(self, user: str | None = None) -> int:
        """Expire every session now, or only ``user``'s (a fault to inject).

        :param user: a login name (agent names match in any case), or ``None``.
        :return: how many sessions ended.
        """
        victims = [
            s
            for s in self._sessions.values()
            if user is None or s.user.name == user or (s.agent and s.user.key == user.casefold())
        ]
        for session in victims:
            self._end_session(session, "forced expiry")
        return len(victims)

    def live_sessions(self) -> list[Session]:
        """Return the sessions still live now."""
        self._sweep()
        return list(self._sessions.values())

    def _touch(self, session: Session) -> None:
        session.last_used = self.clock.seconds()
        self._sessions.move_to_end(session.session_id)

    def _sweep(self) -> None:
        """End sessions idle for the timeout; they are kept oldest use first."""
        deadline = self.clock.seconds() - self.config.session_idle_timeout
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_used > deadline:
                break
            self._end_session(oldest, "idle expiry")

    def _end_session(self, session: Session, why: str) -> None:
        del self._sessions[session.session_id]
        key = (session.user.key, session.agent, session.token_index)
        if self._by_key.get(key) == session.session_id:
            del self._by_key[key]
        self.log.info(
            "session {session} of {user} ended: {why}",
            session=session.short_id,
            user=session.user.name,
            why=why,
        )
        if session.agent and not any(
            s.agent and s.user.key == session.user.key for s in self._sessions.values()
        ):
            self._log_off(self.lines[session.user.key])

    def _log_off(self, line: AgentLine) -> None:
        call = line.current_call
        if call is not None:
            if call.ended is None:
                call.ended = self.clock.seconds()
            line.last_call = call
            line.current_call = None
        line.service_id = line.phone_number = line.reason_code = None
        self._set_state(line, LineState.LOGOFF)

    # -- agent lines --------------------------------------------------------

    def _set_state(self, line: AgentLine, state: LineState) -> None:
        if line.state is not state:
            self.log.debug(
                "{user}: {old} -> {new}", user=line.user.name, old=line.state.value, new=state.value
            )
            line.state = state
            line.state_changed = self.clock.seconds()

    def line(self, session: Session) -> AgentLine:
        """Return the agent line behind an agent session.

        :raises LiveVoxError: 403 if it is a user session.
        """
        if not session.agent:
            raise LiveVoxError(403, AGENT_SESSION_REQUIRED)
        return self.lines[session.user.key]

    def find_line(self, agent: str | None = None, phone_number: str | None = None) -> AgentLine:
        """Find an agent line by login name or by the 899 number it joined with.

        :raises LiveVoxError: 404 if there is none.
        """
        if agent is not None:
            line = self.lines.get(agent.casefold())
            if line is not None:
                return line
            raise LiveVoxError(404, f"No agent {agent}")
        if phone_number is not None:
            wanted = normalize_number(phone_number)
            for line in self.lines.values():
                if line.phone_number is not None and normalize_number(line.phone_number) == wanted:
                    return line
            raise LiveVoxError(404, f"No agent has joined with phone number {phone_number}")
        raise LiveVoxError(400, "Name an agent or a phone number")

    def _not_on_call(self, line: AgentLine) -> None:
        if line.state is LineState.INCALL:
            raise LiveVoxError(400, "Agent is on a call")
        if line.state is LineState.WRAPUP:
            raise LiveVoxError(400, "Agent is in wrap-up: save a term code for the call first")

    def _joined(self, line: AgentLine) -> None:
        if line.service_id is None:
            raise LiveVoxError(400, "Agent has not joined a service")

    def join(self, session: Session, service_id: str | None, phone_number: str | None) -> None:
        """Join the agent to a service, to take calls on ``phone_number``.

        Joining the service it is already in, with the same number, changes nothing.

        :raises LiveVoxError: 400 for a missing or unknown service, a missing
            number (none in the query nor configured), a number another agent
            is using, or while on a call.
        """
        line = self.line(session)
        if not service_id:
            raise LiveVoxError(400, "serviceId is required")
        if self.config.service(service_id) is None:
            raise LiveVoxError(400, f"Invalid serviceId {service_id}")
        number = phone_number or line.user.phone_number
        if not number:
            raise LiveVoxError(400, "phoneNumber is required")
        self._not_on_call(line)
        for other in self.lines.values():
            if (
                other is not line
                and other.phone_number is not None
                and normalize_number(other.phone_number) == normalize_number(number)
            ):
                raise LiveVoxError(400, f"Phone number {number} is in use by another agent")
        if line.service_id == service_id and line.phone_number == number:
            return
        line.service_id, line.phone_number, line.reason_code = service_id, number, None
        self._set_state(line, LineState.NOTREADY)
        self.log.info(
            "{user} joined service {service} on {number}",
            user=line.user.name,
            service=service_id,
            number=number,
        )

    def leave(self, session: Session) -> None:
        """Take the agent out of its service; nothing happens if it is in none.

        :raises LiveVoxError: 400 while on a call.
        """
        line = self.line(session)
        self._not_on_call(line)
        if line.service_id is None:
            return
        line.service_id = line.phone_number = line.reason_code = None
        self._set_state(line, LineState.LOGON)
        self.log.info("{user} left its service", user=line.user.name)

    def ready(self, session: Session) -> None:
        """Make the agent READY.

        :raises LiveVoxError: 400 without a joined service, or while INCALL or WRAPUP.
        """
        line = self.line(session)
        self._joined(line)
        self._not_on_call(line)
        line.reason_code = None
        self._set_state(line, LineState.READY)

    def not_ready(self, session: Session, reason_code: str | None) -> None:
        """Make the agent NOTREADY, with an optional free-text reason code.

        :raises LiveVoxError: 400 without a joined service, or while INCALL or WRAPUP.
        """
        line = self.line(session)
        self._joined(line)
        self._not_on_call(line)
        line.reason_code = reason_code
        self._set_state(line, LineState.NOTREADY)

    def agent_status(self, session: Session) -> dict[str, Any]:
        """Return ``POST /callControl/agent/status``'s body, in LVNET's documented shape.

        The line shows its call in progress; with ``status_shows_last_call``
        configured, a READY or NOTREADY line shows its last call once closed.
        """
        line = self.line(session)
        in_service = sum(
            1
            for other in self.lines.values()
            if other.service_id == line.service_id and other.state is LineState.INCALL
        )
        return agent_status_json(
            line, in_service if line.service_id else 0, self.config.status_shows_last_call
        )

    def term_codes(self, session: Session, service_id: str | None) -> dict[str, Any]:
        """Return ``GET /callControl/agent/termCode``'s body for a service.

        Without ``serviceId`` the agent's joined service is used.

        :raises LiveVoxError: 400 for a missing or unknown service.
        """
        line = self.line(session)
        service_id = service_id or line.service_id
        if not service_id:
            raise LiveVoxError(400, "serviceId is required")
        service = self.config.service(service_id)
        if service is None:
            raise LiveVoxError(400, f"Invalid serviceId {service_id}")
        return term_codes_json(service)

    def save_term_code(self, session: Session, body: Mapping[str, Any]) -> TermCodeResult:
        """Apply ``PUT /callControl/agent/call/termCode``.

        The call must be the agent's current call (INCALL or WRAPUP) or its
        last one, matched on both ``callTransactionId`` and ``callSessionId``.
        A call takes one term code: a second one, for a call already closed,
        changes nothing and is refused.

        :raises ContractError: 400 (breach :data:`REPEATED_TERM_CODE`) for a
            term code for a call already closed; its ``repeats`` goes up.
        :raises LiveVoxError: 400 for a missing id, a call that does not
            match, a term code not in the call's service's catalogue, or (with
            ``refuse_term_code_in_call``) a call still INCALL.
        """
        line = self.line(session)
        transaction_id = id_field(body, "callTransactionId")
        call_session_id = id_field(body, "callSessionId")
        term_code_id = id_field(body, "termCodeId")
        for name, value in (
            ("callTransactionId", transaction_id),
            ("callSessionId", call_session_id),
            ("termCodeId", term_code_id),
        ):
            if value is None:
                raise LiveVoxError(400, f"{name} is required")
        assert transaction_id and call_session_id and term_code_id
        move = parse_bool(body.get("moveAgentToNotReady"), "moveAgentToNotReady")
        warnings = []
        phone_dialed = id_field(body, "phoneDialed")
        if phone_dialed is None:
            warnings.append("phoneDialed is missing")
        if "moveAgentToNotReady" not in body:
            warnings.append("moveAgentToNotReady is missing (taken as false)")

        call = None
        for candidate in (line.current_call, line.last_call):
            if (
                candidate is not None
                and candidate.call_transaction_id == transaction_id
                and candidate.call_session_id == call_session_id
            ):
                call = candidate
                break
        if call is None:
            raise LiveVoxError(
                400,
                f"No call {transaction_id} / {call_session_id} on this agent's line",
            )
        if phone_dialed is not None and normalize_number(phone_dialed) != normalize_number(
            call.phone_number
        ):
            warnings.append(f"phoneDialed {phone_dialed} is not the call's {call.phone_number}")
        service = self.config.service(call.service_id)
        if service is None or service.term_code(term_code_id) is None:
            raise LiveVoxError(
                400, f"Invalid termCodeId {term_code_id} for service {call.service_id}"
            )
        for warning in warnings:
            self.log.warn(
                "term code for {call} by {user}: {warning}",
                call=transaction_id,
                user=line.user.name,
                warning=warning,
            )

        if call.closed:
            call.repeats += 1
            self.log.info(
                "term code {code} for {call} by {user} refused: repeat #{n}, call already "
                "closed with {first}",
                code=term_code_id,
                call=transaction_id,
                user=line.user.name,
                n=call.repeats,
                first=call.term_code_id,
            )
            raise ContractError(
                400,
                f"Call {transaction_id} already has a term code ({call.term_code_id})",
                REPEATED_TERM_CODE,
            )

        if (
            self.config.refuse_term_code_in_call
            and line.current_call is call
            and line.state is LineState.INCALL
        ):
            raise LiveVoxError(
                400, f"Call {transaction_id} is in progress: end it before saving its term code"
            )
        now = self.clock.seconds()
        call.term_code_id = term_code_id
        call.term_coded_at = now
        call.move_agent_to_not_ready = move
        if call.ended is None:
            call.ended = now
        line.calls_handled += 1
        if line.current_call is call:
            line.current_call = None
            line.last_call = call
            if move:
                reason = body.get("reasonCode")
                line.reason_code = reason if isinstance(reason, str) else None
                self._set_state(line, LineState.NOTREADY)
            else:
                line.reason_code = None
                self._set_state(line, LineState.READY)
        self.log.info(
            "term code {code} for {call} by {user}: agent now {state}",
            code=term_code_id,
            call=transaction_id,
            user=line.user.name,
            state=line.state.value,
        )
        return TermCodeResult(call, warnings=tuple(warnings))

    def end_customer_call(self, session: Session) -> Call | None:
        """Apply ``POST /callControl/agent/customer/call/end``: an INCALL line goes to WRAPUP.

        Without a call up it changes nothing and still succeeds, since
        LiveVox's own connector ends the call after saving its term code.

        :return: the call it ended, if any.
        """
        line = self.line(session)
        return self._end_call(line)

    def _end_call(self, line: AgentLine) -> Call | None:
        call = line.current_call
        if call is None or line.state is not LineState.INCALL:
            return None
        call.ended = self.clock.seconds()
        self._set_state(line, LineState.WRAPUP)
        self.log.info(
            "call {call} on {user} ended: wrap-up",
            call=call.call_transaction_id,
            user=line.user.name,
        )
        return call

    def manual_conference(self, session: Session, body: Mapping[str, Any]) -> Call:
        """Apply ``POST /callControl/agent/conference/manual``: record the transfer number.

        :raises LiveVoxError: 400 without a call up or without ``supervisorNumber``.
        """
        line = self.line(session)
        number = id_field(body, "supervisorNumber")
        if number is None:
            raise LiveVoxError(400, "supervisorNumber is required")
        for name in ("putCallOnHold", "secureTransfer"):
            parse_bool(body.get(name), name)
        call = line.current_call
        if call is None or line.state is not LineState.INCALL:
            raise LiveVoxError(400, "No call in progress")
        call.transfer_number = number
        self.log.info(
            "call {call} on {user} conferenced to {number}",
            call=call.call_transaction_id,
            user=line.user.name,
            number=number,
        )
        return call

    def screenpop(self, session: Session) -> dict[str, Any]:
        """Return ``GET /callControl/agent/screenpop``'s body for the current call."""
        return screenpop_json(self.line(session).current_call)

    # -- sandbox controls ---------------------------------------------------

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
        """Put a call through to a READY agent, named by login or by 899 number.

        :param agent: the agent's login name.
        :param phone_number: or the 899 number it joined with.
        :param customer_number: the caller's number (phoneDialed).
        :param account_number: the caller's account; names come from its contact.
        :param call_transaction_id: an id to use instead of a fresh one.
        :param call_session_id: a session id to use instead of a fresh one
            (a SIP dialler passes its ``Session-ID`` header here).
        :raises LiveVoxError: 404 for an unknown agent, 409 unless it is READY.
        """
        line = self.find_line(agent, phone_number)
        if line.state is not LineState.READY:
            raise LiveVoxError(409, f"Agent {line.user.name} is {line.state.value}, not READY")
        assert line.service_id is not None and line.phone_number is not None
        now = self.clock.seconds()
        if call_transaction_id is None:
            call_transaction_id = str(self._next_transaction)
            self._next_transaction += 1
        if call_session_id is None:
            call_session_id = (
                f"U{self._next_call_session:06X}T{int(now) & 0xFFFFFFFF:08X}@{CALL_SESSION_HOST}"
            )
            self._next_call_session += 1
        contact = self.contact_lookup(account_number) if account_number else None
        person = contact.get("person") if contact else None
        call = Call(
            call_transaction_id=call_transaction_id,
            call_session_id=call_session_id,
            agent=line.user.name,
            service_id=line.service_id,
            dnis=line.phone_number,
            phone_number=customer_number,
            account_number=account_number,
            first_name=person.get("firstName") if isinstance(person, Mapping) else None,
            last_name=person.get("lastName") if isinstance(person, Mapping) else None,
            started=now,
        )
        line.current_call = call
        self._set_state(line, LineState.INCALL)
        self.log.info(
            "call {call} ({session}) put through to {user} on {dnis}",
            call=call.call_transaction_id,
            session=call.call_session_id,
            user=line.user.name,
            dnis=line.phone_number,
        )
        return call

    def end_call(
        self,
        agent: str | None = None,
        phone_number: str | None = None,
        call_transaction_id: str | None = None,
    ) -> Call:
        """End the customer leg of an agent's call: INCALL goes to WRAPUP until a term code.

        :param agent: the agent's login name.
        :param phone_number: or its 899 number.
        :param call_transaction_id: or the call's transaction id.
        :raises LiveVoxError: 404 if no such agent or call, 409 if no call is up.
        """
        if call_transaction_id is not None and agent is None and phone_number is None:
            for line in self.lines.values():
                current = line.current_call
                if current is not None and current.call_transaction_id == call_transaction_id:
                    break
            else:
                raise LiveVoxError(404, f"No call {call_transaction_id} on any line")
        else:
            line = self.find_line(agent, phone_number)
        call = self._end_call(line)
        if call is None:
            raise LiveVoxError(409, f"Agent {line.user.name} has no call up ({line.state.value})")
        return call

    def agent_states(self) -> list[dict[str, Any]]:
        """Return every agent line, as the sandbox controls show it."""
        self._sweep()
        return [line.to_json() for line in self.lines.values()]
