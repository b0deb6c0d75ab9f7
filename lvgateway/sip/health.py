"""The AI vendor's health: OPTIONS to every endpoint, and the agent pool paused while none answers.

A LiveVox call sent to an agent the gateway cannot bridge is a failed call
for a real customer. So when no vendor endpoint has answered OPTIONS for
``health_failures`` rounds in a row, the pool is paused (every agent NOT
READY at LiveVox, new INVITEs refused 503) with the cause logged; the first
answer from any endpoint resumes it. Any final response counts as an answer
(a vendor may refuse OPTIONS with 405 and still take calls) except 408,
which is also what Sippy reports when nothing came back; a name that does
not resolve counts as a failure too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sippy.SipRequest import SipRequest
from sippy.SipURL import SipURL
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lvgateway.agents.interfaces import IAgentPool, Refusal
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
    """

    def __init__(
        self,
        reactor: Any,
        endpoints: VendorEndpoints,
        pool: IAgentPool,
        interval: float,
        failures: int,
        user_agent: str = "lvgateway",
    ) -> None:
        self._reactor = reactor
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
        #: How long a probe waits for an answer.
        self._probe_timeout = max(0.5, min(interval, 5.0))
        self._loop = LoopingCall(self._round)
        self._loop.clock = reactor

    def unavailable(self) -> str | None:
        """For readiness: ``None`` while some endpoint answers, else why not."""
        if self.paused:
            return f"no vendor endpoint answered OPTIONS in {self.failed_rounds} rounds"
        return None

    def start(self) -> None:
        """Start probing, the first round now."""
        self._loop.start(self._interval, now=True).addErrback(
            lambda f: log.failure("vendor health loop stopped", f)
        )

    def stop(self) -> None:
        """Stop probing."""
        if self._loop.running:
            self._loop.stop()

    def _round(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._one_round())

    async def _one_round(self) -> None:
        try:
            found = await self._endpoints.in_order()
        except LookupError:
            self._judge(False)  # no endpoint resolves: a failed round
            return
        results = await DeferredList([self._probe(e) for e in found])
        self._judge(any(ok and answered for ok, answered in results))

    def _probe(self, endpoint: ResolvedEndpoint) -> Deferred[bool]:
        """Send one OPTIONS; fire True on any final response, False on Sippy's local 408."""
        d: Deferred[bool] = Deferred()
        tm = self.global_config.get("_sip_tm")
        if tm is None:
            d.callback(False)
            return d
        req = SipRequest(
            method="OPTIONS",
            ruri=SipURL(username=endpoint.user, host=endpoint.address, port=endpoint.port),
            cseq=1,
            target=((endpoint.address, endpoint.port), "udp"),
            user_agent=self._user_agent,
        )
        req.getHFBody("from").genTag()

        def answered(resp: Any) -> None:
            code = resp.getSCode()[0]
            if code < 200 or d.called:
                return
            ok = code != 408  # Sippy answers its own 408 when nothing came back
            self._endpoints.set_health(endpoint.uri, ok)
            d.callback(ok)

        tm.newTransaction(req, answered)
        # Sippy would report silence only after its 32 s transaction timer: give up sooner.
        timer = self._reactor.callLater(self._probe_timeout, self._silent, endpoint, d)
        d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return d

    def _silent(self, endpoint: ResolvedEndpoint, d: Deferred[bool]) -> None:
        if d.called:
            return
        self._endpoints.set_health(endpoint.uri, False)
        d.callback(False)

    def _judge(self, any_answered: bool) -> None:
        if any_answered:
            if self.paused:
                log.info("a vendor endpoint answers again: resuming the agents")
                self.paused = False
                self._pool.resume(PAUSE_CAUSE).addErrback(
                    lambda f: log.failure("resuming the agents failed", f)
                )
            self.failed_rounds = 0
            return
        self.failed_rounds += 1
        if not self.paused and self.failed_rounds >= self._failures:
            self.paused = True
            log.error(
                "no vendor endpoint answered OPTIONS in {rounds} rounds: pausing the agents;"
                " new INVITEs get 503",
                rounds=self.failed_rounds,
            )
            self._pool.pause(PAUSE_CAUSE, Refusal.VENDOR_UNAVAILABLE).addErrback(
                lambda f: log.failure("pausing the agents failed", f)
            )
            self.on_unavailable()
