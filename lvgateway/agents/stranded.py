"""Stranded agents: closing, through LiveVox's API, a call LiveVox holds on an agent the gateway does not know.

LiveVox sometimes keeps a virtual agent INCALL or in WRAPUP with a call the
gateway never accepted or never closed: an INVITE that never arrived, a call
lost in a crash, a call the gateway ended as not routed by LiveVox. Nobody
would save its term code, and the agent would take no call again until a
person closed it. Reconciliation (:mod:`~lvgateway.agents.reconcile`) finds
such a call (drift ``unknown_call``); the agent repairs itself when

- LiveVox still shows the same call, its line INCALL or in WRAPUP
  (:data:`REPAIRABLE_STATES`), on a status read made at least
  ``AgentTimings.stranded_grace`` after the gateway first saw it (a failed
  read repairs nothing). The grace is counted from the gateway's first sight
  of the call, not from LiveVox's ``stateChangedTime``, so no clock skew can
  shorten it; a call is repaired at most one reconcile interval plus the
  grace after LiveVox put it on the line;
- no INVITE carrying that call's ``Session-ID`` reached the gateway
  (:meth:`~lvgateway.agents.interfaces.IAgentPool.invite_seen`): a call
  whose INVITE was seen is the call part's to close, and a person's when it
  did not; and
- the status names both the call's ``callTransactionId`` and ``callSessionId``.

The repair, with no SIP dialog to end (:class:`StrandedRepairer`):

1. fetch the service's term code catalogue and find the configured term code
   (``WrapupConfig.stranded_term_code``, by default the transfer term code,
   so a customer who may still be waiting is handed to a person), else the
   fallback term code;
2. save it for the call (``PUT /callControl/agent/call/termCode``) with the
   call's ids and phone number from the status, and ``moveAgentToNotReady``
   as the pool decides (:func:`~lvgateway.agents.state.moves_not_ready`);
3. only if LiveVox refuses that save (a 4xx other than 401) while a fresh
   status read shows the line INCALL with the same call: end the call
   (``POST /callControl/agent/customer/call/end``, which names no call, so it
   is sent only when the line is known to hold this one) and save the term
   code again.

Each repair is logged once at warn and counted in
``lvgateway_agent_repairs_total{outcome}`` (:data:`REPAIR_OUTCOMES`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from lvgateway.config.model import AgentTimings, WrapupConfig
from lvgateway.livevox.errors import LiveVoxClientError, SessionExpiredError
from lvgateway.livevox.interfaces import ILiveVoxAgentAPI, ILiveVoxCallAPI
from lvgateway.livevox.parsing import BUSY_LINE_STATES, AgentStatus, Session, TermCode
from lvgateway.livevox.termcode_catalogue import choose_term_code

__all__ = [
    "INVITES_REMEMBERED",
    "REPAIRABLE_STATES",
    "REPAIR_OUTCOMES",
    "RecentInvites",
    "RepairError",
    "RepairResult",
    "StrandedCall",
    "StrandedRepairer",
    "StrandedSettings",
    "stranded_call",
]

log = Logger("lvgateway.agents")

#: The ``outcome`` label values of ``lvgateway_agent_repairs_total``:
#: ``term_code`` (the term code closed the call), ``call_end`` (LiveVox
#: refused the term code while INCALL: the call was ended, then the term code
#: saved), ``failed`` (an attempt failed; tried again at a later look), and
#: ``invite_seen`` (not repaired: the gateway saw the call's INVITE; counted
#: once per call).
REPAIR_OUTCOMES = ("term_code", "call_end", "failed", "invite_seen")

#: The line states whose call is closed: a call in progress, or ended and
#: waiting for its term code. The other busy states (a transfer, a hold, a
#: call being offered or dialled) are LiveVox's own doing, left alone.
REPAIRABLE_STATES = frozenset({"INCALL", "WRAPUP"})

#: How many recent INVITE Session-IDs the pool keeps per agent. An agent
#: takes one call at a time and a stranded call is judged a minute or so
#: after it appears, so a few dozen reach far past any call still in question.
INVITES_REMEMBERED = 32


def _session_key(call_session_id: str) -> str:
    """Session-IDs compare ignoring case, blanks and any header parameters (RFC 7989 ``;remote=``)."""
    return call_session_id.split(";", 1)[0].strip().lower()


class RecentInvites:
    """The Session-IDs of the latest INVITEs for one agent's number, the oldest forgotten first.

    :param size: how many are kept.
    """

    def __init__(self, size: int = INVITES_REMEMBERED) -> None:
        self._ids: deque[str] = deque(maxlen=size)

    def add(self, call_session_id: str | None) -> None:
        """Remember an INVITE's Session-ID; one without any vouches for no call."""
        if call_session_id and call_session_id.strip():
            key = _session_key(call_session_id)
            if key in self._ids:
                self._ids.remove(key)
            self._ids.append(key)

    def __contains__(self, call_session_id: object) -> bool:
        return isinstance(call_session_id, str) and _session_key(call_session_id) in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)


@attrs.frozen
class StrandedSettings:
    """What the pool needs to repair stranded agents.

    :param grace: ``AgentTimings.stranded_grace``.
    :param term_code: the term code to save (a config name, LiveVox name or id).
    :param names: ``WrapupConfig.term_codes``.
    :param fallback: ``WrapupConfig.fallback_term_code``.
    """

    grace: float
    term_code: str
    names: Mapping[str, str]
    fallback: str

    @classmethod
    def from_config(cls, timings: AgentTimings, wrapup: WrapupConfig) -> StrandedSettings | None:
        """Return the settings, or ``None`` when ``repair_stranded`` is off."""
        if not timings.repair_stranded:
            return None
        return cls(
            grace=timings.stranded_grace,
            term_code=wrapup.stranded_term_code or wrapup.transfer_term_code,
            names=dict(wrapup.term_codes),
            fallback=wrapup.fallback_term_code,
        )


@attrs.frozen
class StrandedCall:
    """A call LiveVox holds on an agent, as one status read showed it.

    :param key: the reconciliation's key for it (``Finding.busy_key``).
    :param state: the line's state (``INCALL``, ``WRAPUP``…).
    :param call_transaction_id: LiveVox's ``callTransactionId``.
    :param call_session_id: LiveVox's ``callSessionId``, the INVITE's ``Session-ID``.
    :param phone_number: the customer's number (``phoneDialed``).
    :param account: the contact's account.
    :param service_id: the call's service, when LiveVox said.
    :param line_number: the line it is on, when not the main (``ACD``) line.
    """

    key: str
    state: str
    call_transaction_id: str | None
    call_session_id: str | None
    phone_number: str | None = None
    account: str | None = None
    service_id: str | None = None
    line_number: str | None = None

    @property
    def repairable(self) -> bool:
        """Whether LiveVox named both ids a term code save needs."""
        return bool(self.call_transaction_id and self.call_session_id)

    def describe(self) -> str:
        """The call for a log line: ``147516594361 (UF200T…@10.0.0.1, INCALL)``."""
        return (
            f"{self.call_transaction_id or '(no transaction id)'}"
            f" ({self.call_session_id or 'no session id'}, {self.state})"
        )


def stranded_call(status: AgentStatus, key: str) -> StrandedCall | None:
    """Return the call ``key`` names in a status read, on a line that holds the agent busy.

    :param status: LiveVox's answer.
    :param key: ``Finding.busy_key`` of that read.
    """
    for line in status.lines:
        state = (line.state or "").upper()
        call = line.call
        if state not in BUSY_LINE_STATES or call is None:
            continue
        if key in (call.call_transaction_id, call.call_session_id):
            number = (line.line_number or "").upper()
            return StrandedCall(
                key=key,
                state=state,
                call_transaction_id=call.call_transaction_id,
                call_session_id=call.call_session_id,
                phone_number=call.phone_number,
                account=call.account_number,
                service_id=call.service_id,
                line_number=line.line_number if number and number != "ACD" else None,
            )
    return None


def _same_call(status: AgentStatus, call: StrandedCall) -> str | None:
    """Return the state of the line holding ``call`` in ``status``, or ``None`` when none does."""
    for line in status.lines:
        found = line.call
        if (
            found is not None
            and found.call_transaction_id == call.call_transaction_id
            and found.call_session_id is not None
            and call.call_session_id is not None
            and _session_key(found.call_session_id) == _session_key(call.call_session_id)
        ):
            return (line.state or "").upper()
    return None


class RepairError(Exception):
    """A repair could not be made as it stands; another look may do better."""


@attrs.frozen
class RepairResult:
    """What a repair did.

    :param outcome: ``term_code`` or ``call_end`` (see :data:`REPAIR_OUTCOMES`).
    :param term_code: the term code saved.
    :param fallback: whether it is the fallback, the one asked for being unknown.
    :param refusal: LiveVox's refusal of the first save, on the ``call_end`` path.
    """

    outcome: str
    term_code: TermCode
    fallback: bool = False
    refusal: str | None = None


@attrs.define
class StrandedRepairer:
    """Closes stranded calls at LiveVox; shared by every agent of a pool.

    :param agent_api: LiveVox's agent API (catalogue and status reads).
    :param call_api: LiveVox's call API (term code save and call end).
    :param settings: the grace and the term code.
    """

    agent_api: ILiveVoxAgentAPI
    call_api: ILiveVoxCallAPI
    settings: StrandedSettings

    @property
    def grace(self) -> float:
        """How long a call must be held before it is repaired."""
        return self.settings.grace

    async def _term_code(self, session: Session, service_id: str) -> tuple[TermCode, bool]:
        """Fetch the service's catalogue (repairs are rare: never a stale copy) and find the term code."""
        catalogue = await self.agent_api.term_codes(session, service_id)
        s = self.settings
        chosen = choose_term_code(catalogue, s.term_code, s.names, s.fallback)
        if chosen is None:
            raise RepairError(
                f"term code {s.term_code!r} and the fallback {s.fallback!r} are both unknown"
                f" in service {service_id}"
            )
        return chosen

    def _save(
        self, session: Session, call: StrandedCall, code: TermCode, move_not_ready: bool
    ) -> Deferred[None]:
        assert call.call_transaction_id is not None and call.call_session_id is not None
        return self.call_api.save_term_code(
            session,
            call_transaction_id=call.call_transaction_id,
            call_session_id=call.call_session_id,
            term_code_id=code.id,
            phone_dialed=call.phone_number,
            move_agent_to_not_ready=move_not_ready,
            service_id=call.service_id,
            account=call.account,
            line_number=call.line_number,
        )

    async def repair(
        self,
        user_name: str,
        session: Session,
        call: StrandedCall,
        move_not_ready: bool,
        service_id: str,
    ) -> RepairResult:
        """Close ``call`` at LiveVox: its term code, and the call end only where LiveVox asks for it.

        :param user_name: the agent, for the log.
        :param session: the agent's session.
        :param call: the call, from a status read made after the grace.
        :param move_not_ready: ``moveAgentToNotReady``, as the pool decides.
        :param service_id: the agent's service, when the status names none.
        :raises RepairError: when the repair cannot be made as it stands.
        :raises LiveVoxError: when LiveVox fails a request; a
            :class:`~lvgateway.livevox.errors.SessionExpiredError` means log in again.
        """
        if not call.repairable:
            raise RepairError("LiveVox names no callTransactionId and callSessionId for it")
        code, fallback = await self._term_code(session, call.service_id or service_id)
        if fallback:
            log.error(
                "agent {agent}: term code {requested!r} for stranded calls is unknown in"
                " service {service_id}: using the fallback {fallback!r} ({term_code_id})",
                agent=user_name,
                requested=self.settings.term_code,
                service_id=call.service_id or service_id,
                fallback=self.settings.fallback,
                term_code_id=code.id,
            )
        try:
            await self._save(session, call, code, move_not_ready)
        except SessionExpiredError:
            raise
        except LiveVoxClientError as e:
            refusal = str(e)
        else:
            return RepairResult("term_code", code, fallback)
        # LiveVox refused the term code: only a line INCALL with this very call
        # explains that as "end the call first".
        state = _same_call(await self.agent_api.agent_status(session), call)
        if state is None or state not in BUSY_LINE_STATES:
            raise RepairError(
                f"LiveVox refused the term code ({refusal}) and no longer holds the call"
            )
        if state != "INCALL":
            raise RepairError(f"LiveVox refused the term code ({refusal}) with the line {state}")
        log.info(
            "agent {agent}: LiveVox refused the term code for call {call} while INCALL"
            " ({refusal}): ending the call, then saving it again",
            agent=user_name,
            call=call.describe(),
            refusal=refusal,
        )
        await self.call_api.end_call(session, call.line_number)
        await self._save(session, call, code, move_not_ready)
        return RepairResult("call_end", code, fallback, refusal)
