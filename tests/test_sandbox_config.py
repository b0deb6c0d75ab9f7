"""The sandbox configuration (etc/sandbox.toml), its errors, and the lvsandbox twistd plugin."""

# twisted.python.usage is untyped.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker, MultiService
from twisted.python import usage
from zope.interface.verify import verifyObject

from lvgateway.sandbox import tap
from lvgateway.sandbox.sandbox_config import (
    SandboxConfigError,
    load_sandbox_config,
    parse_sandbox_config,
    sandbox_config_from_dict,
)
from lvgateway.sandbox.testing import sandbox_config_dict

ROOT = Path(__file__).resolve().parent.parent
SANDBOX_TOML = ROOT / "etc" / "sandbox.toml"


def _error(data: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    with pytest.raises(SandboxConfigError) as raised:
        sandbox_config_from_dict(data, "sandbox.toml", environ=environ or {})
    return str(raised.value)


def test_shipped_sandbox_toml_loads() -> None:
    """etc/sandbox.toml loads: client demo, AIVA1..4, service 1234567 with done and transfer codes."""
    config = load_sandbox_config(SANDBOX_TOML, environ={})
    assert config.client_name == "demo"
    assert [u.name for u in config.users if u.agent] == ["AIVA1", "AIVA2", "AIVA3", "AIVA4"]
    assert any(not u.agent for u in config.users)
    service = config.service("1234567")
    assert service is not None
    names = {c.name for cat in service.categories for c in cat.term_codes}
    assert {"AI Completed", "Transfer To Agent"} <= names
    assert config.tokens and config.contacts
    assert config.aia is not None and config.aia.path == "/aia/v1/result"
    assert config.listen.startswith("tcp:7480:")
    assert config.status_shows_last_call is False


def test_status_shows_last_call_from_toml() -> None:
    """livevox.status_shows_last_call is read from the [livevox] table; the shipped config says false."""
    text = SANDBOX_TOML.read_text(encoding="utf-8")
    assert "\nstatus_shows_last_call = false\n" in text, "the shipped config names its default"
    on = text.replace("\nstatus_shows_last_call = false\n", "\nstatus_shows_last_call = true\n", 1)
    assert parse_sandbox_config(on, "sandbox.toml", environ={}).status_shows_last_call is True
    assert parse_sandbox_config(text, "sandbox.toml", environ={}).status_shows_last_call is False


def test_token_from_environment() -> None:
    """livevox.token_env reads the API token from the environment."""
    data = sandbox_config_dict()
    del data["livevox"]["token"]
    data["livevox"]["token_env"] = "LV_SANDBOX_TOKEN"
    config = sandbox_config_from_dict(data, environ={"LV_SANDBOX_TOKEN": "from-env"})
    assert config.tokens[0].matches("from-env")
    assert "from-env" not in repr(config)
    message = _error(data, environ={})
    assert "sandbox.toml: livevox.token_env:" in message
    assert "LV_SANDBOX_TOKEN" in message


def test_unknown_key_is_named() -> None:
    """A misspelt key is an error naming the file and its key path."""
    data = sandbox_config_dict()
    data["users"][1]["pasword"] = data["users"][1].pop("password")
    assert _error(data).startswith("sandbox.toml: users[1].password: required key is missing")
    data["users"][1]["password"] = "x"
    assert _error(data) == "sandbox.toml: users[1].pasword: unknown key"
    data = sandbox_config_dict()
    data["livevox"]["clinet_name"] = "demo"
    assert _error(data) == "sandbox.toml: livevox.clinet_name: unknown key"


def test_wrong_types_and_values_are_named() -> None:
    """Wrong types and bad values name the key path, what was found and what was expected."""
    data = sandbox_config_dict()
    data["livevox"]["session_idle_timeout"] = "2h"
    assert _error(data) == (
        "sandbox.toml: livevox.session_idle_timeout: expected a number, found str '2h'"
    )
    data = sandbox_config_dict()
    data["services"][0]["term_code_categories"][0]["term_codes"][1]["action_type"] = "DONE"
    assert "services[0].term_code_categories[0].term_codes[1].action_type" in _error(data)
    data = sandbox_config_dict()
    data["users"][2]["name"] = "aiva1"
    assert "users[2].name: duplicate login" in _error(data)
    data = sandbox_config_dict()
    data["aia"]["path"] = "/session/aia"
    assert "aia.path" in _error(data)
    data = sandbox_config_dict()
    data["contacts"][0]["nickname"] = "JD"
    assert "contacts[0].nickname: unknown contact field" in _error(data)
    data = sandbox_config_dict()
    data["livevox"]["agent_contact_access"] = 1
    assert "livevox.agent_contact_access: expected true or false" in _error(data)
    data = sandbox_config_dict()
    data["livevox"]["status_shows_last_call"] = "yes"
    assert _error(data) == (
        "sandbox.toml: livevox.status_shows_last_call: expected true or false, found str 'yes'"
    )


def test_malformed_toml_names_the_file(tmp_path: Path) -> None:
    """A TOML syntax error and an unreadable file name the file."""
    with pytest.raises(SandboxConfigError, match=r"^bad\.toml: not valid TOML"):
        parse_sandbox_config("[livevox\nclient_name = 1", "bad.toml")
    missing = tmp_path / "none.toml"
    with pytest.raises(SandboxConfigError, match="none.toml: cannot read"):
        load_sandbox_config(missing)


def test_plugin_is_a_service_maker() -> None:
    """The dropin provides IServiceMaker under the tap name lvsandbox."""
    from twisted.plugins.lvsandbox_plugin import lvsandbox

    assert verifyObject(IServiceMaker, lvsandbox)
    assert lvsandbox.tapname == "lvsandbox"
    assert lvsandbox.options is tap.Options


def test_options_and_make_service(tmp_path: Path) -> None:
    """--config and --listen parse; makeService builds one named HTTP listener service."""
    options = tap.Options()
    options.parseOptions(["--config", str(SANDBOX_TOML), "--listen", "tcp:0:interface=127.0.0.1"])
    assert options["listen"] == "tcp:0:interface=127.0.0.1"
    assert options["sandbox_config"].client_name == "demo"
    service = tap.makeService(options)
    assert isinstance(service, MultiService)
    http = service.getServiceNamed("lvsandbox-http")
    assert isinstance(http, StreamServerEndpointService)
    assert tap.Options()["config"] == "etc/sandbox.toml"


def test_options_report_a_bad_config(tmp_path: Path) -> None:
    """A bad config file is a usage error naming the key."""
    bad = tmp_path / "sandbox.toml"
    bad.write_text(SANDBOX_TOML.read_text().replace("client_name =", "client_nam ="))
    with pytest.raises(
        usage.UsageError,
        match=r"sandbox\.toml: livevox\.client_name: required key is missing "
        r"\(is livevox\.client_nam a typo\?\)",
    ):
        tap.Options().parseOptions(["--config", str(bad)])
