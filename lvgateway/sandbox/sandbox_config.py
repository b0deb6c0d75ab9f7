"""The LiveVox simulator's configuration: ``etc/sandbox.toml`` validated into frozen attrs objects.

File reading is kept apart from parsing: :func:`load_sandbox_config` reads a
file, :func:`parse_sandbox_config` parses TOML text and
:func:`sandbox_config_from_dict` validates an already parsed mapping, so tests
build configurations from Python dicts without touching the disk.

Every error is a :class:`SandboxConfigError` naming the file and the key path
(``users[2].password``), what was found and what was expected. Unknown keys are
errors, so a typo cannot silently fall back to a default.

Secrets (API tokens, passwords, the AIA token) may be inline, since this is a
simulator, or read from the environment through a ``*_env`` key.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from lvgateway.config.secret import Secret

#: Where twistd's ``lvsandbox`` looks for its configuration by default.
DEFAULT_CONFIG_PATH = "etc/sandbox.toml"

#: The simulator listens on loopback only unless told otherwise.
DEFAULT_LISTEN = "tcp:7480:interface=127.0.0.1"

#: LiveVox term code action types [C:LVNET ActionType].
ACTION_TYPES = ("RPC_WITH_PAYMENT", "RPC_WITHOUT_PAYMENT", "WPC", "OTHER")

#: Top-level fields of a LiveVox contact (docs/livevox-api.md section 4.1), writable ones.
CONTACT_FIELDS = frozenset(
    {
        "account",
        "active",
        "balance",
        "accountBlock",
        "person",
        "guarantor",
        "phone",
        "accountToSpeak",
        "originalAccountNumber",
        "address1",
        "address2",
        "city",
        "state",
        "country",
        "amountToSpeak",
        "dueDate",
        "groupId",
        "customFields",
        "primaryEmailConsent",
    }
)

_CATEGORIES_TAKEN = ("session", "callControl", "contact", "_sandbox")


class SandboxConfigError(ValueError):
    """The sandbox configuration is invalid; the message names the file and the key path."""


_MISSING: Any = object()


@attrs.frozen
class _Table:
    """One TOML table being read, remembering its key path for error messages."""

    source: str
    path: str
    data: Mapping[str, Any]
    seen: set[str] = attrs.field(factory=set)

    def key_path(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, problem: str) -> SandboxConfigError:
        return SandboxConfigError(f"{self.source}: {self.key_path(key)}: {problem}")

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        self.seen.add(key)
        if key not in self.data:
            if default is _MISSING:
                close = difflib.get_close_matches(key, [str(k) for k in self.data], 1)
                hint = f" (is {self.key_path(close[0])} a typo?)" if close else ""
                raise SandboxConfigError(
                    f"{self.source}: {self.key_path(key)}: required key is missing{hint}"
                )
            return default
        return self.data[key]

    def _typed(self, key: str, kinds: tuple[type, ...], expected: str, default: Any) -> Any:
        if key not in self.data:
            return self.raw(key, default)
        value = self.raw(key)
        # bool is an int subclass: never let true stand for 1
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(key, f"expected {expected}, found boolean {value!r}")
        if not isinstance(value, kinds):
            raise self.fail(key, f"expected {expected}, found {type(value).__name__} {value!r}")
        return value

    def string(self, key: str, default: Any = _MISSING, *, empty_ok: bool = False) -> Any:
        value = self._typed(key, (str,), "a string", default)
        if isinstance(value, str) and not value.strip() and not empty_ok:
            raise self.fail(key, "expected a non-empty string")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, minimum: int | None = None) -> Any:
        value = self._typed(key, (int,), "an integer", default)
        if isinstance(value, int) and minimum is not None and value < minimum:
            raise self.fail(key, f"expected an integer >= {minimum}, found {value}")
        return value

    def number(self, key: str, default: Any = _MISSING, *, positive: bool = False) -> Any:
        value = self._typed(key, (int, float), "a number", default)
        if positive and isinstance(value, int | float) and value <= 0:
            raise self.fail(key, f"expected a positive number, found {value}")
        return float(value) if isinstance(value, int | float) else value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        return self._typed(key, (bool,), "true or false", default)

    def strings(self, key: str, default: Any = _MISSING) -> Any:
        value = self._typed(key, (list,), "an array of strings", default)
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not isinstance(item, str) or not item:
                    raise SandboxConfigError(
                        f"{self.source}: {self.key_path(key)}[{i}]: expected a non-empty "
                        f"string, found {type(item).__name__} {item!r}"
                    )
            return tuple(value)
        return value

    def table(self, key: str, *, required: bool = False) -> _Table | None:
        value = self.raw(key, _MISSING if required else None)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table, found {type(value).__name__}")
        return _Table(self.source, self.key_path(key), value)

    def tables(self, key: str) -> list[_Table]:
        value = self.raw(key, [])
        if not isinstance(value, list):
            raise self.fail(key, f"expected an array of tables, found {type(value).__name__}")
        result = []
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise SandboxConfigError(
                    f"{self.source}: {self.key_path(key)}[{i}]: expected a table, "
                    f"found {type(item).__name__}"
                )
            result.append(_Table(self.source, f"{self.key_path(key)}[{i}]", item))
        return result

    def secret(
        self, key: str, environ: Mapping[str, str], *, required: bool = True
    ) -> Secret | None:
        """Read ``key`` inline or ``key_env`` from the environment: exactly one of them."""
        env_key = f"{key}_env"
        inline = self.has(key)
        from_env = self.has(env_key)
        if inline and from_env:
            raise self.fail(key, f"give either {key} or {env_key}, not both")
        if inline:
            value = self.string(key)
            return Secret(value, f"{self.source} {self.key_path(key)}")
        if from_env:
            name = self.string(env_key)
            found = environ.get(name)
            if not found:
                raise self.fail(env_key, f"environment variable {name} is not set or empty")
            return Secret(found, f"env {name}")
        if required:
            raise SandboxConfigError(
                f"{self.source}: {self.key_path(key)}: required key is missing "
                f"(or give {self.key_path(env_key)})"
            )
        return None

    def done(self) -> None:
        """Refuse keys nobody read: they are typos or unsupported settings."""
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key")


@attrs.frozen
class UserConfig:
    """One LiveVox login: a (virtual) agent or a user.

    :param name: the login name. Agent names match case-insensitively, user
        names case-sensitively [C:LVNET].
    :param password: the password the login must present.
    :param agent: ``True`` for an agent (``"agent": true`` on login), ``False``
        for a user login.
    :param user_id: the ``userId`` returned on login.
    :param days_until_password_expires: returned on login.
    :param phone_number: the 899 number used when a join names none.
    """

    name: str
    password: Secret
    agent: bool
    user_id: int
    days_until_password_expires: int
    phone_number: str | None

    @property
    def key(self) -> str:
        """The name as LiveVox compares it: folded for agents, exact for users."""
        return self.name.casefold() if self.agent else self.name


@attrs.frozen
class TermCodeConfig:
    """One term code of a service, served by ``GET /callControl/agent/termCode``.

    Field names follow LVNET's ``TermCode``; ``lv_result`` is the TFH result name.
    """

    id: str
    name: str
    lv_result: str
    lv_result_id: str
    report_display_order: int
    action_type: str
    preview_dial_enabled: bool
    payment_amt_required: bool


@attrs.frozen
class TermCodeCategoryConfig:
    """A named group of term codes.

    :param name: the category name.
    :param term_codes: the codes in it, in display order.
    """

    name: str
    term_codes: tuple[TermCodeConfig, ...]


@attrs.frozen
class ServiceConfig:
    """A LiveVox service the agents may join.

    :param id: the service id, compared as a string.
    :param name: a display name.
    :param categories: its term code catalogue.
    """

    id: str
    name: str
    categories: tuple[TermCodeCategoryConfig, ...]

    def term_code(self, term_code_id: str) -> TermCodeConfig | None:
        """Return the term code with this id, or ``None`` if the service has none."""
        for category in self.categories:
            for code in category.term_codes:
                if code.id == term_code_id:
                    return code
        return None


@attrs.frozen
class AiaConfig:
    """The client-specific AI Integration App endpoint (nothing public is known about it).

    :param path: the URL path, such as ``/aia/v1/result``.
    :param method: the HTTP method it accepts.
    :param auth_header: the header carrying the token.
    :param token: the token that header must carry.
    """

    path: str
    method: str
    auth_header: str
    token: Secret


#: The sandbox's SIP address: etc/demo.toml's vendor endpoint is ``sip:echo@127.0.0.2:5080``.
DEFAULT_SIP_HOST = "127.0.0.2"
DEFAULT_SIP_PORT = 5080
#: Where the demo gateway listens (etc/demo.toml ``[sip]``).
DEFAULT_GATEWAY_HOST = "127.0.0.1"
DEFAULT_GATEWAY_PORT = 5070


@attrs.frozen
class SipConfig:
    """The sandbox's one SIP stack, shared by the echo bot (answering) and the dialler (calling).

    :param listen_host: the IP literal to bind; the dialler's INVITEs come from it too.
    :param listen_port: the UDP port, 0 for one the kernel picks.
    :param allowed_networks: sources whose datagrams reach the stack; others are dropped.
    :param rtp_host: the IP literal RTP ports are bound on.
    :param user_agent: the ``User-Agent``/``Server`` header.
    :param trace: log every SIP message at debug level.
    """

    listen_host: str = DEFAULT_SIP_HOST
    listen_port: int = DEFAULT_SIP_PORT
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
    )
    rtp_host: str = DEFAULT_SIP_HOST
    user_agent: str = "lvsandbox"
    trace: bool = False


@attrs.frozen
class DiallerConfig:
    """LiveVox's side of a call: the SIP dialler that puts the simulator's calls through.

    :param gateway_host: the IP literal INVITEs go to (the gateway).
    :param gateway_port: its SIP port.
    :param call_duration: seconds after the answer at which the dialler hangs
        up with BYE; 0 waits for the gateway's BYE.
    :param setup_timeout: seconds to wait for a final answer before CANCEL.
    :param include_transaction_id: add ``X-transaction-id`` (LiveVox's sample has none).
    :param include_agent_login_id: add ``X-agent-login-id``.
    :param record_route: add the sample's three ``Record-Route`` headers.
    :param carrier_name: the ``Carrier-Name`` header.
    :param pool_name: the ``Pool-Name`` header.
    :param session_expires: the ``Session-Expires`` seconds (``;refresher=uac``).
    :param session_refresh: seconds between refreshing re-INVITEs; 0 sends none.
    :param auto_start: start placing calls at ``call_rate`` when the sandbox starts.
    :param call_rate: calls per second the automatic dialler places.
    :param auto_count: calls the automatic dialler places before stopping; 0 for no limit.
    :param max_calls: calls the dialler places in its lifetime, however asked; 0 for no limit.
    :param max_concurrent_calls: calls up at once, however asked.
    :param max_call_rate: calls started per second, however asked.
    :param results_kept: how many call results are kept (oldest dropped).
    :param rtp_drain: seconds to wait after the media stops for echoes in flight.
    """

    gateway_host: str = DEFAULT_GATEWAY_HOST
    gateway_port: int = DEFAULT_GATEWAY_PORT
    call_duration: float = 30.0
    setup_timeout: float = 30.0
    include_transaction_id: bool = False
    include_agent_login_id: bool = False
    record_route: bool = True
    carrier_name: str = "tmis"
    pool_name: str = "carrierinbound"
    session_expires: int = 1800
    session_refresh: float = 0.0
    auto_start: bool = False
    call_rate: float = 0.5
    auto_count: int = 0
    max_calls: int = 10000
    max_concurrent_calls: int = 4
    max_call_rate: float = 10.0
    results_kept: int = 1000
    rtp_drain: float = 0.3


@attrs.frozen
class EchoBotConfig:
    """The AI vendor's side: a SIP UAS that answers, echoes RTP and ends calls with a disposition.

    :param answer_delay: seconds between the INVITE and the 200 OK.
    :param ring: send 180 Ringing at once.
    :param call_duration: seconds after the answer at which the bot ends the
        call (BYE, or REFER for a transfer); 0 waits for the gateway's BYE.
    :param max_concurrent_calls: calls up at once; more are answered 503.
    :param transfer_share: share of calls (0 to 1) ended with a REFER to a human.
    :param transfer_ani_pattern: a regular expression; calls whose ANI matches
        it are transferred ("" for none).
    :param refer_to: the ``Refer-To`` URI of a transfer.
    :param term_code: ``X-LV-Term-Code`` when the call is done.
    :param call_outcome: ``X-LV-Call-Outcome`` when done.
    :param result: ``X-LV-Result`` when done.
    :param transfer_term_code: ``X-LV-Term-Code`` on a transfer.
    :param transfer_call_outcome: ``X-LV-Call-Outcome`` on a transfer.
    :param transfer_result: ``X-LV-Result`` on a transfer.
    :param others: ``X-LV-Other1`` onwards, in order (at most 20).
    :param seed: seed of the random choice behind ``transfer_share``.
    :param calls_kept: how many call records are kept (oldest dropped).
    """

    answer_delay: float = 0.5
    ring: bool = True
    call_duration: float = 15.0
    max_concurrent_calls: int = 100
    transfer_share: float = 0.0
    transfer_ani_pattern: str = ""
    refer_to: str = "sip:transfer@127.0.0.2"
    term_code: str = "AI Completed"
    call_outcome: str = "completed"
    result: str = "AGENT - Completed"
    transfer_term_code: str = "Transfer To Agent"
    transfer_call_outcome: str = "transfer"
    transfer_result: str = "AGENT - Transfer"
    others: tuple[str, ...] = ()
    seed: int = 1
    calls_kept: int = 1000


@attrs.frozen
class SandboxConfig:
    """Everything the LiveVox simulator needs.

    :param source: where it came from, for messages.
    :param listen: the Twisted server endpoint string to listen on.
    :param client_name: the client code logins must name.
    :param client_id: the ``clientId`` returned on login.
    :param tokens: the accepted ``LV-Access`` API tokens; sessions are kept
        apart per token.
    :param session_idle_timeout: seconds of inactivity after which a session
        expires (2 hours at LiveVox).
    :param validate_extends_session: whether ``GET /session/validate`` counts
        as activity.
    :param agent_contact_access: whether an agent session may use the Contact
        API; when false such calls get 403.
    :param status_shows_last_call: whether ``POST /callControl/agent/status``
        shows the agent's last call, once closed, on a READY or NOTREADY line
        (docs/livevox-api.md section 3.4 leaves open whether LiveVox does); when
        false a line shows only a call in progress.
    :param refuse_term_code_in_call: whether a term code for a call still
        INCALL is refused with 400 until the call is ended
        (``customer/call/end``); when false (the default) it closes the call.
        docs/livevox-api.md does not say which LiveVox does.
    :param journal_size: how many requests the journal keeps.
    :param fault_seed: the seed of the random generator behind error rates.
    :param users: the logins.
    :param services: the services with their term codes.
    :param contacts: contacts loaded at start, in LiveVox's JSON shape.
    :param aia: the AIA endpoint, if configured.
    :param sip: the SIP stack shared by the dialler and the echo bot.
    :param dialler: the LiveVox SIP dialler.
    :param echo_bot: the AI echo bot.
    """

    source: str
    listen: str
    client_name: str
    client_id: int
    tokens: tuple[Secret, ...]
    session_idle_timeout: float
    validate_extends_session: bool
    agent_contact_access: bool
    journal_size: int
    fault_seed: int
    users: tuple[UserConfig, ...]
    services: tuple[ServiceConfig, ...]
    contacts: tuple[Mapping[str, Any], ...]
    aia: AiaConfig | None
    status_shows_last_call: bool = False
    refuse_term_code_in_call: bool = False
    sip: SipConfig = SipConfig()
    dialler: DiallerConfig = DiallerConfig()
    echo_bot: EchoBotConfig = EchoBotConfig()

    def service(self, service_id: str) -> ServiceConfig | None:
        """Return the service with this id, or ``None``."""
        for service in self.services:
            if service.id == service_id:
                return service
        return None


def _parse_user(t: _Table, index: int, environ: Mapping[str, str]) -> UserConfig:
    name = t.string("name")
    password = t.secret("password", environ)
    assert password is not None
    agent = t.boolean("agent", True)
    phone = t.string("phone_number", None)
    if phone is not None and not re.fullmatch(r"\+?\d{3,15}", phone):
        raise t.fail("phone_number", f"expected digits such as 8990000001, found {phone!r}")
    user = UserConfig(
        name=name,
        password=password,
        agent=agent,
        user_id=t.integer("user_id", 1000 + index, minimum=1),
        days_until_password_expires=t.integer("days_until_password_expires", 90, minimum=0),
        phone_number=phone,
    )
    t.done()
    return user


def _parse_term_code(t: _Table, order: int) -> TermCodeConfig:
    action_type = t.string("action_type", "OTHER")
    if action_type not in ACTION_TYPES:
        raise t.fail(
            "action_type", f"expected one of {', '.join(ACTION_TYPES)}, found {action_type!r}"
        )
    code_id = t.raw("id")
    if isinstance(code_id, bool) or not isinstance(code_id, str | int) or str(code_id) == "":
        raise t.fail("id", f"expected a string or integer id, found {code_id!r}")
    name = t.string("name")
    code = TermCodeConfig(
        id=str(code_id),
        name=name,
        lv_result=t.string("lv_result", name),
        lv_result_id=t.string("lv_result_id", str(code_id)),
        report_display_order=t.integer("report_display_order", order, minimum=0),
        action_type=action_type,
        preview_dial_enabled=t.boolean("preview_dial_enabled", False),
        payment_amt_required=t.boolean("payment_amt_required", False),
    )
    t.done()
    return code


def _parse_service(t: _Table) -> ServiceConfig:
    service_id = t.raw("id")
    if isinstance(service_id, bool) or not isinstance(service_id, str | int):
        raise t.fail("id", f"expected a string or integer id, found {service_id!r}")
    if not re.fullmatch(r"\d+", str(service_id)):
        raise t.fail("id", f"expected digits, found {service_id!r}")
    categories = []
    seen_codes: set[str] = set()
    order = 1
    for ct in t.tables("term_code_categories"):
        codes = []
        for code_table in ct.tables("term_codes"):
            code = _parse_term_code(code_table, order)
            if code.id in seen_codes:
                raise code_table.fail("id", f"duplicate term code id {code.id!r} in this service")
            seen_codes.add(code.id)
            codes.append(code)
            order += 1
        categories.append(TermCodeCategoryConfig(name=ct.string("name"), term_codes=tuple(codes)))
        ct.done()
    if not seen_codes:
        raise t.fail("term_code_categories", "a service needs at least one term code")
    service = ServiceConfig(
        id=str(service_id),
        name=t.string("name", f"Service {service_id}"),
        categories=tuple(categories),
    )
    t.done()
    return service


def _parse_contact(t: _Table) -> Mapping[str, Any]:
    account = t.raw("account")
    if isinstance(account, bool) or not isinstance(account, str | int) or str(account) == "":
        raise t.fail("account", f"expected a non-empty account number, found {account!r}")
    for key in t.data:
        if key not in CONTACT_FIELDS:
            raise t.fail(key, f"unknown contact field (known: {', '.join(sorted(CONTACT_FIELDS))})")
    t.seen.update(t.data)
    contact = dict(t.data)
    contact["account"] = str(account)
    return contact


def _parse_aia(t: _Table, environ: Mapping[str, str]) -> AiaConfig:
    path = t.string("path")
    if not path.startswith("/") or "?" in path:
        raise t.fail(
            "path", f"expected an absolute URL path such as /aia/v1/result, found {path!r}"
        )
    first = path.strip("/").split("/")[0]
    if first in _CATEGORIES_TAKEN:
        raise t.fail("path", f"{path!r} collides with the LiveVox or sandbox routes")
    method = t.string("method", "POST").upper()
    if method not in ("POST", "PUT", "PATCH"):
        raise t.fail("method", f"expected POST, PUT or PATCH, found {method!r}")
    auth_header = t.string("auth_header")
    if not re.fullmatch(r"[A-Za-z0-9-]+", auth_header):
        raise t.fail("auth_header", f"expected a header name, found {auth_header!r}")
    token = t.secret("token", environ)
    assert token is not None
    t.done()
    return AiaConfig(
        path="/" + path.strip("/"), method=method, auth_header=auth_header, token=token
    )


def _ip_literal(t: _Table, key: str, default: str) -> str:
    value: str = t.string(key, default)
    try:
        ipaddress.ip_address(value)
    except ValueError as e:
        raise t.fail(key, f"expected an IP address such as 127.0.0.2, found {value!r}") from e
    return value


def _port(t: _Table, key: str, default: int, *, zero_ok: bool) -> int:
    value: int = t.integer(key, default, minimum=0 if zero_ok else 1)
    if value > 65535:
        raise t.fail(key, f"expected a port up to 65535, found {value}")
    return value


def _seconds(t: _Table, key: str, default: float, *, zero_ok: bool) -> float:
    value: float = t.number(key, default)
    if value < 0 or (value == 0 and not zero_ok):
        expected = "a number of seconds >= 0" if zero_ok else "a positive number of seconds"
        raise t.fail(key, f"expected {expected}, found {value}")
    return value


def _parse_sip(t: _Table | None, source: str) -> SipConfig:
    t = t or _Table(source, "sip", {})
    host = _ip_literal(t, "listen_host", DEFAULT_SIP_HOST)
    networks = []
    for i, cidr in enumerate(t.strings("allowed_networks", ("127.0.0.0/8",))):
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError as e:
            raise SandboxConfigError(
                f"{source}: {t.key_path('allowed_networks')}[{i}]: expected a network such "
                f"as 127.0.0.0/8, found {cidr!r}"
            ) from e
    config = SipConfig(
        listen_host=host,
        listen_port=_port(t, "listen_port", DEFAULT_SIP_PORT, zero_ok=True),
        allowed_networks=tuple(networks),
        rtp_host=_ip_literal(t, "rtp_host", host),
        user_agent=t.string("user_agent", "lvsandbox"),
        trace=t.boolean("trace", False),
    )
    t.done()
    return config


def _parse_dialler(t: _Table | None, source: str) -> DiallerConfig:
    t = t or _Table(source, "dialler", {})
    d = DiallerConfig()
    max_call_rate = t.number("max_call_rate", d.max_call_rate, positive=True)
    call_rate = t.number("call_rate", d.call_rate, positive=True)
    if call_rate > max_call_rate:
        raise t.fail(
            "call_rate", f"expected at most max_call_rate ({max_call_rate}), found {call_rate}"
        )
    session_expires = t.integer("session_expires", d.session_expires, minimum=90)
    config = DiallerConfig(
        gateway_host=_ip_literal(t, "gateway_host", d.gateway_host),
        gateway_port=_port(t, "gateway_port", d.gateway_port, zero_ok=False),
        call_duration=_seconds(t, "call_duration", d.call_duration, zero_ok=True),
        setup_timeout=_seconds(t, "setup_timeout", d.setup_timeout, zero_ok=False),
        include_transaction_id=t.boolean("include_transaction_id", d.include_transaction_id),
        include_agent_login_id=t.boolean("include_agent_login_id", d.include_agent_login_id),
        record_route=t.boolean("record_route", d.record_route),
        carrier_name=t.string("carrier_name", d.carrier_name),
        pool_name=t.string("pool_name", d.pool_name),
        session_expires=session_expires,
        session_refresh=_seconds(t, "session_refresh", d.session_refresh, zero_ok=True),
        auto_start=t.boolean("auto_start", d.auto_start),
        call_rate=call_rate,
        auto_count=t.integer("auto_count", d.auto_count, minimum=0),
        max_calls=t.integer("max_calls", d.max_calls, minimum=0),
        max_concurrent_calls=t.integer("max_concurrent_calls", d.max_concurrent_calls, minimum=1),
        max_call_rate=max_call_rate,
        results_kept=t.integer("results_kept", d.results_kept, minimum=1),
        rtp_drain=_seconds(t, "rtp_drain", d.rtp_drain, zero_ok=True),
    )
    t.done()
    return config


def _parse_echo_bot(t: _Table | None, source: str) -> EchoBotConfig:
    t = t or _Table(source, "echo_bot", {})
    d = EchoBotConfig()
    share = t.number("transfer_share", d.transfer_share)
    if not 0.0 <= share <= 1.0:
        raise t.fail("transfer_share", f"expected a share from 0 to 1, found {share}")
    pattern = t.string("transfer_ani_pattern", d.transfer_ani_pattern, empty_ok=True)
    try:
        re.compile(pattern)
    except re.error as e:
        raise t.fail("transfer_ani_pattern", f"not a valid regular expression: {e}") from e
    refer_to = t.string("refer_to", d.refer_to)
    if not refer_to.lower().startswith("sip:"):
        raise t.fail("refer_to", f"expected a sip: URI, found {refer_to!r}")
    others = t.strings("others", d.others)
    if len(others) > 20:
        raise t.fail("others", f"expected at most 20 values (Other1..Other20), found {len(others)}")
    config = EchoBotConfig(
        answer_delay=_seconds(t, "answer_delay", d.answer_delay, zero_ok=True),
        ring=t.boolean("ring", d.ring),
        call_duration=_seconds(t, "call_duration", d.call_duration, zero_ok=True),
        max_concurrent_calls=t.integer("max_concurrent_calls", d.max_concurrent_calls, minimum=1),
        transfer_share=share,
        transfer_ani_pattern=pattern,
        refer_to=refer_to,
        term_code=t.string("term_code", d.term_code),
        call_outcome=t.string("call_outcome", d.call_outcome),
        result=t.string("result", d.result),
        transfer_term_code=t.string("transfer_term_code", d.transfer_term_code),
        transfer_call_outcome=t.string("transfer_call_outcome", d.transfer_call_outcome),
        transfer_result=t.string("transfer_result", d.transfer_result),
        others=tuple(others),
        seed=t.integer("seed", d.seed),
        calls_kept=t.integer("calls_kept", d.calls_kept, minimum=1),
    )
    t.done()
    return config


def sandbox_config_from_dict(
    data: Mapping[str, Any],
    source: str = "<dict>",
    environ: Mapping[str, str] | None = None,
) -> SandboxConfig:
    """Validate a parsed configuration mapping (the TOML document's shape).

    :param data: the document, as ``tomllib`` would return it.
    :param source: what to name in error messages, usually the file path.
    :param environ: where ``*_env`` keys are looked up; ``os.environ`` by default.
    :raises SandboxConfigError: naming ``source`` and the key path at fault.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    root = _Table(source, "", data)

    server = root.table("server") or _Table(source, "server", {})
    listen = server.string("listen", DEFAULT_LISTEN)
    server.done()

    lv = root.table("livevox", required=True)
    assert lv is not None
    tokens: list[Secret] = []
    main_token = lv.secret("token", env, required=False)
    if main_token is not None:
        tokens.append(main_token)
    for i, extra in enumerate(lv.strings("extra_tokens", ())):
        tokens.append(Secret(extra, f"{source} livevox.extra_tokens[{i}]"))
    if not tokens:
        raise lv.fail("token", "required key is missing (give token, token_env or extra_tokens)")
    client_name = lv.string("client_name")
    client_id = lv.integer("client_id", 1000, minimum=1)
    timeout = lv.number("session_idle_timeout", 7200.0, positive=True)
    validate_extends = lv.boolean("validate_extends_session", False)
    agent_contacts = lv.boolean("agent_contact_access", True)
    shows_last_call = lv.boolean("status_shows_last_call", False)
    refuse_in_call = lv.boolean("refuse_term_code_in_call", False)
    journal_size = lv.integer("journal_size", 10000, minimum=1)
    seed = lv.integer("fault_seed", 1)
    lv.done()

    users = []
    keys: dict[tuple[bool, str], str] = {}
    phones: dict[str, str] = {}
    for i, ut in enumerate(root.tables("users")):
        user = _parse_user(ut, i + 1, env)
        if (user.agent, user.key) in keys:
            raise ut.fail(
                "name", f"duplicate login {user.name!r} (also {keys[(user.agent, user.key)]})"
            )
        keys[(user.agent, user.key)] = ut.path
        if user.phone_number is not None:
            digits = user.phone_number.lstrip("+")
            if digits in phones:
                raise ut.fail("phone_number", f"{user.phone_number} is also {phones[digits]}'s")
            phones[digits] = ut.path
        users.append(user)
    if not users:
        raise root.fail("users", "at least one [[users]] entry is required")

    services: list[ServiceConfig] = []
    for st in root.tables("services"):
        service = _parse_service(st)
        if any(s.id == service.id for s in services):
            raise st.fail("id", f"duplicate service id {service.id!r}")
        services.append(service)
    if not services:
        raise root.fail("services", "at least one [[services]] entry is required")

    contacts = []
    accounts: set[str] = set()
    for ct in root.tables("contacts"):
        contact = _parse_contact(ct)
        if contact["account"] in accounts:
            raise ct.fail("account", f"duplicate account {contact['account']!r}")
        accounts.add(contact["account"])
        contacts.append(contact)

    aia_table = root.table("aia")
    aia = _parse_aia(aia_table, env) if aia_table is not None else None
    sip = _parse_sip(root.table("sip"), source)
    dialler = _parse_dialler(root.table("dialler"), source)
    echo_bot = _parse_echo_bot(root.table("echo_bot"), source)
    root.done()

    return SandboxConfig(
        source=source,
        listen=listen,
        client_name=client_name,
        client_id=client_id,
        tokens=tuple(tokens),
        session_idle_timeout=timeout,
        validate_extends_session=validate_extends,
        agent_contact_access=agent_contacts,
        status_shows_last_call=shows_last_call,
        refuse_term_code_in_call=refuse_in_call,
        journal_size=journal_size,
        fault_seed=seed,
        users=tuple(users),
        services=tuple(services),
        contacts=tuple(contacts),
        aia=aia,
        sip=sip,
        dialler=dialler,
        echo_bot=echo_bot,
    )


def parse_sandbox_config(
    text: str, source: str = "<string>", environ: Mapping[str, str] | None = None
) -> SandboxConfig:
    """Parse TOML text into a :class:`SandboxConfig`.

    :param text: the TOML document.
    :param source: what to name in error messages.
    :param environ: where ``*_env`` keys are looked up.
    :raises SandboxConfigError: on a TOML syntax error or an invalid value.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SandboxConfigError(f"{source}: not valid TOML: {e}") from e
    return sandbox_config_from_dict(data, source, environ)


def load_sandbox_config(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> SandboxConfig:
    """Read and parse a sandbox configuration file.

    :param path: the file, such as ``etc/sandbox.toml``.
    :param environ: where ``*_env`` keys are looked up.
    :raises SandboxConfigError: if the file cannot be read or is invalid.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SandboxConfigError(f"{path}: cannot read: {e.strerror or e}") from e
    return parse_sandbox_config(text, str(path), environ)


__all__: Sequence[str] = [
    "DEFAULT_CONFIG_PATH",
    "AiaConfig",
    "DiallerConfig",
    "EchoBotConfig",
    "SandboxConfig",
    "SandboxConfigError",
    "ServiceConfig",
    "SipConfig",
    "TermCodeCategoryConfig",
    "TermCodeConfig",
    "UserConfig",
    "load_sandbox_config",
    "parse_sandbox_config",
    "sandbox_config_from_dict",
]
