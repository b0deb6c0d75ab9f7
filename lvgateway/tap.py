"""The ``twistd lvgateway`` command line: options, ``--check-config``, and ``makeService``."""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.application.service import IService
from twisted.python import usage

from lvgateway.config import ConfigError, GatewayConfig, load_config
from lvgateway.config.summary import summarise


def check_config(path: str, out: TextIO, err: TextIO) -> int:
    """Validate the config at ``path`` like ``nginx -t``: print a summary or every error.

    Binds nothing and starts nothing.

    :return: the exit status: 0 when valid, 1 when not.
    """
    try:
        config = load_config(path)
    except ConfigError as e:
        err.write(
            f"{e.render()}\n{path}: configuration is NOT valid ({len(e.problems)} problems)\n"
        )
        return 1
    out.write(summarise(config) + "\n")
    return 0


class Options(usage.Options):
    """Options of ``twistd lvgateway``."""

    synopsis = "[--config FILE] [--check-config]"
    longdesc = (
        "Keep LiveVox virtual agents logged in and READY, answer LiveVox's SIP INVITEs to "
        "their 899 numbers, bridge each call to the AI vendor's SIP endpoint, and close "
        "every call with LiveVox (AIA, contact, term code). Configured by one TOML file; "
        "see etc/lvgateway.example.toml."
    )
    optParameters = [
        ["config", "c", "etc/lvgateway.toml", "The gateway's TOML config file."],
    ]
    optFlags = [
        [
            "check-config",
            "t",
            "Validate the config, print a summary (or every error) and exit, binding no port.",
        ],
    ]

    gateway_config: GatewayConfig

    def postOptions(self) -> None:
        """Load the config now, so a bad file stops twistd before it daemonizes or binds."""
        if self["check-config"]:
            raise SystemExit(check_config(self["config"], sys.stdout, sys.stderr))
        try:
            self.gateway_config = load_config(self["config"])
        except ConfigError as e:
            sys.stderr.write(
                f"{e.render()}\nlvgateway: not starting: the configuration is not valid\n"
            )
            raise SystemExit(1) from None


def makeService(options: Options) -> IService:
    """Build the gateway's root service; the only place that uses the global reactor."""
    from twisted.internet import reactor

    from lvgateway.gateway import build_gateway

    return build_gateway(options.gateway_config, reactor)
