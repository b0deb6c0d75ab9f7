"""Choosing the media engine: rtp.io where it installs, the pure Twisted relay elsewhere.

``MediaConfig.engine`` says which:

- ``auto`` (the default): rtp.io when it imports (its wheels are for Linux
  x86-64 and aarch64), else the Twisted relay;
- ``rtpio``: rtp.io, or a :class:`MediaEngineUnavailableError` at start-up
  when it does not import (asked for by name, a silent fallback would hide
  a broken install);
- ``twisted``: the pure Twisted relay.

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

    :param reactor: the reactor both engines run on.
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
    :raises ValueError: as the engines' constructors (a wildcard address to advertise).
    """
    engine = config.engine
    why_not = probe() if engine in ("auto", "rtpio") else None
    if engine == "rtpio" and why_not is not None:
        raise MediaEngineUnavailableError(f'media.engine = "rtpio", but {why_not}')
    if engine == "twisted" or why_not is not None:
        from lvgateway.media.twisted_relay import TwistedMediaRelay

        if engine == "twisted":
            reason = 'media.engine = "twisted"'
        else:
            reason = f'media.engine = "auto", and {why_not}'
        log.info("media engine: Twisted relay ({reason})", reason=reason, engine="twisted")
        return TwistedMediaRelay(reactor, config, registry, livevox_networks=livevox_networks)
    if ensure_sippy is None:
        raise MediaEngineUnavailableError(
            "the rtp.io engine needs ensure_sippy (Sippy's reactor adapter)"
        )
    from lvgateway.media.rtpio import RtpioMediaRelay
    from lvgateway.media.rtpio_client import rtpio_version

    reason = (
        'media.engine = "rtpio"' if engine == "rtpio" else 'media.engine = "auto", rtp.io imports'
    )
    log.info(
        "media engine: rtp.io {version} ({reason})",
        version=rtpio_version(),
        reason=reason,
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
