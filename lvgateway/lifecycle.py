"""What the gateway tells its operator and its service manager as it starts and runs.

At start: the version, a one-line summary of the config, then ``gateway
ready`` once the listeners are up and call recovery is done (systemd's
``READY=1``), and ``N/N agents READY in X s`` once every agent is READY.
While it runs: systemd's ``STATUS=`` line and watchdog pings.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from lvgateway.config import GatewayConfig
from lvgateway.systemd import SystemdReporter
from lvgateway.version import gateway_version

log = Logger()


def one_line_summary(config: GatewayConfig) -> str:
    """Return the config in one line: name, agents, listeners, LiveVox, vendor, state, log level."""
    endpoints = len(config.vendor.endpoints)
    return (
        f"gateway {config.gateway.name}: {len(config.agents)} agents, "
        f"SIP udp {config.sip.listen_host}:{config.sip.listen_port}, "
        f"LiveVox {config.livevox.base_url}, "
        f"{endpoints} vendor endpoint{'s' if endpoints != 1 else ''}, "
        f"control {config.control_listen}, state in {config.gateway.state_dir}, "
        f"log level {config.logging.level}"
    )


class StartupReport:
    """Logs the start-up milestones and drives systemd's notifications.

    :param config: the gateway's config.
    :param clock: the reactor.
    :param counts: returns (agents READY, agents in all).
    :param live_calls: returns the number of calls up.
    :param wrapups: returns the number of wrap-ups waiting.
    :param recovered: fires once call recovery is done.
    :param systemd: the notify reporter.
    """

    def __init__(
        self,
        config: GatewayConfig,
        clock: IReactorTime,
        counts: Callable[[], tuple[int, int]],
        live_calls: Callable[[], int],
        wrapups: Callable[[], int],
        recovered: Callable[[], Deferred[None]],
        systemd: SystemdReporter,
    ) -> None:
        self._config = config
        self._clock = clock
        self._counts = counts
        self._live_calls = live_calls
        self._wrapups = wrapups
        self._recovered = recovered
        self.systemd = systemd
        self.started_at: float | None = None
        self.all_ready_logged = False
        self.is_ready = False

    def building(self) -> None:
        """Log the version and the config's one-line summary (as the tree is built)."""
        log.info("lvgateway {version} starting", version=gateway_version())
        log.info("{summary}", summary=one_line_summary(self._config))

    def started(self) -> None:
        """The services have started and the listeners are bound: wait for recovery, then ready."""
        self.started_at = self._clock.seconds()
        self.systemd.start()
        self._recovered().addCallbacks(self._ready, lambda failure: None)

    def _ready(self, _: object) -> None:
        self.is_ready = True
        ready, total = self._counts()
        log.info(
            "gateway ready: listeners up, call recovery done; {ready}/{total} agents READY so far",
            ready=ready,
            total=total,
        )
        self.systemd.ready(self.status())
        self.agent_moved()

    def agent_moved(self) -> None:
        """An agent changed state: log ``N/N agents READY in X s`` the first time all are."""
        if self.all_ready_logged or self.started_at is None:
            return
        ready, total = self._counts()
        if total and ready == total:
            self.all_ready_logged = True
            log.info(
                "{ready}/{total} agents READY in {seconds:.1f} s",
                ready=ready,
                total=total,
                seconds=self._clock.seconds() - self.started_at,
            )
            self.systemd.refresh_status()

    def status(self) -> str:
        """systemd's status line: agents READY, live calls, wrap-ups waiting."""
        ready, total = self._counts()
        return (
            f"{ready}/{total} agents READY, {self._live_calls()} live calls, "
            f"{self._wrapups()} wrap-ups waiting"
        )

    def stopping(self) -> None:
        """The drain began."""
        self.systemd.stopping("draining: " + self.status())
