"""``--check-config``'s checks of ``[edge]``: the files and programs it names are there and safe."""

from __future__ import annotations

import os
import stat

from lvgateway.config.model import EdgeConfig
from lvgateway.edge.render import MODULES

__all__ = ["edge_problems"]


def _readable_file(path: str) -> str | None:
    if not os.path.isfile(path):
        return f"{path} does not exist or is not a file"
    if not os.access(path, os.R_OK):
        return f"{path} is not readable"
    return None


def edge_problems(edge: EdgeConfig) -> list[str]:
    """Return a line for each thing ``[edge]`` needs that is missing or unsafe."""
    problems: list[str] = []
    if not (os.path.isfile(edge.kamailio) and os.access(edge.kamailio, os.X_OK)):
        problems.append(
            f"[edge] kamailio: {edge.kamailio} is not an executable file"
            " (install Debian's kamailio and kamailio-tls-modules)"
        )
    missing = [m for m in MODULES if not os.path.isfile(os.path.join(edge.modules_dir, m))]
    if missing:
        problems.append(
            f"[edge] modules_dir: {edge.modules_dir} lacks {', '.join(missing)}"
            + (" (install kamailio-tls-modules)" if "tls.so" in missing else "")
        )
    why = _readable_file(edge.ca_file)
    if why is not None:
        problems.append(f"[edge] ca_file: {why}")
    if edge.client_certificate is not None:
        why = _readable_file(edge.client_certificate)
        if why is not None:
            problems.append(f"[edge] client_certificate: {why}")
    if edge.client_key is not None:
        why = _readable_file(edge.client_key)
        if why is not None:
            problems.append(f"[edge] client_key: {why}")
        elif stat.S_IMODE(os.stat(edge.client_key).st_mode) & 0o077:
            mode = stat.S_IMODE(os.stat(edge.client_key).st_mode)
            problems.append(
                f"[edge] client_key: {edge.client_key} has mode {mode:o}: a private key must not"
                " be readable by group or others (chmod 600)"
            )
    return problems
