"""The telnet manhole: a Python prompt inside the running gateway, on loopback only.

Telnet is cleartext, so :func:`manhole_service` refuses any endpoint that is not
TCP on 127.0.0.1, ``localhost`` or ::1. It is off unless configured. Connect
with ``telnet 127.0.0.1 2323``, log in, and the namespace the caller filled
(the root service and the named parts) is there to read::

    >>> root.getServiceNamed("agents")

The password file
-----------------
One account a line, ``user:password``. The user is everything before the first
``:``, the password everything after it (it may itself hold ``:``; trailing
spaces are dropped). Blank lines and lines starting with ``#`` are ignored, and
so is a line with an empty user or password. Passwords are stored as they are
typed: hashing them would mean a deliberately slow hash on the reactor thread,
stalling calls during a login, and the file is guarded instead. It must belong
to the gateway's user with no access for group or others (``chmod 600``), or
:func:`manhole_service` refuses it, and it is never committed:
``etc/manhole.passwd.example`` shows the format, ``etc/manhole.passwd`` is the
real one. It is read at every login, so an edit takes effect without a restart.
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Callable
from typing import Any

import attrs
from twisted.conch import manhole, telnet
from twisted.conch.insults import insults
from twisted.cred import checkers, credentials, error, portal
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorCore
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from lvgateway.control.listener import Listener, is_loopback, server_endpoint

__all__ = ["ManholeRealm", "PasswordFile", "manhole_service"]


def _same_password(username: bytes, given: bytes, stored: bytes) -> bytes | None:
    """Let ``FilePasswordDB`` accept ``given`` only if it equals ``stored``, in constant time."""
    return stored if hmac.compare_digest(given, stored) else None


class PasswordFile(checkers.FilePasswordDB):
    """The manhole's credential checker, over a file of ``user:password`` lines.

    :param path: the password file; see the module's documentation for its format.
    """

    log = Logger()

    def __init__(self, path: str) -> None:
        super().__init__(path, hash=_same_password)  # type: ignore[no-untyped-call]

    def getUser(self, username: bytes) -> tuple[bytes, bytes]:
        """Return ``(user, password)`` from the file, or raise :class:`KeyError`."""
        try:
            with open(self.filename, "rb") as f:
                lines = f.read().splitlines()
        except OSError as e:
            self.log.error("cannot read the manhole password file: {error}", error=str(e))
            raise KeyError(username) from e
        for line in lines:
            if not line.strip() or line.lstrip().startswith(b"#"):
                continue
            user, colon, password = line.rstrip().partition(b":")
            if colon and user and password and user == username:
                return user, password
        raise KeyError(username)

    def requestAvatarId(self, c: credentials.IUsernamePassword) -> Deferred[Any]:
        """Check the credentials; log the user of each refused login."""
        d: Deferred[Any] = super().requestAvatarId(c)

        def refused(failure: Failure) -> Failure:
            failure.trap(error.UnauthorizedLogin)  # type: ignore[no-untyped-call]
            user = c.username.decode("utf-8", "replace")
            self.log.warn("manhole login refused for {user}", user=user)
            return failure

        return d.addErrback(refused)


@implementer(portal.IRealm)
@attrs.define
class ManholeRealm:
    """Give each logged-in user a Python prompt over ``namespace``.

    :param namespace: the variables the prompt starts with.
    """

    _namespace: dict[str, object]
    log = Logger()

    def requestAvatar(
        self, avatar_id: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, Protocol, Callable[[], None]]:
        """Return a telnet protocol running a coloured manhole in an insults terminal."""
        if telnet.ITelnetProtocol not in interfaces:
            raise NotImplementedError("the manhole speaks telnet only")
        user = avatar_id.decode("utf-8", "replace") if isinstance(avatar_id, bytes) else ""
        self.log.info("manhole login by {user}", user=user)
        protocol = telnet.TelnetBootstrapProtocol(  # type: ignore[no-untyped-call]
            insults.ServerProtocol, manhole.ColoredManhole, self._namespace
        )

        def logout() -> None:
            self.log.info("manhole logout by {user}", user=user)

        return telnet.ITelnetProtocol, protocol, logout


def _check_password_file(path: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise ValueError(f"manhole password file {path}: {e.strerror}") from e
    if not stat.S_ISREG(mode):
        raise ValueError(f"manhole password file {path} is not a regular file")
    if mode & 0o077:
        raise ValueError(
            f"manhole password file {path} has mode {stat.S_IMODE(mode):o}:"
            " it must give no access to group or others (chmod 600)"
        )


def manhole_service(
    reactor: IReactorCore, listen: str, passwd_path: str, namespace: dict[str, object]
) -> Listener:
    """Return the service of the telnet manhole.

    :param reactor: the reactor to listen with.
    :param listen: a Twisted server endpoint string on loopback, such as
        ``tcp:2323:interface=127.0.0.1``.
    :param passwd_path: the password file (``user:password`` lines, mode 600).
    :param namespace: the prompt's variables, filled by the caller: the root
        service and the named parts. It is shared, not copied.
    :raises ValueError: if ``listen`` is not TCP on a loopback address, or the
        password file is missing or open to group or others.
    """
    if not is_loopback(listen):
        raise ValueError(
            f"manhole listen {listen!r} is not on 127.0.0.1, localhost or ::1:"
            " telnet is cleartext, so the manhole listens on loopback only"
            " (for example tcp:2323:interface=127.0.0.1)"
        )
    _check_password_file(passwd_path)
    telnet_portal = portal.Portal(ManholeRealm(namespace), [PasswordFile(passwd_path)])
    factory = ServerFactory()
    factory.protocol = lambda: telnet.TelnetTransport(  # type: ignore[assignment,no-untyped-call]
        telnet.AuthenticatingTelnetProtocol, telnet_portal
    )
    return Listener(server_endpoint(reactor, listen), factory)
