"""Shared fixtures: a valid gateway config on disk, with its secrets, on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest

from lvgateway.config import GatewayConfig, load_config

#: Secret values written by the fixtures; tests check that none reaches a log line.
SECRET_VALUES = {
    "token": "lv-api-token-5f1d2c3b",
    "pw": "agent-password-9a8b7c",
    "vendor_api_token": "vendor-bearer-token-77e1",
    "manhole": "manhole-password-31f0",
}

GATEWAY_TOML = """
[gateway]
state_dir = "state"
drain_timeout = 5
call_drain_timeout = 2

[sip]
listen_host = "127.0.0.1"
listen_port = 0
allowed_networks = ["127.0.0.0/8"]

[livevox]
base_url = "http://127.0.0.1:1"
client_name = "demo"
token_file = "token"

[[agent_ranges]]
user_name = "AIVA{n}"
count = 3
phone_number_first = "+18990000001"
service_id = "1234567"
password_file = "pw"

[hours]
time_zone = "UTC"
always_open = true

[[vendor.endpoints]]
uri = "sip:bot@127.0.0.1:5080"

[media]
engine = "twisted"
listen_host = "127.0.0.1"
port_min = 41000
port_max = 41999

[wrapup]
fallback_term_code = "done"
transfer_term_code = "transfer"
[wrapup.term_codes]
done = "AI Completed"
transfer = "Transfer To Agent"
[wrapup.defaults]
caller_hangup = "done"
vendor_hangup = "done"
setup_failed = "transfer"
timeout = "transfer"
gateway_failure = "transfer"

[control]
listen = "tcp:0:interface=127.0.0.1"

[vendor_api]
listen = "tcp:0:interface=127.0.0.1"
token_file = "vendor_api_token"

[manhole]
listen = "tcp:0:interface=127.0.0.1"
password_file = "manhole.passwd"

[logging]
level = "debug"
json_file = "gateway.jsonl"
"""


def write_secret(path: Path, value: str) -> None:
    """Write a secret file readable by its owner only."""
    path.write_text(value + "\n")
    path.chmod(0o600)


@pytest.fixture
def gateway_config_path(tmp_path: Path) -> Path:
    """A valid gateway config file in a temporary folder, all listeners on loopback port 0."""
    write_secret(tmp_path / "token", SECRET_VALUES["token"])
    write_secret(tmp_path / "pw", SECRET_VALUES["pw"])
    write_secret(tmp_path / "vendor_api_token", SECRET_VALUES["vendor_api_token"])
    write_secret(tmp_path / "manhole.passwd", "admin:" + SECRET_VALUES["manhole"])
    path = tmp_path / "gateway.toml"
    path.write_text(GATEWAY_TOML)
    return path


@pytest.fixture
def gateway_config(gateway_config_path: Path) -> GatewayConfig:
    """The loaded form of :func:`gateway_config_path`."""
    return load_config(str(gateway_config_path))
