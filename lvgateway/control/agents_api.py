"""``/agents`` on the internal control listener: every agent's state, and the operators' actions.

Routes (JSON; the listener is on loopback and has no authentication)::

    GET  /agents                   every agent (state, since, reason, last error,
                                   899 number...), the counts by state, the pause
                                   causes, whether open hours want agents in
    GET  /agents/{user}            one agent
    POST /agents/{user}/ready      clear an operator's hold; READY where the pool
                                   wants agents in
    POST /agents/{user}/not-ready  hold the agent NOT READY
    POST /agents/{user}/log-out    log the agent out (after its wrap-up if on a
                                   call) and keep it out
    POST /agents/{user}/log-in     clear any hold and a refused login's wait, and
                                   log the agent in again

An action answers 200 with the agent once its driver has settled, or 202 with
the agent as it is when that takes longer than the wait (10 s by default): the
action goes on regardless. An unknown agent or action is 404; another method 405.

Mounted by the gateway::

    control.routes.add_route("agents", AgentsResource(pool, reactor))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import Request
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET

from lvgateway.agents.pool import AgentPool, UnknownAgentError
from lvgateway.agents.state import AgentView
from lvgateway.control.web import BaseResource, JsonError, json_reply

__all__ = ["ACTIONS", "AgentsResource"]

log = Logger()

#: The actions by path segment, each a method of the pool.
ACTIONS: dict[str, Callable[[AgentPool, str], Deferred[AgentView]]] = {
    "ready": AgentPool.force_ready,
    "not-ready": AgentPool.force_not_ready,
    "log-out": AgentPool.force_log_out,
    "log-in": AgentPool.force_log_in,
}


class AgentsResource(BaseResource):
    """``/agents``: the pool's snapshot, and a child per agent.

    :param pool: the agent pool.
    :param clock: bounds the wait of an action.
    :param wait: how long an action waits for the agent to settle before answering 202.
    """

    def __init__(self, pool: AgentPool, clock: IReactorTime, wait: float = 10.0) -> None:
        super().__init__()
        self._pool = pool
        self._clock = clock
        self._wait = wait

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """``/agents/`` is this resource; ``/agents/{user}`` is one agent."""
        if path == b"":
            return self
        user = path.decode("utf-8", "replace")
        try:
            self._pool.agent(user)
        except UnknownAgentError:
            return JsonError(404, f"no agent {user}")
        return _Agent(self._pool, user, self._clock, self._wait)

    def render_GET(self, request: IRequest) -> bytes:
        """Every agent, the counts, the pause causes and the open hours."""
        return json_reply(request, self._pool.describe())


class _Agent(BaseResource):
    """``/agents/{user}``: one agent, and its actions below it."""

    def __init__(self, pool: AgentPool, user: str, clock: IReactorTime, wait: float) -> None:
        super().__init__()
        self._pool = pool
        self._user = user
        self._clock = clock
        self._wait = wait

    def getChild(self, path: bytes, request: IRequest) -> IResource:
        """``/agents/{user}/{action}``."""
        if path == b"":
            return self
        action = path.decode("utf-8", "replace")
        if action not in ACTIONS:
            return JsonError(404, f"no action {action}; one of {', '.join(ACTIONS)}")
        return _Action(self._pool, self._user, action, self._clock, self._wait)

    def render_GET(self, request: IRequest) -> bytes:
        """The agent's view."""
        return json_reply(request, {"agent": self._pool.agent(self._user).view().to_json()})


class _Action(BaseResource):
    """``POST /agents/{user}/{action}``: act, then answer once the agent settles (or 202)."""

    isLeaf = True

    def __init__(
        self, pool: AgentPool, user: str, action: str, clock: IReactorTime, wait: float
    ) -> None:
        super().__init__()
        self._pool = pool
        self._user = user
        self._action = action
        self._clock = clock
        self._wait = wait

    def render_POST(self, request: IRequest) -> bytes | int:
        """Do the action; answer with the agent when it has settled, or 202 after the wait."""
        log.info("control API: {action} for agent {agent}", action=self._action, agent=self._user)
        settled = ACTIONS[self._action](self._pool, self._user)
        answered = False
        gone = False

        def answer(code: int, view: AgentView, done: bool) -> None:
            nonlocal answered
            if answered or gone:
                return
            answered = True
            body = {"agent": view.to_json(), "action": self._action, "settled": done}
            request.write(json_reply(request, body, code))
            request.finish()

        def late() -> None:
            answer(202, self._pool.agent(self._user).view(), False)

        timer = self._clock.callLater(self._wait, late)

        def on_settled(view: AgentView) -> None:
            if timer.active():
                timer.cancel()
            answer(200, view, True)

        def on_error(failure: Failure) -> None:
            if timer.active():
                timer.cancel()
            log.failure(
                "control API: {action} for agent {agent} failed",
                failure,
                action=self._action,
                agent=self._user,
            )
            if not answered and not gone:
                request.write(json_reply(request, {"error": "the action failed"}, 500))
                request.finish()

        def disconnected(reason: Failure) -> None:
            nonlocal gone
            gone = True
            if timer.active():
                timer.cancel()

        cast(Request, request).notifyFinish().addErrback(disconnected)
        settled.addCallbacks(on_settled, on_error)
        return NOT_DONE_YET
