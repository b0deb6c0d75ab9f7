"""Test doubles for the LiveVox client and for the parts that use it.

- :class:`FakeLiveVox`: an in-memory provider of
  :class:`~lvgateway.livevox.interfaces.ILiveVoxAgentAPI` and
  :class:`~lvgateway.livevox.interfaces.ILiveVoxCallAPI`, keeping sessions,
  agent states, calls, term codes and contacts, with failures to inject
  and gates to hold calls open. For the agent pool's and the wrap-up's tests.
- :class:`FakeAia`: an in-memory :class:`~lvgateway.livevox.interfaces.IAiaAPI`.
- re-exported from :mod:`lvgateway.livevox.stubhttp`: a scripted HTTP
  server behind an in-memory treq client (:class:`RecordingResource`,
  :func:`stub_http`), :func:`livevox_config`, :func:`result_of` and
  :func:`failure_of`, for testing the real client.

Both fakes are checked against their interfaces with ``verifyObject`` in
``tests/test_livevox_fakes.py``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from lvgateway.config.secret import Secret
from lvgateway.livevox.aia import AiaRecord
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    LoginDeniedError,
    NotFoundError,
    SessionExpiredError,
)
from lvgateway.livevox.interfaces import IAiaAPI, ILiveVoxAgentAPI, ILiveVoxCallAPI
from lvgateway.livevox.parsing import (
    AgentStatus,
    CallDetails,
    ContactCreated,
    LineStatus,
    Session,
    TermCode,
    TermCodeCatalogue,
)
from lvgateway.livevox.stubhttp import (
    Handler,
    RecordedRequest,
    RecordingResource,
    StubHTTP,
    failure_of,
    livevox_config,
    result_of,
    stub_http,
)

__all__ = [
    "FakeAia",
    "FakeAgent",
    "FakeLiveVox",
    "Handler",
    "RecordedRequest",
    "RecordingResource",
    "StubHTTP",
    "failure_of",
    "livevox_config",
    "result_of",
    "stub_http",
]


# -- an in-memory LiveVox ---------------------------------------------------------


@attrs.define
class FakeAgent:
    """One logged-in user of :class:`FakeLiveVox`.

    :param session: the session LiveVox gave it.
    :param state: ``LOGON``, ``NOTREADY``, ``READY``, ``INCALL`` or ``WRAPUP``.
    :param service_id: the service joined, if any.
    :param phone_number: the number given at join.
    :param call: the current (or last, until saved) call.
    :param state_changed_time: epoch milliseconds of the last change.
    """

    session: Session
    state: str = "LOGON"
    service_id: str | None = None
    phone_number: str | None = None
    call: CallDetails | None = None
    state_changed_time: int = 0
    reason_code: str | None = None


@implementer(ILiveVoxAgentAPI, ILiveVoxCallAPI)
class FakeLiveVox:
    """An in-memory LiveVox for the agent pool's and the wrap-up's tests.

    Every method answers at once (unless gated), records itself in
    :attr:`log`, and enforces what the real one would: a valid session, a
    joined service before READY, the call's ids on a term code save.

    :param passwords: each user's password; users not listed log in with
        any password. ``None`` accepts everyone.
    :param now_millis: the clock for ``stateChangedTime``, in epoch ms.
    """

    def __init__(
        self,
        passwords: Mapping[str, str] | None = None,
        now_millis: Callable[[], int] = lambda: 0,
    ) -> None:
        self.passwords = dict(passwords or {})
        self.now_millis = now_millis
        self.agents: dict[str, FakeAgent] = {}
        self.log: list[tuple[str, dict[str, Any]]] = []
        self.catalogues: dict[str, TermCodeCatalogue] = {}
        self.contacts: dict[str, dict[str, Any]] = {}
        self.saved_term_codes: list[dict[str, Any]] = []
        self.conferences: list[dict[str, Any]] = []
        self.failures: dict[str, list[BaseException]] = {}
        self.gates: dict[str, Deferred[None]] = {}
        #: Answer ``agent_status`` with no body ("nothing changed"), as LiveVox may.
        self.unchanged_status = False
        self._ids = itertools.count(1)

    # -- test controls ------------------------------------------------------------

    def fail_next(self, call: str, error: BaseException, times: int = 1) -> None:
        """Make the next ``times`` calls of a method fail with ``error``.

        :param call: the method name, such as ``ready`` or ``save_term_code``.
        :param error: the exception to fail with.
        :param times: how many calls fail.
        """
        self.failures.setdefault(call, []).extend([error] * times)

    def gate(self, call: str) -> Deferred[None]:
        """Hold every call of a method until the returned Deferred is fired.

        :param call: the method name.
        """
        d: Deferred[None] = Deferred()
        self.gates[call] = d
        return d

    def expire(self, user_name: str) -> None:
        """End a user's session as LiveVox would after 2 idle hours.

        :param user_name: the login.
        """
        self.agents.pop(user_name.lower(), None)

    def agent(self, user_name: str) -> FakeAgent:
        """Return a logged-in user's state.

        :param user_name: the login.
        :raises KeyError: when the user is not logged in.
        """
        return self.agents[user_name.lower()]

    def place_call(self, user_name: str, call: CallDetails) -> None:
        """Put a call on a READY agent, as LiveVox's dialler would.

        :param user_name: the agent's login.
        :param call: the call's ids and details.
        """
        agent = self.agent(user_name)
        if agent.state != "READY":
            raise AssertionError(f"{user_name} is {agent.state}, not READY")
        agent.call = call
        self._set(agent, "INCALL")

    # -- plumbing -----------------------------------------------------------------

    def _set(self, agent: FakeAgent, state: str) -> None:
        agent.state = state
        agent.state_changed_time = self.now_millis()

    def _answer(self, call: str, make: Callable[[], Any], **args: Any) -> Deferred[Any]:
        """Record a call, then fail it, hold it, or answer it with ``make()``."""
        self.log.append((call, args))
        queued = self.failures.get(call)
        if queued:
            return fail(queued.pop(0))
        gate = self.gates.get(call)
        if gate is not None:
            d: Deferred[Any] = Deferred()

            def go(_: object) -> None:
                try:
                    d.callback(make())
                except BaseException as e:
                    d.errback(e)

            gate.addCallback(go)
            return d
        try:
            return succeed(make())
        except BaseException as e:
            return fail(e)

    def _agent_for(self, session: Session, call: str) -> FakeAgent:
        agent = self.agents.get(session.user_name.lower())
        if agent is None or agent.session.session_id != session.session_id:
            raise SessionExpiredError(call, status=401, code=401, message="Session is not valid")
        return agent

    # -- ILiveVoxAgentAPI ------------------------------------------------------------

    def login(self, user_name: str, password: Secret, agent: bool = True) -> Deferred[Session]:
        """Log in; the same user gets the same session while it is valid."""

        def make() -> Session:
            expected = self.passwords.get(user_name)
            if expected is not None and password.reveal() != expected:
                raise LoginDeniedError("login", status=401, code=401, message="Invalid login")
            known = self.agents.get(user_name.lower())
            if known is not None:
                return known.session
            n = next(self._ids)
            session = Session(
                session_id=f"fake-session-{n:04d}-{user_name}",
                user_name=user_name,
                agent=agent,
                user_id=str(1000 + n),
                client_id="5678",
                days_until_password_expires=30,
            )
            self.agents[user_name.lower()] = FakeAgent(
                session=session, state_changed_time=self.now_millis()
            )
            return session

        return self._answer("login", make, user_name=user_name, agent=agent)

    def validate(self, session: Session) -> Deferred[bool]:
        """Whether the session is current."""

        def make() -> bool:
            known = self.agents.get(session.user_name.lower())
            return known is not None and known.session.session_id == session.session_id

        return self._answer("validate", make, user_name=session.user_name)

    def logout(self, session: Session) -> Deferred[bool]:
        """End the session; ``False`` when it was gone."""

        def make() -> bool:
            known = self.agents.get(session.user_name.lower())
            if known is None or known.session.session_id != session.session_id:
                return False
            del self.agents[session.user_name.lower()]
            return True

        return self._answer("logout", make, user_name=session.user_name)

    def join_service(
        self, session: Session, service_id: str, phone_number: str, sip_id: str | None = None
    ) -> Deferred[None]:
        """Join; the agent becomes NOT READY."""

        def make() -> None:
            agent = self._agent_for(session, "service_join")
            agent.service_id, agent.phone_number = service_id, phone_number
            self._set(agent, "NOTREADY")

        return self._answer(
            "join_service",
            make,
            user_name=session.user_name,
            service_id=service_id,
            phone_number=phone_number,
        )

    def leave_service(self, session: Session) -> Deferred[None]:
        """Leave the service."""

        def make() -> None:
            agent = self._agent_for(session, "service_leave")
            agent.service_id = agent.phone_number = None
            self._set(agent, "LOGON")

        return self._answer("leave_service", make, user_name=session.user_name)

    def ready(self, session: Session) -> Deferred[None]:
        """Go READY; refused without a service or while on a call."""

        def make() -> None:
            agent = self._agent_for(session, "ready")
            if agent.service_id is None or agent.state in ("INCALL", "WRAPUP"):
                raise LiveVoxClientError("ready", status=400, code=400, message=agent.state)
            self._set(agent, "READY")

        return self._answer("ready", make, user_name=session.user_name)

    def not_ready(self, session: Session, reason_code: str | None = None) -> Deferred[None]:
        """Go NOT READY; refused without a service."""

        def make() -> None:
            agent = self._agent_for(session, "not_ready")
            if agent.service_id is None:
                raise LiveVoxClientError("not_ready", status=400, code=400, message="no service")
            agent.reason_code = reason_code
            if agent.state not in ("INCALL", "WRAPUP"):
                self._set(agent, "NOTREADY")

        return self._answer("not_ready", make, user_name=session.user_name, reason_code=reason_code)

    def agent_status(
        self, session: Session, state_changed_after: int | None = None
    ) -> Deferred[AgentStatus]:
        """The agent's ACD line and its call."""

        def make() -> AgentStatus:
            agent = self._agent_for(session, "agent_status")
            if self.unchanged_status:
                return AgentStatus(lines=(), unchanged=True)
            line = LineStatus(
                line_number="ACD",
                state=agent.state,
                state_changed_time=agent.state_changed_time,
                call=agent.call if agent.state in ("INCALL", "WRAPUP") else None,
            )
            return AgentStatus(lines=(line,), reason_code=agent.reason_code)

        return self._answer(
            "agent_status",
            make,
            user_name=session.user_name,
            state_changed_after=state_changed_after,
        )

    def term_codes(self, session: Session, service_id: str) -> Deferred[TermCodeCatalogue]:
        """The catalogue set in :attr:`catalogues`, or an empty one."""

        def make() -> TermCodeCatalogue:
            self._agent_for(session, "term_codes")
            return self.catalogues.get(service_id, TermCodeCatalogue(service_id, ()))

        return self._answer("term_codes", make, service_id=service_id)

    def add_term_code(self, service_id: str, term_code_id: str, name: str) -> None:
        """Add a term code to a service's catalogue.

        :param service_id: the service.
        :param term_code_id: its id.
        :param name: its name.
        """
        old = self.catalogues.get(service_id, TermCodeCatalogue(service_id, ()))
        self.catalogues[service_id] = TermCodeCatalogue(
            service_id, (*old.codes, TermCode(id=term_code_id, name=name))
        )

    # -- ILiveVoxCallAPI -------------------------------------------------------------

    def save_term_code(
        self,
        session: Session,
        *,
        call_transaction_id: str,
        call_session_id: str,
        term_code_id: str,
        phone_dialed: str | None,
        move_agent_to_not_ready: bool,
        service_id: str | None = None,
        account: str | None = None,
        agent_entered_account: str | None = None,
        payment_amount: str | None = None,
        notes: str | None = None,
        reason_code: str | None = None,
        immediate_callback_number: str | None = None,
        line_number: str | None = None,
    ) -> Deferred[None]:
        """Close the call named by its ids; the agent goes READY or NOT READY."""
        args = {
            "user_name": session.user_name,
            "call_transaction_id": call_transaction_id,
            "call_session_id": call_session_id,
            "term_code_id": term_code_id,
            "phone_dialed": phone_dialed,
            "move_agent_to_not_ready": move_agent_to_not_ready,
            "account": account,
            "notes": notes,
        }

        def make() -> None:
            agent = self._agent_for(session, "term_code_save")
            call = agent.call
            if (
                call is None
                or call.call_transaction_id != call_transaction_id
                or call.call_session_id != call_session_id
            ):
                raise LiveVoxClientError(
                    "term_code_save", status=400, code=400, message="no such call"
                )
            self.saved_term_codes.append(args)
            agent.call = None
            self._set(agent, "NOTREADY" if move_agent_to_not_ready else "READY")

        return self._answer("save_term_code", make, **args)

    def end_call(self, session: Session, line_number: str | None = None) -> Deferred[None]:
        """End the call: the agent goes to WRAPUP."""

        def make() -> None:
            agent = self._agent_for(session, "call_end")
            if agent.state != "INCALL":
                raise LiveVoxClientError("call_end", status=400, code=400, message="no call")
            self._set(agent, "WRAPUP")

        return self._answer("end_call", make, user_name=session.user_name)

    def manual_conference(
        self,
        session: Session,
        number: str,
        put_call_on_hold: bool = True,
        secure_transfer: bool = False,
        line_number: str | None = None,
    ) -> Deferred[None]:
        """Record a conference to ``number``; refused without a call."""

        def make() -> None:
            agent = self._agent_for(session, "conference_manual")
            if agent.state != "INCALL":
                raise LiveVoxClientError(
                    "conference_manual", status=400, code=400, message="no call"
                )
            self.conferences.append({"user_name": session.user_name, "number": number})

        return self._answer("manual_conference", make, number=number)

    def read_contact(self, account: str, session: Session) -> Deferred[dict[str, Any]]:
        """Return a copy of a contact."""

        def make() -> dict[str, Any]:
            if account not in self.contacts:
                raise NotFoundError("contact_read", status=404, code=404, message="not found")
            return dict(self.contacts[account])

        return self._answer("read_contact", make, account=account)

    def create_contact(
        self, details: Mapping[str, Any], session: Session
    ) -> Deferred[ContactCreated]:
        """Store a new contact; refuse an existing account."""

        def make() -> ContactCreated:
            account = str(details["account"])
            if account in self.contacts:
                raise ContactExistsError(
                    "contact_create", status=202, code=202, message="Contact already exists!"
                )
            self.contacts[account] = dict(details)
            return ContactCreated(account=account, id=str(len(self.contacts)))

        return self._answer("create_contact", make, details=dict(details))

    def update_contact(
        self, account: str, details: Mapping[str, Any], session: Session
    ) -> Deferred[None]:
        """Merge fields into a contact (one level deep)."""

        def make() -> None:
            if account not in self.contacts:
                raise NotFoundError("contact_update", status=404, code=404, message="not found")
            self.contacts[account].update(details)

        return self._answer("update_contact", make, account=account, details=dict(details))


@implementer(IAiaAPI)
class FakeAia:
    """An in-memory AIA endpoint: records what is posted.

    :ivar posted: every record accepted, in order.
    :ivar failures: exceptions the next posts fail with, in order.
    """

    def __init__(self) -> None:
        self.posted: list[AiaRecord] = []
        self.failures: list[BaseException] = []

    def post(self, record: AiaRecord) -> Deferred[Any]:
        """Record ``record``, or fail with the next queued failure."""
        if self.failures:
            return fail(self.failures.pop(0))
        self.posted.append(record)
        return succeed(None)
