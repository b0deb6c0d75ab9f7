"""Choosing the media engine: a strict one (the Twisted relay) by default, rtp.io or rtpengine only by name."""

from __future__ import annotations

import sys

import attrs
import pytest
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.logger import capturedLogs

from lvgateway.config.model import MediaConfig, RtpengineInstance
from lvgateway.media.rtpengine import RtpengineMediaRelay
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


def test_auto_picks_the_strict_twisted_relay_even_where_rtpio_imports() -> None:
    """auto runs the Twisted relay, which latches strictly: rtp.io latches to anyone's first packet."""
    pytest.importorskip("rtp.io")
    with capturedLogs() as events:
        relay = make_media_relay(reactor, CONFIG, CollectorRegistry(), ensure_sippy=_ensure)
    assert isinstance(relay, TwistedMediaRelay)
    assert engine_line(events) == (
        'media engine: Twisted relay (media.engine = "auto", strict latching)'
    )


def test_rtpengine_when_configured() -> None:
    """engine = "rtpengine" builds the rtpengine engine over its instances; none is an error."""
    config = attrs.evolve(
        CONFIG, engine="rtpengine", rtpengine=(RtpengineInstance(("127.0.0.1", 2223)),)
    )
    with capturedLogs() as events:
        relay = make_media_relay(reactor, config, CollectorRegistry())
    assert isinstance(relay, RtpengineMediaRelay)
    assert engine_line(events) == 'media engine: rtpengine (media.engine = "rtpengine")'
    assert relay.online() == "not started"
    with pytest.raises(ValueError, match=r"needs at least one \[\[media.rtpengine\]\]"):
        make_media_relay(reactor, attrs.evolve(config, rtpengine=()), CollectorRegistry())


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
        make_media_relay(
            reactor, attrs.evolve(CONFIG, engine="rtpio"), CollectorRegistry(), probe=lambda: None
        )


def test_probe_is_consulted_only_for_rtpio() -> None:
    """Only engine = "rtpio" asks whether rtp.io imports; its reason is what the error says."""
    asked: list[int] = []

    def probe() -> str | None:
        asked.append(1)
        return "rtp.io cannot be imported: test"

    for engine in ("twisted", "auto"):
        make_media_relay(
            reactor, attrs.evolve(CONFIG, engine=engine), CollectorRegistry(), probe=probe
        )
    assert asked == []
    with pytest.raises(MediaEngineUnavailableError, match="rtp.io cannot be imported: test"):
        make_media_relay(
            reactor, attrs.evolve(CONFIG, engine="rtpio"), CollectorRegistry(), probe=probe
        )
    assert asked == [1]
