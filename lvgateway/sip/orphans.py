"""The legs a crash left up: ended with BYE when the gateway starts again.

While a call is up, the SIP part gives the call store each leg's dialog
(:meth:`~lvgateway.calls.interfaces.ICalls.note_dialogs`, the JSON of
:class:`~lvgateway.sip.dialogs.DialogState`). After a crash, recovery finds
the call live in the store and asks the SIP part, through
:meth:`~lvgateway.calls.interfaces.ICallLegs.end_orphaned`, to end its legs
before its wrap-up resumes; :class:`~lvgateway.sip.routing.CallRouter`
delegates to :func:`end_orphaned`. Without it, the customer would sit in
silence until LiveVox's session timer ran out, and the vendor's bot would
talk to nobody.

**The SIP stack listens before recovery runs.** ``build_gateway`` adds the
SIP service to the root service before the call service, and a
``MultiService`` starts its children in order: ``SipService.startService``
binds the UDP port there and then (or stops twistd with the error), so by the
time ``CallService.startService`` opens the store and recovers, the stack's
transaction manager is in Sippy's ``global_config``. Nothing has to pass
between the two parts for it. Should the stack not be running all the same
(a gateway assembled another way), no BYE is sent and an error names the legs
left up.

**CSeq.** The dialog was noted after the gateway's last request in it; a
request sent between that note and the crash would make the noted CSeq stale,
and the peer would refuse the BYE with 500 as out of order. The BYE therefore
skips :data:`CSEQ_SKIP` numbers: RFC 3261 12.2.2 has a UAS accept a CSeq
higher than the last by more than one ("This is not an error condition").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from lvgateway.sip.dialogs import TIMER_F, DialogState, send_bye

__all__ = ["CSEQ_SKIP", "end_orphaned"]

log = Logger()

#: How many CSeq numbers the BYE of an orphaned leg skips past the noted one.
CSEQ_SKIP = 100


def end_orphaned(
    global_config: Mapping[str, Any],
    clock: IReactorTime,
    call_id: str,
    dialogs: Mapping[str, Mapping[str, Any]],
    cause: int,
    text: str,
    timeout: float = TIMER_F,
) -> Deferred[None]:
    """End every leg of ``dialogs`` with BYE, all at once; fire when each has its answer or its bound.

    :param global_config: Sippy's configuration of the running SIP stack
        (the router's ``global_config``, read when this is called).
    :param clock: runs each BYE's bound.
    :param call_id: the gateway's call id, for the log.
    :param dialogs: each leg's dialog as noted, by leg name.
    :param cause: the SIP status code of the BYE's ``Reason``.
    :param text: its text.
    :param timeout: how long each BYE waits for its final response.
    :returns: ``Deferred[None]``; it does not errback: what went wrong is logged.
    """
    if not dialogs:
        return succeed(None)
    return Deferred.fromCoroutine(
        _end_all(global_config, clock, call_id, dialogs, cause, text, timeout)
    )


async def _end_all(
    global_config: Mapping[str, Any],
    clock: IReactorTime,
    call_id: str,
    dialogs: Mapping[str, Mapping[str, Any]],
    cause: int,
    text: str,
    timeout: float,
) -> None:
    if global_config.get("_sip_tm") is None:
        log.error(
            "call {call_id}: the SIP stack is not running: its legs stay up ({legs})",
            call_id=call_id,
            legs=", ".join(sorted(dialogs)),
        )
        return
    await gatherResults(
        [
            Deferred.fromCoroutine(
                _end_one(global_config, clock, call_id, leg, data, cause, text, timeout)
            )
            for leg, data in sorted(dialogs.items())
        ],
        consumeErrors=True,
    )


async def _end_one(
    global_config: Mapping[str, Any],
    clock: IReactorTime,
    call_id: str,
    leg: str,
    data: Mapping[str, Any],
    cause: int,
    text: str,
    timeout: float,
) -> None:
    try:
        state = DialogState.from_json(data)
    except ValueError as e:
        log.error(
            "call {call_id}: the saved {leg} dialog is unusable ({error}): that leg stays up",
            call_id=call_id,
            leg=leg,
            error=str(e),
        )
        return
    state = attrs.evolve(state, local_cseq=state.local_cseq + CSEQ_SKIP)
    log.info(
        "call {call_id}: ending the {leg} leg a previous run left up (BYE to {host}:{port},"
        " Call-ID {sip_call_id})",
        call_id=call_id,
        leg=leg,
        host=state.next_hop_host,
        port=state.next_hop_port,
        sip_call_id=state.call_id,
    )
    try:
        code = await send_bye(state, cause, text, global_config, clock, timeout)
    except Exception:
        log.failure(
            "call {call_id}: the BYE of the {leg} leg was not sent", call_id=call_id, leg=leg
        )
        return
    if code is not None and 200 <= code < 300:
        log.info("call {call_id}: {leg} leg ended ({code})", call_id=call_id, leg=leg, code=code)
    elif code == 481:
        log.info(
            "call {call_id}: the {leg} side no longer knew the leg (481): it had ended it",
            call_id=call_id,
            leg=leg,
        )
    elif code is None:
        log.warn(
            "call {call_id}: no answer to the BYE of the {leg} leg within {timeout:g}s",
            call_id=call_id,
            leg=leg,
            timeout=timeout,
        )
    else:
        log.warn(
            "call {call_id}: the BYE of the {leg} leg was answered {code}",
            call_id=call_id,
            leg=leg,
            code=code,
        )
