"""Term codes: from the names config and vendors use to the ids LiveVox's term code save wants.

A term code is asked for by

- a name from ``[wrapup.term_codes]`` (``done``, ``transfer``…), which maps
  to a LiveVox term code name or id;
- a LiveVox term code name (``AI Completed``, any case);
- a LiveVox term code id (``101416228``).

Names and ids are looked up in the service's catalogue
(``GET /callControl/agent/termCode?serviceId=``), fetched with an agent's
session at start and refreshed every 15 minutes (by the call service),
fetched when a call needs one not yet held, and again (at most once a minute) when a name is not found, in case
the client added a term code. A name that is still unknown falls back to
``WrapupConfig.fallback_term_code``, with an error naming it logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from lvgateway.config.model import WrapupConfig
from lvgateway.livevox.interfaces import ILiveVoxAgentAPI
from lvgateway.livevox.parsing import Session, TermCode, TermCodeCatalogue
from lvgateway.livevox.termcode_catalogue import find_term_code

__all__ = ["ResolvedTermCode", "TermCodeError", "TermCodes"]

log = Logger()


class TermCodeError(Exception):
    """Neither the term code asked for nor the fallback is in the service's catalogue."""


@attrs.frozen
class ResolvedTermCode:
    """A term code found in the catalogue.

    :param requested: what was asked for.
    :param term_code_id: the LiveVox id to save.
    :param name: its LiveVox name.
    :param lv_result: its LiveVox result, the AIA's ``lvresult``.
    :param fallback: the request was unknown and the fallback was used.
    """

    requested: str
    term_code_id: str
    name: str | None
    lv_result: str | None
    fallback: bool = False


@attrs.define
class _Cached:
    catalogue: TermCodeCatalogue
    fetched_at: float


class TermCodes:
    """The term code catalogues of the gateway's services, and the resolution of names against them.

    :param config: the wrap-up settings (names, fallback).
    :param api: fetches catalogues (``term_codes``).
    :param clock: for the catalogues' ages.
    :param miss_refresh: a name not found refetches a catalogue at least this old.
    """

    def __init__(
        self,
        config: WrapupConfig,
        api: ILiveVoxAgentAPI,
        clock: IReactorTime,
        miss_refresh: float = 60.0,
    ) -> None:
        self._config = config
        self._api = api
        self._clock = clock
        self._miss_refresh = miss_refresh
        self._cache: dict[str, _Cached] = {}
        self._fetching: dict[str, list[Deferred[TermCodeCatalogue]]] = {}

    def cached(self, service_id: str) -> TermCodeCatalogue | None:
        """Return the catalogue held for a service, however old."""
        cached = self._cache.get(service_id)
        return cached.catalogue if cached is not None else None

    async def fetch(self, session: Session, service_id: str) -> TermCodeCatalogue:
        """Fetch a service's catalogue now and keep it.

        :param session: an agent's session.
        :param service_id: the service.
        :raises LiveVoxError: when LiveVox does not answer it.
        """
        catalogue = await self._api.term_codes(session, service_id)
        self._cache[service_id] = _Cached(catalogue, self._clock.seconds())
        log.info(
            "term codes of service {service_id}: {count} ({names})",
            service_id=service_id,
            count=len(catalogue.codes),
            names=", ".join(f"{c.name}={c.id}" for c in catalogue.codes),
        )
        return catalogue

    def _fetch_once(
        self, session: Callable[[], Awaitable[Session]], service_id: str
    ) -> Deferred[TermCodeCatalogue]:
        """Fetch a catalogue, sharing one request among the calls that need it at the same time."""
        d: Deferred[TermCodeCatalogue] = Deferred()
        waiting = self._fetching.get(service_id)
        if waiting is not None:
            waiting.append(d)
            return d
        self._fetching[service_id] = [d]

        async def fetch() -> TermCodeCatalogue:
            return await self.fetch(await session(), service_id)

        def done(result: TermCodeCatalogue | Failure) -> None:
            for waiter in self._fetching.pop(service_id, []):
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result)

        Deferred.fromCoroutine(fetch()).addBoth(done)
        return d

    def _age(self, service_id: str) -> float | None:
        cached = self._cache.get(service_id)
        return None if cached is None else self._clock.seconds() - cached.fetched_at

    async def resolve(
        self,
        requested: str,
        service_id: str,
        session: Callable[[], Awaitable[Session]],
        call_id: str | None = None,
    ) -> ResolvedTermCode:
        """Return the LiveVox term code for ``requested`` in a service, fetching its catalogue as needed.

        :param requested: a config name, a LiveVox name or an id.
        :param service_id: the call's service.
        :param session: returns an agent's session, when a fetch is needed.
        :param call_id: the call, for the error logged on a fallback.
        :raises TermCodeError: when neither ``requested`` nor the fallback is known.
        :raises LiveVoxError: when the catalogue is needed and cannot be fetched.
        """
        if self._age(service_id) is None:
            await self._fetch_once(session, service_id)
        code = self._find(requested, service_id)
        if code is None and (self._age(service_id) or 0.0) >= self._miss_refresh:
            await self._fetch_once(session, service_id)
            code = self._find(requested, service_id)
        if code is not None:
            return ResolvedTermCode(requested, code.id, code.name, code.lv_result)
        fallback = self._config.fallback_term_code
        code = self._find(fallback, service_id)
        if code is None:
            raise TermCodeError(
                f"term code {requested!r} and the fallback {fallback!r} are both unknown"
                f" in service {service_id}"
            )
        log.error(
            "call {call_id}: term code {requested!r} is unknown in service {service_id}:"
            " using the fallback {fallback!r} ({term_code_id})",
            call_id=call_id,
            requested=requested,
            service_id=service_id,
            fallback=fallback,
            term_code_id=code.id,
        )
        return ResolvedTermCode(requested, code.id, code.name, code.lv_result, fallback=True)

    def _find(self, requested: str, service_id: str) -> TermCode | None:
        """Look ``requested`` up: through the config's names first, then as a LiveVox name or id."""
        catalogue = self.cached(service_id)
        if catalogue is None:
            return None
        return find_term_code(catalogue, requested, self._config.term_codes)
