"""Checks on Twisted endpoint strings that the config and the listeners share."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def _endpoint_fields(listen: str) -> tuple[list[str], dict[str, str]]:
    """Split an endpoint string into positional and keyword fields, as Twisted does.

    ``:`` separates fields, the first ``=`` in a field names it, and ``\\``
    makes the next character literal (``interface=\\:\\:1``).
    """
    args: list[str] = []
    kwargs: dict[str, str] = {}
    field: list[str] = []
    key: str | None = None
    chars = iter(listen)
    for char in chars:
        if char == "\\":
            field.append(next(chars, ""))
        elif char == "=" and key is None:
            key, field = "".join(field), []
        elif char == ":":
            if key is None:
                args.append("".join(field))
            else:
                kwargs[key] = "".join(field)
            field, key = [], None
        else:
            field.append(char)
    if key is None:
        args.append("".join(field))
    else:
        kwargs[key] = "".join(field)
    return args, kwargs


def is_loopback(listen: str) -> bool:
    """Tell whether a server endpoint string listens on TCP on a loopback address only.

    True for ``tcp:2323:interface=127.0.0.1``, ``tcp:2323:interface=localhost``
    and ``tcp6:2323:interface=\\:\\:1``; false for a string with no interface
    (every address), any other address, and every other kind of endpoint.

    :param listen: a Twisted server endpoint string.
    """
    args, kwargs = _endpoint_fields(listen)
    if args[0].lower() not in ("tcp", "tcp6"):
        return False
    interface = kwargs.get("interface", args[2] if len(args) > 2 else "")
    if interface.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False
