"""The config file: a valid one loads; each broken one names the key and the problem."""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from lvgateway.config import ConfigError, load_config, parse_config, phone_key

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """
[gateway]
state_dir = "state"

[sip]
allowed_networks = ["127.0.0.0/8"]

[livevox]
base_url = "http://127.0.0.1:8000"
client_name = "demo"
token_file = "token"

[[agents]]
user_name = "AIVA1"
password_file = "pw"
phone_number = "+18990000001"
service_id = "1234567"

[hours]
time_zone = "America/New_York"
[hours.weekly]
monday = ["08:00-20:00"]

[[vendor.endpoints]]
uri = "sip:bot@127.0.0.1:5080"

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
"""


def write_secret(path: Path, value: str, mode: int = 0o600) -> None:
    """Write a secret file with the given mode."""
    path.write_text(value + "\n")
    path.chmod(mode)


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    """A folder with the secrets MINIMAL refers to, each mode 0600."""
    write_secret(tmp_path / "token", "tok-123456789")
    write_secret(tmp_path / "pw", "agent-pw-secret")
    return tmp_path


def load(confdir: Path, text: str) -> object:
    """Write ``text`` as the config in ``confdir`` and load it."""
    path = confdir / "gw.toml"
    path.write_text(text)
    return load_config(str(path))


def test_minimal_config_loads_with_defaults(confdir: Path) -> None:
    """The smallest valid file loads, relative paths resolve against its folder, defaults fill the rest."""
    config = load(confdir, MINIMAL)
    assert config.gateway.state_dir == str(confdir / "state")  # type: ignore[attr-defined]
    assert config.sip.listen_port == 5070  # type: ignore[attr-defined]
    assert config.livevox.token.reveal() == "tok-123456789"  # type: ignore[attr-defined]
    assert config.livevox.token.source == f"file {confdir / 'token'}"  # type: ignore[attr-defined]
    assert config.agents[0].service_id == "1234567"  # type: ignore[attr-defined]
    assert config.hours.weekly[0][0].start == datetime.time(8)  # type: ignore[attr-defined]
    assert config.control_listen == "tcp:9780:interface=127.0.0.1"  # type: ignore[attr-defined]
    assert config.manhole is None  # type: ignore[attr-defined]
    assert config.vendor.mute_on_transfer is True  # type: ignore[attr-defined]


def test_shipped_example_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """etc/lvgateway.example.toml loads once its secrets exist, and expands its agent range."""
    etc = tmp_path / "etc"
    etc.mkdir()
    shutil.copy(ROOT / "etc" / "lvgateway.example.toml", etc / "gw.toml")
    (etc / "secrets").mkdir()
    for name in ["livevox.token", "vendor.pw", "aia.token", *(f"AIVA{n}.pw" for n in range(1, 52))]:
        write_secret(etc / "secrets" / name, "s3cret-" + name)
    write_secret(etc / "manhole.passwd", "admin:pw")
    monkeypatch.setenv("LVGW_CONTACT_PASSWORD", "contact-pw")
    monkeypatch.setenv("LVGW_VENDOR_API_TOKEN", "vendor-api-token")
    monkeypatch.setenv("LVGW_CONTROL_TOKEN", "control-token")
    config = load_config(str(etc / "gw.toml"))
    assert [a.user_name for a in config.agents][:3] == ["AIVA1", "AIVA2", "AIVA3"]
    assert len(config.agents) == 51
    assert config.agents[-1].phone_number == "+18990000051"
    assert config.agents[-1].password.reveal() == "s3cret-AIVA51.pw"
    assert config.aia is not None and config.aia.field_names["lvresult"] == "lvResult"
    assert config.vendor.endpoints[0].port == 5060
    assert config.vendor.static_headers == (("X-Bot-Profile", "collections"),)


def test_demo_config_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """etc/demo.toml, the README's run command, loads with the environment the README sets."""
    demo = ROOT / "etc" / "demo.toml"
    if not demo.exists():
        pytest.fail("etc/demo.toml is missing")
    for name in (
        "LVGW_DEMO_LIVEVOX_TOKEN",
        "LVGW_DEMO_AGENT_PASSWORD",
        "LVGW_DEMO_VENDOR_API_TOKEN",
        "LVGW_DEMO_AIA_TOKEN",
        "LVGW_DEMO_CONTROL_TOKEN",
    ):
        monkeypatch.setenv(name, "demo-secret")
    config = load_config(str(demo))
    assert config.agents
    assert all(
        n.subnet_of(__import__("ipaddress").ip_network("127.0.0.0/8"))
        for n in config.sip.allowed_networks
    )  # type: ignore[arg-type]


def replace(text: str, old: str, new: str) -> str:
    """Replace ``old`` in ``text``, failing loudly when the fixture no longer contains it."""
    assert old in text, f"fixture lacks {old!r}"
    return text.replace(old, new, 1)


DUPLICATE_AGENT = """
[[agents]]
user_name = "AIVA2"
password_file = "pw"
phone_number = "8990000001"
service_id = "1234567"
"""

BROKEN = [
    pytest.param(
        replace(MINIMAL, 'client_name = "demo"', 'client_name = "demo"\nclinet_name = "x"'),
        "livevox.clinet_name",
        "unknown key",
        id="unknown-key",
    ),
    pytest.param(
        replace(MINIMAL, "[sip]", '[sip]\nlisten_port = "5070"'),
        "sip.listen_port",
        "found string '5070', expected an integer",
        id="wrong-type",
    ),
    pytest.param(
        replace(MINIMAL, 'client_name = "demo"\n', ""),
        "livevox.client_name",
        "missing: this key is required",
        id="missing-required-key",
    ),
    pytest.param(
        MINIMAL + DUPLICATE_AGENT,
        "agents[1]",
        "duplicate 899 number '8990000001': agents[0] has it too",
        id="duplicate-899-number",
    ),
    pytest.param(
        MINIMAL + DUPLICATE_AGENT.replace("AIVA2", "aiva1").replace("8990000001", "8990000002"),
        "agents[1]",
        "duplicate user name 'aiva1'",
        id="duplicate-user-name",
    ),
    pytest.param(
        replace(MINIMAL, '"127.0.0.0/8"', '"10.0.0.300/8"'),
        "sip.allowed_networks[0]",
        "found '10.0.0.300/8', expected a network in CIDR form",
        id="bad-cidr",
    ),
    pytest.param(
        replace(MINIMAL, "America/New_York", "America/Gotham"),
        "hours.time_zone",
        "found 'America/Gotham', expected an IANA time zone",
        id="bad-time-zone",
    ),
    pytest.param(
        replace(MINIMAL, 'token_file = "token"', 'token_file = "no-such-token"'),
        "livevox.token_file",
        "no-such-token does not exist",
        id="secret-file-missing",
    ),
    pytest.param(
        replace(MINIMAL, 'token_file = "token"', 'token_file = "open-token"'),
        "livevox.token_file",
        "has mode 0644: group or others may use it",
        id="secret-file-world-readable",
    ),
    pytest.param(
        replace(MINIMAL, 'token_file = "token"', 'token = "inline"'),
        "livevox.token",
        "a secret never stands in the config file",
        id="inline-secret",
    ),
    pytest.param(
        replace(MINIMAL, 'token_file = "token"', 'token_env = "LVGW_TEST_UNSET_VARIABLE"'),
        "livevox.token_env",
        "environment variable LVGW_TEST_UNSET_VARIABLE is not set",
        id="secret-env-unset",
    ),
    pytest.param(
        MINIMAL.replace("[gateway]", "[gateway\n"),
        "",
        "invalid TOML",
        id="invalid-toml",
    ),
    pytest.param(
        replace(MINIMAL, '["08:00-20:00"]', '["20:00-08:00"]'),
        "hours.weekly.monday[0]",
        "expected 'HH:MM-HH:MM' with the end after the start",
        id="backwards-hours",
    ),
    pytest.param(
        replace(MINIMAL, 'vendor_hangup = "done"', 'vendor_hangup = "hangup"'),
        "wrapup.defaults.vendor_hangup",
        "found 'hangup', expected one of wrapup.term_codes: done, transfer",
        id="unknown-term-code-name",
    ),
    pytest.param(
        replace(MINIMAL, 'uri = "sip:bot@127.0.0.1:5080"', 'uri = "http://bot"'),
        "vendor.endpoints[0].uri",
        "expected a SIP URI",
        id="bad-vendor-uri",
    ),
    pytest.param(
        MINIMAL + '[manhole]\nlisten = "tcp:2323"\npassword_file = "pw"\n',
        "manhole.listen",
        "expected a tcp endpoint with interface=127.0.0.1 or ::1",
        id="manhole-not-loopback",
    ),
    pytest.param(
        replace(MINIMAL, "[gateway]", '[control]\nlisten = "tcp:notaport"\n[gateway]'),
        "control.listen",
        "expected a Twisted endpoint",
        id="bad-endpoint-string",
    ),
]


@pytest.mark.parametrize(("text", "key", "message"), BROKEN)
def test_broken_config_names_key_and_problem(
    confdir: Path, text: str, key: str, message: str
) -> None:
    """Each broken config is refused with a line naming the file, the key path and the problem."""
    write_secret(confdir / "open-token", "tok", mode=0o644)
    with pytest.raises(ConfigError) as caught:
        load(confdir, text)
    lines = str(caught.value).splitlines()
    prefix = f"{confdir / 'gw.toml'}: {key}: " if key else f"{confdir / 'gw.toml'}: "
    assert any(line.startswith(prefix) and message in line for line in lines), lines


def test_every_problem_is_reported_at_once(confdir: Path) -> None:
    """Several problems in one file are all listed, not only the first."""
    text = replace(MINIMAL, "America/New_York", "Nowhere/Nothing")
    text = replace(text, '"127.0.0.0/8"', '"bad"')
    text = replace(text, 'client_name = "demo"', "client_name = 7")
    with pytest.raises(ConfigError) as caught:
        load(confdir, text)
    paths = {p.path for p in caught.value.problems}
    assert {"hours.time_zone", "sip.allowed_networks[0]", "livevox.client_name"} <= paths


def test_secret_values_never_appear_in_errors_or_reprs(confdir: Path) -> None:
    """Neither a config's repr nor an error message shows a secret's value."""
    config = load(confdir, MINIMAL)
    assert "tok-123456789" not in repr(config)
    assert "agent-pw-secret" not in repr(config)
    with pytest.raises(ConfigError) as caught:
        load(confdir, MINIMAL.replace('client_name = "demo"', "client_name = 1"))
    assert "tok-123456789" not in str(caught.value)


def test_agent_range_expands_names_numbers_and_secrets(
    confdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range gives count agents, numbered names, consecutive 899 numbers and per-agent secrets."""
    monkeypatch.setenv("PW_AIVA010", "p10")
    monkeypatch.setenv("PW_AIVA011", "p11")
    text = MINIMAL + (
        '[[agent_ranges]]\nuser_name = "AIVA{n:03d}"\nfirst = 10\ncount = 2\n'
        'phone_number_first = "8990000099"\nservice_id = 42\npassword_env = "PW_{user_name}"\n'
    )
    config = load(confdir, text)
    agents = config.agents[1:]  # type: ignore[attr-defined]
    assert [(a.user_name, a.phone_number, a.service_id) for a in agents] == [
        ("AIVA010", "8990000099", "42"),
        ("AIVA011", "8990000100", "42"),
    ]
    assert [a.password.reveal() for a in agents] == ["p10", "p11"]


def test_phone_key_joins_the_three_forms() -> None:
    """+1899.., 1899.. and 899.. are one agent's number."""
    assert phone_key("+18990000001") == phone_key("18990000001") == phone_key("8990000001")
    assert phone_key("+18990000001") != phone_key("+18990000002")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is reported as a ConfigError naming the file."""
    with pytest.raises(ConfigError) as caught:
        load_config(str(tmp_path / "absent.toml"))
    assert str(caught.value).startswith(str(tmp_path / "absent.toml"))


def test_parse_config_without_a_file_uses_given_source() -> None:
    """parse_config names the given source in its messages."""
    with pytest.raises(ConfigError) as caught:
        parse_config("x = 1", source="inline.toml")
    assert "inline.toml: x: unknown key" in str(caught.value).splitlines()
    assert os.path.basename(caught.value.source) == "inline.toml"


def test_child_process_ready_url_is_read_and_checked(confdir: Path) -> None:
    """A child's ready_url and ready_timeout are taken; a ready_url that is no http(s) URL is refused by key."""
    child = '\n[[child_processes]]\nname = "helper"\nargv = ["true"]\nready_url = "{url}"\nready_timeout = 5\n'
    config: Any = load(confdir, MINIMAL + child.format(url="http://127.0.0.1:7480/_sandbox/stats"))
    [read] = config.child_processes
    assert (read.ready_url, read.ready_timeout) == ("http://127.0.0.1:7480/_sandbox/stats", 5)
    with pytest.raises(ConfigError) as caught:
        load(confdir, MINIMAL + child.format(url="127.0.0.1:7480"))
    assert "child_processes[0].ready_url: found '127.0.0.1:7480', expected an http(s) URL" in str(
        caught.value
    )
