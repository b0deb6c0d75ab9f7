"""Assemble one gateway process: the root service and its named parts, from a validated config.

Everything below takes the reactor as an argument; only ``tap.makeService``
touches the global one. Each part joins the tree here, registers its drain
steps and readiness checks, and appears by name in the manhole's namespace.
"""

from __future__ import annotations

import os
from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService
from twisted.internet.defer import gatherResults
from twisted.logger import Logger

from lvgateway.agents.pool import AgentPool
from lvgateway.agents.stranded import StrandedSettings
from lvgateway.calls.blocking import ThreadPoolRunner
from lvgateway.calls.records import CallState
from lvgateway.calls.service import CallService, catalogue_agents
from lvgateway.calls.store import CallStore
from lvgateway.config import GatewayConfig
from lvgateway.control.agents_api import AgentsResource
from lvgateway.control.calls_admin import CallsAdmin
from lvgateway.control.calls_api import VendorCalls
from lvgateway.control.hep_api import HepResource
from lvgateway.control.internal import control_service
from lvgateway.control.manhole import manhole_service
from lvgateway.control.status_page import StatusPage, StatusSources
from lvgateway.control.vendor_api import vendor_api_service
from lvgateway.drain import DrainPhase, GatewayService, OrderedDrain
from lvgateway.edge.service import edge_service
from lvgateway.health import Readiness
from lvgateway.instance import StateLock
from lvgateway.lifecycle import StartupReport
from lvgateway.livevox import AiaClient, LiveVoxClient, LiveVoxMetrics, http_client_for
from lvgateway.logs import JsonLogService
from lvgateway.media.select import make_media_relay
from lvgateway.media.service import MediaRelayService
from lvgateway.metrics import new_registry
from lvgateway.sip.service import SipService
from lvgateway.sip.sippy_reactor import SippyOnReactor
from lvgateway.stalls import StallWatchdog
from lvgateway.supervisor import ChildProcessService
from lvgateway.systemd import Notifier, SystemdReporter

log = Logger()


def _call_service(
    config: GatewayConfig,
    reactor: Any,
    livevox: LiveVoxClient,
    livevox_metrics: LiveVoxMetrics,
    pool: AgentPool,
    registry: CollectorRegistry,
) -> CallService:
    """Build the call store and its wrap-up: SQLite in the state directory, on its own thread."""
    aia = None
    if config.aia is not None:
        # The AIA is the client's own host: verified against the system's CAs,
        # not LiveVox's bundle.
        aia_http = http_client_for(reactor, attrs.evolve(config.livevox, ca_bundle=None))
        aia = AiaClient(config.aia, reactor, aia_http, livevox_metrics)
    return CallService(
        config=config.wrapup,
        store=CallStore(config.gateway.state_dir, ThreadPoolRunner(reactor)),
        agent_api=livevox,
        call_api=livevox,
        aia=aia,
        pool=pool,
        clock=reactor,
        registry=registry,
        services=catalogue_agents(config.agents),
    )


def build_gateway(
    config: GatewayConfig,
    reactor: Any,
    registry: CollectorRegistry | None = None,
    state_lock: StateLock | None = None,
    notifier: Notifier | None = None,
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
        add(
            "json_log",
            JsonLogService(
                config.logging.json_file,
                config.logging.level,
                rotate=config.logging.rotate,
                max_bytes=config.logging.max_bytes,
                keep=config.logging.keep,
                install_signal=state_lock is not None,
            ),
        )
    if config.edge is not None:
        # The Kamailio edge toward TLS/TCP vendors: up before SIP, down after it.
        edge = edge_service(reactor, config)
        if edge is not None:
            add("edge", edge)
    # Children start first and stop last, after the drain (the demo's LiveVox is one).
    children: list[ChildProcessService] = []
    for child in config.child_processes:
        children.append(
            ChildProcessService(
                reactor,
                child.name,
                child.argv,
                child.env,
                child.cwd,
                child.stop_timeout,
                ready_url=child.ready_url,
                ready_timeout=child.ready_timeout,
            )
        )
        add(child.name, children[-1])
    control = control_service(
        reactor, config.control_listen, readiness, registry, config.control_token
    )
    add("control", control)
    livevox_metrics = LiveVoxMetrics(registry)
    livevox = LiveVoxClient(
        config.livevox,
        reactor,
        http_client_for(reactor, config.livevox),
        livevox_metrics,
    )
    namespace["livevox"] = livevox
    if children:
        # Nothing goes to LiveVox (logins first) before every child serves.
        livevox.transport.hold_until(
            gatherResults([c.when_ready() for c in children], consumeErrors=True)
        )
    agents = AgentPool(
        config.agents,
        livevox,
        reactor,
        config.agent_timings,
        config.hours,
        registry=registry,
        password_warning_days=config.livevox.password_expiry_warning_days,
        call_api=livevox,
        stranded=StrandedSettings.from_config(config.agent_timings, config.wrapup),
        reachability=livevox_metrics.reachability,
    )
    agents.register_drain(drain)
    control.routes.add_route("agents", AgentsResource(agents, reactor))
    add("agents", agents)
    calls = _call_service(config, reactor, livevox, livevox_metrics, agents, registry)
    calls.register_drain(drain, config.gateway.drain_timeout)
    calls.hold_pool_until_recovered()
    readiness.add_check("call store open", calls.readiness)
    control.routes.add_route("calls", CallsAdmin(calls))
    control.set_status_page(
        StatusPage(
            StatusSources(
                config.gateway.name, agents.views, calls.book.records, readiness, reactor
            ),
            show_numbers=config.control_show_numbers,
        )
    )
    readiness.add_check("livevox", livevox_metrics.unreachable)
    media = make_media_relay(
        reactor,
        config.media,
        registry,
        config.sip.allowed_networks,
        ensure_sippy=lambda: SippyOnReactor.for_reactor(reactor),
    )
    readiness.add_check("media", media.online)
    drain.register("stop media", DrainPhase.STOP_MEDIA, media.stop, 10.0)
    add("media", MediaRelayService(media))
    sip = SipService(reactor, config, agents, calls, media, registry, drain, readiness)
    watchdog = StallWatchdog(reactor, registry)
    sip.shed_while(watchdog.lagging)
    add("stall-watchdog", watchdog)
    calls.set_legs(sip.router)
    control.routes.add_route("hep", HepResource(sip.hep))
    # The manhole's switch: hep.on(), hep.off(), hep.status().
    namespace["hep"] = sip.hep
    # SIP before calls: the stack listens (bound in its startService) before
    # the store recovers and ends the legs a crash left up (lvgateway.sip.orphans).
    add("sip", sip)
    add("calls", calls)
    if config.vendor_api is not None:
        vendor_api = vendor_api_service(reactor, config.vendor_api.listen, config.vendor_api.token)
        vendor_api.routes.add_route("calls", VendorCalls(calls))
        add("vendor_api", vendor_api)
    if config.manhole is not None:
        add(
            "manhole",
            manhole_service(
                reactor, config.manhole.listen, config.manhole.password_file, namespace
            ),
        )
    root.namespace = namespace

    def ready_counts() -> tuple[int, int]:
        counts = agents.counts()
        return counts["ready"], sum(counts.values())

    def wrapups_left() -> int:
        return calls.book.count(CallState.WRAPUP)

    def drain_left() -> str:
        return f"{len(sip.router.live)} calls left, {wrapups_left()} wrap-ups left"

    drain.progress = drain_left
    report = StartupReport(
        config,
        reactor,
        ready_counts,
        lambda: len(sip.router.live),
        wrapups_left,
        calls.when_recovered,
        SystemdReporter(
            notifier if notifier is not None else Notifier(), reactor, lambda: report.status()
        ),
    )
    namespace["startup"] = report
    agents.add_listener(lambda user, old, new: report.agent_moved())
    root.on_started.append(report.started)
    drain.on_begin.append(report.stopping)
    drain.register("stop systemd notifications", DrainPhase.CLOSE_STORE, report.systemd.stop, 1.0)
    report.building()
    return root
