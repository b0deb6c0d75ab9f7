"""A call store on ``task.Clock`` over the in-memory LiveVox, for the calls part's unit tests.

:class:`Harness` wires a :class:`~lvgateway.calls.service.CallService` to
:class:`~lvgateway.livevox.testing.FakeLiveVox`, a
:class:`~lvgateway.livevox.testing.FakeAia`, the
:class:`~lvgateway.calls.testing.StandInPool` and a
:class:`~lvgateway.calls.testing.StandInCallSource` whose dialler puts calls
on the fake LiveVox. SQLite runs inline (:class:`InlineRunner`), so every
Deferred of a test has fired by the time the call that made it returns,
unless a fake holds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Coroutine
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from lvgateway.backoff import Backoff
from lvgateway.calls.blocking import InlineRunner
from lvgateway.calls.records import CallRecord
from lvgateway.calls.service import CallService
from lvgateway.calls.store import CallStore
from lvgateway.calls.testing import (
    FakeCallLegs,
    PlacedCall,
    StandInCallSource,
    StandInPool,
    agent_configs,
    wrapup_config,
)
from lvgateway.config.model import WrapupConfig
from lvgateway.livevox.interfaces import IAiaAPI
from lvgateway.livevox.parsing import CallDetails
from lvgateway.livevox.testing import FakeAia, FakeLiveVox, result_of

T = TypeVar("T")

SERVICE = "1234567"
DONE_ID = "101416228"
TRANSFER_ID = "101416229"
PAYMENT_ID = "101416230"
PASSWORD = "pw"
START = 1_700_000_000.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that completes without the reactor; return its result."""
    result: T = result_of(Deferred.fromCoroutine(coroutine))
    return result


class Harness:
    """One call store, its LiveVox, AIA, pool and stand-in SIP, on one ``task.Clock``.

    :param state_dir: where the SQLite file goes.
    :param config: the wrap-up settings (:func:`wrapup_config` by default).
    :param agents: how many agents (``AIVA1``…), brought in READY.
    :param aia: the AIA endpoint; a :class:`FakeAia` by default, ``None`` for none.
    :param livevox: share a LiveVox (and its clock) with an earlier harness.
    :param clock: share a clock.
    """

    def __init__(
        self,
        state_dir: str,
        config: WrapupConfig | None = None,
        agents: int = 3,
        aia: IAiaAPI | None | str = "fake",
        livevox: FakeLiveVox | None = None,
        clock: Clock | None = None,
        bring_in: bool = True,
    ) -> None:
        self.clock = clock or Clock()
        if clock is None:
            self.clock.advance(START)
        self.livevox = livevox or FakeLiveVox(now_millis=lambda: int(self.clock.seconds() * 1000))
        if livevox is None:
            self.livevox.add_term_code(SERVICE, DONE_ID, "AI Completed")
            self.livevox.add_term_code(SERVICE, TRANSFER_ID, "Transfer To Agent")
            self.livevox.add_term_code(SERVICE, PAYMENT_ID, "AI Payment Taken")
        self.aia: IAiaAPI | None = FakeAia() if aia == "fake" else aia  # type: ignore[assignment]
        self.config = config or wrapup_config()
        self.agent_configs = agent_configs(agents, PASSWORD)
        self.pool = StandInPool(self.livevox, self.agent_configs, self.clock)
        self.store = CallStore(state_dir, InlineRunner())
        self.registry = CollectorRegistry()
        self.calls = CallService(
            config=self.config,
            store=self.store,
            agent_api=self.livevox,
            call_api=self.livevox,
            aia=self.aia,
            pool=self.pool,
            clock=self.clock,
            registry=self.registry,
            services={SERVICE: "AIVA1"},
            retry=Backoff(base=1.0, ceiling=30.0, jitter=lambda: 0.5),
        )
        self.legs = FakeCallLegs()
        self.source = StandInCallSource(
            self.calls,
            self.dial,
            services={a.user_name: a.service_id for a in self.agent_configs},
            livevox_leg_ended=self.leg_ended,
        )
        self.calls.set_legs(self.source)
        self._ids = itertools.count(1)
        self.events: list[tuple[str, str, str]] = []
        self.calls.add_listener(lambda c, s, o: self.events.append((c, s, o)))
        self.calls.startService()
        if bring_in:
            for agent in self.agent_configs:
                run(self.pool.bring_in(agent.user_name))

    # -- LiveVox's side -------------------------------------------------------------------

    #: Set to have the next calls come from a stranger: LiveVox never routes them.
    rogue = False

    async def dial(self, agent: str) -> PlacedCall:
        """Put a call through to a READY agent at the fake LiveVox (unless :attr:`rogue`)."""
        n = next(self._ids)
        call = CallDetails(
            call_transaction_id=f"1475165943{n:02d}",
            call_session_id=f"UF200T64DE3A{n:02d}@10.101.21.216",
            account_number="1001",
            phone_number="9195550100",
            service_id=SERVICE,
        )
        if not self.rogue:
            self.livevox.place_call(agent, call)
        assert call.call_session_id and call.call_transaction_id
        return PlacedCall(
            agent=agent,
            dnis=next(a.phone_number for a in self.agent_configs if a.user_name == agent),
            ani="+19195550100",
            call_session_id=call.call_session_id,
            call_transaction_id=call.call_transaction_id,
        )

    def leg_ended(self, placed: PlacedCall) -> None:
        """The LiveVox leg went down: LiveVox puts the agent in wrap-up."""
        agent = self.livevox.agent(placed.agent)
        if agent.state == "INCALL" and agent.call is not None:
            if agent.call.call_session_id == placed.call_session_id:
                agent.state = "WRAPUP"

    # -- shortcuts ----------------------------------------------------------------------------

    def place(
        self, agent: str = "AIVA1", transaction_header: bool = False, connect: bool = True
    ) -> CallRecord:
        """Place and accept a call on ``agent`` (answered by the vendor unless not ``connect``)."""
        return run(self.source.place(agent, transaction_header, connect))

    def record(self, call_id: str) -> CallRecord:
        """Return a call's record, settled or not."""
        record: CallRecord = result_of(self.calls.lookup(call_id))
        return record

    def saved(self) -> list[dict[str, Any]]:
        """Return every term code the fake LiveVox applied."""
        return self.livevox.saved_term_codes

    def calls_made(self, name: str) -> list[dict[str, Any]]:
        """Return the fake LiveVox's log of one method."""
        return [args for call, args in self.livevox.log if call == name]

    def stop(self) -> None:
        """Stop the service and close the store."""
        result_of(self.calls.stopService())


def harness(tmp_path: Any, **kwargs: Any) -> Harness:
    """Return a :class:`Harness` on ``tmp_path``."""
    return Harness(str(tmp_path), **kwargs)


__all__ = ["DONE_ID", "PAYMENT_ID", "SERVICE", "TRANSFER_ID", "Harness", "harness", "run"]
