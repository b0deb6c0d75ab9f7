# ruff: noqa: N805  (zope Interface methods are declared without self)
"""The seams of the calls part: what SIP calls, what SIP implements, what the control part reads.

- :class:`ICalls` is the call store as the SIP part and the vendor API see
  it: accept a call, note it connected, take a disposition, end it, transfer
  it. :class:`~lvgateway.calls.service.CallService` provides it.
- :class:`ICallLegs` is implemented *by the SIP part*: the store uses it to
  end the LiveVox leg of a transferred call once LiveVox has the transfer
  ("close this call now, then tell me to hang up"), and, at start-up, the
  legs a crash left up, from the dialogs :meth:`ICalls.note_dialogs` kept.
- :class:`ICallAdmin` is what operators get: list records, re-drive or
  dismiss a dead letter. The control API and the manhole use it.

:mod:`lvgateway.calls.testing` has verified fakes of :class:`ICallLegs` and
:class:`ICalls`.

The calls part tells the agent pool about each call itself
(``call_started`` at acceptance, ``call_ended`` at the end,
``wrapup_done`` once LiveVox has the term code): the SIP part does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from zope.interface import Interface

from lvgateway.calls.outcome import CallEvent, Ending
from lvgateway.calls.records import CallRecord, CallState, Disposition, InviteFacts

__all__ = ["ICallAdmin", "ICallLegs", "ICalls"]


class ICallLegs(Interface):
    """The SIP part's hold on the legs of its calls."""

    def hang_up_livevox(
        call_id: str, reason: str, dialog: Mapping[str, Any] | None = None
    ) -> Deferred[None]:
        """End the LiveVox leg of a call with BYE (and a ``Reason``), and the vendor leg if still up.

        Called once for each call whose outcome held its LiveVox leg up for a
        transfer: after its AIA and term code are saved (or before the term
        code, as ``transfer_order`` says; or when ``transfer_timeout`` runs
        out).

        :param call_id: the gateway's call id.
        :param reason: why, for the ``Reason`` header and the log (``transfer``).
        :param dialog: the LiveVox leg's dialog as noted (:meth:`ICalls.note_dialogs`):
            for a transfer a previous run left held, which the SIP part no
            longer has, the leg is ended from it as an orphan.
        :returns: ``Deferred[None]`` that fires once the BYE is sent, or at
            once when the call's legs are already gone. It should not errback;
            if it does, the failure is logged and nothing else depends on it.
        """

    def tell(call_id: str, event: CallEvent) -> bool:
        """Report an event the call store learned of a live call (LiveVox never routed it).

        The SIP part reports it back through :meth:`ICalls.end` like any of
        its own, and carries out the outcome.

        :returns: whether the SIP part still had the call.
        """

    def end_orphaned(
        call_id: str, dialogs: Mapping[str, Mapping[str, Any]], cause: int, text: str
    ) -> Deferred[None]:
        """End with BYE the legs of a call that a previous run of the gateway left up.

        Called at start-up, by crash recovery, for each call found live with
        saved dialogs (:meth:`ICalls.note_dialogs`), before its wrap-up
        resumes. The BYEs go out once the SIP stack listens.

        :param call_id: the gateway's call id, for the log.
        :param dialogs: each leg's dialog as the SIP part noted it, by leg
            (``livevox``, ``vendor``).
        :param cause: the SIP status code of the BYE's ``Reason`` (RFC 3326).
        :param text: its text.
        :returns: ``Deferred[None]`` that fires once every leg's BYE has its
            final response, or has waited its bound (Timer F, 32 s). It should
            not errback; a leg that cannot be ended is logged.
        """


class ICalls(Interface):
    """The call store, as the SIP part and the vendor API use it.

    Every call the SIP part accepts goes through, in order:
    :meth:`accept` (before the vendor leg is placed), :meth:`connected`
    (vendor leg answered), any number of :meth:`set_disposition`, and
    :meth:`end` for each event that may end it. The wrap-up runs by itself
    from the first event that does.
    """

    def accept(invite: InviteFacts) -> Deferred[CallRecord]:
        """Write the record of a newly accepted call; place the vendor leg only once this fires.

        Looks up LiveVox's call ids in the background when the INVITE did not
        carry the transaction id.

        :returns: ``Deferred[CallRecord]`` fired once the record is committed;
            its ``call_id`` goes to the vendor in ``X-LVGW-Call-ID``. It
            errbacks with
            :class:`~lvgateway.calls.errors.CallStoreUnavailableError` (or an
            SQLite error) when the record cannot be written: answer 503.
        """

    def connected(call_id: str) -> Deferred[CallRecord]:
        """Note that the vendor leg answered.

        :returns: ``Deferred[CallRecord]``; errbacks with
            :class:`~lvgateway.calls.errors.UnknownCallError`.
        """

    def note_dialogs(
        call_id: str, dialogs: Mapping[str, Mapping[str, Any]]
    ) -> Deferred[CallRecord]:
        """Keep the SIP dialog of some legs of a live call, so that a restart can end them with BYE.

        Called when the call connects, and again whenever a leg's dialog
        changes (a request of ours in it takes the next CSeq). Legs not
        named keep what was noted before; an unchanged dialog writes nothing.
        A call no longer live keeps its record as it is.

        :param dialogs: by leg (``livevox``, ``vendor``:
            :data:`~lvgateway.calls.records.DIALOG_LEGS`), JSON values the
            calls part keeps as they are
            (:meth:`lvgateway.sip.dialogs.DialogState.to_json`).
        :returns: ``Deferred[CallRecord]`` fired once the record is committed;
            errbacks with :class:`~lvgateway.calls.errors.UnknownCallError`,
            or ``ValueError`` for a leg name not in ``DIALOG_LEGS``.
        """

    def set_disposition(
        call_id: str, disposition: Disposition, source: str
    ) -> Deferred[CallRecord]:
        """Lay a disposition over what the vendor said before (the JSON API, during the call).

        Accepted until the call's wrap-up has sent its first step.

        :param source: ``api``, ``bye`` or ``refer``, kept on the record.
        :returns: ``Deferred[CallRecord]``; errbacks with
            :class:`~lvgateway.calls.errors.UnknownCallError` or
            :class:`~lvgateway.calls.errors.AlreadyWrappedUpError`.
        """

    def end(call_id: str | None, event: CallEvent) -> Ending:
        """Report an event of a call; get back what it means, decided once, and carry it out.

        The decision is :func:`~lvgateway.calls.outcome.decide` over the
        call's record as it stands: the first event that ends a call fixes
        its end reason, done or transfer, and its term code, and starts its
        wrap-up; a later one changes none of that, though it may still say
        to end a leg that is up. For a transfer with the LiveVox leg up, the
        store ends that leg through :meth:`ICallLegs.hang_up_livevox` after
        the transfer's posts (or when ``transfer_timeout`` runs out).

        :param call_id: the gateway's call id, or ``None`` while the record
            is being written (then nothing is recorded: report the event
            again once :meth:`accept` fires).
        :param event: what happened.
        :returns: the :class:`~lvgateway.calls.outcome.Ending`, at once.
        """

    def lookup(call_id: str) -> Deferred[CallRecord]:
        """Return a call's record, unsettled or finished.

        :returns: ``Deferred[CallRecord]``; errbacks with
            :class:`~lvgateway.calls.errors.UnknownCallError`.
        """


class ICallAdmin(Interface):
    """What an operator may read and do about call records."""

    def lookup(call_id: str) -> Deferred[CallRecord]:
        """Return a call's record (see :meth:`ICalls.lookup`)."""

    def query(
        since: float | None = None, states: Sequence[CallState] | None = None, limit: int = 100
    ) -> Deferred[list[CallRecord]]:
        """Return records changed at or after ``since``, in ``states``, oldest change first.

        :returns: ``Deferred[list[CallRecord]]``.
        """

    def redrive(call_id: str) -> Deferred[CallRecord]:
        """Start a dead letter's wrap-up again, from its failed step, with a fresh ``max_age``.

        :returns: ``Deferred[CallRecord]`` fired once the record is back in
            wrap-up; errbacks with
            :class:`~lvgateway.calls.errors.UnknownCallError` or
            :class:`~lvgateway.calls.errors.NotDeadLetterError`.
        """

    def dismiss(call_id: str) -> Deferred[CallRecord]:
        """Give up on a dead letter: mark it dismissed and hand its agent back to the pool (NOT READY).

        :returns: ``Deferred[CallRecord]``; errbacks as :meth:`redrive`.
        """
