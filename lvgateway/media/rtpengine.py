"""The rtpengine media engine: calls relayed by rtpengine daemons, driven over the ng protocol.

rtpengine (Debian ``rtpengine-daemon``) relays RTP in the kernel, or in
userspace without its module (``--table=-1``); the gateway only signals it:
each call is an ``offer``/``answer`` on one instance, ``query`` for its
counters, ``delete`` at the end (:mod:`lvgateway.media.rtpengine_session`).

**Instances** (``[[media.rtpengine]]``, each an ng address and a weight).
Every instance is pinged each ``ping_interval``; one that misses
``ping_failures`` pings in a row is *down*: it takes no new calls, and the
calls it carries are left alone (they end by their own media timeout, or
go on when it answers again). A new call goes to an instance that is *up*,
drawn by weight (:func:`~lvgateway.media.rtpengine_policy.pick_weighted`).
:meth:`RtpengineMediaRelay.online` (``/readyz``) fails only when no
instance is up; ``lvgateway_rtpengine_up{instance}`` shows each one.

**Latching** is strict on both sides (``strict source``, endpoint learning
off): see :mod:`lvgateway.media.rtpengine_policy`. The ports are
rtpengine's own (its ``--port-min``/``--port-max``, chosen at random); the
``media`` section's ``listen_host`` is where the ng client's socket binds.

**Counters and media timeouts.** Each ``poll_interval``, up to
``polls_per_round`` sessions are queried (one query in flight a session),
spread over the interval in :data:`POLL_SLICES` rounds;
their counters feed the media metrics each ``metrics_interval`` and the
sessions' media-timeout rule.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import attrs
from prometheus_client import CollectorRegistry, Gauge
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from lvgateway.config.model import IPNetwork, MediaConfig, RtpengineInstance
from lvgateway.media.counters import FlowCounters, MediaCounters, RelayStats, ReleasedTotals
from lvgateway.media.errors import MediaNotRunningError, NoMediaInstanceError
from lvgateway.media.interfaces import IMediaRelay
from lvgateway.media.metrics import MediaMetrics, instances_up_gauge
from lvgateway.media.rtpengine_ng import NgClient
from lvgateway.media.rtpengine_policy import pick_weighted
from lvgateway.media.rtpengine_session import RtpengineMediaSession

__all__ = ["RtpengineInstanceState", "RtpengineMediaRelay", "RtpengineMediaSession"]

log = Logger()

#: Each poll interval is cut into this many rounds, each querying its share of
#: the sessions: rtpengine answers queries on the threads that forward media,
#: so one burst of every call's query a second would delay audio.
POLL_SLICES = 10

Health = Literal["unknown", "up", "down"]


@attrs.define(eq=False)
class RtpengineInstanceState:
    """One configured instance and what its pings say.

    :param config: its address and weight.
    """

    config: RtpengineInstance
    health: Health = "unknown"
    missed: int = 0
    reason: str = "no ping answered yet"
    pinging: bool = False
    sessions: int = 0

    @property
    def name(self) -> str:
        """``ip:port`` of its ng socket, for logs and metric labels."""
        host, port = self.config.address
        return f"{host}:{port}"

    def pinged(self, error: str | None, failures_to_down: int) -> Health | None:
        """Record one ping's outcome; return the new health when it changed."""
        if error is None:
            self.missed, self.reason = 0, "answers ping"
            new: Health = "up"
        else:
            self.missed += 1
            self.reason = error
            new = "down" if self.missed >= failures_to_down else self.health
        if new == self.health:
            return None
        self.health = new
        return new


@implementer(IMediaRelay)
@attrs.define(eq=False)
class RtpengineMediaRelay:
    """The rtpengine :class:`~lvgateway.media.interfaces.IMediaRelay`.

    :param reactor: ``IReactorUDP`` and ``IReactorTime``.
    :param config: the media settings: ``rtpengine`` instances, latching, timeouts.
    :param registry: the Prometheus registry its metrics go on.
    :param livevox_networks: accepted for parity with the Twisted engine;
        rtpengine takes each side's media only from its SDP's address.
    :param monotonic: the clock of polls and media timeouts.
    :param draw: ``random.random``-like, for the weighted choice of instance.
    :param ping_interval: how often every instance is pinged.
    :param ping_failures: missed pings in a row that make an instance down.
    :param command_interval: seconds between sends of an unanswered ng command.
    :param command_attempts: sends before an ng command fails.
    :param poll_interval: how often sessions are queried for counters.
    :param polls_per_round: at most this many queries each poll round.
    :param metrics_interval: how often the Prometheus counters catch up.
    """

    reactor: Any
    config: MediaConfig
    registry: CollectorRegistry
    livevox_networks: Sequence[IPNetwork] = ()
    monotonic: Callable[[], float] = time.monotonic
    draw: Callable[[], float] = random.random
    ping_interval: float = 1.0
    ping_failures: int = 2
    command_interval: float = 0.5
    command_attempts: int = 3
    poll_interval: float = 1.0
    polls_per_round: int = 500
    metrics_interval: float = 1.0
    instances: list[RtpengineInstanceState] = attrs.field(init=False)
    _metrics: MediaMetrics = attrs.field(init=False)
    _up: Gauge = attrs.field(init=False)
    _client: NgClient = attrs.field(init=False)
    _port: Any = attrs.field(default=None, init=False)
    _state: str = attrs.field(default="stopped", init=False)
    _sessions: dict[RtpengineMediaSession, None] = attrs.field(factory=dict, init=False)
    _released: ReleasedTotals = attrs.field(factory=ReleasedTotals, init=False)
    _loops: list[LoopingCall] = attrs.field(factory=list, init=False)
    _cursor: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if not self.config.rtpengine:
            raise ValueError('media.engine = "rtpengine" needs at least one [[media.rtpengine]]')
        self.instances = [RtpengineInstanceState(c) for c in self.config.rtpengine]
        self._metrics = MediaMetrics.on(self.registry)
        self._up = instances_up_gauge(self.registry, [i.name for i in self.instances])
        self._client = NgClient(self.reactor, self.command_interval, self.command_attempts)

    # -- lifecycle --------------------------------------------------------

    def start(self) -> None:
        """See :meth:`IMediaRelay.start`: bind the ng socket and start pinging."""
        if self._state != "stopped":
            return
        self._port = self.reactor.listenUDP(0, self._client, interface=self.config.listen_host)
        self._state = "running"
        for interval, work in (
            (self.ping_interval, self._ping_all),
            (self.poll_interval / POLL_SLICES, self._poll_round),
            (self.metrics_interval, self.flush_metrics),
        ):
            loop = LoopingCall(work)
            loop.clock = self.reactor
            loop.start(interval, now=True).addErrback(
                lambda f: log.failure("rtpengine engine loop failed", f)
            )
            self._loops.append(loop)
        log.info(
            "media: rtpengine engine with {count} instance(s): {names}",
            count=len(self.instances),
            names=", ".join(f"{i.name} (weight {i.config.weight})" for i in self.instances),
        )

    def stop(self) -> Deferred[None]:
        """See :meth:`IMediaRelay.stop`: delete every call, then close the ng socket."""
        if self._state == "stopped":
            return succeed(None)
        self._state = "stopping"
        releases = [session.release() for session in list(self._sessions)]
        done: Deferred[None] = Deferred()

        def closed(_: object) -> None:
            for loop in self._loops:
                if loop.running:
                    loop.stop()
            self._loops.clear()
            self._client.stop()
            self.flush_metrics()
            port, self._port = self._port, None
            self._state = "stopped"
            stopping = port.stopListening() if port is not None else None
            if isinstance(stopping, Deferred):
                stopping.addBoth(lambda _: done.callback(None))
            else:
                done.callback(None)

        gatherResults(releases, consumeErrors=True).addBoth(closed)
        return done

    def online(self) -> str | None:
        """See :meth:`IMediaRelay.online`: ``None`` while one instance answers ping."""
        if self._state != "running":
            return "not started" if self._state == "stopped" else self._state
        if any(i.health == "up" for i in self.instances):
            return None
        return "no rtpengine instance answers ping: " + "; ".join(
            f"{i.name} {i.reason}" for i in self.instances
        )

    # -- instances ------------------------------------------------------------

    def command(
        self, instance: RtpengineInstanceState, message: Mapping[str, Any]
    ) -> Deferred[dict[str, Any]]:
        """Send one ng command to ``instance`` (for its sessions)."""
        return self._client.command(instance.config.address, message)

    def _ping_all(self) -> None:
        for instance in self.instances:
            if not instance.pinging:
                instance.pinging = True
                self.command(instance, {"command": "ping"}).addBoth(self._pinged, instance)

    def _pinged(self, result: dict[str, Any] | Failure, instance: RtpengineInstanceState) -> None:
        instance.pinging = False
        error = str(result.value) if isinstance(result, Failure) else None
        changed = instance.pinged(error, self.ping_failures)
        if changed is None:
            return
        self._up.labels(instance=instance.name).set(1 if changed == "up" else 0)
        if changed == "up":
            log.info("media: rtpengine {instance} answers ping", instance=instance.name)
        else:
            log.warn(
                "media: rtpengine {instance} is down ({missed} pings missed: {reason}); it takes"
                " no new calls, its {sessions} call(s) are left as they are",
                instance=instance.name,
                missed=instance.missed,
                reason=instance.reason,
                sessions=instance.sessions,
            )

    # -- sessions -------------------------------------------------------------

    def new_session(
        self,
        call_id: str,
        vendor_networks: Sequence[IPNetwork] = (),
        sip_call_id: str | None = None,
    ) -> RtpengineMediaSession:
        """See :meth:`IMediaRelay.new_session`: the call goes to an instance that is up, by weight."""
        if self._state != "running":
            self._metrics.allocation_failures.labels(reason="not_running").inc()
            raise MediaNotRunningError(f"media relay is {self._state}")
        weights = [i.config.weight if i.health == "up" else 0 for i in self.instances]
        index = pick_weighted(weights, self.draw())
        if index is None:
            self._metrics.allocation_failures.labels(reason="no_instance").inc()
            reason = self.online()
            log.warn("media {call_id}: refused: {reason}", call_id=call_id, reason=reason)
            raise NoMediaInstanceError(reason or "no rtpengine instance is up")
        instance = self.instances[index]
        session = RtpengineMediaSession(call_id, self, instance, self.config.vendor_latching)
        instance.sessions += 1
        self._sessions[session] = None
        self._metrics.sessions.set(len(self._sessions))
        log.info(
            "media {call_id}: on rtpengine {instance} as {ng_call_id}",
            call_id=call_id,
            sip_call_id=sip_call_id,
            instance=instance.name,
            ng_call_id=session.ng_call_id,
        )
        return session

    def _session_released(self, session: RtpengineMediaSession, final: MediaCounters) -> None:
        if session not in self._sessions:
            return
        del self._sessions[session]
        session.instance.sessions -= 1
        self._released.add(final)
        self._metrics.sessions.set(len(self._sessions))
        self._metrics.session_released(session.profile)

    def _poll_round(self) -> None:
        sessions = list(self._sessions)
        if not sessions:
            return
        budget = min(-(-self.polls_per_round // POLL_SLICES), -(-len(sessions) // POLL_SLICES))
        start = self._cursor % len(sessions)
        for session in (sessions[(start + k) % len(sessions)] for k in range(budget)):
            if session.instance.health != "down":
                session.poll()
        self._cursor = start + budget

    def session_of(self, call_id: str) -> RtpengineMediaSession | None:
        """The live session of the gateway's ``call_id``, or ``None`` (for tests and the manhole)."""
        return next((s for s in self._sessions if s.call_id == call_id), None)

    # -- counters -------------------------------------------------------------

    def _totals(self) -> tuple[dict[str, FlowCounters], dict[str, int]]:
        return self._released.with_live(s.counters() for s in self._sessions)

    def flush_metrics(self) -> None:
        """Bring the Prometheus counters up to the engine's totals now."""
        flows, drops = self._totals()
        self._metrics.add_totals(flows, drops)

    def stats(self) -> RelayStats:
        """See :meth:`IMediaRelay.stats`: four of rtpengine's ports a call, of ``media``'s range."""
        flows, drops = self._totals()
        self._metrics.add_totals(flows, drops)
        return RelayStats(
            sessions=len(self._sessions),
            ports_in_use=4 * len(self._sessions),
            ports_total=self.config.port_max - self.config.port_min + 1,
            livevox_to_vendor=flows["livevox_to_vendor"],
            vendor_to_livevox=flows["vendor_to_livevox"],
            dropped=drops,
        )
