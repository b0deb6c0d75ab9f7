"""The ``twistd lvgateway`` command line: options, ``--check-config``, ``--version``, and ``makeService``."""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.application.service import IService
from twisted.python import usage

from lvgateway.config import ConfigError, GatewayConfig, load_config
from lvgateway.config.summary import summarise
from lvgateway.edge.check import edge_problems
from lvgateway.instance import StateDirectoryInUseError, StateLock
from lvgateway.paths import path_problems
from lvgateway.version import gateway_version


def check_config(path: str, out: TextIO, err: TextIO) -> int:
    """Validate the config at ``path`` like ``nginx -t``: print a summary or every error.

    Binds nothing and starts nothing; checks that the state and log paths
    exist or can be created, and are writable, and that the edge's Kamailio,
    its TLS module and its certificate files are there and safe.

    :return: the exit status: 0 when valid, 1 when not.
    """
    try:
        config = load_config(path)
    except ConfigError as e:
        err.write(
            f"{e.render()}\n{path}: configuration is NOT valid ({len(e.problems)} problems)\n"
        )
        return 1
    problems = path_problems(config)
    if config.edge is not None:
        problems += edge_problems(config.edge)
    if problems:
        err.write(
            "".join(f"{p}\n" for p in problems)
            + f"{path}: configuration is NOT valid ({len(problems)} problems)\n"
        )
        return 1
    out.write(summarise(config) + "\n")
    return 0


class Options(usage.Options):
    """Options of ``twistd lvgateway``."""

    synopsis = "[--config FILE] [--check-config] [--version]"
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
    state_lock: StateLock

    def opt_version(self) -> None:
        """Print the gateway's version and exit."""
        from twisted import __version__ as twisted_version

        sys.stdout.write(
            f"lvgateway {gateway_version()} (Twisted {twisted_version}, "
            f"Python {sys.version.split()[0]})\n"
        )
        raise SystemExit(0)

    def postOptions(self) -> None:
        """Load the config and lock the state directory, before twistd daemonizes or binds.

        The lock comes before anything else runs: a second gateway on the same
        state directory exits here, having built nothing and asked LiveVox nothing.
        """
        if self["check-config"]:
            raise SystemExit(check_config(self["config"], sys.stdout, sys.stderr))
        try:
            self.gateway_config = load_config(self["config"])
        except ConfigError as e:
            sys.stderr.write(
                f"{e.render()}\nlvgateway: not starting: the configuration is not valid\n"
            )
            raise SystemExit(1) from None
        state_dir = self.gateway_config.gateway.state_dir
        try:
            self.state_lock = StateLock.acquire(state_dir)
        except StateDirectoryInUseError as e:
            sys.stderr.write(f"lvgateway: not starting: {e}\n")
            raise SystemExit(1) from None
        except OSError as e:
            sys.stderr.write(
                f"lvgateway: not starting: state directory {state_dir} cannot be locked: {e}\n"
            )
            raise SystemExit(1) from None


def makeService(options: Options) -> IService:
    """Build the gateway's root service; the only place that uses the global reactor."""
    from twisted.internet import reactor

    from lvgateway.gateway import build_gateway
    from lvgateway.logs import twistd_observer

    config = options.gateway_config
    root = build_gateway(config, reactor, state_lock=getattr(options, "state_lock", None))
    root.log_observer = twistd_observer(getattr(options, "parent", None), config.logging.level)
    root.handle_signals = True
    return root
