"""Every file the code, tests and docs cite is in the repository.

A docstring, comment or page that sends the reader to a document outside the
repository is a dead end for whoever checks out the code. This scans the
repository's text files for citations of ``.md`` files (by name or path) and
of repository paths (``lvgateway/…``, ``tests/…``, ``docs/…``, ``bench/…``),
and fails naming the file, line and citation of each one that does not exist.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: What is scanned: the package, the tests, the docs, the configs, the benchmarks, the README.
SCANNED = ("lvgateway", "tests", "docs", "etc", "bench", "twisted", "README.md")
#: A markdown file cited by name or path.
MARKDOWN = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]+\.md)\b")
#: A path into the repository's own folders, cited with its extension.
REPO_PATH = re.compile(
    r"(?<![\w./-])((?:lvgateway|tests|docs|bench)/(?:[\w.-]+/)*[\w-]+\.[a-z]{1,8})\b"
)
#: Where a citation is part of a URL, it names someone else's file.
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")


def scanned_files() -> Iterator[Path]:
    """The text files under :data:`SCANNED` that git tracks or would track."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *SCANNED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        path = ROOT / name
        if path.is_file() and path.suffix not in (".png", ".cache", ".pcap", ".sqlite3"):
            yield path


def resolves(cited: str, where: Path) -> bool:
    """Whether ``cited`` names a file, relative to the citing file's folder or to the root."""
    return (where.parent / cited).is_file() or (ROOT / cited).is_file()


def missing_in(path: Path) -> list[str]:
    """``file:line: citation`` for each file ``path`` cites that is not in the repository."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        bare = URL.sub(" ", line)
        cited = {m.group(1) for m in MARKDOWN.finditer(bare)}
        cited |= {m.group(1) for m in REPO_PATH.finditer(bare)}
        found += [f"{where}:{number}: {name}" for name in sorted(cited) if not resolves(name, path)]
    return found


def test_every_cited_file_is_in_the_repository() -> None:
    """No code, test, config or doc cites a .md file or repository path that does not exist."""
    this = Path(__file__).resolve()  # it cites made-up names on purpose, below
    missing = [line for path in scanned_files() if path != this for line in missing_in(path)]
    assert missing == []


def test_a_citation_outside_the_repository_is_found(tmp_path: Path) -> None:
    """The scan names the file and line of each missing citation, and passes the ones that exist."""
    probe = tmp_path / "probe.md"
    probe.write_text(
        "fine: docs/design.md, lvgateway/backoff.py, https://example.org/x/NOTES.md\n"
        "see NOWHERE_NOTES.md, section 2, and lvgateway/nowhere.py\n"
    )
    assert missing_in(probe) == [
        f"{probe}:2: NOWHERE_NOTES.md",
        f"{probe}:2: lvgateway/nowhere.py",
    ]
