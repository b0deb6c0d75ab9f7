"""The sandbox's [sip], [dialler] and [echo_bot] configuration, and the SIP half in the lvsandbox plugin."""

# twisted.python.usage is untyped.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import MultiService

from lvgateway.sandbox import tap
from lvgateway.sandbox.sandbox_config import (
    DiallerConfig,
    EchoBotConfig,
    SandboxConfigError,
    SipConfig,
    load_sandbox_config,
    sandbox_config_from_dict,
)
from lvgateway.sandbox.sandbox_sip import SandboxAdminResource, SandboxSip
from lvgateway.sandbox.testing import sandbox_config_dict

ROOT = Path(__file__).resolve().parent.parent


def _error(**sections: dict[str, Any]) -> str:
    data = sandbox_config_dict()
    data.update(sections)
    with pytest.raises(SandboxConfigError) as raised:
        sandbox_config_from_dict(data, "sandbox.toml", environ={})
    return str(raised.value)


def test_shipped_config_meets_the_demo_gateway() -> None:
    """etc/sandbox.toml's SIP stack is demo.toml's vendor endpoint, and its dialler calls demo.toml's gateway."""
    config = load_sandbox_config(ROOT / "etc" / "sandbox.toml", environ={})
    demo = tomllib.loads((ROOT / "etc" / "demo.toml").read_text())
    vendor = demo["vendor"]["endpoints"][0]["uri"]
    assert vendor == f"sip:echo@{config.sip.listen_host}:{config.sip.listen_port}"
    assert (config.sip.listen_host, config.sip.listen_port) == ("127.0.0.2", 5080)
    assert config.dialler.gateway_host == demo["sip"]["listen_host"] == "127.0.0.1"
    assert config.dialler.gateway_port == demo["sip"]["listen_port"] == 5070
    assert config.listen.startswith("tcp:7480:")
    assert not config.dialler.auto_start and not config.dialler.include_transaction_id
    term_codes = demo["wrapup"]["term_codes"]
    assert config.echo_bot.term_code == term_codes["done"]
    assert config.echo_bot.transfer_term_code == term_codes["transfer"]


def test_sections_default_to_the_demo_values() -> None:
    """Without [sip], [dialler] or [echo_bot] the defaults are the demo's addresses and bounds."""
    config = sandbox_config_from_dict(sandbox_config_dict(), environ={})
    assert config.sip == SipConfig() and config.sip.listen_port == 5080
    assert config.dialler == DiallerConfig() and config.echo_bot == EchoBotConfig()


def test_values_are_read() -> None:
    """Every kind of key is read into the frozen config."""
    data = sandbox_config_dict()
    data["sip"] = {"listen_host": "127.0.0.9", "listen_port": 0, "allowed_networks": ["10.0.0.0/8"]}
    data["dialler"] = {"call_rate": 2, "max_call_rate": 4.5, "include_transaction_id": True}
    data["echo_bot"] = {"transfer_share": 0.25, "others": ["a", "b"], "transfer_ani_pattern": "99$"}
    config = sandbox_config_from_dict(data, environ={})
    assert config.sip.listen_host == config.sip.rtp_host == "127.0.0.9"
    assert str(config.sip.allowed_networks[0]) == "10.0.0.0/8"
    assert config.dialler.call_rate == 2.0 and config.dialler.include_transaction_id
    assert config.echo_bot.others == ("a", "b") and config.echo_bot.transfer_share == 0.25


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"dialler": {"call_rat": 1}}, "sandbox.toml: dialler.call_rat: unknown key"),
        ({"sip": {"listen_host": "localhost"}}, "sip.listen_host: expected an IP address"),
        ({"sip": {"listen_port": 70000}}, "sip.listen_port: expected a port up to 65535"),
        ({"sip": {"allowed_networks": ["nope"]}}, "sip.allowed_networks[0]: expected a network"),
        ({"dialler": {"call_rate": 20}}, "dialler.call_rate: expected at most max_call_rate"),
        (
            {"dialler": {"max_concurrent_calls": 0}},
            "dialler.max_concurrent_calls: expected an integer >= 1",
        ),
        (
            {"dialler": {"call_duration": -1}},
            "dialler.call_duration: expected a number of seconds >= 0",
        ),
        ({"dialler": {"setup_timeout": 0}}, "dialler.setup_timeout: expected a positive number"),
        ({"dialler": {"auto_start": "yes"}}, "dialler.auto_start: expected true or false"),
        ({"echo_bot": {"transfer_share": 1.5}}, "echo_bot.transfer_share: expected a share"),
        ({"echo_bot": {"transfer_ani_pattern": "("}}, "echo_bot.transfer_ani_pattern: not a valid"),
        ({"echo_bot": {"refer_to": "tel:+1"}}, "echo_bot.refer_to: expected a sip: URI"),
        ({"echo_bot": {"others": ["x"] * 21}}, "echo_bot.others: expected at most 20"),
        ({"echo_bot": {"anser_delay": 1}}, "echo_bot.anser_delay: unknown key"),
    ],
)
def test_mistakes_are_errors_naming_the_key(sections: dict[str, Any], expected: str) -> None:
    """Each mistake is a SandboxConfigError naming the file, the key path and what was expected."""
    assert expected in _error(**sections)


def test_plugin_builds_the_sip_half_and_its_admin_routes() -> None:
    """makeService adds the SIP half as lvsandbox-sip and serves its admin routes, without starting anything."""
    options = tap.Options()
    options.parseOptions(["--config", str(ROOT / "etc" / "sandbox.toml")])
    root = tap.makeService(options)
    assert isinstance(root, MultiService)
    sip = root.getServiceNamed("lvsandbox-sip")
    assert isinstance(sip, SandboxSip) and not sip.running and not sip.stack.running
    http = root.getServiceNamed("lvsandbox-http")
    site = http.factory  # type: ignore[attr-defined]
    assert isinstance(site.resource.children[b"_sandbox"], SandboxAdminResource)
