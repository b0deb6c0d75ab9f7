"""The twistd plugin, its options, --check-config, and the service tree makeService builds."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.application.service import IServiceMaker, MultiService
from twisted.plugin import IPlugin
from zope.interface.verify import verifyObject

from lvgateway import tap
from lvgateway.drain import GatewayService

ROOT = Path(__file__).resolve().parent.parent


def plugin() -> object:
    """Load the dropin module from the source tree, as twistd would."""
    sys.path.insert(0, str(ROOT))
    try:
        from twisted.plugins import lvgateway_plugin
    finally:
        sys.path.remove(str(ROOT))
    return lvgateway_plugin.lvgateway


def test_dropin_is_a_lazy_service_maker() -> None:
    """The dropin provides IPlugin and IServiceMaker and names the tap module."""
    maker = plugin()
    assert verifyObject(IPlugin, maker)
    assert verifyObject(IServiceMaker, maker)
    assert maker.tapname == "lvgateway"  # type: ignore[attr-defined]
    assert maker.module == "lvgateway.tap"  # type: ignore[attr-defined]


def test_options_default_and_given(gateway_config_path: Path) -> None:
    """--config is read, and the config is loaded while options are parsed."""
    options = tap.Options()
    options.parseOptions(["--config", str(gateway_config_path)])
    assert options["config"] == str(gateway_config_path)
    assert options["check-config"] == 0
    assert options.gateway_config.gateway.drain_timeout == 5.0
    assert tap.Options()["config"] == "etc/lvgateway.toml"


def test_check_config_prints_summary_without_secret_values(gateway_config_path: Path) -> None:
    """--check-config on a valid file prints agents, endpoints, listeners and secret sources, no values."""
    out, err = io.StringIO(), io.StringIO()
    assert tap.check_config(str(gateway_config_path), out, err) == 0
    text = out.getvalue()
    assert "configuration is valid" in text
    assert "3 (AIVA1, AIVA2, AIVA3)" in text
    assert "sip:bot@127.0.0.1:5080" in text
    assert "livevox.token" in text and f"file {gateway_config_path.parent / 'token'}" in text
    assert "agent passwords" in text and "3 from file" in text
    assert len(text.splitlines()) <= 30, "the summary must fit one screen"
    for value in ("lv-api-token", "agent-password", "vendor-bearer", "manhole-password"):
        assert value not in text


def test_check_config_lists_every_error_and_fails(tmp_path: Path) -> None:
    """--check-config on a broken file prints each problem and returns non-zero."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\nlisten_port = "x"\n[gateway]\nstate_dir = "s"\nbogus = 1\n')
    out, err = io.StringIO(), io.StringIO()
    assert tap.check_config(str(bad), out, err) == 1
    lines = err.getvalue().splitlines()
    assert f"{bad}: sip.listen_port: found string 'x', expected an integer" in lines
    assert f"{bad}: gateway.bogus: unknown key" in lines
    assert lines[-1].endswith(f"configuration is NOT valid ({len(lines) - 1} problems)")
    assert out.getvalue() == ""


def test_check_config_option_exits_with_status(gateway_config_path: Path) -> None:
    """twistd's option parsing exits 0 for --check-config on a valid file, binding nothing."""
    options = tap.Options()
    with pytest.raises(SystemExit) as exited:
        options.parseOptions(["--config", str(gateway_config_path), "--check-config"])
    assert exited.value.code == 0


def test_bad_config_stops_before_start(tmp_path: Path) -> None:
    """A broken config makes option parsing exit 1, before any service is built."""
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense = true\n")
    with pytest.raises(SystemExit) as exited:
        tap.Options().parseOptions(["--config", str(bad)])
    assert exited.value.code == 1


def test_make_service_builds_named_children(gateway_config_path: Path) -> None:
    """makeService returns the draining root with the configured listeners as named children."""
    options = tap.Options()
    options.parseOptions(["--config", str(gateway_config_path)])
    root = tap.makeService(options)
    assert isinstance(root, GatewayService) and isinstance(root, MultiService)
    names = [s.name for s in root]
    assert names == [
        "json_log",
        "control",
        "agents",
        "media",
        "stall-watchdog",
        "sip",
        "calls",
        "vendor_api",
        "manhole",
    ]
    assert root.namespace["root"] is root
    assert root.namespace["control"] is root.getServiceNamed("control")
    assert (gateway_config_path.parent / "state").is_dir()


def test_twistd_help_lists_the_plugin_and_documents_options() -> None:
    """twistd run from the source tree lists lvgateway, and its --help documents every option."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    twistd = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
    listing = subprocess.run(
        [*twistd, "--help"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert "lvgateway" in listing.stdout
    helptext = subprocess.run(
        [*twistd, "lvgateway", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    for option in ("--config", "--check-config"):
        assert option in helptext.stdout
