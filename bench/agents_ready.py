"""How long the agent pool takes to bring N agents READY against the LiveVox simulator, and what it costs.

    python bench/agents_ready.py [--agents 1000] [--concurrency 10] [--in-flight 20] [--timeout 300]

The simulator runs in its own process (``twistd lvsandbox``) on loopback, so
its CPU is not the gateway's. In this process the real
:class:`~lvgateway.livevox.client.LiveVoxClient` and
:class:`~lvgateway.agents.pool.AgentPool` run on the real reactor with the
gateway's default pacing. Two runs:

1. timed: from ``startService`` until every agent is READY (wall time, and
   each agent's own time to READY), the most requests in flight and waiting
   for a slot, and the growth of the process's RSS;
2. memory: every agent is logged out, then a fresh pool brings them in again
   with ``tracemalloc`` on, which gives the Python heap the pool holds per
   READY agent (sessions, timers, state).

Bounded: each run gives up after ``--timeout`` seconds. Writes
``bench/results/agents_ready.json`` and prints one line of text.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet import defer, task  # noqa: E402

from bench._support import PASSWORD, SERVICE_ID, TOKEN, percentile, report, simulator_process  # noqa: E402
from lvgateway.agents.pool import AgentPool  # noqa: E402
from lvgateway.config.model import AgentConfig, AgentTimings, LiveVoxConfig, OpenHours  # noqa: E402
from lvgateway.config.secret import Secret  # noqa: E402
from lvgateway.livevox import LiveVoxClient, LiveVoxMetrics, http_client_for  # noqa: E402
from lvgateway.metrics import new_registry  # noqa: E402

ALWAYS_OPEN = OpenHours("UTC", True, ((),) * 7, frozenset(), 0.0)


class PeakGauge:
    """Wraps a gauge the transport moves, keeping its highest value."""

    def __init__(self, gauge: Any) -> None:
        self._gauge = gauge
        self.value = 0.0
        self.peak = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Count up."""
        self.value += amount
        self.peak = max(self.peak, self.value)
        self._gauge.inc(amount)

    def dec(self, amount: float = 1.0) -> None:
        """Count down."""
        self.value -= amount
        self._gauge.dec(amount)


def rss_bytes() -> int:
    """The process's resident set size now (Linux), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def bring_in(reactor: Any, pool: AgentPool, agents: int, timeout: float) -> list[float]:
    """Start the pool; return each agent's seconds to READY once all are READY."""
    began = time.perf_counter()
    ready_after: dict[str, float] = {}
    all_ready: defer.Deferred[None] = defer.Deferred()

    def heard(user: str, old: str, new: str) -> None:
        if new == "ready" and user not in ready_after:
            ready_after[user] = time.perf_counter() - began
            if len(ready_after) == agents and not all_ready.called:
                all_ready.callback(None)

    pool.add_listener(heard)
    pool.startService()
    all_ready.addTimeout(timeout, reactor)
    await all_ready
    return list(ready_after.values())


async def run(reactor: Any, base_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Both runs; return the figures."""
    config = LiveVoxConfig(
        base_url=base_url,
        version=None,
        client_name="bench",
        token=Secret(TOKEN, "bench"),
        request_timeout=10.0,
        max_in_flight=args.in_flight,
        max_retries=3,
        retry_base_delay=0.5,
        retry_max_delay=10.0,
        ca_bundle=None,
        password_expiry_warning_days=0,
        contact_user=None,
        contact_create_method="POST",
    )
    registry = new_registry(version="bench", process_metrics=False)
    metrics = LiveVoxMetrics(registry)
    in_flight = PeakGauge(metrics.in_flight)
    waiting = PeakGauge(metrics.waiting)
    metrics.in_flight = in_flight  # type: ignore[assignment]
    metrics.waiting = waiting  # type: ignore[assignment]
    client = LiveVoxClient(config, reactor, http_client_for(reactor, config), metrics)
    timings = AgentTimings(
        login_concurrency=args.concurrency,
        cycle_interval=3600.0,
        reconcile_interval=300.0,
        backoff_base=1.0,
        backoff_max=300.0,
        not_ready_reason=None,
    )
    configs = [
        AgentConfig(f"AIVA{n}", Secret(PASSWORD, "bench"), f"+1899{n:07d}", SERVICE_ID, f"[{n}]")
        for n in range(1, args.agents + 1)
    ]

    def new_pool() -> AgentPool:
        return AgentPool(
            configs, client, reactor, timings, ALWAYS_OPEN, registry=new_registry(process_metrics=False)
        )

    # 1. timed
    gc.collect()
    rss_before = rss_bytes()
    pool = new_pool()
    began = time.perf_counter()
    per_agent = await bring_in(reactor, pool, args.agents, args.timeout)
    wall = time.perf_counter() - began
    peak_in_flight, peak_waiting = in_flight.peak, waiting.peak  # the log-out below sends all at once
    gc.collect()
    rss_after = rss_bytes()
    requests = sum(
        registry.get_sample_value("lvgateway_livevox_requests_total", {"call": call, "outcome": "success"})
        or 0.0
        for call in ("login", "service_join", "ready")
    )
    out = pool.log_out_all()
    out.addTimeout(args.timeout, reactor)
    await out
    await pool.stopService()

    # 2. memory
    gc.collect()
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    pool = new_pool()
    await bring_in(reactor, pool, args.agents, args.timeout)
    gc.collect()
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = pool.log_out_all()
    out.addTimeout(args.timeout, reactor)
    await out
    await pool.stopService()

    return {
        "agents": args.agents,
        "login_concurrency": args.concurrency,
        "max_in_flight": args.in_flight,
        "wall_seconds_to_all_ready": round(wall, 3),
        "agents_ready_per_second": round(args.agents / wall, 1),
        "agent_p50_seconds_to_ready": round(percentile(per_agent, 50), 4),
        "agent_p99_seconds_to_ready": round(percentile(per_agent, 99), 4),
        "bring_in_requests": int(requests),
        "peak_requests_in_flight": int(peak_in_flight),
        "peak_requests_waiting_for_a_slot": int(peak_waiting),
        "rss_growth_bytes": rss_after - rss_before,
        "rss_growth_bytes_per_agent": round((rss_after - rss_before) / args.agents),
        "python_heap_bytes_per_agent": round((held - base) / args.agents),
    }


def main() -> None:
    """Parse arguments, start the simulator, run, report."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=10, help="agent_timings.login_concurrency")
    parser.add_argument("--in-flight", type=int, default=20, help="livevox.max_in_flight")
    parser.add_argument("--timeout", type=float, default=300.0, help="the bound on each run, seconds")
    args = parser.parse_args()
    with simulator_process(args.agents) as base_url:
        results: dict[str, Any] = {}

        def go(reactor: Any) -> defer.Deferred[None]:
            d = defer.Deferred.fromCoroutine(run(reactor, base_url, args))
            return d.addCallback(results.update)

        try:
            task.react(go)
        except SystemExit as e:
            if e.code:
                raise
    report(
        "agents_ready",
        results,
        f"{results['agents']} agents READY in {results['wall_seconds_to_all_ready']}s "
        f"({results['agents_ready_per_second']}/s, login_concurrency {results['login_concurrency']}, "
        f"peak {results['peak_requests_in_flight']} requests in flight of {results['max_in_flight']}); "
        f"memory per agent: {results['python_heap_bytes_per_agent']} B Python heap, "
        f"{results['rss_growth_bytes_per_agent']} B RSS",
    )


if __name__ == "__main__":
    main()
