"""Choosing the media engine: a strict-latching one unless another is asked for by name.

``MediaConfig.engine`` says which:

- ``auto`` (the default): the Twisted relay, which latches strictly (a
  side's media only from the address its SDP names);
- ``twisted``: the same, by name;
- ``rtpengine``: rtpengine daemons driven over the ng protocol
  (``[[media.rtpengine]]``), strict latching too; the production engine;
- ``rtpio``: rtp.io, or a :class:`MediaEngineUnavailableError` at start-up
  when it does not import (asked for by name, a silent fallback would hide
  a broken install). rtp.io latches each side to the first packet from
  anyone: **unsafe where the allowed networks are shared** with hosts that
  are not LiveVox's or the vendor's (a stranger who sends first takes the
  call's audio), so never the default.

One log line says which engine runs and why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.logger import Logger

from lvgateway.config.model import IPNetwork, MediaConfig
from lvgateway.media.errors import MediaError
from lvgateway.media.interfaces import IMediaRelay

__all__ = ["MediaEngineUnavailableError", "make_media_relay"]

log = Logger()


class MediaEngineUnavailableError(MediaError, ValueError):
    """The configured engine cannot run here (``engine = "rtpio"`` without rtp.io)."""


def _rtpio_unavailable() -> str | None:
    try:
        from lvgateway.media.rtpio_client import rtpio_unavailable
    except ImportError as e:  # Sippy's rtpproxy client itself did not import
        return f"Sippy's rtpproxy client cannot be imported: {e}"
    return rtpio_unavailable()


def make_media_relay(
    reactor: Any,
    config: MediaConfig,
    registry: CollectorRegistry,
    livevox_networks: Sequence[IPNetwork] = (),
    *,
    ensure_sippy: Callable[[], object] | None = None,
    probe: Callable[[], str | None] = _rtpio_unavailable,
    **rtpio_options: Any,
) -> IMediaRelay:
    """Build the media engine ``config.engine`` names, logging which one and why.

    :param reactor: the reactor the engine runs on.
    :param config: the media settings.
    :param registry: where the engine's metrics go.
    :param livevox_networks: LiveVox's networks (``sip.allowed_networks``).
    :param ensure_sippy: for rtp.io: installs Sippy's reactor adapter (the
        wiring passes ``lambda: SippyOnReactor.for_reactor(reactor)``).
    :param probe: returns why rtp.io cannot run here, or ``None`` (tests
        replace it).
    :param rtpio_options: further keyword arguments for
        :class:`~lvgateway.media.rtpio.RtpioMediaRelay` (intervals, bounds).
    :returns: the engine, not started.
    :raises MediaEngineUnavailableError: ``engine = "rtpio"`` and rtp.io does
        not import, or no ``ensure_sippy`` was given for it.
    :raises ValueError: as the engines' constructors (a wildcard address to
        advertise, ``engine = "rtpengine"`` with no instances).
    """
    engine = config.engine
    if engine == "rtpengine":
        from lvgateway.media.rtpengine import RtpengineMediaRelay

        log.info("media engine: rtpengine (media.engine = \"rtpengine\")", engine="rtpengine")
        return RtpengineMediaRelay(reactor, config, registry, livevox_networks=livevox_networks)
    if engine in ("twisted", "auto"):
        from lvgateway.media.twisted_relay import TwistedMediaRelay

        reason = f'media.engine = "{engine}"' + (", strict latching" if engine == "auto" else "")
        log.info("media engine: Twisted relay ({reason})", reason=reason, engine="twisted")
        return TwistedMediaRelay(reactor, config, registry, livevox_networks=livevox_networks)
    why_not = probe()
    if why_not is not None:
        raise MediaEngineUnavailableError(f'media.engine = "rtpio", but {why_not}')
    if ensure_sippy is None:
        raise MediaEngineUnavailableError(
            "the rtp.io engine needs ensure_sippy (Sippy's reactor adapter)"
        )
    from lvgateway.media.rtpio import RtpioMediaRelay
    from lvgateway.media.rtpio_client import rtpio_version

    log.info(
        "media engine: rtp.io {version} (media.engine = \"rtpio\"; it latches to the first"
        " packet from anyone)",
        version=rtpio_version(),
        engine="rtpio",
    )
    return RtpioMediaRelay(
        reactor,
        config,
        registry,
        ensure_sippy,
        livevox_networks=livevox_networks,
        **rtpio_options,
    )
