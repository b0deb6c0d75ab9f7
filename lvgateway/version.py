"""The gateway's version, as installed (``setup.cfg``'s ``version``)."""

from __future__ import annotations

from importlib import metadata


def gateway_version() -> str:
    """Return the installed version of lvgateway, or ``unknown`` when run from an uninstalled tree."""
    try:
        return metadata.version("lvgateway")
    except metadata.PackageNotFoundError:
        return "unknown"
