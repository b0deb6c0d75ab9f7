"""The agent pool's Prometheus metrics, every series registered at start.

=====================================  =======  ====================  ==========================================
name                                   type     labels                meaning
=====================================  =======  ====================  ==========================================
``lvgateway_agents``                   gauge    ``state``             agents in each state
``lvgateway_agent_logins_total``       counter  ``outcome``           logins: ``success``, ``denied``, ``failed``
``lvgateway_agent_relogins_total``     counter  ``cause``             logins after a lost session: ``expired``
                                                                      (a 401), ``logged_out`` (seen by reconciliation)
``lvgateway_agent_failures_total``     counter  ``operation``         LiveVox calls of the pool that failed
``lvgateway_agent_drifts_total``       counter  ``kind``              drift found by reconciliation, repaired or
                                                                      (``unknown_call``) repaired as below or reported
``lvgateway_agent_repairs_total``      counter  ``outcome``           stranded agents (a call LiveVox holds that the
                                                                      gateway does not know): ``term_code`` (closed
                                                                      by its term code), ``call_end`` (ended, then
                                                                      its term code, after LiveVox refused the term
                                                                      code while INCALL), ``failed`` (an attempt
                                                                      failed), ``invite_seen`` (left to a person:
                                                                      the gateway saw its INVITE)
``lvgateway_agent_cycles_total``       counter  ``outcome``           hourly cycles: ``done``, ``deferred`` (on a
                                                                      call at its slot), ``skipped`` (its state
                                                                      changed recently), ``failed``
``lvgateway_agent_pool_paused``        gauge                          1 while any pause cause is in force
``lvgateway_agent_pool_open``          gauge                          1 while open hours want agents in
=====================================  =======  ====================  ==========================================
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from lvgateway.agents.reconcile import DRIFT_KINDS
from lvgateway.agents.state import AgentState
from lvgateway.agents.stranded import REPAIR_OUTCOMES
from lvgateway.metrics import counter, gauge

__all__ = ["OPERATIONS", "AgentMetrics"]

#: The ``operation`` label values of ``lvgateway_agent_failures_total``.
OPERATIONS = ("login", "join", "ready", "not_ready", "logout", "status")


class AgentMetrics:
    """The pool's metrics on one registry.

    :param registry: the gateway's registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.agents = gauge(
            registry,
            "lvgateway_agents",
            "Virtual agents in each state of the gateway's state machine.",
            labels={"state": [s.value for s in AgentState]},
        )
        self.logins = counter(
            registry,
            "lvgateway_agent_logins_total",
            "Virtual agent logins to LiveVox, by outcome.",
            labels={"outcome": ["success", "denied", "failed"]},
        )
        self.relogins = counter(
            registry,
            "lvgateway_agent_relogins_total",
            "Virtual agents logged in again after losing their session, by cause.",
            labels={"cause": ["expired", "logged_out"]},
        )
        self.failures = counter(
            registry,
            "lvgateway_agent_failures_total",
            "LiveVox calls of the agent pool that failed, by operation.",
            labels={"operation": list(OPERATIONS)},
        )
        self.drifts = counter(
            registry,
            "lvgateway_agent_drifts_total",
            "Drift between the gateway and LiveVox found by reconciliation, by kind.",
            labels={"kind": list(DRIFT_KINDS)},
        )
        self.repairs = counter(
            registry,
            "lvgateway_agent_repairs_total",
            "Calls LiveVox held on an agent that the gateway did not know, closed or left, by outcome.",
            labels={"outcome": list(REPAIR_OUTCOMES)},
        )
        self.cycles = counter(
            registry,
            "lvgateway_agent_cycles_total",
            "Hourly NOT READY and READY cycles, by outcome.",
            labels={"outcome": ["done", "deferred", "skipped", "failed"]},
        )
        self.paused = gauge(
            registry,
            "lvgateway_agent_pool_paused",
            "1 while the agent pool is paused for any cause, else 0.",
        )
        self.open = gauge(
            registry,
            "lvgateway_agent_pool_open",
            "1 while the call centre's open hours (lead time included) want agents in, else 0.",
        )

    def moved(self, old: AgentState | None, new: AgentState) -> None:
        """Count one agent leaving ``old`` (``None`` when it is new) for ``new``."""
        if old is not None:
            self.agents.labels(state=old.value).dec()
        self.agents.labels(state=new.value).inc()
