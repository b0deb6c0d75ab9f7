"""The SIP part of the gateway alone in a process of its own, for the flood and fuzz tests.

Run by ``tests/sip_process.py`` as ``python -m tests.sip_process_gateway --state-dir DIR
[--vendor-port N]``, from the repository root. It starts the real SIP part (the one
``tests/sip_gateway.py`` starts in the test process: real Sippy, guard and routing,
fake pool and call store) on 127.0.0.1, logs to ``DIR/gateway.log``, and takes one
command a line on standard input, answering each with one line on standard output
that starts with ``@@``:

- ``status``: ``@@ STATUS {json}``: the transaction gauge as the metrics registry
  reads it, the guard's refusals by reason, the calls up, the calls ended;
- ``busy`` / ``free``: put every agent on a call (valid INVITEs then get 486,
  and no vendor leg starts) or take them all off;
- end of input: stop the SIP part and exit 0.

The first line is ``@@ READY <sip port>``. Anything else on standard output or
standard error was written by the gateway or Sippy, and counts as a log line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import reactor, stdio
from twisted.internet.defer import Deferred
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineReceiver

from .sip_gateway import SipGateway, start_gateway


def say(line: str) -> None:
    """Write one answer line for the test."""
    sys.stdout.write(f"@@ {line}\n")
    sys.stdout.flush()


def status(gw: SipGateway) -> dict[str, Any]:
    """What the test reads: the gauge, the refusals, the calls."""
    metrics = gw.sip.metrics
    (family,) = metrics.transactions.collect()
    return {
        "transactions": family.samples[0].value,
        "refused": dict(gw.sip.stack.guard.refused),
        "active_calls": len(gw.sip.router.live),
        "ended": sum(1 for event, _, _ in gw.calls.events if event == "ended"),
    }


class Commands(LineReceiver):
    """The test's commands, one a line."""

    delimiter = b"\n"

    def __init__(self, gw: SipGateway, done: Deferred[None]) -> None:
        self.gw = gw
        self.done = done

    def lineReceived(self, line: bytes) -> None:
        """Run one command."""
        command = line.decode().strip()
        agents = [self.gw.pool.agent(f"AIVA{n}") for n in range(1, 5)]
        if command == "status":
            say("STATUS " + json.dumps(status(self.gw)))
        elif command == "busy":
            for agent in agents:
                agent.call_id = "busy-elsewhere"
            say("BUSY")
        elif command == "free":
            for agent in agents:
                agent.call_id, agent.in_wrapup, agent.reservation = None, False, None
            say("FREE")
        else:
            say(f"UNKNOWN {command}")

    def connectionLost(self, reason: Any = None) -> None:
        """Input ended: the test is done, or gone."""
        if not self.done.called:
            self.done.callback(None)


def main() -> None:
    """Start the SIP part, serve commands until standard input ends, stop."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--vendor-port", type=int, default=9)
    args = parser.parse_args()
    state = Path(args.state_dir)
    log_file = (state / "gateway.log").open("a")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log_file)], redirectStandardIO=False)
    gw = start_gateway(Path(tempfile.mkdtemp(dir=state)), [args.vendor_port])
    done: Deferred[None] = Deferred()
    stdio.StandardIO(Commands(gw, done))
    say(f"READY {gw.port}")

    def stop(_: Any) -> Any:
        return Deferred.fromCoroutine(_stop(gw))

    done.addCallback(stop).addBoth(lambda _: reactor.stop())  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


async def _stop(gw: SipGateway) -> None:
    await gw.stop()


if __name__ == "__main__":
    main()
