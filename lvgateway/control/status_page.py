"""The status page at ``/`` on the internal control listener: one server-rendered HTML page.

It shows the agents and their states, the live calls, the wrap-ups pending,
the dead letters, and every readiness check (LiveVox, the vendor, media, SIP,
the call store). Plain HTML and CSS, no script: it reloads itself every
``refresh`` seconds with ``<meta http-equiv="refresh">``. Callers' numbers are
masked to their last four digits unless ``[control] show_numbers = true``.

It sits behind the control token (:class:`lvgateway.control.auth.ControlGuard`),
which a browser can give as the password of its Basic authentication prompt.
Elements carry ids and ``data-`` attributes (``#agents tr[data-agent]``,
``#calls tr[data-call]``) so that tests and scripts can read it.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from html import escape

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IRequest

from lvgateway.agents.state import AgentView
from lvgateway.calls.records import CallRecord, CallState
from lvgateway.control.web import BaseResource, reply
from lvgateway.health import Readiness

__all__ = ["StatusPage", "StatusSources", "mask_number"]


def mask_number(number: str | None, show: bool = False) -> str:
    """Return a caller's number with all but its last four digits hidden.

    :param number: the number, or ``None`` when unknown.
    :param show: return it whole instead.
    """
    if not number:
        return "unknown"
    if show:
        return number
    if len(number) <= 4:
        return "•" * len(number)
    return "•" * (len(number) - 4) + number[-4:]


@attrs.frozen
class StatusSources:
    """Where the status page reads what it shows, each read when the page is rendered.

    :param name: the gateway's name, for the title.
    :param agents: every agent's snapshot, in config order.
    :param records: the unsettled call records in one state, oldest first.
    :param readiness: the readiness checks.
    :param clock: the clock the ages are counted on.
    """

    name: str
    agents: Callable[[], Sequence[AgentView]]
    records: Callable[[CallState], Sequence[CallRecord]]
    readiness: Readiness
    clock: IReactorTime


_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
th{background:#f0f0f0}.ok{color:#176117}.bad{color:#a31515;font-weight:bold}
.empty{color:#777;font-style:italic}
"""


def _ago(now: float, then: float | None) -> str:
    if then is None:
        return ""
    seconds = max(0, int(now - then))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"


def _table(
    table_id: str,
    headings: Sequence[str],
    rows: Iterable[tuple[str, str, Sequence[str]]],
    empty: str,
) -> str:
    """Return a table whose rows are ``(data attribute, its value, cells)``; cells are raw text."""
    body = [
        f'<tr {attr}="{escape(key)}">' + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>"
        for attr, key, cells in rows
    ]
    if not body:
        return f'<p class="empty" id="{table_id}-empty">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(body)}</table>'


class StatusPage(BaseResource):
    """``GET /``: the gateway at a glance, as HTML that reloads itself.

    :param sources: what the page shows.
    :param show_numbers: show callers' numbers in full.
    :param refresh: seconds between reloads.
    """

    isLeaf = True

    def __init__(self, sources: StatusSources, show_numbers: bool = False, refresh: int = 5):
        super().__init__()
        self._sources = sources
        self._show = show_numbers
        self._refresh = refresh

    def render_GET(self, request: IRequest) -> bytes:
        """Render the page."""
        return reply(request, self.render_html().encode("utf-8"), b"text/html; charset=utf-8")

    def render_html(self) -> str:
        """Return the page as text."""
        s = self._sources
        now = s.clock.seconds()
        agents = list(s.agents())
        counts: dict[str, int] = {}
        for view in agents:
            counts[view.state.value] = counts.get(view.state.value, 0) + 1
        summary = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
        agent_rows = (
            (
                "data-agent",
                v.user_name,
                (
                    v.user_name,
                    v.phone_number,
                    v.state.value,
                    _ago(now, v.since),
                    v.reason,
                    v.call_id or "",
                    v.last_error or "",
                ),
            )
            for v in agents
        )
        live = [*s.records(CallState.ACCEPTED), *s.records(CallState.CONNECTED)]
        call_rows = (
            (
                "data-call",
                r.call_id,
                (
                    r.call_id,
                    r.agent,
                    r.state.value,
                    mask_number(r.ani, self._show),
                    r.dnis,
                    _ago(now, r.accepted_at),
                ),
            )
            for r in sorted(live, key=lambda r: r.accepted_at)
        )
        wrapups = s.records(CallState.WRAPUP)
        wrapup_rows = (
            (
                "data-call",
                r.call_id,
                (r.call_id, r.agent, _ago(now, r.ended_at), str(r.attempts), r.last_error or ""),
            )
            for r in wrapups
        )
        dead = s.records(CallState.DEAD)
        dead_rows = (
            (
                "data-call",
                r.call_id,
                (r.call_id, r.agent, _ago(now, r.finished_at), r.last_error or ""),
            )
            for r in dead
        )
        failures = s.readiness.failures()
        health_rows = (
            (
                "data-check",
                name,
                (name, "not ready" if name in failures else "ok", failures.get(name, "")),
            )
            for name in s.readiness.names()
        )
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        overall = (
            '<span class="ok" id="ready">ready</span>'
            if not failures
            else f'<span class="bad" id="ready">not ready: {escape(", ".join(failures))}</span>'
        )
        parts = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="refresh" content="{self._refresh}">',
            f"<title>lvgateway {escape(s.name)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>lvgateway {escape(s.name)}: {overall}</h1>",
            f"<p>At {stamp} UTC; this page reloads every {self._refresh}s.</p>",
            f'<h2>Agents (<span id="agent-count">{len(agents)}</span>: {escape(summary)})</h2>',
            _table(
                "agents",
                ("agent", "number", "state", "for", "reason", "call", "last error"),
                agent_rows,
                "no agents",
            ),
            f'<h2>Live calls (<span id="call-count">{len(live)}</span>)</h2>',
            _table(
                "calls",
                ("call", "agent", "state", "caller", "899 number", "for"),
                call_rows,
                "no live calls",
            ),
            f'<h2>Wrap-ups pending (<span id="wrapup-count">{len(wrapups)}</span>)</h2>',
            _table(
                "wrapups",
                ("call", "agent", "ended", "attempts", "last error"),
                wrapup_rows,
                "no wrap-ups pending",
            ),
            f'<h2>Dead letters (<span id="dead-count">{len(dead)}</span>)</h2>',
            _table(
                "dead",
                ("call", "agent", "dead for", "last error"),
                dead_rows,
                "no dead letters",
            ),
            "<h2>Health (LiveVox, vendor, media, SIP, call store)</h2>",
            _table("health", ("check", "status", "reason"), health_rows, "no checks"),
            "</body></html>",
        ]
        return "\n".join(parts)
