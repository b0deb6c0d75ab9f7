"""http_client_for verifies LiveVox's certificate, against the system's CAs or a configured bundle.

Runs a TLS server on 127.0.0.1 with the real reactor (pytest-twisted): a
certificate signed by a throw-away CA is accepted only when that CA is the
configured ``ca_bundle``.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from twisted.internet import reactor as _reactor
from twisted.internet import ssl
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from lvgateway.config.secret import Secret
from lvgateway.livevox.client import LiveVoxClient
from lvgateway.livevox.errors import LiveVoxConnectionError
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.testing import RecordingResource, livevox_config
from lvgateway.livevox.transport import http_client_for

REACTOR: Any = _reactor


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(folder: Path) -> tuple[Path, ssl.PrivateCertificate]:
    """Write a CA bundle (two CAs, the signer second) and return it with the server's cert."""
    now = datetime.datetime.now(datetime.UTC)
    pems = []
    ca_key = ec.generate_private_key(ec.SECP256R1())
    for label in ("unrelated CA", "test CA"):
        key = ec.generate_private_key(ec.SECP256R1()) if label == "unrelated CA" else ca_key
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(label))
            .issuer_name(_name(label))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        pems.append(cert.public_bytes(serialization.Encoding.PEM))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(_name("test CA"))
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    bundle = folder / "ca.pem"
    bundle.write_bytes(b"".join(pems))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    private = ssl.PrivateCertificate.loadPEM(
        key_pem + server_cert.public_bytes(serialization.Encoding.PEM)
    )
    return bundle, private


async def _login_over_tls(tmp_path: Path, use_bundle: bool) -> Any:
    """Log in against a TLS server; return the session or the exception."""
    bundle, private = make_pki(tmp_path)
    resource = RecordingResource(lambda r: (200, {"sessionId": "tls-session-0001"}))
    port = REACTOR.listenSSL(0, Site(resource), private.options(), interface="127.0.0.1")
    pool = HTTPConnectionPool(REACTOR, persistent=False)
    try:
        config = livevox_config(
            base_url=f"https://127.0.0.1:{port.getHost().port}",
            ca_bundle=str(bundle) if use_bundle else None,
            max_retries=0,
            request_timeout=10.0,
        )
        client = LiveVoxClient(
            config,
            REACTOR,
            http_client_for(REACTOR, config, pool=pool),
            LiveVoxMetrics(CollectorRegistry()),
        )
        try:
            return await client.login("AIVA1", Secret("pw", "test"))
        except Exception as e:
            return e
    finally:
        await pool.closeCachedConnections()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_ca_bundle_is_trusted(tmp_path: Path) -> None:
    """With the signing CA in ca_bundle (among others), the login over TLS succeeds."""
    session = await _login_over_tls(tmp_path, use_bundle=True)
    assert getattr(session, "session_id", session) == "tls-session-0001"


@pytest_twisted.ensureDeferred
async def test_unknown_ca_is_refused_without_the_bundle(tmp_path: Path) -> None:
    """With the system's CAs only, the self-made CA is refused: a connection failure."""
    error = await _login_over_tls(tmp_path, use_bundle=False)
    assert isinstance(error, LiveVoxConnectionError)
    assert error.call == "login"


def test_bundle_without_certificates_is_refused(tmp_path: Path) -> None:
    """A ca_bundle holding no certificate is a ValueError at startup."""
    empty = tmp_path / "empty.pem"
    empty.write_text("not a certificate\n")
    with pytest.raises(ValueError):
        http_client_for(REACTOR, livevox_config(ca_bundle=str(empty)))
