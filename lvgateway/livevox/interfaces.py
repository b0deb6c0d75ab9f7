# ruff: noqa: N805  (zope Interface methods are declared without self)
"""The seams other parts depend on: LiveVox's agent lifecycle, its call wrap-up, and the AIA.

:class:`~lvgateway.livevox.client.LiveVoxClient` provides both
:class:`ILiveVoxAgentAPI` (used by the agent pool) and
:class:`ILiveVoxCallAPI` (used by the wrap-up);
:class:`~lvgateway.livevox.aia.AiaClient` provides :class:`IAiaAPI`.
:mod:`lvgateway.livevox.testing` has verified in-memory fakes of all three.

Every method returns a cancellable Deferred. Unless stated otherwise each
errbacks with a :class:`~lvgateway.livevox.errors.LiveVoxError` subclass:
:class:`~lvgateway.livevox.errors.SessionExpiredError` when the session is
no longer valid (log in again),
:class:`~lvgateway.livevox.errors.LiveVoxUnavailableError` when LiveVox
could not be reached or answered 5xx (after the retries the call allows),
:class:`~lvgateway.livevox.errors.LiveVoxClientError` for other refusals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from zope.interface import Interface

from lvgateway.config.secret import Secret
from lvgateway.livevox.parsing import AgentStatus, ContactCreated, Session, TermCodeCatalogue

if TYPE_CHECKING:
    from lvgateway.livevox.aia import AiaRecord

__all__ = ["IAiaAPI", "ILiveVoxAgentAPI", "ILiveVoxCallAPI"]


class ILiveVoxAgentAPI(Interface):
    """A virtual agent's lifecycle at LiveVox: session, service, READY and NOT READY, status."""

    def login(user_name: str, password: Secret, agent: bool = True) -> Deferred[Session]:
        """Log in and return a :class:`~lvgateway.livevox.parsing.Session`.

        :param user_name: the LiveVox login.
        :param password: a :class:`~lvgateway.config.secret.Secret`.
        :param agent: ``True`` for an agent login (virtual agents), ``False``
            for a user login.
        :returns: ``Deferred[Session]``; errbacks with
            :class:`~lvgateway.livevox.errors.LoginDeniedError` (carrying
            LiveVox's message) when client, user, password or token is wrong.
        """

    def validate(session: Session) -> Deferred[bool]:
        """Ask whether a session is still valid.

        :param session: the :class:`~lvgateway.livevox.parsing.Session`.
        :returns: ``Deferred[bool]``: ``False`` when LiveVox answers 404 or 401.
        """

    def logout(session: Session) -> Deferred[bool]:
        """End a session.

        :param session: the session to end.
        :returns: ``Deferred[bool]``: ``True`` when LiveVox ended it now,
            ``False`` when it was already gone (404 or 401).
        """

    def join_service(
        session: Session, service_id: str, phone_number: str, sip_id: str | None = None
    ) -> Deferred[None]:
        """Join the agent to a service, to be called on its 899 number.

        :param session: the agent's session.
        :param service_id: the LiveVox service.
        :param phone_number: the agent's 899 number, sent verbatim.
        :param sip_id: LiveVox's optional ``sipId``.
        :returns: ``Deferred[None]``.
        """

    def leave_service(session: Session) -> Deferred[None]:
        """Take the agent out of its service.

        :returns: ``Deferred[None]``.
        """

    def ready(session: Session) -> Deferred[None]:
        """Set the agent READY for calls.

        :returns: ``Deferred[None]``.
        """

    def not_ready(session: Session, reason_code: str | None = None) -> Deferred[None]:
        """Set the agent NOT READY.

        :param reason_code: LiveVox's optional ``reasonCode`` query parameter.
        :returns: ``Deferred[None]``.
        """

    def agent_status(
        session: Session, state_changed_after: int | None = None
    ) -> Deferred[AgentStatus]:
        """Return the agent's lines and the call on them.

        :param state_changed_after: epoch milliseconds; ``None`` asks for the
            whole current status.
        :returns: ``Deferred[AgentStatus]``
            (:class:`~lvgateway.livevox.parsing.AgentStatus`).
        """

    def term_codes(session: Session, service_id: str) -> Deferred[TermCodeCatalogue]:
        """Return a service's term code catalogue.

        :returns: ``Deferred[TermCodeCatalogue]``
            (:class:`~lvgateway.livevox.parsing.TermCodeCatalogue`).
        """


class ILiveVoxCallAPI(Interface):
    """Closing a call with LiveVox: term code, end, transfer, and contacts."""

    def save_term_code(
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
        """Save the call's term code (its disposition), which closes it at LiveVox.

        :param move_agent_to_not_ready: ``True`` leaves the agent NOT READY
            afterwards; ``False`` lets it take the next call.
        :returns: ``Deferred[None]``. It is sent once, never repeated by the
            transport: after a 5xx, a timeout or a lost connection it may
            have been applied all the same, so check the agent's status
            before saving again.
        """

    def end_call(session: Session, line_number: str | None = None) -> Deferred[None]:
        """Hang up the customer's call on the agent's line.

        :returns: ``Deferred[None]``.
        """

    def manual_conference(
        session: Session,
        number: str,
        put_call_on_hold: bool = True,
        secure_transfer: bool = False,
        line_number: str | None = None,
    ) -> Deferred[None]:
        """Conference (transfer) the call to a phone number.

        :param number: the number to dial (LiveVox's ``supervisorNumber``).
        :returns: ``Deferred[None]``.
        """

    def read_contact(account: str, session: Session) -> Deferred[dict[str, Any]]:
        """Read a contact.

        :param account: the contact's account.
        :param session: the agent's session; the contact user's own session
            is used instead when one is configured.
        :returns: ``Deferred[dict]`` of the contact's fields; errbacks with
            :class:`~lvgateway.livevox.errors.NotFoundError` when there is none.
        """

    def create_contact(details: Mapping[str, Any], session: Session) -> Deferred[ContactCreated]:
        """Create a contact.

        :param details: the contact's fields, ``account`` among them.
        :returns: ``Deferred[ContactCreated]``; errbacks with
            :class:`~lvgateway.livevox.errors.ContactExistsError` when the
            account exists.
        """

    def update_contact(
        account: str, details: Mapping[str, Any], session: Session
    ) -> Deferred[None]:
        """Update some of a contact's fields.

        :returns: ``Deferred[None]``; errbacks with
            :class:`~lvgateway.livevox.errors.NotFoundError` when there is no
            such contact.
        """


class IAiaAPI(Interface):
    """The client-specific AI Integration App endpoint: screen-pop data for a human agent."""

    def post(record: AiaRecord) -> Deferred[Any]:
        """Send one call's AIA record.

        :param record: an :class:`~lvgateway.livevox.aia.AiaRecord`.
        :returns: ``Deferred`` of the endpoint's JSON answer, or ``None`` for
            an empty one. Not retried: the wrap-up outbox retries.
        """
