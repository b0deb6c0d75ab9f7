"""The state of one SIP dialog, kept so that the gateway can end it with BYE after a restart.

A crash of the gateway takes Sippy's user agents with it, but not the calls:
LiveVox and the AI vendor keep their legs up, and the customer hears nothing
until someone sends a BYE. :class:`DialogState` is what an in-dialog request
needs (RFC 3261, 12.2.1.1): the Call-ID, both tags, both URIs, the remote
target, the route set, the next local CSeq and where to send it.
:func:`snapshot` reads it from a connected Sippy ``UA``; :meth:`DialogState.to_json`
turns it into plain JSON for the call store, which never sees a Sippy class;
:func:`send_bye` ends the dialog with Sippy's own request and transaction
classes, without a ``UA``.

**Route set.** RFC 3261, 12.1.1 and 12.1.2: a UAS keeps the Record-Route of
the INVITE in order, a UAC keeps the Record-Route of the 2xx reversed; Sippy
does both (``UasStateIdle``, ``UacStateTrying.updateRoutes``). The state
holds them as our requests carry them: the Request-URI and the Route
headers. With loose routing (``lr``, every RFC 3261 proxy, LiveVox's
included) that is the peer's Contact and the route set itself; with a strict
router first (RFC 2543), Sippy has already applied RFC 3261 12.2.1.1 (the
router becomes the Request-URI, the Contact the last route), and the state
keeps that form. Either way the BYE is the one Sippy would have sent. Sippy
never refreshes the remote target on a re-INVITE, so what :func:`snapshot`
reads is what Sippy itself uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from sippy.SipAddress import SipAddress
from sippy.SipCallId import SipCallId
from sippy.SipFrom import SipFrom
from sippy.SipHeader import SipHeader
from sippy.SipRequest import SipRequest
from sippy.SipRoute import SipRoute
from sippy.SipTo import SipTo
from sippy.SipURL import SipURL
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime

from lvgateway.sip.headers import reason

__all__ = ["TIMER_F", "DialogState", "bye_request", "send_bye", "snapshot"]

#: RFC 3261 Timer F (64 x T1): how long a non-INVITE request waits for its final response.
TIMER_F = 32.0


def _tuple_of_str(value: Sequence[str]) -> tuple[str, ...]:
    return tuple(str(v) for v in value)


@attrs.frozen
class DialogState:
    """What an in-dialog request of ours needs (RFC 3261, 12.2.1.1).

    :param call_id: the dialog's Call-ID.
    :param local_tag: our tag: the From tag of our requests.
    :param remote_tag: the peer's tag: the To tag of our requests.
    :param local_uri: our URI, without its tag: the From of our requests.
    :param remote_uri: the peer's URI, without its tag: the To of our requests.
    :param remote_target: the Request-URI of our requests: the peer's Contact
        URI (with a strict router first, that router; see the module docstring).
    :param route_set: the Route headers of our requests, in order: the
        dialog's route set (RFC 3261, 12.1.1 for a UAS, 12.1.2 for a UAC);
        empty without Record-Route.
    :param local_cseq: the CSeq number of our next request in the dialog.
    :param next_hop_host: where the request goes: the first route's host, or
        the remote target's without routes, as Sippy's ``UA`` sends to it.
    :param next_hop_port: that address's port.
    :param next_hop_transport: that hop's transport (``udp``).
    """

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    remote_target: str
    route_set: tuple[str, ...] = attrs.field(converter=_tuple_of_str)
    local_cseq: int
    next_hop_host: str
    next_hop_port: int
    next_hop_transport: str = "udp"

    def to_json(self) -> dict[str, Any]:
        """Return the state as plain JSON values (strings, an integer, a list of strings)."""
        body = attrs.asdict(self)
        body["route_set"] = list(self.route_set)
        return body

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DialogState:
        """Rebuild a state from :meth:`to_json`'s output.

        :param data: the decoded JSON.
        :raises ValueError: when a field is missing or of the wrong type.
        """
        values: dict[str, Any] = {}
        for field in attrs.fields(cls):
            if field.name not in data:
                if field.default is not attrs.NOTHING:
                    continue
                raise ValueError(f"dialog state: {field.name} is missing")
            value = data[field.name]
            if field.name == "route_set":
                if not isinstance(value, list | tuple) or not all(
                    isinstance(v, str) for v in value
                ):
                    raise ValueError(
                        f"dialog state: route_set must be a list of strings, not {value!r}"
                    )
            elif field.name in ("local_cseq", "next_hop_port"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ValueError(
                        f"dialog state: {field.name} must be an integer, not {value!r}"
                    )
            elif not isinstance(value, str):
                raise ValueError(f"dialog state: {field.name} must be a string, not {value!r}")
            values[field.name] = value
        return cls(**values)


def _without_tag(header: Any) -> str:
    """Return a From/To header's name-addr without its ``tag`` parameter."""
    address = header.getUri().getCopy()
    if address.getParam("tag") is not None:
        address.delParam("tag")
    return str(address)


def snapshot(ua: Any) -> DialogState | None:
    """Return the dialog state of a Sippy ``UA`` in a confirmed dialog, or ``None`` if it is in none.

    A UA is in a confirmed dialog from its 2xx on (sent by a UAS, received
    by a UAC) until its BYE; an early or ended dialog gives ``None``.

    :param ua: a ``sippy.UA.UA`` (or a subclass).
    """
    state = getattr(ua, "state", None)
    if state is None or not state.connected:
        return None
    if ua.cId is None or ua.lUri is None or ua.rUri is None or ua.rTarget is None:
        return None
    local_tag, remote_tag = ua.lUri.getTag(), ua.rUri.getTag()
    if not local_tag or not remote_tag or ua.rAddr is None or ua.lCSeq is None:
        return None
    (host, port), transport = ua.rAddr
    return DialogState(
        call_id=str(ua.cId),
        local_tag=str(local_tag),
        remote_tag=str(remote_tag),
        local_uri=_without_tag(ua.lUri),
        remote_uri=_without_tag(ua.rUri),
        remote_target=str(ua.rTarget),
        route_set=[str(r) for r in ua.routes or ()],
        local_cseq=int(ua.lCSeq),
        next_hop_host=str(host),
        next_hop_port=int(port),
        next_hop_transport=str(transport or "udp"),
    )


def bye_request(state: DialogState, reason_cause: int, reason_text: str) -> Any:
    """Build the BYE that ends the dialog, as Sippy's own ``SipRequest``.

    The Request-URI is the remote target and the Route headers the route
    set, sent to the next hop, as Sippy's ``UA.genRequest`` does; it carries
    ``Reason: SIP;cause=...;text="..."`` (RFC 3326).

    :param state: the dialog.
    :param reason_cause: the SIP status code of the ``Reason`` header.
    :param reason_text: its text.
    """
    routes = [SipRoute(address=SipAddress(route)) for route in state.route_set]
    fr0m = SipFrom(address=SipAddress(state.local_uri, relaxedparser=True))
    fr0m.setTag(state.local_tag)
    to = SipTo(address=SipAddress(state.remote_uri, relaxedparser=True))
    to.setTag(state.remote_tag)
    req = SipRequest(
        method="BYE",
        ruri=SipURL(state.remote_target),
        to=to,
        fr0m=fr0m,
        cseq=state.local_cseq,
        callid=SipCallId(state.call_id),
        routes=routes,
        target=((state.next_hop_host, state.next_hop_port), state.next_hop_transport),
    )
    req.appendHeader(SipHeader(body=reason(reason_cause, reason_text)))
    return req


def send_bye(
    state: DialogState,
    reason_cause: int,
    reason_text: str,
    global_config: Mapping[str, Any],
    clock: IReactorTime,
    timeout: float = TIMER_F,
) -> Deferred[int | None]:
    """End a dialog with BYE through the running SIP stack's transaction manager.

    Sippy retransmits the request as RFC 3261 17.1.2 says (Timer E) and
    gives up after its own 32 s.

    :param state: the dialog.
    :param reason_cause: the ``Reason`` header's SIP status code.
    :param reason_text: its text.
    :param global_config: Sippy's configuration of the running stack
        (:attr:`lvgateway.sip.stack.SipStack.global_config`), whose
        ``_sip_tm`` sends the request.
    :param clock: runs the bound.
    :param timeout: how long to wait for a final response (Timer F by default).
    :returns: ``Deferred[int | None]`` firing with the final response's code
        (200, or 481 when the peer no longer knows the dialog), or ``None``
        when none came within ``timeout``. It errbacks only when the request
        cannot be sent: ``RuntimeError`` if the stack is not running, or
        what Sippy raised.
    """
    tm = global_config.get("_sip_tm")
    if tm is None:
        return fail(RuntimeError("the SIP stack is not running: no BYE can be sent"))
    try:
        req = bye_request(state, reason_cause, reason_text)
    except Exception as e:
        return fail(e)
    d: Deferred[int | None] = Deferred()

    def answered(resp: Any, transaction: Any) -> None:
        code = resp.getSCode()[0]
        if code < 200 or d.called:
            return
        # Sippy answers its own 408 (``r408``) when its timer runs out.
        d.callback(None if resp is getattr(transaction, "r408", None) else int(code))

    def silent() -> None:
        if not d.called:
            d.callback(None)

    try:
        tm.newTransaction(req, answered, cb_ifver=2)
    except Exception as e:
        return fail(e)
    timer = clock.callLater(timeout, silent)

    def stop_timer(result: int | None) -> int | None:
        if timer.active():
            timer.cancel()
        return result

    return d.addBoth(stop_timer)
