"""Run the edge: write Kamailio's files from the config, then run Kamailio as a supervised child.

With ``[edge] run = "external"`` the files are written and nothing is
started: the shipped ``etc/lvgateway-edge.service`` runs Kamailio on them.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from twisted.application.service import Service

from lvgateway.config.model import EdgeConfig, GatewayConfig
from lvgateway.edge.render import EdgeFiles, render_kamailio_cfg, render_tls_cfg
from lvgateway.supervisor import ChildProcessService

__all__ = ["edge_argv", "edge_service", "write_edge_files"]


def _write(path: str, text: str | bytes, mode: int) -> None:
    data = text.encode() if isinstance(text, str) else text
    fd = os.open(f"{path}.tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(f"{path}.tmp", mode)
    os.replace(f"{path}.tmp", path)


def _listen_certificate(host: str) -> tuple[bytes, bytes]:
    """A self-signed certificate for the edge's loopback TLS listen socket, which nobody dials."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lvgateway-edge")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_edge_files(config: GatewayConfig, directory: str) -> EdgeFiles:
    """Render Kamailio's config into ``directory``; the listen certificate is made once and kept."""
    edge = config.edge
    assert edge is not None
    os.makedirs(directory, mode=0o700, exist_ok=True)
    files = EdgeFiles.under(directory)
    if not (os.path.exists(files.server_certificate) and os.path.exists(files.server_key)):
        cert, key = _listen_certificate(edge.listen_host)
        _write(files.server_key, key, 0o600)
        _write(files.server_certificate, cert, 0o644)
    gateway_host = config.sip.listen_host
    if gateway_host in ("0.0.0.0", "::"):
        gateway_host = edge.listen_host
    _write(
        files.kamailio_cfg,
        render_kamailio_cfg(edge, config.vendor.endpoints, gateway_host, files, config.source),
        0o644,
    )
    _write(files.tls_cfg, render_tls_cfg(edge, files), 0o644)
    return files


def edge_argv(edge: EdgeConfig, files: EdgeFiles) -> list[str]:
    """Kamailio's command line: in the foreground, logging to stderr, its runtime files in ``directory``."""
    return [
        edge.kamailio,
        "-DD",
        "-E",
        "-f",
        files.kamailio_cfg,
        "-Y",
        files.directory,
        "-P",
        f"{files.directory}/kamailio.pid",
    ]


def edge_service(reactor: Any, config: GatewayConfig) -> Service | None:
    """The edge's child process, its files written; ``None`` when it runs under its own unit."""
    edge = config.edge
    assert edge is not None
    files = write_edge_files(config, os.path.join(config.gateway.state_dir, "edge"))
    if edge.run != "child":
        return None
    return ChildProcessService(reactor, "edge", edge_argv(edge, files), stop_timeout=10.0)
