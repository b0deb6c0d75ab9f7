"""The answer time and media-timeout methods an engine's session shares (:class:`IMediaSession`'s).

Both the Twisted relay's and rtpengine's sessions apply
:func:`~lvgateway.media.counters.silent_side` to their own counters on
their engine's clock; this mixin is that, once.
"""

from __future__ import annotations

from typing import Any

from lvgateway.media.counters import MediaCounters, MediaSide, silence_of, silent_side

__all__ = ["AnsweredSession"]


class AnsweredSession:
    """Mixed into a session class that has ``_relay`` (``monotonic()``, ``config``),
    ``_answered_at``, ``_released`` and ``counters()``.
    """

    _relay: Any
    _answered_at: float | None
    _released: bool

    def counters(self) -> MediaCounters:
        """The session's counters (the engine's own)."""
        raise NotImplementedError

    def mark_answered(self) -> None:
        """See :meth:`IMediaSession.mark_answered`."""
        if self._answered_at is None:
            self._answered_at = self._relay.monotonic()

    def silent_side(self) -> MediaSide | None:
        """See :meth:`IMediaSession.silent_side`."""
        if self._answered_at is None or self._released:
            return None
        config = self._relay.config
        return silent_side(
            self.counters(),
            self._relay.monotonic(),
            self._answered_at,
            config.initial_timeout,
            config.timeout,
        )

    def silence(self, side: MediaSide) -> float | None:
        """See :meth:`IMediaSession.silence`."""
        if self._answered_at is None or self._released:
            return None
        return silence_of(self.counters(), side, self._relay.monotonic(), self._answered_at)
