"""What the echo bot does with a call and what it keeps of it: scripts, queued rules, call records.

See :mod:`.echo_bot` for the bot itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IListeningPort

from lvgateway.sandbox.offers import DecoyPort, OfferRecord
from lvgateway.sandbox.rtp_media import MediaAddress, RtpEcho
from lvgateway.sandbox.sip_messages import HeaderList

__all__ = ["EchoCall", "EchoRule", "EchoScript"]


def _optional_float(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0")
    return float(value)


def _optional_bool(value: Any, name: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false")
    return value


def _optional_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


@attrs.frozen
class EchoScript:
    """What the echo bot does with one call; ``None`` fields take the bot's configured default.

    :param answer_delay: seconds between the INVITE and the 200 OK (or the rejection).
    :param ring: send 180 Ringing at once.
    :param reject: answer with this final status (400 to 699) instead of 200.
    :param reject_reason: the reason phrase of the rejection.
    :param never_answer: send no final answer (the caller must CANCEL).
    :param silent: send nothing at all, not even 100 Trying, as a vendor that
        hangs (Sippy's transaction layer still answers a CANCEL: 200, then 487).
    :param call_duration: seconds after the answer at which the bot ends the
        call; 0 waits for the other side's BYE.
    :param transfer: end with a REFER (``True``) or a BYE (``False``);
        ``None`` decides by ANI pattern and share.
    :param term_code: ``X-LV-Term-Code``.
    :param call_outcome: ``X-LV-Call-Outcome``.
    :param result: ``X-LV-Result``.
    :param others: ``X-LV-Other1`` onwards.
    """

    answer_delay: float | None = None
    ring: bool | None = None
    reject: int | None = None
    reject_reason: str | None = None
    never_answer: bool = False
    silent: bool = False
    call_duration: float | None = None
    transfer: bool | None = None
    term_code: str | None = None
    call_outcome: str | None = None
    result: str | None = None
    others: tuple[str, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if self.reject is not None and not 400 <= self.reject <= 699:
            raise ValueError(f"reject must be a final status from 400 to 699, not {self.reject}")
        if self.others is not None and len(self.others) > 20:
            raise ValueError("others holds at most 20 values (Other1..Other20)")

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> EchoScript:
        """Read a script from the admin API's camelCase JSON.

        :raises ValueError: on a wrong type or value.
        """
        reject = body.get("reject")
        if reject is not None and (isinstance(reject, bool) or not isinstance(reject, int)):
            raise ValueError("reject must be a SIP status code")
        others = body.get("others")
        if others is not None and (
            not isinstance(others, list) or not all(isinstance(o, str) for o in others)
        ):
            raise ValueError("others must be an array of strings")
        return cls(
            answer_delay=_optional_float(body.get("answerDelay"), "answerDelay"),
            ring=_optional_bool(body.get("ring"), "ring"),
            reject=reject,
            reject_reason=_optional_str(body.get("rejectReason"), "rejectReason"),
            never_answer=bool(_optional_bool(body.get("neverAnswer"), "neverAnswer")),
            silent=bool(_optional_bool(body.get("silent"), "silent")),
            call_duration=_optional_float(body.get("callDuration"), "callDuration"),
            transfer=_optional_bool(body.get("transfer"), "transfer"),
            term_code=_optional_str(body.get("termCode"), "termCode"),
            call_outcome=_optional_str(body.get("callOutcome"), "callOutcome"),
            result=_optional_str(body.get("result"), "result"),
            others=None if others is None else tuple(others),
        )

    def to_json(self) -> dict[str, Any]:
        """The script in the admin API's camelCase JSON (unset fields left out)."""
        fields = {
            "answerDelay": self.answer_delay,
            "ring": self.ring,
            "reject": self.reject,
            "rejectReason": self.reject_reason,
            "neverAnswer": self.never_answer or None,
            "silent": self.silent or None,
            "callDuration": self.call_duration,
            "transfer": self.transfer,
            "termCode": self.term_code,
            "callOutcome": self.call_outcome,
            "result": self.result,
            "others": None if self.others is None else list(self.others),
        }
        return {k: v for k, v in fields.items() if v is not None}


@attrs.define
class EchoRule:
    """A queued script: for calls matching its patterns, ``remaining`` times (``None``: always).

    :param id: names the rule in the admin API.
    :param script: what to do.
    :param ani: a regular expression the call's ANI must match (searched), if any.
    :param dnis: a regular expression the call's DNIS must match, if any.
    :param remaining: how many more calls it applies to.
    """

    id: int
    script: EchoScript
    ani: re.Pattern[str] | None = None
    dnis: re.Pattern[str] | None = None
    remaining: int | None = 1

    def matches(self, ani: str, dnis: str) -> bool:
        """Whether a call with this ANI and DNIS gets this rule."""
        if self.ani is not None and not self.ani.search(ani):
            return False
        return not (self.dnis is not None and not self.dnis.search(dnis))

    def to_json(self) -> dict[str, Any]:
        """The rule as the admin API shows it."""
        return {
            "id": self.id,
            "ani": self.ani.pattern if self.ani is not None else None,
            "dnis": self.dnis.pattern if self.dnis is not None else None,
            "remaining": self.remaining,
            "script": self.script.to_json(),
        }


@attrs.define
class EchoCall:
    """One call the echo bot received, and what became of it.

    :param id: the bot's own id (``e1``, ``e2``...).
    :param sip_call_id: the INVITE's Call-ID.
    :param received_at: clock time of the INVITE.
    :param ani: ``X-LV-ANI``, else the From user.
    :param dnis: ``X-LV-DNIS``, else the Request-URI user.
    :param request_uri: the INVITE's Request-URI.
    :param headers: the INVITE's headers as received (case kept when the raw text was seen).
    :param raw_invite: the INVITE's text, when seen.
    :param remote_media: where the INVITE's SDP says to send audio.
    :param script: what the bot does with it.
    :param rule: the id of the queued rule that chose the script, if any.
    :param transfer: whether the call ends with a REFER.
    :param state: ``ringing``, ``answered`` or ``ended``.
    :param answered_at: clock time of the 200 OK.
    :param ended_at: clock time the call ended.
    :param ended_by: ``bye`` or ``refer`` (the bot ended it), ``peer`` (a BYE
        came), ``cancelled``, ``rejected``, ``failed``, or ``ignored`` (a
        silent script: the bot never answered, and keeps no state for it).
    :param final_code: the final status the bot answered the INVITE with.
    :param disposition: the disposition headers sent on the BYE or REFER.
    :param peer_requests: in-dialog requests received: method and headers.
    :param rtp_port: the bot's RTP port, when it answers.
    :param echo: what the RTP echo saw.
    :param offers: mid-call offers sent or received (:mod:`.offers`).
    :param decoy: the decoy port of a decoy offer, if one was made.
    """

    id: str
    sip_call_id: str
    received_at: float
    ani: str
    dnis: str
    request_uri: str
    headers: HeaderList
    raw_invite: str | None
    remote_media: MediaAddress | None
    script: EchoScript
    rule: int | None
    transfer: bool
    state: str = "ringing"
    answered_at: float | None = None
    ended_at: float | None = None
    ended_by: str | None = None
    final_code: int | None = None
    disposition: dict[str, str] = attrs.field(factory=dict)
    peer_requests: list[tuple[str, HeaderList]] = attrs.field(factory=list)
    rtp_port: int | None = None
    echo: RtpEcho | None = None
    offers: list[OfferRecord] = attrs.field(factory=list)
    decoy: DecoyPort | None = None
    sdp_version: int = 1
    #: The status the next offer received is refused with, if asked.
    refuse_next: int | None = None
    #: The re-INVITE this call sent and awaits the answer to.
    pending_offer: OfferRecord | None = None
    _ua: Any = attrs.field(default=None, repr=False)
    _decoy_port: IListeningPort | None = attrs.field(default=None, repr=False)
    _port: IListeningPort | None = attrs.field(default=None, repr=False)
    _timers: list[IDelayedCall] = attrs.field(factory=list, repr=False)
    _ending: str | None = attrs.field(default=None, repr=False)

    @property
    def lvgw_call_id(self) -> str | None:
        """The gateway's ``X-LVGW-Call-ID``, if the INVITE carried one."""
        return self.headers.get("X-LVGW-Call-ID")

    @property
    def live(self) -> bool:
        """Whether the call is not over."""
        return self.state != "ended"

    def peer_bye_headers(self) -> HeaderList | None:
        """The headers of the BYE the other side sent, if it sent one."""
        for method, headers in self.peer_requests:
            if method == "BYE":
                return headers
        return None

    def to_json(self) -> dict[str, Any]:
        """The call as the admin API shows it."""
        bye = self.peer_bye_headers()
        return {
            "id": self.id,
            "sipCallId": self.sip_call_id,
            "lvgwCallId": self.lvgw_call_id,
            "receivedAt": self.received_at,
            "ani": self.ani,
            "dnis": self.dnis,
            "requestUri": self.request_uri,
            "headers": self.headers.to_json(),
            "remoteMedia": attrs.asdict(self.remote_media) if self.remote_media else None,
            "script": self.script.to_json(),
            "rule": self.rule,
            "transfer": self.transfer,
            "state": self.state,
            "answeredAt": self.answered_at,
            "endedAt": self.ended_at,
            "endedBy": self.ended_by,
            "finalCode": self.final_code,
            "disposition": dict(self.disposition),
            "peerRequests": [{"method": m, "headers": h.to_json()} for m, h in self.peer_requests],
            "peerByeHeaders": bye.to_json() if bye is not None else None,
            "rtpPort": self.rtp_port,
            "rtp": self.echo.to_json() if self.echo is not None else None,
            "offers": [o.to_json() for o in self.offers],
            "decoyReceived": self.decoy.received if self.decoy is not None else 0,
        }
