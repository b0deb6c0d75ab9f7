"""Checks that the gateway's state and log paths exist or can be created, and are writable.

``--check-config`` runs them, so a config whose state directory points into
a read-only tree (``/etc`` under ``ProtectSystem=strict``) or into ``/proc``
fails the check instead of the start. The checks really write: a folder that
does not exist yet is created and removed again, and a folder that does is
written a temporary file. Root passes every permission check, so asking
``os.access`` would prove nothing.
"""

from __future__ import annotations

import os
import tempfile

from lvgateway.config import GatewayConfig


def writable_dir_problem(path: str) -> str | None:
    """Return why ``path`` cannot serve as a writable folder, or ``None`` when it can."""
    if os.path.exists(path) and not os.path.isdir(path):
        return f"{path} exists and is not a folder"
    created: list[str] = []
    try:
        missing = path
        while not os.path.exists(missing):
            created.append(missing)
            missing = os.path.dirname(missing)
        for folder in reversed(created):
            os.mkdir(folder)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        return f"{path} cannot be {'created' if created else 'written'}: {e.strerror or e}"
    finally:
        for folder in created:
            try:
                os.rmdir(folder)
            except OSError:
                pass
    return None


def path_problems(config: GatewayConfig) -> list[str]:
    """Return a line for each path of ``config`` the gateway could not write."""
    problems: list[str] = []
    state = writable_dir_problem(config.gateway.state_dir)
    if state is not None:
        problems.append(f"[gateway] state_dir: {state}")
    if config.logging.json_file is not None:
        log_file = config.logging.json_file
        folder = writable_dir_problem(os.path.dirname(os.path.abspath(log_file)))
        if folder is not None:
            problems.append(f"[logging] json_file: {folder}")
        elif os.path.exists(log_file) and not os.access(log_file, os.W_OK):
            problems.append(f"[logging] json_file: {log_file} is not writable")
    return problems
