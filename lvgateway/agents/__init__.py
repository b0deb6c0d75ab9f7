"""Virtual agents: one state machine each, and the pool that maps 899 numbers to them.

The parts, one concept each:

- :mod:`~lvgateway.agents.interfaces`: :class:`IAgentPool`, :class:`Admission`
  and :class:`Refusal`, what the call and SIP parts are coded against;
- :mod:`~lvgateway.agents.pool`: :class:`AgentPool`, the service that
  provides it, with the open hours, pause causes, drain steps and admin actions;
- :mod:`~lvgateway.agents.agent`: one :class:`VirtualAgent` and the driver
  that brings it, one LiveVox call at a time, to what the pool wants;
- :mod:`~lvgateway.agents.state`: the states, the wishes and the pacing rules
  (refused-login delays, cycle slots);
- :mod:`~lvgateway.agents.reconcile`: what a status read from LiveVox says
  about drift;
- :mod:`~lvgateway.agents.stranded`: closing a call LiveVox holds on an
  agent that the gateway does not know;
- :mod:`~lvgateway.agents.schedule`: the open hours as real-time intervals;
- :mod:`~lvgateway.agents.metrics`: the Prometheus metrics;
- :mod:`~lvgateway.agents.testing`: :class:`FakeAgentPool`, a verified fake
  for other parts' tests (not imported here).
"""
