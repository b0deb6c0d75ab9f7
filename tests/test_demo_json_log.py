"""The demo with ``[logging] json_file``: every line is JSON, and every line about a call names it.

Runs the README's demo (see tests/test_demo.py) with the JSON log on, lets it
wrap up a few calls, stops it with SIGTERM, then reads the file back.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_demo import run_demo, wait_for

pytestmark = pytest.mark.timeout(180)

#: Namespaces whose events are about one call.
PER_CALL = re.compile(r"^lvgateway\.(sip\.call|calls\.[a-z_]+|media\.[a-z_]+)$")
#: A gateway call id (uuid4 hex) in a rendered message.
CALL_ID = re.compile(r"\b[0-9a-f]{32}\b")
#: How the calls part opens its lines about one call.
CALL_LINE = re.compile(r"^(?:call|media) ([0-9a-f]{32})\b")
#: A line of a child process's output, relayed by the supervisor as ``[name] line``.
CHILD_LINE = re.compile(r"^\[[A-Za-z0-9_.-]+\] ")


def with_json_file(path: Path) -> Any:
    """An edit of demo.toml adding ``json_file`` to its [logging] table."""

    def edit(text: str) -> str:
        assert "\n[logging]\n" in text
        return text.replace("\n[logging]\n", f'\n[logging]\njson_file = "{path}"\n', 1)

    return edit


@pytest.fixture
def demo_json(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The demo gateway running with its JSON log at tmp_path/gateway.jsonl."""
    yield from run_demo(tmp_path, with_json_file(tmp_path / "gateway.jsonl"))


def read_lines(path: Path) -> list[str]:
    """The file's lines, or none while it does not exist."""
    return path.read_text().splitlines() if path.exists() else []


def test_demo_json_log_lines_parse_and_name_their_call(
    demo_json: tuple[subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    """Every JSON line parses with the four base keys, and every line about a call carries its call_id."""
    process, _ = demo_json
    path = tmp_path / "gateway.jsonl"
    wait_for(
        "two term codes saved in the JSON log",
        90,
        lambda: sum(" saved for " in line for line in read_lines(path)) >= 2,
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == -signal.SIGTERM

    records = [json.loads(line) for line in read_lines(path)]
    assert records
    for record in records:
        assert {"time", "level", "namespace", "message"} <= record.keys(), record

    ids = {
        match.group(1)
        for record in records
        if PER_CALL.match(record["namespace"]) and (match := CALL_LINE.match(record["message"]))
    }
    assert len(ids) >= 2, ids
    # The sandbox child's own output, which the gateway relays line by line, is another
    # process's log (its echo bot names the gateway call): only the gateway's lines count.
    own = [
        r
        for r in records
        if not (r["namespace"] == "lvgateway.supervisor" and CHILD_LINE.match(r["message"]))
    ]
    wrong = [
        (call_id, record["namespace"], record["message"], record.get("call_id"))
        for record in own
        for call_id in ids
        if call_id in record["message"] and record.get("call_id") != call_id
    ]
    assert not wrong, wrong
    unnamed = [
        record
        for record in own
        if PER_CALL.match(record["namespace"])
        and (CALL_ID.search(record["message"]) or "sip_call_id" in record)
        and "call_id" not in record
    ]
    assert not unnamed, unnamed
