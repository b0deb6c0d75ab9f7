"""Choosing the media engine: rtp.io where it imports, the Twisted relay when asked or when it does not."""

from __future__ import annotations

import sys

import attrs
import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.logger import capturedLogs

from lvgateway.config.model import MediaConfig
from lvgateway.media.rtpio import RtpioMediaRelay
from lvgateway.media.select import MediaEngineUnavailableError, make_media_relay
from lvgateway.media.twisted_relay import TwistedMediaRelay

CONFIG = MediaConfig(
    engine="auto",
    listen_host="127.0.0.1",
    advertised_host=None,
    port_min=20000,
    port_max=20399,
    initial_timeout=60.0,
    timeout=120.0,
)


def _ensure() -> None:
    """Stands in for installing Sippy's reactor adapter (no engine is started here)."""


def engine_line(events: list[dict[str, object]]) -> str:
    """The one "media engine: ..." line, formatted."""
    from twisted.logger import formatEvent

    [line] = [
        formatEvent(e) for e in events if str(e.get("log_format", "")).startswith("media engine")
    ]
    return line


def test_auto_picks_rtpio_here() -> None:
    """On this Linux x86-64 machine, with rtp-io installed, auto runs rtp.io and says so."""
    pytest.importorskip("rtp.io")
    with capturedLogs() as events:
        relay = make_media_relay(reactor, CONFIG, CollectorRegistry(), ensure_sippy=_ensure)
    assert isinstance(relay, RtpioMediaRelay)
    assert engine_line(events).startswith("media engine: rtp.io 1.")
    assert 'media.engine = "auto", rtp.io imports' in engine_line(events)


def test_twisted_when_configured() -> None:
    """engine = "twisted" runs the Twisted relay, rtp.io or not, and says why."""
    with capturedLogs() as events:
        relay = make_media_relay(
            reactor, attrs.evolve(CONFIG, engine="twisted"), CollectorRegistry()
        )
    assert isinstance(relay, TwistedMediaRelay)
    assert engine_line(events) == 'media engine: Twisted relay (media.engine = "twisted")'


def test_rtpio_when_configured() -> None:
    """engine = "rtpio" runs rtp.io where it imports."""
    pytest.importorskip("rtp.io")
    relay = make_media_relay(
        reactor, attrs.evolve(CONFIG, engine="rtpio"), CollectorRegistry(), ensure_sippy=_ensure
    )
    assert isinstance(relay, RtpioMediaRelay)


def test_auto_falls_back_when_rtpio_cannot_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """With rtp.io unimportable, auto runs the Twisted relay and the log line says why."""
    monkeypatch.setitem(sys.modules, "rtp.io", None)  # makes `from rtp.io import ...` fail
    with capturedLogs() as events:
        relay = make_media_relay(reactor, CONFIG, CollectorRegistry(), ensure_sippy=_ensure)
    assert isinstance(relay, TwistedMediaRelay)
    line = engine_line(events)
    assert line.startswith('media engine: Twisted relay (media.engine = "auto", and rtp.io cannot')
    assert "import" in line


def test_rtpio_required_but_missing_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """engine = "rtpio" without rtp.io fails at start-up instead of silently relaying in Python."""
    monkeypatch.setitem(sys.modules, "rtp.io", None)
    with pytest.raises(MediaEngineUnavailableError, match='media.engine = "rtpio", but rtp.io'):
        make_media_relay(
            reactor, attrs.evolve(CONFIG, engine="rtpio"), CollectorRegistry(), ensure_sippy=_ensure
        )


def test_rtpio_needs_the_sippy_adapter() -> None:
    """Without a way to put Sippy on the reactor, the rtp.io engine is refused (it would never come online)."""
    with pytest.raises(MediaEngineUnavailableError, match="ensure_sippy"):
        make_media_relay(reactor, CONFIG, CollectorRegistry(), probe=lambda: None)


def test_probe_is_consulted_only_when_needed() -> None:
    """engine = "twisted" never imports rtp.io; a probe's reason is what the line says."""
    asked: list[int] = []

    def probe() -> str | None:
        asked.append(1)
        return "rtp.io cannot be imported: test"

    make_media_relay(
        reactor, attrs.evolve(CONFIG, engine="twisted"), CollectorRegistry(), probe=probe
    )
    assert asked == []
    with capturedLogs() as events:
        make_media_relay(reactor, CONFIG, CollectorRegistry(), probe=probe)
    assert asked == [1]
    assert "rtp.io cannot be imported: test" in engine_line(events)
