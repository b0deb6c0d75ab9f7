"""What the dialler sends and keeps: LiveVox's INVITE headers, its refusals, and each call's result.

See :mod:`.dialler` for the dialler itself.
"""

from __future__ import annotations

import secrets
from typing import Any

import attrs

from lvgateway.sandbox.livevox_records import LiveVoxError
from lvgateway.sandbox.offers import OfferRecord
from lvgateway.sandbox.rtp_media import MediaAddress, ProbeStats
from lvgateway.sandbox.sandbox_config import DiallerConfig
from lvgateway.sandbox.sip_messages import HeaderList

__all__ = ["CallResult", "DialError", "e164", "livevox_invite_headers"]

#: LiveVox's Allow header, from the sample INVITE.
LIVEVOX_ALLOW = (
    "INVITE, ACK, CANCEL, BYE, REFER, NOTIFY, OPTIONS, INFO, REGISTER, SUBSCRIBE, MESSAGE, UPDATE"
)
#: The sample INVITE's Max-Forwards.
LIVEVOX_MAX_FORWARDS = 68


class DialError(LiveVoxError):
    """The dialler would not place a call; ``status`` is the admin API's HTTP status.

    :param status: 404 unknown agent, 409 no READY agent, 429 over the rate,
        503 over a bound or not running.
    :param reason: a short code: ``unknown_agent``, ``not_ready``,
        ``no_ready_agent``, ``rate``, ``concurrency``, ``max_calls``,
        ``not_running``, ``error``.
    :param message: what happened.
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(status, message)
        self.reason = reason

    def body(self) -> dict[str, Any]:
        """The JSON body: ``code``, ``message`` and ``reason``."""
        return {**super().body(), "reason": self.reason}


def e164(number: str) -> str:
    """``9195550100`` as LiveVox writes it in SIP: ``+19195550100``."""
    digits = number.lstrip("+")
    if number.startswith("+"):
        return number
    if len(digits) == 10 and digits.isdigit():
        return "+1" + digits
    if len(digits) == 11 and digits.startswith("1") and digits.isdigit():
        return "+" + digits
    return number


def livevox_invite_headers(
    *,
    session_id: str,
    local: tuple[str, int],
    gateway: tuple[str, int],
    config: DiallerConfig,
    transaction_id: str | None = None,
    agent_login_id: str | None = None,
) -> tuple[list[tuple[str, str]], list[str]]:
    """The headers LiveVox's sample INVITE carries besides Sippy's own, and its extra Via rows.

    :param session_id: LiveVox's callSessionId, the ``Session-ID``.
    :param local: the dialler's SIP address.
    :param gateway: the gateway's SIP address.
    :param config: the dialler's settings.
    :param transaction_id: sent as ``X-transaction-id`` when given.
    :param agent_login_id: sent as ``X-agent-login-id`` when given.
    :return: ``(name, value)`` pairs in the sample's order and case, and the
        values of two more ``Via`` rows (LiveVox's proxy and media server).
    """
    (lhost, lport), (ghost, gport) = local, gateway
    outer, inner = secrets.token_hex(4), secrets.token_hex(4)
    headers: list[tuple[str, str]] = []
    if config.record_route:
        headers += [
            ("Record-Route", f"<sip:{lhost}:{lport};r2=on;lr;did=0c.{outer}>"),
            ("Record-Route", f"<sip:{lhost};r2=on;lr;did=0c.{outer}>"),
            ("Record-Route", f"<sip:{ghost}:{gport};lr;did=0c.{inner}>"),
        ]
    headers += [
        ("X-Lv-Destination-Ip", ""),
        ("X-Lv-Destination-Port", str(gport)),
        ("Session-Privacy", "no"),
        ("Carrier-Name", config.carrier_name),
        ("Session-ID", session_id),
        ("Pool-Name", config.pool_name),
        ("Allow", LIVEVOX_ALLOW),
        ("Session-Expires", f"{config.session_expires};refresher=uac"),
        ("Supported", "timer"),
    ]
    if transaction_id is not None:
        headers.append(("X-transaction-id", transaction_id))
    if agent_login_id is not None:
        headers.append(("X-agent-login-id", agent_login_id))
    vias = [
        f"SIP/2.0/UDP {lhost}:{lport};received={lhost};branch=z9hG4bK{secrets.token_hex(4)}.0",
        f"SIP/2.0/UDP {lhost}:{lport};branch=z9hG4bK{secrets.token_hex(8)}",
    ]
    return headers, vias


@attrs.define
class CallResult:
    """One call the dialler placed, updated as it goes; final once ``done``.

    :param id: the dialler's id (``d1``, ``d2``...).
    :param agent: the agent the simulator put the call through to.
    :param dnis: its 899 number, the Request-URI user.
    :param ani: the caller's number in From (``+1...``).
    :param account_number: the caller's account ("" if none).
    :param call_transaction_id: the simulator call's callTransactionId.
    :param call_session_id: its callSessionId, the INVITE's ``Session-ID``.
    :param sip_call_id: the INVITE's Call-ID.
    :param transaction_id_sent: whether ``X-transaction-id`` was sent.
    :param started_at: clock time of the INVITE.
    :param state: ``calling``, ``ringing``, ``connected``, then ``ended``
        (it was answered) or ``failed`` (it was not).
    :param provisional: the provisional statuses received (100 aside).
    :param ringing_at: clock time of the first of them.
    :param answered_at: clock time of the 200.
    :param ended_at: clock time the call ended.
    :param ended_by: ``dialler`` (BYE or CANCEL after the call duration, or
        asked), ``gateway`` (its BYE), ``rejected`` (a final status >= 300),
        ``setup_timeout`` (CANCEL: no answer in time) or ``stopped``.
    :param final_code: the INVITE's final status, if any came.
    :param final_reason: its reason phrase.
    :param gateway_requests: in-dialog requests from the gateway: method and headers as received.
    :param remote_media: where the answer's SDP said to send audio.
    :param rtp_port: the dialler's RTP port.
    :param rtp: what the RTP probe sent and got back; final once ``done``.
    :param wrapup: ``WRAPUP`` once the simulator's line was moved, or why it was not.
    :param offers: mid-call offers sent or received (:mod:`.offers`).
    :param decoy_received: datagrams that reached the decoy port of a decoy offer; final once ``done``.
    :param done: the record is final (media drained, port closed).
    """

    id: str
    agent: str
    dnis: str
    ani: str
    account_number: str
    call_transaction_id: str
    call_session_id: str
    sip_call_id: str
    transaction_id_sent: bool
    started_at: float
    state: str = "calling"
    provisional: list[int] = attrs.field(factory=list)
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    ended_by: str | None = None
    final_code: int | None = None
    final_reason: str | None = None
    gateway_requests: list[tuple[str, HeaderList]] = attrs.field(factory=list)
    remote_media: MediaAddress | None = None
    rtp_port: int | None = None
    rtp: ProbeStats | None = None
    wrapup: str | None = None
    offers: list[OfferRecord] = attrs.field(factory=list)
    decoy_received: int = 0
    done: bool = False

    def gateway_bye_headers(self) -> HeaderList | None:
        """The headers of the gateway's BYE, if it sent one."""
        for method, headers in self.gateway_requests:
            if method == "BYE":
                return headers
        return None

    @property
    def audio_ok(self) -> bool:
        """Audio went both ways: packets came back, none lost, none crossed or malformed."""
        r = self.rtp
        return (
            r is not None and r.received > 0 and r.lost == 0 and r.foreign == 0 and r.malformed == 0
        )

    def to_json(self) -> dict[str, Any]:
        """The result as the admin API shows it."""
        bye = self.gateway_bye_headers()
        return {
            "id": self.id,
            "agent": self.agent,
            "dnis": self.dnis,
            "ani": self.ani,
            "accountNumber": self.account_number,
            "callTransactionId": self.call_transaction_id,
            "callSessionId": self.call_session_id,
            "sipCallId": self.sip_call_id,
            "transactionIdSent": self.transaction_id_sent,
            "startedAt": self.started_at,
            "state": self.state,
            "provisional": list(self.provisional),
            "ringingAt": self.ringing_at,
            "answeredAt": self.answered_at,
            "endedAt": self.ended_at,
            "endedBy": self.ended_by,
            "finalCode": self.final_code,
            "finalReason": self.final_reason,
            "gatewayRequests": [
                {"method": m, "headers": h.to_json()} for m, h in self.gateway_requests
            ],
            "gatewayByeHeaders": bye.to_json() if bye is not None else None,
            "remoteMedia": attrs.asdict(self.remote_media) if self.remote_media else None,
            "rtpPort": self.rtp_port,
            "rtp": self.rtp.to_json() if self.rtp is not None else None,
            "audioOk": self.audio_ok,
            "wrapup": self.wrapup,
            "offers": [o.to_json() for o in self.offers],
            "decoyReceived": self.decoy_received,
            "done": self.done,
        }
