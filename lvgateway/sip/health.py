"""The AI vendor's health: OPTIONS to every endpoint, and the agent pool paused while none answers.

A LiveVox call sent to an agent the gateway cannot bridge is a failed call
for a real customer. So when no vendor endpoint has answered OPTIONS for
``health_failures`` rounds in a row, the pool is paused (every agent NOT
READY at LiveVox, new INVITEs refused 503) with the cause logged; the first
answer from any endpoint resumes it. Any final response counts as an answer
(a vendor may refuse OPTIONS with 405 and still take calls) except 408,
which is also what Sippy reports when nothing came back; a name that does
not resolve counts as a failure too.

A call whose vendor leg failed with no endpoint left (:meth:`VendorHealth.call_failed`)
does not wait for the next round: one round is sent at once, and if it goes
unanswered too the pool is paused then (a failed call plus an unanswered
probe), without waiting ``health_failures`` rounds. There is one such round
per failed call at most, never a quicker loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sippy.SipRequest import SipRequest
from sippy.SipURL import SipURL
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lvgateway.agents.interfaces import IAgentPool, Refusal
from lvgateway.sip.edge_reason import EdgeReasonLog, reason_from_edge
from lvgateway.sip.vendor import ResolvedEndpoint, VendorEndpoints

__all__ = ["VendorHealth"]

log = Logger()

PAUSE_CAUSE = "vendor unavailable"


class VendorHealth:
    """Probe the vendor endpoints and pause or resume the pool.

    :param reactor: runs the probe loop.
    :param endpoints: the endpoints, whose health is noted for failover order.
    :param pool: paused while no endpoint answers.
    :param interval: seconds between rounds.
    :param failures: rounds with no answer before the pool is paused.
    :param user_agent: the ``User-Agent`` of the probes.
    :param edge_reasons: logs why the edge could not reach an endpoint (shared with calls).
    """

    def __init__(
        self,
        reactor: Any,
        endpoints: VendorEndpoints,
        pool: IAgentPool,
        interval: float,
        failures: int,
        user_agent: str = "lvgateway",
        edge_reasons: EdgeReasonLog | None = None,
    ) -> None:
        self._reactor = reactor
        #: Where the edge's reasons for an endpoint it cannot reach are logged.
        self.edge_reasons = edge_reasons if edge_reasons is not None else EdgeReasonLog(reactor)
        self._endpoints = endpoints
        self._pool = pool
        self._interval = interval
        self._failures = failures
        self._user_agent = user_agent
        self.global_config: dict[str, Any] = {}
        #: Called when no endpoint has answered for ``failures`` rounds: the
        #: live calls' vendor is gone too.
        self.on_unavailable: Callable[[], None] = lambda: None
        self.failed_rounds = 0
        self.paused = False
        #: Why a call's vendor leg last failed, until a round is answered.
        self._call_failure: str | None = None
        #: Whether a round is out (so a failed call does not start a second).
        self._in_round = False
        #: How many endpoints the last round probed (0 when none resolved).
        self._probed = 0
        #: The probes waiting for an answer, with their give-up timers.
        self._waiting: dict[Deferred[bool], Any] = {}
        self._stopped = False
        #: How long a probe waits for an answer.
        self._probe_timeout = max(0.5, min(interval, 5.0))
        self._loop = LoopingCall(self._round)
        self._loop.clock = reactor

    def unavailable(self) -> str | None:
        """For readiness: ``None`` while some endpoint answers, else why not."""
        if self.paused:
            return self._silence()
        return None

    def start(self) -> None:
        """Start probing, the first round now."""
        self._stopped = False
        self._loop.start(self._interval, now=True).addErrback(
            lambda f: log.failure("vendor health loop stopped", f)
        )

    def stop(self) -> None:
        """Stop probing; a round still out ends unjudged."""
        self._stopped = True
        if self._loop.running:
            self._loop.stop()
        for d, timer in list(self._waiting.items()):
            if timer.active():
                timer.cancel()
            if not d.called:
                d.callback(False)

    def call_failed(self, why: str) -> None:
        """A call's vendor leg failed to set up with no endpoint left: probe now.

        One round goes out at once (unless one is out already); if it is
        unanswered, the pool is paused without waiting for more rounds. An
        answered round forgets the failure.

        :param why: what failed (the vendor's answer, or no progress), for the log.
        """
        if self.paused or self._stopped:
            return
        self._call_failure = why
        if self._in_round:
            log.info(
                "a call's vendor leg failed ({why}): the OPTIONS round under way decides",
                why=why,
            )
            return
        log.info("a call's vendor leg failed ({why}): probing the vendor now", why=why)
        Deferred.fromCoroutine(self._one_round()).addErrback(
            lambda f: log.failure("probing the vendor after a failed call failed", f)
        )

    def _round(self) -> Deferred[None]:
        if self._in_round:
            return succeed(None)  # the round a failed call started counts as this one
        return Deferred.fromCoroutine(self._one_round())

    async def _one_round(self) -> None:
        self._in_round = True
        try:
            try:
                found = await self._endpoints.in_order()
            except LookupError:
                self._probed = 0
                answered = False  # no endpoint resolves: a failed round
            else:
                self._probed = len(found)
                results = await DeferredList([self._probe(e) for e in found])
                answered = any(ok and answer for ok, answer in results)
        finally:
            self._in_round = False
        self._judge(answered)

    def _probe(self, endpoint: ResolvedEndpoint) -> Deferred[bool]:
        """Send one OPTIONS; fire True on any final response, False on Sippy's local 408."""
        d: Deferred[bool] = Deferred()
        tm = self.global_config.get("_sip_tm")
        if tm is None:
            d.callback(False)
            return d
        transport = {} if endpoint.transport == "udp" else {"transport": endpoint.transport}
        req = SipRequest(
            method="OPTIONS",
            ruri=SipURL(
                username=endpoint.user, host=endpoint.address, port=endpoint.port, **transport
            ),
            cseq=1,
            target=(endpoint.next_hop, "udp"),
            user_agent=self._user_agent,
        )
        req.getHFBody("from").genTag()

        def answered(resp: Any) -> None:
            code = resp.getSCode()[0]
            if code < 200:
                return
            # Sippy answers its own 408 when nothing came back; the edge its 503
            # with a Warning when it could not reach the vendor (logged even
            # when it comes after the probe gave up: it says why).
            why = reason_from_edge(resp)
            if why is not None:
                self.edge_reasons.note(endpoint.uri, why)
            if d.called:
                return
            ok = code != 408 and why is None
            self._endpoints.set_health(endpoint.uri, ok)
            d.callback(ok)

        tm.newTransaction(req, answered)
        # Sippy would report silence only after its 32 s transaction timer: give up sooner.
        timer = self._reactor.callLater(self._probe_timeout, self._silent, endpoint, d)
        self._waiting[d] = timer

        def done(result: bool) -> bool:
            self._waiting.pop(d, None)
            if timer.active():
                timer.cancel()
            return result

        d.addBoth(done)
        return d

    def _silent(self, endpoint: ResolvedEndpoint, d: Deferred[bool]) -> None:
        if d.called:
            return
        self._endpoints.set_health(endpoint.uri, False)
        d.callback(False)

    def _judge(self, any_answered: bool) -> None:
        if self._stopped:
            return
        if any_answered:
            if self.paused:
                log.info("a vendor endpoint answers again: resuming the agents")
                self.paused = False
                self._pool.resume(PAUSE_CAUSE).addErrback(
                    lambda f: log.failure("resuming the agents failed", f)
                )
            self.failed_rounds = 0
            self._call_failure = None
            return
        self.failed_rounds += 1
        call_failure, self._call_failure = self._call_failure, None
        if self.paused:
            return
        if call_failure is not None:
            self.paused = True
            log.error(
                "a call's vendor leg failed ({why}) and {silence}: pausing the agents;"
                " new INVITEs get 503",
                why=call_failure,
                silence=self._silence(),
                endpoints=self._probed,
            )
        elif self.failed_rounds >= self._failures:
            self.paused = True
            log.error(
                "{silence} in {rounds} rounds: pausing the agents; new INVITEs get 503",
                silence=self._silence(),
                rounds=self.failed_rounds,
                endpoints=self._probed,
            )
        else:
            return
        self._pool.pause(PAUSE_CAUSE, Refusal.VENDOR_UNAVAILABLE).addErrback(
            lambda f: log.failure("pausing the agents failed", f)
        )
        self.on_unavailable()

    def _silence(self) -> str:
        """What the last round found, naming the real count of endpoints."""
        if self._probed == 0:
            return "no vendor endpoint resolves"
        if self._probed == 1:
            return "the vendor endpoint did not answer OPTIONS"
        return f"none of the {self._probed} vendor endpoints answered OPTIONS"
