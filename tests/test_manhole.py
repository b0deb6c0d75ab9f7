"""Tests for the telnet manhole: real loopback logins, the password file, loopback only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import pytest_twisted
from twisted.application.service import MultiService, Service
from twisted.conch import telnet
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from lvgateway.control.listener import Listener, is_loopback
from lvgateway.control.manhole import PasswordFile, manhole_service

PASSWORD = "s3cret:with-colon"
WAIT = 5.0


def write_passwd(path: Path, text: str, mode: int = 0o600) -> str:
    """Write a password file with ``mode`` and return its path."""
    path.write_text(text)
    path.chmod(mode)
    return str(path)


class TelnetClient(telnet.TelnetProtocol):
    """A telnet client that collects what the server prints and can wait for a string."""

    def __init__(self) -> None:
        self.received = bytearray()
        self._seen = 0
        self._waiting: list[tuple[bytes, Deferred[None]]] = []
        self.lost: Deferred[None] = Deferred()

    def enableRemote(self, option: bytes) -> bool:
        """Let the server echo (it turns echo off around the password)."""
        return option == telnet.ECHO

    def disableRemote(self, option: bytes) -> None:
        """Accept the server's echo going off again."""

    def dataReceived(self, data: bytes) -> None:
        """Collect the server's output and wake whoever waits for it."""
        self.received += data
        self._check()

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        """Note the connection is closed."""
        self.lost.callback(None)

    def expect(self, needle: bytes) -> Deferred[None]:
        """Fire once ``needle`` is printed after what an earlier wait saw; time out after WAIT."""
        d: Deferred[None] = Deferred()
        self._waiting.append((needle, d))
        self._check()
        return d.addTimeout(WAIT, reactor)

    def _check(self) -> None:
        for needle, d in list(self._waiting):
            at = self.received.find(needle, self._seen)
            if at >= 0:
                self._waiting.remove((needle, d))
                self._seen = at + len(needle)
                d.callback(None)

    def send_line(self, line: bytes) -> None:
        """Type a line and press return (the telnet transport sends the newline as CR LF)."""
        self.transport.write(line + b"\n")


@attrs.define
class Running:
    """A started manhole, the root service in its namespace, and a connected client."""

    service: Listener
    root: MultiService
    client: TelnetClient


@pytest_twisted.async_yield_fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """Start a manhole on a loopback port and connect a telnet client to it."""
    root = MultiService()
    root.setName("manhole-test-root")
    Service().setServiceParent(root)
    passwd = write_passwd(tmp_path / "manhole.passwd", f"# accounts\nadmin:{PASSWORD}\n")
    service = manhole_service(reactor, "tcp:0:interface=127.0.0.1", passwd, {"root": root})
    service.startService()
    port = await service.when_listening()
    client = TelnetClient()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port, timeout=int(WAIT))
    await connectProtocol(endpoint, telnet.TelnetTransport(lambda: client))
    yield Running(service, root, client)
    client.transport.loseConnection()
    await client.lost.addTimeout(WAIT, reactor)
    await service.stopService()


@pytest_twisted.ensureDeferred
async def test_login_then_evaluate_against_the_namespace(running: Running) -> None:
    """Logging in over loopback telnet gives a prompt that reads the namespace's root service."""
    client = running.client
    await client.expect(b"Username: ")
    client.send_line(b"admin")
    await client.expect(b"Password: ")
    client.send_line(PASSWORD.encode())
    await client.expect(b">>> ")
    # Neither value is typed, so seeing it proves the expression ran in the gateway.
    client.send_line(b"(root.name.upper(), len(list(root)) * 7)")
    await client.expect(b"('MANHOLE-TEST-ROOT', 7)")


@pytest_twisted.ensureDeferred
async def test_wrong_password_is_refused(running: Running) -> None:
    """A wrong password gets no prompt: the server says so, logs it, and asks again."""
    client = running.client
    await client.expect(b"Username: ")
    with capturedLogs() as events:
        client.send_line(b"admin")
        await client.expect(b"Password: ")
        client.send_line(b"not-the-password")
        await client.expect(b"Authentication failed")
        await client.expect(b"Username: ")
    assert b">>> " not in client.received
    assert any("login refused" in e.get("log_format", "") for e in events)
    assert not any("not-the-password" in repr(e) for e in events)


@pytest.mark.parametrize(
    "listen",
    [
        "tcp:2323",
        "tcp:2323:interface=0.0.0.0",
        "tcp:2323:interface=192.0.2.10",
        "tcp6:2323",
        "tcp6:2323:interface=\\:\\:",
        "ssl:2323:interface=127.0.0.1",
        "unix:/tmp/manhole.sock",
    ],
)
def test_listen_beyond_loopback_is_refused(tmp_path: Path, listen: str) -> None:
    """A listen string not on 127.0.0.1, localhost or ::1 raises ValueError before listening."""
    passwd = write_passwd(tmp_path / "manhole.passwd", "admin:x\n")
    with pytest.raises(ValueError, match="loopback"):
        manhole_service(reactor, listen, passwd, {})


@pytest.mark.parametrize(
    "listen",
    [
        "tcp:2323:interface=127.0.0.1",
        "tcp:port=2323:interface=localhost",
        "tcp:2323:127.0.0.1",
        "tcp6:2323:interface=\\:\\:1",
    ],
)
def test_loopback_listen_strings_are_recognised(listen: str) -> None:
    """Loopback addresses, by keyword or position, are recognised as loopback."""
    assert is_loopback(listen)


def test_password_file_open_to_others_is_refused(tmp_path: Path) -> None:
    """A password file readable by group or others is refused, naming chmod 600."""
    passwd = write_passwd(tmp_path / "manhole.passwd", "admin:x\n", mode=0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        manhole_service(reactor, "tcp:0:interface=127.0.0.1", passwd, {})


def test_missing_password_file_is_refused(tmp_path: Path) -> None:
    """A password file that does not exist is refused when the service is made."""
    with pytest.raises(ValueError, match="manhole password file"):
        manhole_service(reactor, "tcp:0:interface=127.0.0.1", str(tmp_path / "nope"), {})


def login(checker: PasswordFile, user: str, password: str) -> object:
    """Return the avatar id the checker gives, or the failure it errbacks with."""
    results: list[object] = []
    checker.requestAvatarId(UsernamePassword(user.encode(), password.encode())).addBoth(
        results.append
    )
    assert results, "the checker did not answer at once"
    return results[0]


@pytest.mark.parametrize(
    ("user", "password", "accepted"),
    [
        ("admin", "a:b:c", True),  # a password may hold colons
        ("admin", "a", False),
        ("ops", "pw", True),  # after a blank line and a comment
        ("# note", " with a colon", False),  # a comment is not an account
        ("empty", "", False),  # an empty password never logs in
        ("nobody", "pw", False),
    ],
)
def test_password_file_format(tmp_path: Path, user: str, password: str, accepted: bool) -> None:
    """Comments, blank lines and empty passwords are not accounts; passwords may hold colons."""
    text = "admin:a:b:c\n\n# note: with a colon\nempty:\nops:pw\n"
    checker = PasswordFile(write_passwd(tmp_path / "manhole.passwd", text))
    result = login(checker, user, password)
    if accepted:
        assert result == user.encode()
    else:
        assert isinstance(result, Failure) and result.check(UnauthorizedLogin)
