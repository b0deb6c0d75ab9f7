"""Readiness: the checks that say whether the gateway can serve a call right now.

Each part adds its own check here (SIP bound, call store open, LiveVox
reachable, a vendor endpoint healthy, media engine online, not draining), and
the control listener's ``/readyz`` reads them. It lives outside every part so
that any part may add a check without importing the control part.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.logger import Logger

#: A check returns ``None`` when ready, or a short reason why not.
ReadinessCheck = Callable[[], "str | None"]


@attrs.define
class Readiness:
    """The named readiness checks of one gateway process."""

    _checks: dict[str, ReadinessCheck] = attrs.field(factory=dict)
    log = Logger()

    def add_check(self, name: str, check: ReadinessCheck) -> None:
        """Register ``check`` under ``name``; a name may be registered once."""
        if name in self._checks:
            raise ValueError(f"readiness check {name!r} is already registered")
        self._checks[name] = check

    def failures(self) -> dict[str, str]:
        """Return the reason of each check that is not ready, by name.

        A check that raises counts as not ready, with the exception as its
        reason, so one broken check cannot make ``/readyz`` fail open.
        """
        reasons: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                reason = check()
            except Exception as e:
                self.log.failure("readiness check {name} raised", name=name)
                reason = f"check raised {type(e).__name__}: {e}"
            if reason is not None:
                reasons[name] = reason
        return reasons

    def names(self) -> list[str]:
        """Return the names of every registered check, in registration order."""
        return list(self._checks)
