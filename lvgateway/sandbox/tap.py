"""``twistd lvsandbox``: run the LiveVox simulator, its SIP dialler and the AI echo bot.

::

    twistd -n lvsandbox --config etc/sandbox.toml [--listen tcp:7480:interface=127.0.0.1]

The REST simulator listens on ``[server] listen``; the SIP half (one SIP
stack, the echo bot answering on it, the dialler calling from it) on
``[sip]``; the dialler starts placing calls by itself if ``[dialler]
auto_start`` is set, else on ``POST /_sandbox/dial`` or ``/_sandbox/dialler/start``.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet import endpoints
from twisted.python import usage

from lvgateway.sandbox.livevox_web import SimulatorSite
from lvgateway.sandbox.sandbox_config import (
    DEFAULT_CONFIG_PATH,
    SandboxConfig,
    SandboxConfigError,
    load_sandbox_config,
)
from lvgateway.sandbox.sandbox_sip import SandboxSip, attach_sip_admin
from lvgateway.sandbox.simulator import Simulator


class Options(usage.Options):
    """Command line of ``twistd lvsandbox``."""

    optParameters: Any = [
        ["config", "c", DEFAULT_CONFIG_PATH, "The sandbox configuration file (TOML)."],
        ["listen", "l", None, "A Twisted server endpoint string overriding server.listen."],
        [
            "dial-rate",
            None,
            None,
            "Start the dialler at this many calls a second (overrides dialler.auto_start and call_rate).",
            float,
        ],
    ]

    def postOptions(self) -> None:
        """Load and validate the configuration now, so a mistake is a usage error."""
        try:
            config = load_sandbox_config(self["config"])
        except SandboxConfigError as e:
            raise usage.UsageError(str(e)) from e
        if self["dial-rate"] is not None:
            if not 0 < self["dial-rate"] <= config.dialler.max_call_rate:
                raise usage.UsageError(
                    f"--dial-rate must be above 0 and at most dialler.max_call_rate ({config.dialler.max_call_rate:g})"
                )
            dialler = attrs.evolve(config.dialler, auto_start=True, call_rate=self["dial-rate"])
            config = attrs.evolve(config, dialler=dialler)
        self["sandbox_config"] = config


def makeService(options: usage.Options) -> IService:
    """Build the sandbox's service tree: the HTTP listener ``lvsandbox-http`` and the
    SIP half ``lvsandbox-sip`` (:class:`SandboxSip`).

    :param options: parsed :class:`Options`.
    """
    from twisted.internet import reactor

    config: SandboxConfig = options["sandbox_config"]
    listen = options["listen"] or config.listen
    simulator = Simulator(config, reactor)  # type: ignore[arg-type]
    site = SimulatorSite(simulator, reactor)  # type: ignore[arg-type]
    root = MultiService()
    http = StreamServerEndpointService(
        endpoints.serverFromString(reactor, listen),
        site,  # type: ignore[no-untyped-call]
    )
    http._raiseSynchronously = True
    http.setName("lvsandbox-http")
    http.setServiceParent(root)
    sip = SandboxSip(config, simulator, reactor)
    sip.setName("lvsandbox-sip")  # type: ignore[no-untyped-call]
    sip.setServiceParent(root)  # type: ignore[no-untyped-call]
    attach_sip_admin(site, sip)
    return root
