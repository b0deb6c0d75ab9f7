"""SIP peers left in a dialog by a gateway that restarted: SIPp waiting for the BYE, and dialogs with them."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from lvgateway.sip.dialogs import DialogState
from lvgateway.sip.stack import SipStack
from lvgateway.sip.udp import SourceFilter

from .sip_gateway import sipp
from .sip_helpers import wait_until

REACTOR: Any = reactor
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
#: The Reason of a BYE after a restart, as Sippy writes it.
RESTART_REASON = 'SIP; cause=500; text="gateway restarted"'


def answer_nothing_new(req: Any, sip_t: Any) -> Any:
    """The stack's handler: no dialog lives here."""
    return (req.genResponse(481, "Call Leg/Transaction Does Not Exist"), None, None)


def start_stack() -> SipStack:
    """Start a SIP stack on 127.0.0.1, port picked by the kernel, allowing loopback."""
    sip = SipStack(REACTOR, "127.0.0.1", 0, SourceFilter([LOOPBACK], REACTOR), answer_nothing_new)
    sip.startService()
    return sip


def udp_bound(host: str, port: int) -> bool:
    """Whether a UDP socket is bound to ``host:port``, read from /proc/net/udp (no probe that could take the port)."""
    wanted = f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"
    with open("/proc/net/udp") as table:
        return any(line.split()[1] == wanted for line in table.readlines()[1:])


def dialog_with(peer_port: int) -> DialogState:
    """A dialog with a peer on 127.0.0.1:``peer_port``, reached through a route naming it."""
    return DialogState(
        call_id=f"{uuid.uuid4().hex}@127.0.0.1",
        local_tag=uuid.uuid4().hex[:16],
        remote_tag=f"telstage-{uuid.uuid4().hex[:8]}",
        local_uri="<sip:+18990000001@127.0.0.1:5070>",
        remote_uri="<sip:+19192109237@127.0.0.1>",
        remote_target="sip:lv@127.0.0.9:5999;transport=udp",
        route_set=(f"<sip:127.0.0.1:{peer_port};lr>",),
        local_cseq=4242,
        next_hop_host="127.0.0.1",
        next_hop_port=peer_port,
    )


async def peer_waiting_for(
    state: DialogState, answer: str = "200", cseq: int | None = None
) -> Deferred[Any]:
    """Start SIPp waiting for ``state``'s BYE with its exact ids; return its run once it listens.

    :param answer: ``200``, or ``481`` for a peer that forgot the dialog.
    :param cseq: the CSeq the BYE must carry (the state's own by default).
    """
    port = state.next_hop_port
    wanted = {
        "want_callid": state.call_id,
        "want_from": state.local_tag,
        "want_to": state.remote_tag,
        "want_cseq": str(state.local_cseq if cseq is None else cseq),
        "want_route": state.route_set[0],
        "want_reason": RESTART_REASON,
        "answer": answer,
    }
    extra = [arg for name, value in wanted.items() for arg in ("-set", name, value)]
    run = sipp("peer_wait_bye.xml", "127.0.0.1", port=port, timeout=15, extra=extra)
    await wait_until(lambda: udp_bound("127.0.0.1", port), 10, f"SIPp to listen on {port}")
    return run
