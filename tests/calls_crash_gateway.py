"""The gateway side of the crash test: the call store and its wrap-up, against the simulator over HTTP.

Run by ``tests/test_calls_crash.py`` as a real process, twice on one state
directory::

    python tests/calls_crash_gateway.py --base-url URL --state-dir DIR --phase crash --agents 6 --ending 3
    python tests/calls_crash_gateway.py --base-url URL --state-dir DIR --phase recover --agents 6

``crash``: bring the agents in (login, join, READY), have the simulator put a
call through to each (``POST /_sandbox/calls``, the stand-in SIP source
accepts it as an INVITE without a transaction id), then hang up the last
``--ending`` of them so their wrap-ups run; then wait to be killed. With
``--contact``, each ending call is first given a disposition (as the vendor
API would) that names the simulator's contact and changes it, so its
wrap-up has a contact step between the AIA and the term code.

``recover``: start on the same state directory, recover, wait until every
wrap-up is done, stop cleanly, exit 0.

Standard output carries one line per event for the test to wait on:
``RECOVERED``, ``ACCEPTED <call_id> <LiveVox session id>``, ``PLACED``, ``ENDED``,
``STEP <call_id> <step> <outcome>``, ``IDLE``. Logs go to
``<state-dir>/gateway-<phase>.log``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.logger import globalLogBeginner, textFileLogObserver

from lvgateway.calls.blocking import ThreadPoolRunner
from lvgateway.calls.records import Disposition
from lvgateway.calls.store import CallStore
from lvgateway.calls.testing import SandboxAdmin, agent_configs, simulator_rig
from lvgateway.livevox.testing import livevox_config
from lvgateway.livevox.transport import http_client_for
from lvgateway.sandbox.testing import (
    AGENT_PASSWORD,
    AIA_HEADER,
    AIA_PATH,
    AIA_TOKEN,
    CLIENT_NAME,
    CONTACT_ACCOUNT,
    SERVICE_ID,
    TOKEN,
)

#: The crash phase exits by itself after this long if nobody kills it.
SAFETY_EXIT = 120.0


def contact_disposition(n: int) -> Disposition:
    """The disposition of the ``n``-th ending call: the simulator's contact, its first name changed."""
    return Disposition(account=CONTACT_ACCOUNT, contact={"person": {"firstName": f"Caller{n}"}})


def say(line: str) -> None:
    """Write one event line for the test."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(reactor: Any, args: argparse.Namespace) -> None:
    """Run one phase."""
    log_file = open(os.path.join(args.state_dir, f"gateway-{args.phase}.log"), "a")  # noqa: SIM115
    globalLogBeginner.beginLoggingTo([textFileLogObserver(log_file)], redirectStandardIO=False)
    http = http_client_for(reactor, livevox_config(base_url=args.base_url))
    admin = SandboxAdmin(http, args.base_url)
    agents = agent_configs(args.agents, AGENT_PASSWORD, SERVICE_ID)
    rig = simulator_rig(
        base_url=args.base_url,
        clock=reactor,
        http=http,
        store=CallStore(args.state_dir, ThreadPoolRunner(reactor)),
        agents=agents,
        client_name=CLIENT_NAME,
        token=TOKEN,
        aia_path=AIA_PATH,
        aia_token=AIA_TOKEN,
        aia_header=AIA_HEADER,
        dial=admin.dial,
        leg_ended=admin.leg_ended,
        request_timeout=60.0,
    )
    calls, pool, source = rig.calls, rig.pool, rig.source
    calls.add_listener(lambda call_id, step, outcome: say(f"STEP {call_id} {step} {outcome}"))
    calls.startService()
    await calls.when_recovered()
    say("RECOVERED")
    if args.phase == "crash":
        for agent in agents:
            await pool.bring_in(agent.user_name)
        records = []
        for agent in agents:
            record = await source.place(agent.user_name)
            records.append(record)
            say(f"ACCEPTED {record.call_id} {record.call_session_id}")
        say("PLACED")
        for n, record in enumerate(records[len(records) - args.ending :], 1):
            if args.contact:
                await calls.set_disposition(record.call_id, contact_disposition(n))
            await source.caller_hangs_up(record.call_id)
        say("ENDED")
        await task.deferLater(reactor, SAFETY_EXIT, lambda: None)
        raise SystemExit("crash phase was not killed")
    await calls.flush()
    say("IDLE")
    await calls.stopService()


def run() -> None:
    """Parse the command line and run the phase on the reactor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--phase", choices=("crash", "recover"), required=True)
    parser.add_argument("--agents", type=int, default=6)
    parser.add_argument("--ending", type=int, default=3)
    parser.add_argument("--contact", action="store_true", help="ending calls change a contact")
    args = parser.parse_args()
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor, args)))


if __name__ == "__main__":
    run()
