"""The rtp.io command channel: Sippy's rtpproxy client, watched, and shut down off the reactor.

rtp.io (PyPI ``rtp-io``) is rtpproxy built as a Python extension: creating
``rtp.io.rtpproxy`` starts rtpproxy's C threads in this process and hands
back a socket pair for its command protocol. Sippy's ``Rtp_proxy_client``
with the ``rtp.io:`` address drives it (``sippy/Rtp_proxy/Client/internal.py``):
a worker thread takes commands from a queue, writes each to the socket,
*blocks* reading the reply, and posts the reply callback to the reactor
(``ED2.callFromThread``, which the Sippy reactor adapter points at
``reactor.callFromThread``). What that teaches, and what this module does
about it:

- **No command timeout.** A reply that never comes blocks the worker, and
  every later command waits behind it. :class:`CommandWatch` records each
  command when it is queued and drops it when its reply reaches the reactor;
  the engine asks it how long the oldest unanswered command has waited.
- **One worker.** Workers share the one blocking socket: more than one hung
  after a few calls in a trial. :func:`make_client` makes exactly one.
- **Quiet, and nothing in the working directory.** rtp.io's default modules
  (``acct_csv`` among them) write an accounting CSV into the working
  directory: the engine is created with ``modules=()``. Its log level is
  ``err`` by default (``info`` logs several lines a call, to fd 2).
- **Shutdown blocks.** ``shutdown()`` joins the worker (which may be stuck on
  a hung engine) and then frees rtpproxy, whose own shutdown takes about a
  second: :func:`shutdown_in_thread` runs it on a daemon thread of its own,
  never on the reactor thread and never on the reactor's thread pool (which
  twistd joins on exit).
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from importlib import metadata
from typing import Any

import attrs
from sippy.Rtp_proxy.client import Rtp_proxy_client

__all__ = [
    "CommandWatch",
    "make_client",
    "parse_query",
    "rtpio_unavailable",
    "rtpio_version",
    "shutdown_in_thread",
    "shutdowns_pending",
]

_VERB = re.compile(r"\s*([A-Za-z]+)")
#: The threads shutting rtp.io engines down (see :func:`shutdowns_pending`).
_SHUTTING_DOWN: set[threading.Thread] = set()


def rtpio_unavailable() -> str | None:
    """Return ``None`` when rtp.io imports here, else why it does not (for the engine choice)."""
    try:
        from rtp.io import rtpproxy  # noqa: F401
    except ImportError as e:
        return f"rtp.io cannot be imported: {e}"
    except Exception as e:  # a broken wheel fails in other ways
        return f"rtp.io failed to import: {type(e).__name__}: {e}"
    return None


def rtpio_version() -> str:
    """The installed ``rtp-io`` distribution's version, or ``unknown``."""
    try:
        return metadata.version("rtp-io")
    except metadata.PackageNotFoundError:
        return "unknown"


def _verb(command: str) -> str:
    match = _VERB.match(command)
    return match.group(1) if match else "?"


@attrs.define(eq=False)
class CommandWatch:
    """Which rtpproxy commands are waiting for their reply, and since when.

    Used on the reactor thread only: commands are recorded when queued and
    forgotten when their reply callback runs there. The worker answers in
    order, so the first one recorded is the oldest.

    :param clock: a monotonic clock.
    """

    clock: Callable[[], float]
    _pending: dict[int, tuple[float, str]] = attrs.field(factory=dict, init=False)
    _next: int = attrs.field(default=0, init=False)
    #: Replies received, by command verb (``V``, ``VF``, ``U``, ``Q``, ``D``, ``Ib``...).
    answered: collections.Counter[str] = attrs.field(factory=collections.Counter, init=False)
    #: Set when the engine is shutting down: no command is sent after it.
    closed: bool = attrs.field(default=False, init=False)

    def sent(self, command: str) -> int:
        """Record ``command`` as waiting; return its token."""
        token = self._next
        self._next += 1
        self._pending[token] = (self.clock(), _verb(command))
        return token

    def replied(self, token: int) -> None:
        """Forget the command of ``token``: its reply arrived."""
        entry = self._pending.pop(token, None)
        if entry is not None:
            self.answered[entry[1]] += 1

    def oldest(self) -> tuple[float, str] | None:
        """How long the oldest unanswered command has waited, and its verb; ``None`` if none waits."""
        for sent_at, verb in self._pending.values():
            return self.clock() - sent_at, verb
        return None

    @property
    def waiting(self) -> int:
        """How many commands wait for a reply."""
        return len(self._pending)


def _reply(
    watch: CommandWatch,
    token: int,
    callback: Callable[..., Any] | None,
    data: Any,
    *parameters: Any,
    **kwargs: Any,
) -> None:
    watch.replied(token)
    if callback is not None:
        callback(data, *parameters, **kwargs)


class _WatchedClient(Rtp_proxy_client):  # type: ignore[misc]
    """Sippy's rtp.io client, with every command recorded in a :class:`CommandWatch`.

    Sippy's version check, capability queries and heartbeat, the sessions'
    ``U``/``D`` commands and the engine's ``Q`` polls all go through
    :meth:`send_command`, so the watch sees them all.
    """

    def __init__(self, watch: CommandWatch, global_config: dict[str, Any], **kwargs: Any) -> None:
        self._watch = watch
        # Sippy's constructor queues the version check, so the watch is set first.
        super().__init__(global_config, spath="rtp.io:", nworkers=1, **kwargs)

    def send_command(
        self, command: Any, result_callback: Callable[..., Any] | None = None, *parameters: Any
    ) -> None:
        """Queue ``command`` for the worker, recorded; dropped once the engine is shutting down."""
        if self._watch.closed or self.shut_down:
            return
        token = self._watch.sent(str(command))
        super().send_command(
            command, partial(_reply, self._watch, token, result_callback), *parameters
        )


def make_client(
    watch: CommandWatch,
    global_config: dict[str, Any],
    *,
    port_min: int,
    port_max: int,
    listen_host: str,
    ttl: int,
    debug_level: str = "err",
    extra_args: Iterable[str] = (),
) -> Any:
    """Create the in-process rtpproxy and Sippy's client for it (one worker).

    The client is usable once ``client.online`` is true, after its ``V``
    and ``VF`` replies have come back through the reactor.

    :param watch: records every command.
    :param global_config: Sippy's global config for the client; needs
        ``_sip_address`` (the address Sippy puts in SDP when rtpproxy's reply
        names none).
    :param port_min: rtpproxy's lowest media port (``-m``).
    :param port_max: its highest (``-M``).
    :param listen_host: the address it binds (``-l``, or ``-6`` for IPv6).
    :param ttl: its session timeouts in seconds (``-T`` and ``-W``), a backstop
        only: the gateway's own media timeouts end calls first.
    :param debug_level: rtpproxy's log level (``err``, ``warn``, ``info``, ``dbug``).
    :param extra_args: more rtpproxy command-line arguments.
    :raises Exception: whatever rtp.io raises (``ImportError`` when it is not
        installed, ``RuntimeError`` when rtpproxy does not start).
    """
    bind = ["-6", listen_host] if ":" in listen_host else ["-l", listen_host]
    return _WatchedClient(
        watch,
        global_config,
        modules=(),
        debug_level=debug_level,
        port_min=port_min,
        port_max=port_max,
        ttl=ttl,
        setup_ttl=ttl,
        # -F: no "running as superuser" warning on every start.
        extra_args=["-F", *bind, *extra_args],
    )


def shutdown_in_thread(
    client: Any, done: Callable[[BaseException | None], object], reactor: Any
) -> threading.Thread:
    """Shut ``client`` (and its rtpproxy) down on a daemon thread; ``done`` runs on the reactor.

    ``done(None)`` when it finished, ``done(error)`` when it raised. If the
    engine is hung, the thread stays blocked and ``done`` never runs: the
    caller bounds its wait. A daemon thread does not keep the process alive.
    """

    def run() -> None:
        error: BaseException | None = None
        try:
            client.shutdown()
        except BaseException as e:  # reported on the reactor, never lost in a thread
            error = e
        finally:
            _SHUTTING_DOWN.discard(threading.current_thread())
        reactor.callFromThread(done, error)

    thread = threading.Thread(target=run, name="rtpio-shutdown", daemon=True)
    _SHUTTING_DOWN.add(thread)
    thread.start()
    return thread


def shutdowns_pending() -> int:
    """How many rtp.io engines of this process are still being shut down.

    Freeing an rtp.io instance while another one runs can break the other's
    command socket (a trial: ``Connection reset by peer`` on the running
    one, 1 time in 20), so a new engine waits until this is 0.
    """
    return sum(1 for thread in list(_SHUTTING_DOWN) if thread.is_alive())


def parse_query(reply: Any) -> Mapping[str, int] | None:
    """Parse rtpproxy's reply to ``Q call-id from-tag to-tag``, or ``None`` for an error reply.

    The reply is ``ttl npkts_ina npkts_ino nrelayed ndropped`` for the RTP
    stream: packets received from the side of the first tag (``from``: the
    caller, LiveVox), from the other side, relayed and dropped (both ways).
    """
    if not isinstance(reply, str):
        return None
    parts = reply.split()
    if len(parts) != 5:
        return None
    try:
        ttl, from_caller, from_callee, relayed, dropped = (int(p) for p in parts)
    except ValueError:
        return None
    return {
        "ttl": ttl,
        "from_caller": from_caller,
        "from_callee": from_callee,
        "relayed": relayed,
        "dropped": dropped,
    }
