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

#: Top-level fields of a LiveVox contact (LIVEVOX_API.md section 4.1), writable ones.
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
    :param journal_size: how many requests the journal keeps.
    :param fault_seed: the seed of the random generator behind error rates.
    :param users: the logins.
    :param services: the services with their term codes.
    :param contacts: contacts loaded at start, in LiveVox's JSON shape.
    :param aia: the AIA endpoint, if configured.
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
        journal_size=journal_size,
        fault_seed=seed,
        users=tuple(users),
        services=tuple(services),
        contacts=tuple(contacts),
        aia=aia,
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
    "SandboxConfig",
    "SandboxConfigError",
    "ServiceConfig",
    "TermCodeCategoryConfig",
    "TermCodeConfig",
    "UserConfig",
    "load_sandbox_config",
    "parse_sandbox_config",
    "sandbox_config_from_dict",
]
