"""The edge's part of the config: [edge], TLS endpoints, --check-config, and the Kamailio files it renders."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import attrs
import pytest

from lvgateway import tap
from lvgateway.config import ConfigError
from lvgateway.edge.check import edge_problems
from lvgateway.edge.render import routes
from lvgateway.edge.service import edge_argv, write_edge_files

from .test_config import MINIMAL, load, write_secret


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    """A folder with the secrets MINIMAL refers to."""
    write_secret(tmp_path / "token", "tok-123456789")
    write_secret(tmp_path / "pw", "agent-pw-secret")
    return tmp_path


ENDPOINTS = """
[[vendor.endpoints]]
uri = "sip:PROJECT@sip.api.openai.com;transport=tls"

[[vendor.endpoints]]
uri = "sips:bot@vendor.example:5062"
edge_address = "127.0.0.1"

[[vendor.endpoints]]
uri = "sip:bot@10.1.2.3:5080;transport=tcp"

[[vendor.endpoints]]
uri = "sip:bot@10.1.2.4"
"""


def with_endpoints(text: str, endpoints: str = ENDPOINTS, edge: str = "") -> str:
    """MINIMAL with its one endpoint replaced by ``endpoints``, and ``edge`` appended."""
    replaced = text.replace('[[vendor.endpoints]]\nuri = "sip:bot@127.0.0.1:5080"\n', endpoints)
    assert replaced != text
    return replaced + edge


def problems(confdir: Path, text: str) -> str:
    """The rendered problems of an invalid config."""
    with pytest.raises(ConfigError) as e:
        load(confdir, text)
    return e.value.render()


def test_a_tls_endpoint_without_an_edge_is_an_error_naming_its_key(confdir: Path) -> None:
    """sips: and ;transport=tls (and tcp) need [edge]: the error names each endpoint's uri key."""
    found = problems(confdir, with_endpoints(MINIMAL))
    assert "vendor.endpoints[0].uri" in found and "TLS toward the vendor needs an [edge]" in found
    assert "vendor.endpoints[1].uri" in found
    assert "vendor.endpoints[2].uri" in found and "TCP" in found
    assert "vendor.endpoints[3]" not in found
    assert "vendor.endpoints[1].edge_address" in found


def test_endpoints_through_the_edge_keep_their_domain_transport_and_port(confdir: Path) -> None:
    """Each URI's host, transport and port (5061 by default for TLS) are kept as configured."""
    config = load(confdir, with_endpoints(MINIMAL, edge='\n[edge]\nca_file = "token"\n'))
    endpoints = config.vendor.endpoints  # type: ignore[attr-defined]
    assert [(e.host, e.port, e.transport) for e in endpoints] == [
        ("sip.api.openai.com", 5061, "tls"),
        ("vendor.example", 5062, "tls"),
        ("10.1.2.3", 5080, "tcp"),
        ("10.1.2.4", 5060, "udp"),
    ]
    assert endpoints[0].user == "PROJECT" and endpoints[1].edge_address == "127.0.0.1"
    edge = config.edge  # type: ignore[attr-defined]
    assert (edge.listen_host, edge.listen_port, edge.tls_port) == ("127.0.0.1", 5090, 5091)
    assert edge.ca_file == str(confdir / "token") and edge.run == "child"


@pytest.mark.parametrize(
    ("edge", "key", "says"),
    [
        ('listen_host = "10.0.0.1"', "edge.listen_host", "loopback"),
        ('client_certificate = "c.pem"', "edge.client_key", "go together"),
        ("tls_port = 5090", "edge.tls_port", "the same as listen_port"),
        ('run = "daemon"', "edge.run", "daemon"),
        ("listen_prot = 1", "edge.listen_prot", ""),
    ],
)
def test_bad_edge_settings_name_their_key(confdir: Path, edge: str, key: str, says: str) -> None:
    """Each bad [edge] setting is reported with its key path."""
    found = problems(confdir, with_endpoints(MINIMAL, edge=f"\n[edge]\n{edge}\n"))
    assert key in found and says in found, found


def test_an_unknown_transport_is_an_error(confdir: Path) -> None:
    """transport=sctp is not one the edge relays."""
    endpoints = '[[vendor.endpoints]]\nuri = "sip:bot@vendor.example;transport=sctp"\n'
    found = problems(confdir, with_endpoints(MINIMAL, endpoints, "\n[edge]\n"))
    assert "vendor.endpoints[0].uri" in found and "expected udp, tcp or tls" in found


def edge_config(confdir: Path, edge: str = "") -> object:
    """A loaded config with ENDPOINTS and an [edge] whose CA bundle is a file in ``confdir``."""
    (confdir / "ca.pem").write_text("not checked here\n")
    return load(confdir, with_endpoints(MINIMAL, edge=f'\n[edge]\nca_file = "ca.pem"\n{edge}\n'))


def test_check_finds_an_unsafe_key_a_missing_ca_and_a_missing_binary(confdir: Path) -> None:
    """A client key readable by others, a CA bundle that is not there, no Kamailio: each named."""
    (confdir / "client.pem").write_text("cert\n")
    (confdir / "client.key").write_text("key\n")
    (confdir / "client.key").chmod(0o644)
    config = edge_config(
        confdir,
        'client_certificate = "client.pem"\nclient_key = "client.key"\n'
        'kamailio = "/nonexistent/kamailio"\nmodules_dir = "/nonexistent"',
    )
    edge = attrs.evolve(config.edge, ca_file=str(confdir / "missing.pem"))  # type: ignore[attr-defined]
    found = "\n".join(edge_problems(edge))
    assert "[edge] client_key" in found and "mode 644" in found
    assert "[edge] ca_file" in found and "missing.pem" in found
    assert "[edge] kamailio" in found
    assert "[edge] modules_dir" in found and "tls.so" in found
    (confdir / "client.key").chmod(0o600)
    found = "\n".join(edge_problems(edge))
    assert "client_key" not in found


def test_check_passes_with_debians_kamailio_and_its_tls_module(confdir: Path) -> None:
    """The installed Kamailio and kamailio-tls-modules satisfy the check (CI installs them)."""
    config = edge_config(confdir)
    assert edge_problems(config.edge) == []  # type: ignore[attr-defined]


def test_check_config_reports_the_edge(confdir: Path) -> None:
    """--check-config fails on an edge problem, naming the key, and passes once it is fixed."""
    text = with_endpoints(MINIMAL, edge='\n[edge]\nca_file = "nowhere.pem"\n')
    path = confdir / "gw.toml"
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    assert tap.check_config(str(path), out, err) == 1
    assert "[edge] ca_file" in err.getvalue()
    (confdir / "nowhere.pem").write_text("bundle\n")
    out, err = io.StringIO(), io.StringIO()
    assert tap.check_config(str(path), out, err) == 0, err.getvalue()


def test_routes_pin_an_address_and_match_ports_only_when_a_domain_repeats(confdir: Path) -> None:
    """The edge sends to edge_address when given, else to the name it resolves itself."""
    config = edge_config(confdir)
    found = routes(config.vendor.endpoints)  # type: ignore[attr-defined]
    assert [r.next_hop for r in found] == [
        "sip:sip.api.openai.com:5061;transport=tls",
        "sip:127.0.0.1:5062;transport=tls",
        "sip:10.1.2.3:5080;transport=tcp",
        "sip:10.1.2.4:5060;transport=udp",
    ]
    assert not any(r.match_port for r in found)


def test_kamailio_accepts_the_rendered_files(confdir: Path, tmp_path: Path) -> None:
    """``kamailio -c`` (the real binary) accepts the rendered script and loads every module it names."""
    (confdir / "client.pem").write_text("cert\n")
    (confdir / "client.key").write_text("key\n")
    config = edge_config(
        confdir, 'client_certificate = "client.pem"\nclient_key = "client.key"\nudp_mtu = 1200'
    )
    files = write_edge_files(config, str(tmp_path / "edge"))  # type: ignore[arg-type]
    script = Path(files.kamailio_cfg).read_text()
    assert "udp_mtu=1200" in script and "udp_mtu_try_proto=TCP" in script
    assert '$xavp(tls=>server_name) = "sip.api.openai.com";' in script
    tls = Path(files.tls_cfg).read_text()
    assert f"certificate = {confdir / 'client.pem'}" in tls and "verify_certificate = yes" in tls
    assert oct(Path(files.server_key).stat().st_mode & 0o777) == "0o600"
    argv = edge_argv(config.edge, files)  # type: ignore[attr-defined]
    check = subprocess.run([argv[0], "-c", *argv[1:]], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stderr[-3000:]
    assert "config file ok" in check.stderr


def test_the_edges_reason_is_read_from_its_warning_and_logged_once_a_minute() -> None:
    """Only the edge's own Warning counts; the same reason for an endpoint is logged once per interval."""
    from sippy.SipHeader import SipHeader
    from sippy.SipResponse import SipResponse
    from twisted.internet.task import Clock
    from twisted.logger import capturedLogs

    from lvgateway.sip.edge_reason import EdgeReasonLog, reason_from_edge

    response = SipResponse(scode=503, reason="Vendor Unreachable")
    assert reason_from_edge(response) is None
    response.appendHeader(SipHeader(name="warning", bodys='399 other-proxy "not ours"'))
    response.appendHeader(
        SipHeader(name="warning", bodys='399 lvgateway-edge "no TLS connection to v:5061"')
    )
    assert reason_from_edge(response) == "no TLS connection to v:5061"
    clock = Clock()
    reasons = EdgeReasonLog(clock, interval=60.0)
    with capturedLogs() as events:
        assert reasons.note("sip:a", "why") is True
        assert reasons.note("sip:a", "why") is False
        assert reasons.note("sip:b", "why") is True
        assert reasons.note("sip:a", "another why") is True
        clock.advance(61)
        assert reasons.note("sip:a", "another why") is True
    assert len(events) == 4
    assert "sip:a: why" in events[0]["log_format"].format(**events[0])


def test_the_demos_tls_variant_is_a_valid_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """etc/demo-tls.toml (the README's TLS demo) loads: a TLS endpoint with its domain, and the edge."""
    from lvgateway.config import load_config

    root = Path(__file__).resolve().parent.parent
    for line in (root / "etc" / "demo.env").read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            monkeypatch.setenv(name, value)
    config = load_config(str(root / "etc" / "demo-tls.toml"))
    (endpoint,) = config.vendor.endpoints
    assert (endpoint.host, endpoint.port, endpoint.transport) == ("vendor.demo.test", 5083, "tls")
    assert config.edge is not None and config.edge.ca_file.endswith("var/demo-tls/pki/ca.pem")
    assert [c.name for c in config.child_processes] == ["sandbox", "vendor"]
