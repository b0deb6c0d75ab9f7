"""The ``[[media.rtpengine]]`` instances: parsed, checked with clear errors, and shown by --check-config."""

from __future__ import annotations

import io
from pathlib import Path

from lvgateway import tap
from lvgateway.config.model import RtpengineInstance

from .conftest import GATEWAY_TOML

TWO = """
[[media.rtpengine]]
address = "127.0.0.1:2223"
weight = 3

[[media.rtpengine]]
address = "127.0.0.2:2223"
"""


def with_rtpengine(path: Path, instances: str) -> Path:
    """The valid test config, switched to the rtpengine engine with ``instances``."""
    path.write_text(GATEWAY_TOML.replace('engine = "twisted"', 'engine = "rtpengine"') + instances)
    return path


def check(path: Path) -> tuple[int, str, str]:
    """--check-config on ``path``: its status, output and errors."""
    out, err = io.StringIO(), io.StringIO()
    return tap.check_config(str(path), out, err), out.getvalue(), err.getvalue()


def test_instances_parsed_and_summarised(gateway_config_path: Path) -> None:
    """Two instances, with weights (1 by default), are in the config and on the summary."""
    path = with_rtpengine(gateway_config_path, TWO)
    options = tap.Options()
    options.parseOptions(["--config", str(path)])
    media = options.gateway_config.media
    assert media.engine == "rtpengine"
    assert media.rtpengine == (
        RtpengineInstance(("127.0.0.1", 2223), 3),
        RtpengineInstance(("127.0.0.2", 2223), 1),
    )
    status, out, _ = check(path)
    assert status == 0
    assert "rtpengine [0] ng 127.0.0.1:2223, weight 3" in out
    assert "rtpengine [1] ng 127.0.0.2:2223, weight 1" in out


def test_bad_instances_each_named(gateway_config_path: Path) -> None:
    """A bad address, a repeated one, a weight of 0 and an unknown key: one clear line each."""
    path = with_rtpengine(
        gateway_config_path,
        TWO
        + '[[media.rtpengine]]\naddress = "rtpengine.local"\n'
        + '[[media.rtpengine]]\naddress = "127.0.0.1:2223"\n'
        + '[[media.rtpengine]]\naddress = "127.0.0.3:2223"\nweight = 0\nport = 1\n',
    )
    status, out, err = check(path)
    assert status == 1 and out == ""
    lines = err.splitlines()
    assert any(
        "media.rtpengine[2].address: found 'rtpengine.local', expected rtpengine's ng socket as"
        " IP:PORT" in line
        for line in lines
    ), lines
    assert any(
        "media.rtpengine[3].address: found '127.0.0.1:2223' twice" in line for line in lines
    ), lines
    assert any("media.rtpengine[4].weight" in line for line in lines), lines
    assert any("media.rtpengine[4].port: unknown key" in line for line in lines), lines


def test_rtpengine_engine_needs_an_instance(gateway_config_path: Path) -> None:
    """engine = "rtpengine" with no [[media.rtpengine]] is refused at check time."""
    status, _, err = check(with_rtpengine(gateway_config_path, ""))
    assert status == 1
    assert 'media.rtpengine: no instances: engine = "rtpengine" needs at least one' in err
