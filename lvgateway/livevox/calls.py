"""The catalogue of LiveVox REST calls the gateway makes, and which are safe to repeat.

Each call has a short name (used in exceptions, log lines and the ``call``
metric label), its method and path, the credential header it carries, and
whether the transport retries it after a 5xx, a timeout or a broken
connection. No call is ever retried after a 4xx: LiveVox has looked at the
request and said no, and saying it again will not change that.

Why each call is or is not retried
----------------------------------

Retried (repeating it leaves LiveVox in the same state as doing it once):

``login``
    A second login of the same user with the same API token returns the
    same ``sessionId`` while one is valid (docs/livevox-api.md §2, from LVNET
    and COGNIGY), so a repeat after a lost answer creates nothing new.
``session_validate``, ``term_codes``, ``contact_read``
    Reads.
``agent_status``
    A POST, but only a read: it reports the agent's lines.
``session_logout``
    Ending an ended session ends nothing more; the client reads the 404 or
    401 a repeat may get as "already ended".
``service_join``, ``service_leave``, ``ready``, ``not_ready``
    Each sets a state rather than adding to one: joining service S with
    number N, or going READY, twice leaves the agent as once does. A repeat
    whose first attempt was applied may get a 4xx ("already joined", or
    READY refused because a call has arrived meanwhile); that is reported,
    not retried, and the agent pool reconciles.
``contact_update``
    A partial update that sets the same fields to the same values.

Not retried (a repeat could do the thing twice):

``contact_create``
    Not idempotent by design; a repeat of a lost success would come back as
    "Contact already exists!" at best. The wrap-up decides.
``call_end``
    The request names no call, only the agent's line: a repeat that lands
    after LiveVox gave the agent its next call would hang up that customer.
``term_code_save``
    Closes the call and frees the agent: LiveVox may then route the agent its
    next call at once. A repeat after a lost answer (a 5xx, a timeout) would
    be a second save of a closed call, a breach of the one-term-code contract,
    and LiveVox's answer to it is not documented. The wrap-up decides instead:
    it checks the agent's status first, and sends again only when LiveVox
    still holds the call (:mod:`lvgateway.calls.wrapup`).
``conference_manual``
    Dials a number: a repeat could dial it twice.
``aia_post``
    The client-specific AIA endpoint's semantics are unknown (LiveVox
    provides a separate specification per client); a duplicate could show
    the screen-pop twice. The wrap-up outbox retries it.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "AGENT_STATUS",
    "AIA_POST",
    "ALL_CALLS",
    "CALL_END",
    "CALL_NAMES",
    "CONFERENCE_MANUAL",
    "CONTACT_CREATE",
    "CONTACT_READ",
    "CONTACT_UPDATE",
    "LOGIN",
    "LOGOUT",
    "NOT_READY",
    "READY",
    "SERVICE_JOIN",
    "SERVICE_LEAVE",
    "TERM_CODES",
    "TERM_CODE_SAVE",
    "VALIDATE",
    "CallSpec",
]

Credential = Literal["access", "session"]


@attrs.frozen
class CallSpec:
    """One LiveVox REST call.

    :param name: the short name used in errors, logs and metrics.
    :param method: the HTTP method.
    :param category: the API category, the first path segment (``session``,
        ``callControl``, ``contact``); the optional version goes after it.
    :param resource: the path after the category (and version), without
        the per-request segments such as a session id or an account.
    :param credential: ``access`` sends the API token as ``LV-Access`` (the
        Session API calls); ``session`` sends the session id as ``LV-Session``.
    :param retry: whether the transport may repeat it after a 5xx, a
        timeout or a connection failure (see the module docstring for why).
    """

    name: str
    method: str
    category: str
    resource: str
    credential: Credential
    retry: bool


LOGIN = CallSpec("login", "POST", "session", "login", "access", retry=True)
VALIDATE = CallSpec("session_validate", "GET", "session", "validate", "access", retry=True)
LOGOUT = CallSpec("session_logout", "DELETE", "session", "logout", "access", retry=True)

SERVICE_JOIN = CallSpec(
    "service_join", "POST", "callControl", "agent/service/join", "session", retry=True
)
SERVICE_LEAVE = CallSpec(
    "service_leave", "POST", "callControl", "agent/service/leave", "session", retry=True
)
READY = CallSpec("ready", "POST", "callControl", "agent/status/ready", "session", retry=True)
NOT_READY = CallSpec(
    "not_ready", "POST", "callControl", "agent/status/notReady", "session", retry=True
)
AGENT_STATUS = CallSpec(
    "agent_status", "POST", "callControl", "agent/status", "session", retry=True
)
TERM_CODES = CallSpec("term_codes", "GET", "callControl", "agent/termCode", "session", retry=True)
TERM_CODE_SAVE = CallSpec(
    "term_code_save", "PUT", "callControl", "agent/call/termCode", "session", retry=False
)
CALL_END = CallSpec(
    "call_end", "POST", "callControl", "agent/customer/call/end", "session", retry=False
)
CONFERENCE_MANUAL = CallSpec(
    "conference_manual", "POST", "callControl", "agent/conference/manual", "session", retry=False
)

CONTACT_READ = CallSpec("contact_read", "GET", "contact", "contacts", "session", retry=True)
#: The method is a default: ``LiveVoxConfig.contact_create_method`` chooses POST or PUT.
CONTACT_CREATE = CallSpec("contact_create", "POST", "contact", "contacts", "session", retry=False)
CONTACT_UPDATE = CallSpec("contact_update", "PUT", "contact", "contacts", "session", retry=True)

ALL_CALLS: tuple[CallSpec, ...] = (
    LOGIN,
    VALIDATE,
    LOGOUT,
    SERVICE_JOIN,
    SERVICE_LEAVE,
    READY,
    NOT_READY,
    AGENT_STATUS,
    TERM_CODES,
    TERM_CODE_SAVE,
    CALL_END,
    CONFERENCE_MANUAL,
    CONTACT_READ,
    CONTACT_CREATE,
    CONTACT_UPDATE,
)

#: The name of the post to the client-specific AIA endpoint (not a LiveVox REST call).
AIA_POST = "aia_post"

#: Every ``call`` label value, for metrics registered up front.
CALL_NAMES: tuple[str, ...] = (*(c.name for c in ALL_CALLS), AIA_POST)
