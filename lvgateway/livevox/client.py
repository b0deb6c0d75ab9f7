"""The LiveVox REST client: one method for each call the gateway makes.

One :class:`LiveVoxClient` serves every virtual agent: each method takes the
agent's :class:`~lvgateway.livevox.parsing.Session`, and all of them share
one :class:`~lvgateway.livevox.transport.LiveVoxTransport` (and so its cap
on requests in flight).

Where docs/livevox-api.md leaves a fact open, the reading chosen is noted at
the method. The main ones:

- ``agent`` at login, and ``moveAgentToNotReady`` at term code save, are
  sent as JSON booleans (LiveVox's own Java client, LVNET and AZFUNC do;
  the guide's examples quote them). The manual conference's flags are sent
  as the strings ``"true"``/``"false"``, which COGNIGY says LiveVox expects.
- ``stateChangedAfter`` is sent both in the JSON body, as the guide shows,
  and as a query parameter, as LVNET does: a server that reads either
  place finds it, and the duplicate is harmless. Without it the body is
  ``{}`` (AZFUNC: the body must exist though every field is optional).
- ``LV-Access`` goes only on the Session API calls (login, validate,
  logout), as LiveVox's documentation requires; every other call carries
  ``LV-Session`` alone, so the API token travels as little as possible.
- Contact calls run on a separate user login when
  ``LiveVoxConfig.contact_user`` is set (agent sessions may lack the
  Contact API's roles): the client logs that user in (``agent: false``) on
  first use, shares the session between calls, and on a 401 logs in again
  and repeats the call once. A 401 means LiveVox did not act on the
  request, so repeating even a create is safe.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from treq.client import HTTPClient
from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from lvgateway.config.model import LiveVoxConfig
from lvgateway.config.secret import Secret
from lvgateway.livevox import calls
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    NotFoundError,
    SessionExpiredError,
)
from lvgateway.livevox.interfaces import ILiveVoxAgentAPI, ILiveVoxCallAPI
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.parsing import (
    AgentStatus,
    ContactCreated,
    Session,
    TermCodeCatalogue,
    error_fields,
    parse_agent_status,
    parse_contact,
    parse_contact_created,
    parse_json,
    parse_login,
    parse_term_codes,
)
from lvgateway.livevox.transport import HttpResult, LiveVoxTransport, deferred_method

__all__ = ["LiveVoxClient", "as_epoch_millis"]

log = Logger()

T = TypeVar("T")


def _ignore_body(result: HttpResult) -> None:
    """Accept any 2xx answer, body or none (LiveVox answers these calls 204)."""


def _json_of(result: HttpResult) -> Any:
    """Return the parsed body of an answer; ``None`` when empty."""
    return parse_json(result.body)


def _service_id_value(service_id: str) -> int | str:
    """Return a service id as a JSON number when it is all digits, as LVNET's model has it."""
    text = service_id.strip()
    return int(text) if text.isdigit() else text


def _flag(value: bool) -> str:
    """Return a boolean as LiveVox's string form, ``"true"`` or ``"false"``."""
    return "true" if value else "false"


def _is_exists(code: int | None, message: str | None) -> bool:
    """Whether an answer's code and message say the contact already exists."""
    return code == 202 or "already exist" in (message or "").lower()


@implementer(ILiveVoxAgentAPI, ILiveVoxCallAPI)
class LiveVoxClient:
    """LiveVox's Session, Call Control and Contact APIs, for every agent of the gateway.

    :param config: the LiveVox settings.
    :param clock: the clock timeouts and retry delays run on.
    :param http: the treq client (see
        :func:`~lvgateway.livevox.transport.http_client_for`).
    :param metrics: where requests are counted; share one with the AIA client.
    :param jitter: the retry jitter source, a number in ``[0, 1)``.
    """

    def __init__(
        self,
        config: LiveVoxConfig,
        clock: IReactorTime,
        http: HTTPClient,
        metrics: LiveVoxMetrics,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._config = config
        self._transport = LiveVoxTransport(http, clock, config, metrics, jitter)
        self._contact_session: Session | None = None
        self._contact_lock = DeferredLock()

    @property
    def transport(self) -> LiveVoxTransport:
        """The HTTP layer, shared by every call."""
        return self._transport

    # -- Session API -------------------------------------------------------------

    @deferred_method
    async def login(self, user_name: str, password: Secret, agent: bool = True) -> Session:
        """Log in; ``agent=True`` for a virtual agent.

        Sends ``{"clientName", "userName", "password", "agent"}`` with
        ``LV-Access``. Retried when LiveVox is unavailable: a repeated login
        returns the same session. Warns when the password expires within
        ``password_expiry_warning_days``.

        :param user_name: the LiveVox login.
        :param password: its password, revealed only into the request body.
        :param agent: ``True`` for an agent login, ``False`` for a user login.
        :returns: the new (or current) session.
        :raises LoginDeniedError: on 401, 403 or 404, with LiveVox's message.
        """
        body = {
            "clientName": self._config.client_name,
            "userName": user_name,
            "password": password.reveal(),
            "agent": agent,
        }
        session = await self._transport.request(
            calls.LOGIN,
            lambda r: parse_login(parse_json(r.body), user_name, agent),
            agent=user_name,
            body=body,
            send_body=True,
        )
        days = session.days_until_password_expires
        # Agents' expiring passwords are warned about by the agent pool, with the
        # agent's state; here only the contact user's, which nothing else logs in.
        if not agent and days is not None and days <= self._config.password_expiry_warning_days:
            log.warn(
                "LiveVox password of {agent} expires in {days} days",
                agent=user_name,
                days=days,
            )
        log.info(
            "LiveVox login of {agent}: session {session}",
            agent=user_name,
            session=session.short_id,
        )
        return session

    @deferred_method
    async def validate(self, session: Session) -> bool:
        """Ask whether a session is valid: ``GET /session/validate/{sessionId}``.

        :param session: the session.
        :returns: ``True`` on a 2xx; ``False`` on 404 (LiveVox's documented
            "not valid") or 401.
        """
        try:
            await self._transport.request(
                calls.VALIDATE,
                _ignore_body,
                agent=session.user_name,
                segments=(session.session_id,),
            )
        except (NotFoundError, SessionExpiredError):
            return False
        return True

    @deferred_method
    async def logout(self, session: Session) -> bool:
        """End a session: ``DELETE /session/logout/{sessionId}``.

        :param session: the session.
        :returns: ``True`` when ended now; ``False`` when LiveVox answered 404
            or 401, the session being gone already (LiveVox's own client
            ignores the 404 too).
        """
        try:
            await self._transport.request(
                calls.LOGOUT,
                _ignore_body,
                agent=session.user_name,
                segments=(session.session_id,),
            )
        except (NotFoundError, SessionExpiredError):
            log.info(
                "LiveVox session {session} of {agent} was already gone at logout",
                session=session.short_id,
                agent=session.user_name,
            )
            return False
        log.info(
            "LiveVox logout of {agent}: session {session}",
            agent=session.user_name,
            session=session.short_id,
        )
        return True

    # -- Agent lifecycle -----------------------------------------------------------

    @deferred_method
    async def join_service(
        self, session: Session, service_id: str, phone_number: str, sip_id: str | None = None
    ) -> None:
        """Join a service: ``POST /callControl/agent/service/join?serviceId=&phoneNumber=``.

        No body. The 899 number goes verbatim into the query.

        :param session: the agent's session.
        :param service_id: the service.
        :param phone_number: the number LiveVox calls the agent on.
        :param sip_id: LiveVox's optional ``sipId``.
        """
        params = [("serviceId", service_id), ("phoneNumber", phone_number)]
        if sip_id is not None:
            params.append(("sipId", sip_id))
        await self._transport.request(
            calls.SERVICE_JOIN, _ignore_body, session=session, params=params
        )

    @deferred_method
    async def leave_service(self, session: Session) -> None:
        """Leave the service: ``POST /callControl/agent/service/leave``.

        :param session: the agent's session.
        """
        await self._transport.request(calls.SERVICE_LEAVE, _ignore_body, session=session)

    @deferred_method
    async def ready(self, session: Session) -> None:
        """Go READY: ``POST /callControl/agent/status/ready``.

        :param session: the agent's session.
        """
        await self._transport.request(calls.READY, _ignore_body, session=session)

    @deferred_method
    async def not_ready(self, session: Session, reason_code: str | None = None) -> None:
        """Go NOT READY: ``POST /callControl/agent/status/notReady[?reasonCode=]``.

        :param session: the agent's session.
        :param reason_code: the optional reason, sent as given (codes are
            probably client-configured).
        """
        params = [("reasonCode", reason_code)] if reason_code else []
        await self._transport.request(calls.NOT_READY, _ignore_body, session=session, params=params)

    @deferred_method
    async def agent_status(
        self, session: Session, state_changed_after: int | None = None
    ) -> AgentStatus:
        """Read the agent's status: ``POST /callControl/agent/status``.

        ``stateChangedAfter`` (epoch milliseconds, as a string) goes both in
        the body and in the query (see the module docstring). An empty
        answer gives an :class:`~lvgateway.livevox.parsing.AgentStatus`
        with ``unchanged`` set.

        :param session: the agent's session.
        :param state_changed_after: epoch milliseconds, or ``None``.
        """
        body: dict[str, str] = {}
        params: list[tuple[str, str]] = []
        if state_changed_after is not None:
            body["stateChangedAfter"] = str(int(state_changed_after))
            params.append(("stateChangedAfter", str(int(state_changed_after))))
        return await self._transport.request(
            calls.AGENT_STATUS,
            lambda r: parse_agent_status(parse_json(r.body)),
            session=session,
            params=params,
            body=body,
            send_body=True,
        )

    @deferred_method
    async def term_codes(self, session: Session, service_id: str) -> TermCodeCatalogue:
        """Read a service's term codes: ``GET /callControl/agent/termCode?serviceId=``.

        :param session: an agent's session.
        :param service_id: the service.
        """
        return await self._transport.request(
            calls.TERM_CODES,
            lambda r: parse_term_codes(parse_json(r.body), service_id),
            session=session,
            params=[("serviceId", service_id)],
        )

    # -- Closing a call ------------------------------------------------------------

    @deferred_method
    async def save_term_code(
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
    ) -> None:
        """Save the call's term code: ``PUT /callControl/agent/call/termCode``.

        Sends the required ``callTransactionId``, ``callSessionId``,
        ``termCodeId`` (strings) and ``moveAgentToNotReady`` (a JSON
        boolean), ``phoneDialed`` when known (COGNIGY omits it when it is
        not), and the optional fields given. ``serviceId`` goes as a number
        when it is all digits. Sent once, never retried here: an answer lost
        to a 5xx or a timeout may follow a save LiveVox applied (see
        :mod:`lvgateway.livevox.calls`).

        :param session: the agent's session.
        :param call_transaction_id: LiveVox's ``callTransactionId``.
        :param call_session_id: LiveVox's ``callSessionId``.
        :param term_code_id: the term code's id in the service's catalogue.
        :param phone_dialed: the customer's number, or ``None`` when unknown.
        :param move_agent_to_not_ready: leave the agent NOT READY afterwards.
        :param payment_amount: sent as ``paymentAmt``.
        :param line_number: the ``lineNumber`` query parameter (``ACD`` by default at LiveVox).
        """
        body: dict[str, Any] = {
            "callTransactionId": call_transaction_id,
            "callSessionId": call_session_id,
            "termCodeId": term_code_id,
            "moveAgentToNotReady": move_agent_to_not_ready,
        }
        if phone_dialed:
            body["phoneDialed"] = phone_dialed
        else:
            log.warn(
                "LiveVox term code for {agent} sent without phoneDialed (unknown)",
                agent=session.user_name,
            )
        optional: dict[str, Any] = {
            "serviceId": _service_id_value(service_id) if service_id else None,
            "account": account,
            "agentEnteredAccount": agent_entered_account,
            "paymentAmt": payment_amount,
            "notes": notes,
            "reasonCode": reason_code,
            "immediateCallbackNumber": immediate_callback_number,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        params = [("lineNumber", line_number)] if line_number else []
        await self._transport.request(
            calls.TERM_CODE_SAVE,
            _ignore_body,
            session=session,
            params=params,
            body=body,
            send_body=True,
        )
        log.info(
            "LiveVox term code {term_code} saved for {agent}, transaction {transaction}",
            term_code=term_code_id,
            agent=session.user_name,
            transaction=call_transaction_id,
            not_ready=move_agent_to_not_ready,
        )

    @deferred_method
    async def end_call(self, session: Session, line_number: str | None = None) -> None:
        """Hang up the customer: ``POST /callControl/agent/customer/call/end``.

        Never retried: the request names no call, so a repeat could end the
        agent's next one.

        :param session: the agent's session.
        :param line_number: the ``lineNumber`` query parameter.
        """
        params = [("lineNumber", line_number)] if line_number else []
        await self._transport.request(calls.CALL_END, _ignore_body, session=session, params=params)

    @deferred_method
    async def manual_conference(
        self,
        session: Session,
        number: str,
        put_call_on_hold: bool = True,
        secure_transfer: bool = False,
        line_number: str | None = None,
    ) -> None:
        """Conference the call to a number: ``POST /callControl/agent/conference/manual``.

        Body ``{"supervisorNumber", "putCallOnHold", "secureTransfer"}`` with
        string booleans, as COGNIGY sends them; defaults as in its example.
        Never retried: a repeat could dial twice.

        :param session: the agent's session.
        :param number: the number to dial.
        :param put_call_on_hold: hold the customer while dialling.
        :param secure_transfer: LiveVox's ``secureTransfer``.
        :param line_number: the ``lineNumber`` query parameter.
        """
        body = {
            "supervisorNumber": number,
            "putCallOnHold": _flag(put_call_on_hold),
            "secureTransfer": _flag(secure_transfer),
        }
        params = [("lineNumber", line_number)] if line_number else []
        await self._transport.request(
            calls.CONFERENCE_MANUAL,
            _ignore_body,
            session=session,
            params=params,
            body=body,
            send_body=True,
        )

    # -- Contacts ------------------------------------------------------------------

    @deferred_method
    async def read_contact(self, account: str, session: Session) -> dict[str, Any]:
        """Read a contact: ``GET /contact/contacts/{account}``, unwrapping ``readContactDetails``.

        :param account: the contact's account.
        :param session: the agent's session (the contact user's when configured).
        :raises NotFoundError: when LiveVox has no such contact.
        """

        async def once(s: Session) -> dict[str, Any]:
            return await self._transport.request(
                calls.CONTACT_READ,
                lambda r: parse_contact(parse_json(r.body)),
                session=s,
                segments=(account,),
            )

        return await self._with_contact_session(session, once)

    @deferred_method
    async def create_contact(self, details: Mapping[str, Any], session: Session) -> ContactCreated:
        """Create a contact: ``{"createContactDetails": details}`` to ``/contact/contacts``.

        The method is ``LiveVoxConfig.contact_create_method`` (POST, or PUT
        as the guide shows). Never retried after a 5xx or a timeout.

        :param details: the contact's fields; ``account`` is required.
        :param session: the agent's session (the contact user's when configured).
        :raises ContactExistsError: on LiveVox's ``{"code":202,"message":"Contact
            already exists!"}`` (whatever its HTTP status), on a 409, or on a
            4xx whose message says the contact exists.
        :raises ValueError: when ``details`` has no account.
        """
        account = str(details.get("account") or "").strip()
        if not account:
            raise ValueError("a contact to create needs an account")

        def parse(result: HttpResult) -> ContactCreated:
            code, message = error_fields(result.body)
            data = _json_of(result)
            has_id = isinstance(data, Mapping) and "id" in data
            if not has_id and (result.status == 202 or _is_exists(code, message)):
                raise ContactExistsError(
                    calls.CONTACT_CREATE.name,
                    status=result.status,
                    code=code,
                    message=message,
                )
            return parse_contact_created(data, account)

        async def once(s: Session) -> ContactCreated:
            try:
                return await self._transport.request(
                    calls.CONTACT_CREATE,
                    parse,
                    session=s,
                    body={"createContactDetails": dict(details)},
                    send_body=True,
                    method=self._config.contact_create_method,
                )
            except SessionExpiredError:
                raise
            except LiveVoxClientError as e:
                if e.status == 409 or _is_exists(e.code, e.message):
                    raise ContactExistsError(
                        e.call, status=e.status, code=e.code, message=e.message
                    ) from e
                raise

        return await self._with_contact_session(session, once)

    @deferred_method
    async def update_contact(
        self, account: str, details: Mapping[str, Any], session: Session
    ) -> None:
        """Update some fields: ``PUT /contact/contacts/{account}`` with ``{"updateContactDetails": details}``.

        Only the fields sent change; LiveVox answers 204.

        :param account: the contact's account.
        :param details: the fields to change (``person``, ``phone``, ``customFields``…).
        :param session: the agent's session (the contact user's when configured).
        :raises NotFoundError: when LiveVox has no such contact.
        """

        async def once(s: Session) -> None:
            await self._transport.request(
                calls.CONTACT_UPDATE,
                _ignore_body,
                session=s,
                segments=(account,),
                body={"updateContactDetails": dict(details)},
                send_body=True,
            )

        await self._with_contact_session(session, once)

    async def _contact_login(self) -> Session:
        """Return the contact user's session, logging it in when there is none."""
        user = self._config.contact_user
        assert user is not None
        await self._contact_lock.acquire()
        try:
            if self._contact_session is None:
                self._contact_session = await self.login(user.user_name, user.password, agent=False)
            return self._contact_session
        finally:
            self._contact_lock.release()

    async def _with_contact_session(
        self, agent_session: Session, call: Callable[[Session], Coroutine[Any, Any, T]]
    ) -> T:
        """Run a contact call on the contact user's session (re-logging in once on 401), or the agent's."""
        if self._config.contact_user is None:
            return await call(agent_session)
        session = await self._contact_login()
        try:
            return await call(session)
        except SessionExpiredError:
            log.info(
                "LiveVox contact user {user}: session {session} expired; logging in again",
                user=session.user_name,
                session=session.short_id,
            )
            if self._contact_session is session:
                self._contact_session = None
            return await call(await self._contact_login())

    @deferred_method
    async def close(self) -> None:
        """Log out the contact user's session, if one is open; for the gateway's stop."""
        session, self._contact_session = self._contact_session, None
        if session is not None:
            await self.logout(session)


def as_epoch_millis(seconds: float) -> int:
    """Return epoch milliseconds for a time in epoch seconds, for ``stateChangedAfter``.

    :param seconds: a time such as ``reactor.seconds()``.
    """
    return round(seconds * 1000)
