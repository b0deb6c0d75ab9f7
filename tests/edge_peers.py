"""Real peers for the TLS edge tests: a throwaway CA, baresip as a TLS-only AI vendor, the edge's Kamailio.

Certificates are made here with ``cryptography`` (a CA the test owns, a
vendor certificate, one for another name, an expired one, and a second CA
nobody trusts). baresip (Debian's ``baresip-core``) answers with its ``echo``
module, which loops the audio back; its SIP trace (``-s``) shows each
request and the transport it came over. Kamailio runs through the gateway's
own edge driver, so the tests run the files and command line it renders.
"""

from __future__ import annotations

import datetime
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import ILogObserver, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer

from .sip_helpers import wait_until

BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
BARESIP_MODULES = "/usr/lib/baresip/modules"
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
#: The vendor's domain in the tests; the edge is told its address (``edge_address``).
DOMAIN = "vendor.test"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen
class Authority:
    """A CA: its certificate file, and what signs."""

    cert_file: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def make(cls, folder: Path, name: str) -> Authority:
        """A new CA named ``name``, its certificate written to ``folder/name.pem``."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        path = folder / f"{name}.pem"
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return cls(path, cert, key)

    def issue(self, folder: Path, file_name: str, dns_name: str, *, expired: bool = False) -> Path:
        """A certificate and key for ``dns_name`` in one PEM file (baresip's ``sip_certificate``)."""
        key = ec.generate_private_key(ec.SECP256R1())
        start = _now() - datetime.timedelta(days=3 if expired else 1)
        end = (
            _now() - datetime.timedelta(days=1) if expired else _now() + datetime.timedelta(days=1)
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        path = folder / file_name
        path.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return path


def free_port_pair(host: str = "127.0.0.1") -> int:
    """A port P with P and P+1 free for UDP and TCP (baresip takes P+1 for TLS)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
        try:
            for p in (port, port + 1):
                for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, kind) as probe:
                        probe.bind((host, p))
        except OSError:
            continue
        return port
    raise AssertionError("no free pair of ports")


class _Lines(ProcessProtocol):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = b""
        self.ended: Deferred[None] = Deferred()
        self.exited = False

    def outReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        self.lines += [line.decode(errors="replace").rstrip() for line in lines]

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        self.exited = True
        self.ended.callback(None)


@attrs.define
class Baresip:
    """baresip answering on TLS at ``127.0.0.1:tls_port`` with its echo module."""

    tls_port: int
    control_port: int
    folder: Path
    _protocol: _Lines
    _process: Any

    @property
    def output(self) -> list[str]:
        """Every line baresip printed so far (its SIP trace included)."""
        return self._protocol.lines

    def requests(self, method: str) -> list[str]:
        """The request lines of each ``method`` baresip received (from its SIP trace)."""
        return [line for line in self.output if line.startswith(f"{method} sip")]

    def transports(self, method: str) -> list[str]:
        """The transport each ``method`` request came over, from the trace line before it."""
        out = self.output
        return [
            out[i - 1].split()[0]
            for i, line in enumerate(out)
            if i and line.startswith(f"{method} sip") and out[i - 1].split()
        ]

    async def hang_up(self) -> None:
        """Hang up baresip's call (its ``hangup`` command over ctrl_tcp), as a vendor ending the call."""
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
        from twisted.internet.protocol import Protocol

        protocol = await connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", self.control_port, timeout=5), Protocol()
        )
        command = b'{"command":"hangup","params":"","token":"test"}'
        protocol.transport.write(b"%d:%s," % (len(command), command))  # a netstring
        await wait_until(lambda: self.requests("BYE"), 5, "baresip's BYE in its trace")
        protocol.transport.loseConnection()

    async def stop(self) -> None:
        """SIGTERM baresip and wait (bounded) for it to exit."""
        if not self._protocol.exited:
            self._process.signalProcess("TERM")
            await wait_until(lambda: self._protocol.exited, 10, "baresip to exit")


async def start_baresip(
    folder: Path, certificate: Path, ca_file: Path, mediaenc: str | None = None
) -> Baresip:
    """Start baresip with a config folder of its own; wait until it says it is ready.

    :param mediaenc: baresip's media encryption for its account (``srtp-mand``…), or plain RTP.
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port_pair()
    rtp_first = 31000 + (os.getpid() % 80) * 100  # runs side by side get ranges of their own
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        control: int = s.getsockname()[1]
    (folder / "config").write_text(
        "\n".join(
            [
                "poll_method\tepoll",
                f"sip_listen\t127.0.0.1:{port}",
                f"sip_certificate\t{certificate}",
                f"sip_cafile\t{ca_file}",
                f"rtp_ports\t{rtp_first}-{rtp_first + 99}",
                f"module_path\t{BARESIP_MODULES}",
                "module\tg711.so",
                "module\taubridge.so",  # echo loops the audio through it
                "module\techo.so",
                *(["module\tsrtp.so"] if mediaenc else []),
                "module\taccount.so",
                "module\tmenu.so",
                "module\tctrl_tcp.so",
                f"ctrl_tcp_listen\t127.0.0.1:{control}",
                "",
            ]
        )
    )
    # regint=0: no registration; baresip's echo module answers every call itself.
    encryption = f";mediaenc={mediaenc}" if mediaenc else ""
    (folder / "accounts").write_text(f"<sip:bot@{DOMAIN};transport=tls>;regint=0{encryption}\n")
    protocol = _Lines()
    argv = [BARESIP, "-4", "-n", "127.0.0.1", "-s", "-f", str(folder)]
    process = reactor.spawnProcess(  # type: ignore[attr-defined]
        protocol, BARESIP, argv, env={"PATH": os.environ.get("PATH", "/usr/bin")}
    )
    bs = Baresip(port + 1, control, folder, protocol, process)
    await wait_until(
        lambda: protocol.exited or any("baresip is ready" in x for x in protocol.lines),
        15,
        "baresip to be ready",
    )
    assert not protocol.exited, "\n".join(protocol.lines)
    return bs


@implementer(ILogObserver)
@attrs.define
class EdgeLog:
    """The gateway's log lines from the edge's Kamailio (the child's output) and about the edge."""

    lines: list[str] = attrs.field(factory=list)
    warnings: list[str] = attrs.field(factory=list)
    failures: list[str] = attrs.field(factory=list)
    everything: list[str] = attrs.field(factory=list)

    def __call__(self, event: dict[str, Any]) -> None:
        from twisted.logger import formatEvent

        text = formatEvent(event)
        self.everything.append(text)
        if "log_failure" in event:
            self.failures.append(text + "\n" + event["log_failure"].getTraceback())
        if event.get("child") == "edge":
            self.lines.append(text)
        elif "the edge cannot reach" in text:
            self.warnings.append(text)


def watch_edge_log() -> Iterator[EdgeLog]:
    """Collect the edge's log lines while the generator is open."""
    seen = EdgeLog()
    globalLogPublisher.addObserver(seen)
    try:
        yield seen
    finally:
        globalLogPublisher.removeObserver(seen)
