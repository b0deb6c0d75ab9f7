"""LiveVox outages, pool-wide: logged once, probed with one request, the agents held until it is back.

Without this, every agent meets an outage on its own: each request fails,
is retried by the transport, warned about, and the agent backs off and tries
again, so four agents make hundreds of warnings a minute and no error. The
:class:`OutageWatch` turns that into:

- one ``error`` line when LiveVox stops answering
  (:class:`~lvgateway.livevox.reachability.Reachability` goes down);
- one probe request at a time while it is down (``GET /session/validate``,
  harmless and read-only), every ``probe_base`` seconds doubling up to
  ``probe_max``; the agents make no request meanwhile, and the transport
  neither retries nor warns (the watch sets ``Reachability.watched``);
- a ``warn`` line every ``remind`` seconds while it stays down, with counts;
- one line when it answers again, with how long it was down, how many
  requests failed meanwhile and how many probes were sent; then every agent
  that waited plans again at once.

While LiveVox is up and nothing has asked it anything for ``heartbeat``
seconds (every agent READY and idle), the watch sends the same probe, so an
outage shows in ``/readyz`` within seconds even when no agent needs LiveVox.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from lvgateway.livevox.interfaces import ILiveVoxAgentAPI
from lvgateway.livevox.parsing import Session
from lvgateway.livevox.reachability import Reachability

if TYPE_CHECKING:
    from lvgateway.agents.agent import VirtualAgent

__all__ = ["OutageWatch"]

log = Logger("lvgateway.agents")

#: What the probe validates when no agent has a session: any answer LiveVox
#: gives to it (a 404 included) says LiveVox is there.
PROBE_SESSION = Session(session_id="probe", user_name="outage probe", agent=True)


def _outcomes(reachability: Reachability) -> str:
    return ", ".join(f"{outcome} {n}" for outcome, n in reachability.failed.most_common()) or "none"


class OutageWatch:
    """Watch LiveVox's reachability for the pool: one log line, one probe, agents held.

    :param clock: the clock the probes and the heartbeat run on.
    :param api: LiveVox's agent API, for the probe.
    :param reachability: LiveVox's state, fed by every request.
    :param session: returns a session to probe with (an agent's), or ``None``.
    :param heartbeat: seconds without any request after which a probe is sent while up.
    :param probe_base: the first wait between probes while down; it doubles.
    :param probe_max: the longest wait between probes while down.
    :param remind: seconds between the ``still unreachable`` lines.
    """

    def __init__(
        self,
        clock: IReactorTime,
        api: ILiveVoxAgentAPI,
        reachability: Reachability,
        session: Callable[[], Session | None],
        *,
        heartbeat: float = 5.0,
        probe_base: float = 1.0,
        probe_max: float = 10.0,
        remind: float = 60.0,
    ) -> None:
        self._clock = clock
        self._api = api
        self.reachability = reachability
        self._session = session
        self.heartbeat = heartbeat
        self.probe_base = probe_base
        self.probe_max = probe_max
        self.remind = remind
        self._running = False
        self._listening = False
        self._timer: IDelayedCall | None = None
        self._probe: Deferred[bool] | None = None
        self._waiting: dict[str, VirtualAgent] = {}
        #: Probes sent during the current outage.
        self.probes = 0
        #: Outages seen since start.
        self.outages = 0
        self._next_delay = probe_base
        self._reminded_at = 0.0

    def __repr__(self) -> str:
        state = "down" if self.reachability.down else "up"
        return f"<OutageWatch LiveVox {state}; {len(self._waiting)} agents waiting>"

    @property
    def down(self) -> bool:
        """Whether LiveVox is down now."""
        return self.reachability.down

    @property
    def active(self) -> bool:
        """Whether agents are held now: watching, and LiveVox down."""
        return self._running and self.reachability.down

    @property
    def waiting(self) -> int:
        """How many agents wait for LiveVox to answer."""
        return len(self._waiting)

    def start(self) -> None:
        """Start watching: the heartbeat now, probes during an outage."""
        self._running = True
        self.reachability.watched = True
        if not self._listening:
            self._listening = True
            self.reachability.add_listener(self._changed)
        self._arm(self.heartbeat)

    def stop(self) -> None:
        """Stop probing; the transport retries and warns on its own again."""
        self._running = False
        self.reachability.watched = False
        self._cancel_timer()
        if self._probe is not None:
            self._probe.cancel()
        self._waiting.clear()

    def holds(self, agent: VirtualAgent) -> bool:
        """Whether ``agent`` must make no request now; if so it is kicked once LiveVox answers."""
        if not self.active:
            return False
        self._waiting[agent.user_name] = agent
        return True

    # -- timers ----------------------------------------------------------------------

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _arm(self, delay: float) -> None:
        self._cancel_timer()
        if self._running:
            self._timer = self._clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if not self._running:
            return
        now = self._clock.seconds()
        if self.reachability.down:
            self._send_probe()
            return
        last = self.reachability.last_seen
        if self._probe is None and (last is None or now - last >= self.heartbeat):
            self._send_probe()
            return
        self._arm(self.heartbeat if last is None else max(0.1, last + self.heartbeat - now))

    # -- the probe -------------------------------------------------------------------

    def _send_probe(self) -> None:
        if self._probe is not None:
            return
        if self.reachability.down:
            self.probes += 1
        d = self._api.validate(self._session() or PROBE_SESSION)
        if not d.called:
            self._probe = d
        d.addErrback(lambda failure: False)  # its outcome is noted in the reachability
        d.addCallback(self._probed)

    def _probed(self, _: object) -> None:
        self._probe = None
        if not self._running:
            return
        if not self.reachability.down:
            self._arm(self.heartbeat)
            return
        now = self._clock.seconds()
        since = self.reachability.down_since or now
        if now - max(since, self._reminded_at) >= self.remind:
            self._reminded_at = now
            log.warn(
                "LiveVox still unreachable after {seconds:.0f}s: {failed} requests failed"
                " ({outcomes}), {probes} probes; {waiting} agents wait",
                seconds=now - since,
                failed=sum(self.reachability.failed.values()),
                outcomes=_outcomes(self.reachability),
                probes=self.probes,
                waiting=len(self._waiting),
            )
        delay, self._next_delay = self._next_delay, min(self.probe_max, self._next_delay * 2)
        self._arm(delay)

    # -- going down and coming back --------------------------------------------------

    def _changed(self, down: bool) -> None:
        if not self._running:
            return
        reach = self.reachability
        now = self._clock.seconds()
        if down:
            self.outages += 1
            self.probes = 0
            self._next_delay = self.probe_base
            self._reminded_at = 0.0
            log.error(
                "LiveVox unreachable: {failed} requests in a row failed, the last {last};"
                " one probe request at a time until it answers (every {base:g}-{max:g}s),"
                " agents wait, /readyz says 503",
                failed=sum(reach.failed.values()),
                last=reach.last_failure,
                base=self.probe_base,
                max=self.probe_max,
            )
            if self._probe is None:
                self._arm(self._next_delay)
            return
        since = reach.down_since if reach.down_since is not None else now
        waiting, self._waiting = self._waiting, {}
        log.info(
            "LiveVox answers again after {seconds:.1f}s unreachable: {failed} requests failed"
            " meanwhile ({outcomes}), {probes} probes; {waiting} agents resume",
            seconds=now - since,
            failed=sum(reach.failed.values()),
            outcomes=_outcomes(reach),
            probes=self.probes,
            waiting=len(waiting),
        )
        self._next_delay = self.probe_base
        self._arm(self.heartbeat)
        if waiting:
            # Not from inside the request that noticed: let it finish first.
            self._clock.callLater(0, self._release, list(waiting.values()))

    def _release(self, agents: list[VirtualAgent]) -> None:
        for agent in agents:
            agent.kick("LiveVox answers again", fresh=True)
