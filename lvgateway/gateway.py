"""Assemble one gateway process: the root service and its named parts, from a validated config.

Everything below takes the reactor as an argument; only ``tap.makeService``
touches the global one. Later parts (the agent pool, the call store, SIP,
media) join the tree here, register their drain steps and readiness checks,
and appear by name in the manhole's namespace.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.logger import Logger

from lvgateway.config import GatewayConfig
from lvgateway.control.internal import control_service
from lvgateway.control.manhole import manhole_service
from lvgateway.control.vendor_api import vendor_api_service
from lvgateway.drain import GatewayService, OrderedDrain
from lvgateway.health import Readiness
from lvgateway.logs import JsonLogService
from lvgateway.metrics import new_registry

log = Logger()


def build_gateway(
    config: GatewayConfig,
    reactor: Any,
    registry: CollectorRegistry | None = None,
) -> GatewayService:
    """Build the root service of one gateway process.

    :param config: the validated configuration.
    :param reactor: the reactor every part listens and schedules with.
    :param registry: the Prometheus registry; a new one by default (tests
        pass their own, or build several gateways in one process).
    :raises OSError: if the state directory cannot be created.
    """
    os.makedirs(config.gateway.state_dir, exist_ok=True)
    drain = OrderedDrain(reactor, config.gateway.drain_timeout)
    root = GatewayService(drain)
    root.setName("lvgateway")  # type: ignore[no-untyped-call]
    readiness = Readiness()
    drain.add_readiness_check(readiness)
    registry = registry if registry is not None else new_registry()
    namespace: dict[str, object] = {
        "root": root,
        "config": config,
        "drain": drain,
        "readiness": readiness,
        "registry": registry,
        "reactor": reactor,
    }

    def add(name: str, service: IService) -> None:
        if isinstance(service, StreamServerEndpointService):
            # A port that cannot be bound stops twistd at start-up with the
            # error, instead of leaving a gateway running half-deaf.
            service._raiseSynchronously = True
        service.setName(name)
        service.setServiceParent(root)
        namespace[name] = service

    if config.logging.json_file is not None:
        add("json_log", JsonLogService(config.logging.json_file, config.logging.level))
    add("control", control_service(reactor, config.control_listen, readiness, registry))
    if config.vendor_api is not None:
        add(
            "vendor_api",
            vendor_api_service(reactor, config.vendor_api.listen, config.vendor_api.token),
        )
    if config.manhole is not None:
        add(
            "manhole",
            manhole_service(
                reactor, config.manhole.listen, config.manhole.password_file, namespace
            ),
        )
    root.namespace = namespace
    log.info(
        "gateway {name} built: {agents} agents, SIP on udp {host}:{port}, control on {control}",
        name=config.gateway.name,
        agents=len(config.agents),
        host=config.sip.listen_host,
        port=config.sip.listen_port,
        control=config.control_listen,
    )
    return root
