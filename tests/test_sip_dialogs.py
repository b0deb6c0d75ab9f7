"""Dialog state for BYE after a restart: read from Sippy's UA, kept as JSON, sent as Sippy would, answered by SIPp."""

# pytest-twisted ships no types.
# mypy: disable-error-code="import-untyped,untyped-decorator"

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import pytest_twisted
from sippy.CCEvents import CCEventConnect, CCEventDisconnect, CCEventTry
from sippy.SipCallId import SipCallId
from sippy.SipRequest import SipRequest
from sippy.SipResponse import SipResponse
from sippy.Time.MonoTime import MonoTime
from sippy.UA import UA
from twisted.internet import reactor

from lvgateway.sip.dialogs import DialogState, bye_request, send_bye, snapshot
from lvgateway.sip.stack import SipStack

from .sip_dialog_peers import dialog_with, peer_waiting_for, start_stack
from .sip_gateway import free_udp_port

pytestmark = pytest.mark.timeout(60)

REACTOR: Any = reactor

LIVEVOX_INVITE = """INVITE sip:+18990000001@127.0.0.1:5070 SIP/2.0
Record-Route: {first_route}
Record-Route: <sip:10.0.0.2;lr>
Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK776asdhds
To: <sip:+18990000001@127.0.0.1:5070>
Contact: <sip:lv@10.0.0.9:5060;transport=udp>
Call-ID: 5e1c1a6f@10.0.0.9
CSeq: 4117825 INVITE
From: <sip:+19192109237@10.0.0.9:5060>;tag=telstage-1
Max-Forwards: 68
Content-Length: 0

"""

VENDOR_OK = """SIP/2.0 200 OK
Via: {via}
Record-Route: <sip:10.1.0.1;lr>
Record-Route: <sip:10.1.0.2;lr>
From: {fr0m}
To: {to};tag=vendor-tag-7
Call-ID: {call_id}
CSeq: {cseq} INVITE
Contact: <sip:bot@10.1.0.9:5090;transport=UDP>
Content-Length: 0

"""

LOOSE = "<sip:10.0.0.1:5060;r2=on;lr;did=0c.a75cb3e7>"
STRICT = "<sip:10.0.0.1:5060;r2=on>"


def crlf(text: str) -> str:
    """SIP line ends."""
    return text.replace("\n", "\r\n")


class _Transaction:
    """What Sippy's UA keeps of a client transaction here."""

    req_extra_headers = None


class RecordingTM:
    """Stands in for Sippy's transaction manager: keeps what a UA sends, sends nothing."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.responses: list[Any] = []

    def sendResponse(self, resp: Any, *args: Any, **kwargs: Any) -> None:
        """Keep a response."""
        self.responses.append(resp)

    def newTransaction(self, msg: Any, *args: Any, **kwargs: Any) -> _Transaction:
        """Keep a request."""
        self.requests.append(msg)
        return _Transaction()

    def regConsumer(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to register."""

    def unregConsumer(self, *args: Any, **kwargs: Any) -> None:
        """Nothing to unregister."""


class _ServerTransaction:
    compact = False


def livevox_leg(first_route: str = LOOSE, answer: bool = True) -> UA:
    """A Sippy UAS that took LiveVox's INVITE (with Record-Route) and, if ``answer``, answered 200."""
    ua = UA({"_sip_tm": RecordingTM()}, lambda event, ua: None)
    req = SipRequest(crlf(LIVEVOX_INVITE.format(first_route=first_route)))
    req.rtime = MonoTime()
    ua.recvRequest(req, _ServerTransaction())
    if answer:
        ua.recvEvent(CCEventConnect((200, "OK", None)))
    return ua


def vendor_leg() -> UA:
    """A Sippy UAC whose INVITE the vendor answered 200 through two record-routing proxies."""
    tm = RecordingTM()
    ua = UA({"_sip_tm": tm}, lambda event, ua: None, nh_address=("127.0.0.3", 5080))
    ua.recvEvent(
        CCEventTry((SipCallId("vendor-1@gw"), "+19192109237", "bot", None, None, "caller"))
    )
    invite = tm.requests[-1]
    text = VENDOR_OK.format(
        via=invite.getHFBody("via"),
        fr0m=invite.getHFBody("from"),
        to=invite.getHFBody("to"),
        call_id=invite.getHFBody("call-id"),
        cseq=invite.getHFBody("cseq").getCSeqNum(),
    )
    resp = SipResponse(crlf(text))
    resp.rtime = MonoTime()
    ua.recvResponse(resp, _Transaction())
    return ua


def described(req: Any) -> dict[str, Any]:
    """What identifies an in-dialog request and where it goes, leaving out Via and the Reason."""
    return {
        "line": req.getSL(),
        "routes": [str(r) for r in req.getHFBodys("route")],
        "from": str(req.getHFBody("from")),
        "to": str(req.getHFBody("to")),
        "call-id": str(req.getHFBody("call-id")),
        "cseq": str(req.getHFBody("cseq")),
        "target": req.getTarget(),
    }


def test_snapshot_of_the_livevox_leg_keeps_record_route_in_order() -> None:
    """A UAS's state: LiveVox's Contact as target, its Record-Route in order, the first route as next hop."""
    ua = livevox_leg()
    state = snapshot(ua)
    assert state is not None
    assert state.call_id == "5e1c1a6f@10.0.0.9"
    assert (state.local_tag, state.remote_tag) == (ua.lTag, "telstage-1")
    assert state.local_uri == "<sip:+18990000001@127.0.0.1:5070>"
    assert state.remote_uri == "<sip:+19192109237@10.0.0.9:5060>"
    assert state.remote_target == "sip:lv@10.0.0.9:5060;transport=udp"
    assert state.route_set == ("<sip:10.0.0.1:5060;r2=on;did=0c.a75cb3e7;lr>", "<sip:10.0.0.2;lr>")
    assert state.local_cseq == ua.lCSeq
    assert (state.next_hop_host, state.next_hop_port, state.next_hop_transport) == (
        "10.0.0.1",
        5060,
        "udp",
    )


def test_snapshot_of_the_vendor_leg_reverses_record_route() -> None:
    """A UAC's state: the vendor's Contact as target, the 200's Record-Route reversed (RFC 3261 12.1.2)."""
    ua = vendor_leg()
    state = snapshot(ua)
    assert state is not None
    assert state.remote_tag == "vendor-tag-7"
    assert state.local_tag == ua.lTag
    assert state.remote_target == "sip:bot@10.1.0.9:5090;transport=UDP"
    assert state.route_set == ("<sip:10.1.0.2;lr>", "<sip:10.1.0.1;lr>")
    assert (state.next_hop_host, state.next_hop_port) == ("10.1.0.2", 5060)


def test_snapshot_of_a_strict_router_keeps_the_request_form() -> None:
    """With a strict router first, the state holds what Sippy sends: that router as target, the Contact last."""
    state = snapshot(livevox_leg(first_route=STRICT))
    assert state is not None
    assert state.remote_target == "sip:10.0.0.1:5060;r2=on"
    assert state.route_set == ("<sip:10.0.0.2;lr>", "<sip:lv@10.0.0.9:5060;transport=udp>")
    assert (state.next_hop_host, state.next_hop_port) == ("10.0.0.1", 5060)


@pytest.mark.parametrize(
    "leg",
    [
        pytest.param(lambda: livevox_leg(), id="uas-loose"),
        pytest.param(lambda: livevox_leg(first_route=STRICT), id="uas-strict"),
        pytest.param(vendor_leg, id="uac-loose"),
    ],
)
def test_bye_from_the_snapshot_is_the_bye_the_live_ua_would_send(leg: Any) -> None:
    """Request-URI, Route headers, From, To, Call-ID, CSeq and next hop equal those of the UA's own BYE."""
    ua = leg()
    state = snapshot(ua)
    assert state is not None
    ours = bye_request(state, 500, "gateway restarted")
    theirs = ua.genRequest("BYE")
    assert described(ours) == described(theirs)


def test_no_snapshot_outside_a_confirmed_dialog() -> None:
    """A UA before its INVITE, before its 200, or after its BYE has no dialog to save."""
    assert snapshot(UA({"_sip_tm": RecordingTM()}, lambda event, ua: None)) is None
    assert snapshot(livevox_leg(answer=False)) is None
    ua = livevox_leg()
    ua.recvEvent(CCEventDisconnect())
    assert snapshot(ua) is None


def test_bye_carries_the_dialog_and_an_rfc3326_reason() -> None:
    """The BYE names the dialog (tags, Call-ID, next CSeq), has no body, and says why in Reason."""
    state = snapshot(livevox_leg())
    assert state is not None
    req = bye_request(state, 500, "gateway restarted")
    assert req.getMethod() == "BYE"
    assert str(req.getRURI()) == state.remote_target
    assert req.getHFBody("from").getTag() == state.local_tag
    assert req.getHFBody("to").getTag() == state.remote_tag
    assert req.getHFBody("cseq").getCSeq() == (state.local_cseq, "BYE")
    assert str(req.getHFBody("reason")) == 'SIP; cause=500; text="gateway restarted"'
    assert req.getBody() is None
    text = str(req)
    assert text.count("\r\nRoute: ") == 2 and "Content-Length: 0" in text


def test_dialog_state_round_trips_through_json() -> None:
    """to_json gives plain JSON; from_json gives the same state back."""
    state = snapshot(vendor_leg())
    assert state is not None
    data = json.loads(json.dumps(state.to_json()))
    assert isinstance(data["route_set"], list)
    assert DialogState.from_json(data) == state


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"call_id": None}, "call_id must be a string"),
        ({"local_cseq": "12"}, "local_cseq must be an integer"),
        ({"route_set": "<sip:x;lr>"}, "route_set must be a list"),
    ],
)
def test_from_json_refuses_what_to_json_never_wrote(change: dict[str, Any], complaint: str) -> None:
    """A field of the wrong type, or a missing one, is a ValueError naming it."""
    state = snapshot(livevox_leg())
    assert state is not None
    with pytest.raises(ValueError, match=complaint):
        DialogState.from_json({**state.to_json(), **change})
    data = state.to_json()
    del data["remote_tag"]
    with pytest.raises(ValueError, match="remote_tag is missing"):
        DialogState.from_json(data)


# -- over the network, against SIPp -------------------------------------------------------


@pytest_twisted.async_yield_fixture
async def stack() -> AsyncIterator[SipStack]:
    """A SIP stack on 127.0.0.1, port picked by the kernel."""
    sip = start_stack()
    yield sip
    sip.stopService()


@pytest.mark.parametrize("answer", [200, 481])
@pytest_twisted.ensureDeferred
async def test_send_bye_reaches_the_peer_and_fires_with_its_answer(
    stack: SipStack, answer: int
) -> None:
    """SIPp gets a BYE with the dialog's exact Call-ID, tags, CSeq, Route and Reason; send_bye fires with its code."""
    state = dialog_with(free_udp_port("127.0.0.1"))
    run = await peer_waiting_for(state, str(answer))
    code = await send_bye(state, 500, "gateway restarted", stack.global_config, REACTOR)
    assert code == answer
    result = await run
    assert result.code == 0, result


@pytest_twisted.ensureDeferred
async def test_the_peer_ignores_a_bye_of_another_dialog(stack: SipStack) -> None:
    """SIPp's check is real: a BYE with another To tag is not answered, and the SIPp run fails."""
    state = dialog_with(free_udp_port("127.0.0.1"))
    run = await peer_waiting_for(state)
    other = attrs.evolve(state, remote_tag="someone-else")
    code = await send_bye(other, 500, "gateway restarted", stack.global_config, REACTOR, 1.0)
    assert code is None
    result = await run
    assert result.code != 0, result


@pytest_twisted.ensureDeferred
async def test_send_bye_to_a_peer_that_says_nothing_fires_none() -> None:
    """With no answer within the bound, send_bye fires None (and not before the bound)."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    sip = start_stack()
    try:
        state = dialog_with(silent.getsockname()[1])
        started = REACTOR.seconds()
        code = await send_bye(state, 500, "gateway restarted", sip.global_config, REACTOR, 0.5)
        assert code is None
        assert REACTOR.seconds() - started >= 0.5
        silent.settimeout(1)
        assert silent.recv(4096).startswith(b"BYE sip:lv@127.0.0.9:5999")
    finally:
        sip.stopService()
        silent.close()


def test_send_bye_without_a_running_stack_fails() -> None:
    """No transaction manager (the stack is not listening): the Deferred errbacks at once."""
    state = dialog_with(5999)
    failures: list[Any] = []
    send_bye(state, 500, "gateway restarted", {}, REACTOR).addErrback(failures.append)
    assert len(failures) == 1 and isinstance(failures[0].value, RuntimeError)
