"""Reconciliation: what one agent status read from LiveVox says about drift, as a pure function.

The pool polls each agent's status slowly and staggered
(``AgentTimings.reconcile_interval`` per agent) and hands the answer to
:func:`assess` with what the gateway believes. The kinds of drift, each
counted in ``lvgateway_agent_drifts_total{kind}``:

``logged_out``
    LiveVox has the agent logged off (a supervisor logged it out, or its
    session died: a 401 on the poll counts here too). Repair: log in, join,
    READY again.
``not_joined``
    Logged in but in no service (``LOGON``). Repair: join, then READY.
``not_ready``
    NOT READY at LiveVox where the gateway thinks READY (a supervisor's
    hand, a wrap-up saved with ``moveAgentToNotReady`` the pool did not hear
    of). Repair: READY, when the agent is wanted READY.
``unexpected_ready``
    READY at LiveVox where the gateway wants it NOT READY (paused, closing,
    held): the dangerous one, since LiveVox would send it a call the gateway
    will refuse. Repair: NOT READY.
``unknown_call``
    LiveVox holds the agent in a call or wrap-up the gateway does not know.
    A call just dispatched whose INVITE is still on its way looks the same,
    so it counts only when a second look, a short while later, shows the
    same call. The agent is shown on a call and refused calls. Repair: once
    LiveVox has held the call past ``AgentTimings.stranded_grace`` and no
    INVITE with its Session-ID was seen, its term code is saved through
    LiveVox's API (:mod:`~lvgateway.agents.stranded`). Where it cannot be
    repaired (the repair is off, LiveVox names no call ids, or the gateway
    saw its INVITE) it is logged as an error for a human, and the polls go
    on until LiveVox lets it go.
"""

from __future__ import annotations

import attrs

from lvgateway.agents.state import Desired
from lvgateway.livevox.parsing import BUSY_LINE_STATES, AgentStatus

__all__ = ["DRIFT_KINDS", "Finding", "assess"]

#: The ``kind`` label values of ``lvgateway_agent_drifts_total``.
DRIFT_KINDS = ("logged_out", "not_joined", "not_ready", "unexpected_ready", "unknown_call")

_LOGGED_OFF = frozenset({"LOGOFF"})
_NOT_JOINED = frozenset({"LOGON", "REGISTERING"})


@attrs.frozen
class Finding:
    """What one status read means for the agent.

    :param kind: the drift found (one of :data:`DRIFT_KINDS`), or ``None``.
    :param detail: a sentence for the log line.
    :param logged_in: ``False`` when LiveVox has the agent logged off.
    :param joined: whether LiveVox has it in a service, when it said.
    :param lv_ready: whether it is READY at LiveVox, when it said.
    :param busy_key: a key for the call LiveVox holds the agent in, if any
        (its transaction id, or its line state when no call is named), to
        compare with the next read.
    :param unknown_call: set when the call is confirmed unknown (a second read).
    """

    kind: str | None
    detail: str
    logged_in: bool = True
    joined: bool | None = None
    lv_ready: bool | None = None
    busy_key: str | None = None
    unknown_call: str | None = None


def assess(
    status: AgentStatus,
    *,
    believed_ready: bool | None,
    desired: Desired,
    previous_busy_key: str | None,
) -> Finding:
    """Compare a status read with what the gateway believes of an idle agent.

    Only called for an agent the gateway has no call on: an agent on a call
    is left alone until its wrap-up is done.

    :param status: LiveVox's answer.
    :param believed_ready: whether the gateway thinks the agent READY
        (``None``: it does not know, after a failed request).
    :param desired: what the gateway wants of it.
    :param previous_busy_key: :attr:`Finding.busy_key` of the previous read.
    """
    if status.unchanged or not status.lines:
        return Finding(None, "LiveVox reported no change", joined=None, lv_ready=believed_ready)
    state = (status.state or "").upper()
    if state in _LOGGED_OFF:
        return Finding(
            "logged_out", "LiveVox has the agent logged off", logged_in=False, joined=False
        )
    if state in _NOT_JOINED:
        return Finding(
            "not_joined",
            f"LiveVox has the agent in no service ({state})",
            joined=False,
            lv_ready=False,
        )
    if state in BUSY_LINE_STATES:
        calls = status.calls()
        key = (calls[0].call_transaction_id or calls[0].call_session_id) if calls else None
        key = key or f"state {state}"
        if key == previous_busy_key:
            return Finding(
                "unknown_call",
                f"LiveVox holds the agent in {state} with call {key}, unknown to the gateway",
                joined=True,
                lv_ready=False,
                busy_key=key,
                unknown_call=key,
            )
        return Finding(
            None,
            f"LiveVox has the agent in {state} with call {key}; looking again shortly",
            joined=True,
            lv_ready=False,
            busy_key=key,
        )
    if state == "READY":
        if desired is not Desired.IN and believed_ready is not True:
            return Finding(
                "unexpected_ready",
                f"LiveVox has the agent READY where the gateway wants it {desired.value}",
                joined=True,
                lv_ready=True,
            )
        return Finding(None, "READY, as expected", joined=True, lv_ready=True)
    if state == "NOTREADY":
        if believed_ready is True and desired is Desired.IN:
            return Finding(
                "not_ready",
                "LiveVox has the agent NOT READY where the gateway thought it READY",
                joined=True,
                lv_ready=False,
            )
        return Finding(None, "NOT READY, as expected", joined=True, lv_ready=False)
    return Finding(None, f"LiveVox reports line state {state or 'none'}; left alone")
