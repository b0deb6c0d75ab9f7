"""How fast the LiveVox client brings agents in: N login + join + ready sequences against the simulator.

    python bench/livevox_sequences.py [--agents 1000] [--in-flight 20]

The simulator runs in its own process (twistd lvsandbox) on loopback, so the
client's figures are not mixed with the simulator's CPU. Bounded: it gives up
after --timeout seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry  # noqa: E402
from twisted.internet import defer, task  # noqa: E402

from bench._support import PASSWORD, SERVICE_ID, TOKEN, percentile, report, simulator_process  # noqa: E402
from lvgateway.config.model import LiveVoxConfig  # noqa: E402
from lvgateway.config.secret import Secret  # noqa: E402
from lvgateway.livevox import LiveVoxClient, LiveVoxMetrics, http_client_for  # noqa: E402


async def run(reactor: object, base_url: str, agents: int, in_flight: int, timeout: float) -> dict[str, object]:
    """Bring every agent in; return the figures."""
    config = LiveVoxConfig(
        base_url=base_url,
        version=None,
        client_name="bench",
        token=Secret(TOKEN, "bench"),
        request_timeout=30.0,
        max_in_flight=in_flight,
        max_retries=3,
        retry_base_delay=0.5,
        retry_max_delay=5.0,
        ca_bundle=None,
        password_expiry_warning_days=0,
        contact_user=None,
        contact_create_method="POST",
    )
    http = http_client_for(reactor, config)
    client = LiveVoxClient(config, reactor, http, LiveVoxMetrics(CollectorRegistry()))
    password = Secret(PASSWORD, "bench")
    durations: list[float] = []

    async def bring_in(n: int) -> None:
        began = time.perf_counter()
        session = await client.login(f"AIVA{n}", password)
        await client.join_service(session, SERVICE_ID, f"+1899{n:07d}")
        await client.ready(session)
        durations.append(time.perf_counter() - began)

    began = time.perf_counter()
    work = defer.gatherResults(
        [defer.Deferred.fromCoroutine(bring_in(n)) for n in range(1, agents + 1)], consumeErrors=True
    )
    work.addTimeout(timeout, reactor)
    await work
    wall = time.perf_counter() - began
    return {
        "agents": agents,
        "max_in_flight": in_flight,
        "wall_seconds": round(wall, 3),
        "requests": 3 * agents,
        "requests_per_second": round(3 * agents / wall, 1),
        "sequence_p50_seconds": round(percentile(durations, 50), 4),
        "sequence_p99_seconds": round(percentile(durations, 99), 4),
    }


def main() -> None:
    """Parse arguments, start the simulator, run, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    with simulator_process(args.agents) as base_url:
        results: dict[str, object] = {}

        def go(reactor: object) -> defer.Deferred[None]:
            d = defer.Deferred.fromCoroutine(run(reactor, base_url, args.agents, args.in_flight, args.timeout))
            return d.addCallback(results.update)

        try:
            task.react(go)
        except SystemExit as e:
            if e.code:
                raise
    report(
        "livevox_sequences",
        results,
        f"{results['agents']} login+join+ready sequences in {results['wall_seconds']}s "
        f"({results['requests_per_second']} requests/s, at most {results['max_in_flight']} in flight; "
        f"sequence p50 {results['sequence_p50_seconds']}s, p99 {results['sequence_p99_seconds']}s)",
    )


if __name__ == "__main__":
    main()
