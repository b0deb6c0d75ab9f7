"""Daily rotation of the JSON log keeps only ``keep`` rotated files, deleting the oldest."""

from __future__ import annotations

import os
from pathlib import Path

from lvgateway.logs import KeepingDailyLogFile, open_log_file


def rotate_on(log: KeepingDailyLogFile, day: tuple[int, int, int]) -> None:
    """Write a line dated ``day``, then rotate as the first write of the next day would."""
    log.write(f"{day}\n")
    log.lastDate = day
    log.rotate()


def test_daily_rotation_deletes_rotated_files_beyond_keep(tmp_path: Path) -> None:
    """Five rotations with keep=3 leave the three newest days (compared as dates) and the live file."""
    log = open_log_file(str(tmp_path / "gw.jsonl"), "daily", 4096, 3)
    assert isinstance(log, KeepingDailyLogFile)
    try:
        for day in [(2026, 9, 30), (2026, 10, 1), (2026, 10, 2), (2026, 10, 9), (2026, 10, 10)]:
            rotate_on(log, day)
    finally:
        log.close()  # type: ignore[no-untyped-call]
    assert sorted(os.listdir(tmp_path)) == [
        "gw.jsonl",
        "gw.jsonl.2026_10_10",
        "gw.jsonl.2026_10_2",
        "gw.jsonl.2026_10_9",
    ]
    assert (tmp_path / "gw.jsonl.2026_10_9").read_text() == "(2026, 10, 9)\n"


def test_daily_rotation_leaves_other_files_alone(tmp_path: Path) -> None:
    """Files that are not this log's rotated copies survive pruning, and pre-existing old copies count."""
    (tmp_path / "gw.jsonl.2025_1_1").write_text("old\n")
    (tmp_path / "gw.jsonl.notes").write_text("keep me\n")
    (tmp_path / "other.jsonl.2020_1_1").write_text("not ours\n")
    log = KeepingDailyLogFile("gw.jsonl", str(tmp_path), keep=1)
    try:
        rotate_on(log, (2026, 1, 1))
    finally:
        log.close()  # type: ignore[no-untyped-call]
    assert sorted(os.listdir(tmp_path)) == [
        "gw.jsonl",
        "gw.jsonl.2026_1_1",
        "gw.jsonl.notes",
        "other.jsonl.2020_1_1",
    ]
