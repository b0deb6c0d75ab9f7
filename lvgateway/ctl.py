"""``lvgatewayctl``: the operator's command line for a running gateway's control listener.

Usage::

    lvgatewayctl [--url URL] [--token-file FILE | --token-env NAME] [--json] COMMAND ...

    agents                      every agent: state, for how long, reason, call
    calls [--state S[,S...]]    call records (live, wrap-up and dead by default)
    status                      readiness, agent counts, live calls, wrap-ups, dead letters
    ready|not-ready|log-out AGENT
    redrive|dismiss CALL
    hep [on|off]                HEP capture of SIP: its status, or switch it

It prints readable tables, or the control API's JSON with ``--json``. The token
comes from a file or an environment variable (``LVGW_CONTROL_TOKEN`` by
default), never from the command line, where ``ps`` would show it.

Exit status: 0 done; 1 the gateway refused or failed (its error is printed);
2 a usage error; 3 the gateway could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:9780"
DEFAULT_TOKEN_ENV = "LVGW_CONTROL_TOKEN"
DEFAULT_STATES = "accepted,connected,wrapup,dead"
AGENT_ACTIONS = ("ready", "not-ready", "log-out")
CALL_ACTIONS = ("redrive", "dismiss")


class CtlError(Exception):
    """A failure to report to the operator, with the exit status it gives."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lvgatewayctl",
        description="Look at and act on a running lvgateway through its control listener.",
    )
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"control listener (default {DEFAULT_URL})"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--token-file", help="read the control token from this file")
    source.add_argument(
        "--token-env",
        default=DEFAULT_TOKEN_ENV,
        help=f"read the control token from this variable (default {DEFAULT_TOKEN_ENV})",
    )
    parser.add_argument("--json", action="store_true", help="print the API's JSON")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per request")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("agents", help="list the agents")
    calls = commands.add_parser("calls", help="list call records")
    calls.add_argument("--state", default=DEFAULT_STATES, help=f"default {DEFAULT_STATES}")
    calls.add_argument("--limit", type=int, default=100)
    commands.add_parser("status", help="readiness and counts")
    for action in AGENT_ACTIONS:
        commands.add_parser(action, help=f"{action} an agent").add_argument("agent")
    for action in CALL_ACTIONS:
        commands.add_parser(action, help=f"{action} a dead letter").add_argument("call")
    commands.add_parser("hep", help="HEP capture of SIP: status, or switch on/off").add_argument(
        "switch", nargs="?", choices=("on", "off")
    )
    return parser


def _token(args: argparse.Namespace) -> str:
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as e:
            raise CtlError(f"cannot read the token file {args.token_file}: {e.strerror}", 2) from e
        source = f"file {args.token_file}"
    else:
        token = os.environ.get(args.token_env, "").strip()
        source = f"variable {args.token_env}"
    if not token:
        raise CtlError(f"no control token: {source} is empty or unset", 2)
    return token


def _request(args: argparse.Namespace, method: str, path: str, token: str) -> tuple[int, Any]:
    """Make one request; return its status and decoded JSON body."""
    request = urllib.request.Request(
        args.url.rstrip("/") + path,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        data=b"" if method == "POST" else None,
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise CtlError(f"cannot reach the gateway at {args.url}: {reason}", 3) from e
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = {"error": raw.decode("utf-8", "replace")[:200]}
    if path != "/readyz" and status >= 400:
        error = body.get("error") if isinstance(body, dict) else body
        raise CtlError(f"{method} {path}: {status} {error}", 1)
    return status, body


def table(rows: Sequence[Sequence[object]], headings: Sequence[str]) -> str:
    """Return rows as a plain-text table with a heading line; ``None`` shows as empty."""
    cells = [list(headings)] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headings))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _ago(now: float, then: float | None) -> str:
    if not then:
        return ""
    seconds = max(0, int(now - then))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _agents_table(agents: Sequence[dict[str, Any]], now: float) -> str:
    rows = [
        (
            a["user_name"],
            a["phone_number"],
            a["state"],
            _ago(now, a.get("since")),
            a.get("reason"),
            a.get("call_id"),
        )
        for a in agents
    ]
    return table(rows, ("AGENT", "NUMBER", "STATE", "FOR", "REASON", "CALL"))


def _calls_table(calls: Sequence[dict[str, Any]], now: float) -> str:
    rows = [
        (
            c["call_id"],
            c["state"],
            c.get("agent"),
            _ago(now, c.get("accepted_at")),
            c.get("end_reason"),
            c.get("last_error"),
        )
        for c in calls
    ]
    return table(rows, ("CALL", "STATE", "AGENT", "AGE", "END", "LAST ERROR"))


def run(args: argparse.Namespace, out: TextIO) -> int:
    """Run one parsed command, writing to ``out``; return the exit status."""
    token = _token(args)
    now = time.time()
    command = args.command
    if command == "agents":
        _, body = _request(args, "GET", "/agents", token)
        out.write(json.dumps(body, indent=2) if args.json else _agents_table(body["agents"], now))
    elif command == "calls":
        query = urllib.parse.urlencode({"state": args.state, "limit": args.limit})
        _, body = _request(args, "GET", f"/calls?{query}", token)
        out.write(json.dumps(body, indent=2) if args.json else _calls_table(body["calls"], now))
    elif command == "status":
        ready_code, ready = _request(args, "GET", "/readyz", token)
        _, agents = _request(args, "GET", "/agents", token)
        query = urllib.parse.urlencode({"state": DEFAULT_STATES, "limit": 1000})
        _, calls = _request(args, "GET", f"/calls?{query}", token)
        by_state: dict[str, int] = {}
        for call in calls["calls"]:
            by_state[call["state"]] = by_state.get(call["state"], 0) + 1
        status = {
            "ready": ready_code == 200,
            "reasons": (ready or {}).get("reasons", {}),
            "agents": agents["counts"],
            "live_calls": by_state.get("accepted", 0) + by_state.get("connected", 0),
            "wrapups_pending": by_state.get("wrapup", 0),
            "dead_letters": by_state.get("dead", 0),
        }
        if args.json:
            out.write(json.dumps(status, indent=2))
        else:
            rows: list[tuple[str, object]] = [
                ("ready", "yes" if status["ready"] else "NO"),
                *((f"  not ready: {k}", v) for k, v in status["reasons"].items()),
                (
                    "agents",
                    ", ".join(f"{s} {n}" for s, n in agents["counts"].items() if n) or "none",
                ),
                ("live calls", status["live_calls"]),
                ("wrap-ups pending", status["wrapups_pending"]),
                ("dead letters", status["dead_letters"]),
            ]
            out.write(table(rows, ("WHAT", "VALUE")))
    elif command in AGENT_ACTIONS:
        agent = urllib.parse.quote(args.agent, safe="")
        code, body = _request(args, "POST", f"/agents/{agent}/{command}", token)
        if args.json:
            out.write(json.dumps(body, indent=2))
        else:
            settled = "done" if code == 200 else "accepted, still settling"
            out.write(f"{command} {args.agent}: {settled}\n")
            out.write(_agents_table([body["agent"]], now))
    elif command == "hep":
        if args.switch:
            _, body = _request(args, "POST", f"/hep/{args.switch}", token)
        else:
            _, body = _request(args, "GET", "/hep", token)
        if args.json:
            out.write(json.dumps(body, indent=2))
        else:
            out.write(
                table(
                    [
                        ("capture", "on" if body["enabled"] else "off"),
                        ("collector", body["address"]),
                        ("capture id", body["capture_id"]),
                        ("sent", body["sent"]),
                        ("lost", body["errors"]),
                    ],
                    ("WHAT", "VALUE"),
                )
            )
    else:
        call = urllib.parse.quote(args.call, safe="")
        _, body = _request(args, "POST", f"/calls/{call}/{command}", token)
        if args.json:
            out.write(json.dumps(body, indent=2))
        else:
            out.write(f"{command} {args.call}: done\n")
            out.write(_calls_table([body], now))
    out.write("\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point."""
    args = _parser().parse_args(argv)
    try:
        return run(args, sys.stdout)
    except CtlError as e:
        sys.stderr.write(f"lvgatewayctl: {e}\n")
        return e.status


if __name__ == "__main__":
    raise SystemExit(main())
