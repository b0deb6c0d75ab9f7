"""A reader over a parsed TOML table that collects every problem instead of stopping at the first.

Each getter returns a usable stand-in when the value is wrong, after noting
the problem with its key path, what was found and what was expected; so one
pass reports everything, and the caller raises :class:`ConfigError` at the end.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs

from lvgateway.config.secret import Secret

T = TypeVar("T")

_MISSING: Any = object()


@attrs.frozen
class Problem:
    """One thing wrong with the config: where, and what."""

    path: str
    message: str


class ConfigError(Exception):
    """The config file cannot be used; every problem found is listed."""

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        """Return one line per problem: ``file: key.path: message``."""
        return "\n".join(
            f"{self.source}: {p.path}: {p.message}" if p.path else f"{self.source}: {p.message}"
            for p in self.problems
        )


def describe(value: object) -> str:
    """Name a found value briefly, with its TOML type, for an error message."""
    kinds = {
        bool: "boolean",
        int: "integer",
        float: "float",
        str: "string",
        list: "array",
        dict: "table",
    }
    kind = kinds.get(type(value), type(value).__name__)
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{kind} {text}"


@attrs.define
class Problems:
    """The problems found so far in one file, and where relative paths start."""

    base_dir: Path
    found: list[Problem] = attrs.field(factory=list)

    def add(self, path: str, message: str) -> None:
        """Note a problem at ``path``."""
        self.found.append(Problem(path, message))


@attrs.define
class Table:
    """One TOML table, at a key path, whose keys are taken one by one.

    Call :meth:`finish` when done: any key not taken is reported as unknown.
    """

    problems: Problems
    path: str
    data: dict[str, Any]
    _taken: set[str] = attrs.field(factory=set)

    def key(self, name: str) -> str:
        """Return the key path of ``name`` in this table."""
        return f"{self.path}.{name}" if self.path else name

    def has(self, name: str) -> bool:
        """Whether the table sets ``name``."""
        return name in self.data

    def _take(self, name: str, default: Any) -> Any:
        self._taken.add(name)
        if name in self.data:
            return self.data[name]
        if default is _MISSING:
            self.problems.add(self.key(name), "missing: this key is required")
        return default

    def _typed(
        self, name: str, default: Any, kinds: tuple[type, ...], expected: str, stand_in: Any
    ) -> Any:
        value = self._take(name, default)
        if name not in self.data:
            return stand_in if value is _MISSING else value
        # TOML booleans are Python ints: a number key must not accept true.
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.problems.add(self.key(name), f"found {describe(value)}, expected {expected}")
            return stand_in
        return value

    def string(
        self,
        name: str,
        default: Any = _MISSING,
        *,
        choices: tuple[str, ...] = (),
        allow_empty: bool = False,
    ) -> Any:
        """Take a string; with ``choices``, one of them."""
        value = self._typed(name, default, (str,), "a string", "")
        if choices and name in self.data and isinstance(self.data[name], str):
            if value not in choices:
                self.problems.add(
                    self.key(name),
                    f"found {value!r}, expected one of {', '.join(repr(c) for c in choices)}",
                )
                return choices[0]
        if not allow_empty and name in self.data and self.data[name] == "":
            self.problems.add(self.key(name), "found an empty string, expected a value")
        return value

    def integer(
        self, name: str, default: Any = _MISSING, *, low: int | None = None, high: int | None = None
    ) -> Any:
        """Take an integer, within ``low``..``high`` when given."""
        value = self._typed(name, default, (int,), "an integer", low or 0)
        if name in self.data and isinstance(value, int):
            self._check_range(name, value, low, high)
        return value

    def number(self, name: str, default: Any = _MISSING, *, low: float = 0.0) -> Any:
        """Take a number of seconds or similar (integer or float), at least ``low``."""
        value = self._typed(name, default, (int, float), "a number", low)
        if name in self.data and isinstance(value, int | float):
            self._check_range(name, value, low, None)
            return float(value)
        return value

    def boolean(self, name: str, default: Any = _MISSING) -> Any:
        """Take ``true`` or ``false``."""
        return self._typed(name, default, (bool,), "true or false", False)

    def strings(self, name: str, default: Any = _MISSING) -> Any:
        """Take an array of strings."""
        value = self._typed(name, default, (list,), "an array of strings", [])
        if name in self.data and isinstance(value, list):
            bad = [i for i, item in enumerate(value) if not isinstance(item, str)]
            for i in bad:
                self.problems.add(
                    f"{self.key(name)}[{i}]", f"found {describe(value[i])}, expected a string"
                )
            return [item for item in value if isinstance(item, str)]
        return value

    def string_table(self, name: str) -> dict[str, str]:
        """Take a table of string values, such as header names to values."""
        sub = self.table(name)
        if sub is None:
            return {}
        out: dict[str, str] = {}
        for key in list(sub.data):
            value = sub.string(key)
            if isinstance(value, str):
                out[key] = value
        return out

    def table(self, name: str, *, required: bool = False) -> Table | None:
        """Take a sub-table; ``None`` when absent and not required."""
        value = self._take(name, _MISSING if required else None)
        if value is None or value is _MISSING:
            return None
        if not isinstance(value, dict):
            self.problems.add(self.key(name), f"found {describe(value)}, expected a table")
            return None
        return Table(self.problems, self.key(name), value)

    def tables(self, name: str) -> Iterator[Table]:
        """Take an array of tables (``[[name]]``), yielding each with its index in the path."""
        value = self._take(name, [])
        if not isinstance(value, list):
            self.problems.add(
                self.key(name), f"found {describe(value)}, expected an array of tables"
            )
            return
        for i, item in enumerate(value):
            path = f"{self.key(name)}[{i}]"
            if not isinstance(item, dict):
                self.problems.add(path, f"found {describe(item)}, expected a table")
                continue
            yield Table(self.problems, path, item)

    def path_value(self, name: str, default: Any = _MISSING) -> Any:
        """Take a file path; a relative one is resolved against the config file's folder."""
        value = self.string(name, default)
        if isinstance(value, str) and value:
            return str(self.problems.base_dir / value)
        return value

    def checked(
        self, name: str, convert: Callable[[str], T], expected: str, default: Any = _MISSING
    ) -> T | None:
        """Take a string and convert it; a conversion error is reported as ``expected``."""
        value = self.string(name, default)
        if name not in self.data:
            return None if value is _MISSING or value == "" else value  # type: ignore[no-any-return]
        if not isinstance(self.data[name], str) or value == "":
            return None
        try:
            return convert(value)
        except (ValueError, TypeError) as e:
            self.problems.add(self.key(name), f"found {value!r}, expected {expected} ({e})")
            return None

    def secret(self, stem: str, *, required: bool = True, **fmt: str) -> Secret | None:
        """Take ``<stem>_file`` or ``<stem>_env``: exactly one, never ``<stem>`` inline.

        A file must be readable by its owner only; a variable must be set and
        non-empty. ``fmt`` fills ``{placeholders}`` in the file name or
        variable name, for agent ranges.
        """
        file_key, env_key = f"{stem}_file", f"{stem}_env"
        if stem in self.data:
            self._taken.add(stem)
            self.problems.add(
                self.key(stem),
                f"a secret never stands in the config file: use {file_key} or {env_key}",
            )
        has_file, has_env = file_key in self.data, env_key in self.data
        if has_file and has_env:
            self._taken.update((file_key, env_key))
            self.problems.add(self.key(file_key), f"give {file_key} or {env_key}, not both")
            return None
        if has_file:
            raw = self.string(file_key)
            return read_secret_file(self.problems, self.key(file_key), _fill(raw, fmt))
        if has_env:
            raw = self.string(env_key)
            return read_secret_env(self.problems, self.key(env_key), _fill(raw, fmt))
        if required and stem not in self.data:
            self.problems.add(
                self.key(file_key), f"missing: this secret is required ({file_key} or {env_key})"
            )
        return None

    def _check_range(self, name: str, value: float, low: float | None, high: float | None) -> None:
        if low is not None and value < low:
            self.problems.add(self.key(name), f"found {value}, expected at least {low}")
        elif high is not None and value > high:
            self.problems.add(self.key(name), f"found {value}, expected at most {high}")

    def finish(self) -> None:
        """Report every key that was not taken: typos must not pass silently."""
        for name in self.data:
            if name not in self._taken:
                self.problems.add(self.key(name), "unknown key")


def _fill(template: str, fmt: dict[str, str]) -> str:
    return template.format(**fmt) if fmt and isinstance(template, str) else template


def read_secret_file(problems: Problems, key: str, name: str) -> Secret | None:
    """Read a secret from a file that only its owner may read."""
    if not name:
        return None
    path = problems.base_dir / name
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.add(
                key,
                f"secret file {path} has mode {stat.S_IMODE(mode):04o}: group or others may "
                "use it; expected 0600 or 0400 (chmod 600)",
            )
            return None
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        problems.add(key, f"secret file {path} does not exist")
        return None
    except (OSError, UnicodeDecodeError) as e:
        problems.add(key, f"secret file {path} cannot be read: {e}")
        return None
    if not value:
        problems.add(key, f"secret file {path} is empty")
        return None
    return Secret(value, f"file {path}")


def read_secret_env(problems: Problems, key: str, name: str) -> Secret | None:
    """Read a secret from an environment variable that must be set and non-empty."""
    if not name:
        return None
    value = os.environ.get(name, "")
    if not value:
        problems.add(key, f"environment variable {name} is not set or is empty")
        return None
    return Secret(value, f"env {name}")
