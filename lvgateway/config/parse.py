"""Turn the gateway's TOML file into a :class:`GatewayConfig`, or a :class:`ConfigError` listing every problem.

File I/O stays in :func:`load_config`; :func:`parse_config` works on text, so
tests feed it strings. Relative paths in the file (secrets, the state
directory, the manhole's password file) are resolved against the file's own
folder, so the gateway reads the same files whatever its working directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import sys
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lvgateway.config.endpoints import is_loopback
from lvgateway.config.media_profiles import (
    LIVEVOX_CODECS,
    MEDIA_PROFILES,
    VENDOR_CODECS,
    CodecMap,
    codec_map_supported,
    profile_supported,
)
from lvgateway.config.model import (
    AIA_FIELDS,
    END_REASONS,
    AgentConfig,
    AgentTimings,
    AiaConfig,
    ChildProcessConfig,
    EdgeConfig,
    GatewayConfig,
    GatewayIdentity,
    HepConfig,
    IPNetwork,
    LiveVoxConfig,
    LiveVoxUser,
    LoggingConfig,
    ManholeConfig,
    MediaConfig,
    OpenHours,
    RtpengineInstance,
    SipConfig,
    TimeRange,
    VendorApiConfig,
    VendorConfig,
    VendorEndpoint,
    WrapupConfig,
    phone_key,
)
from lvgateway.config.reader import ConfigError, Problem, Problems, Table, read_secret_file
from lvgateway.config.secret import Secret

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_PHONE = re.compile(r"^\+?\d{4,15}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_VERSION = re.compile(r"^v\d+(\.\d+)*$")
_SIP_URI = re.compile(
    r"^(?P<scheme>sips?):(?:(?P<user>[^@;]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[^:;>]+)(?::(?P<port>\d+))?"
    r"(?P<params>(?:;[A-Za-z0-9_.!~*'()%-]+(?:=[A-Za-z0-9_.!~*'()%-]+)?)*)$"
)
_TRANSPORTS = ("udp", "tcp", "tls")


def load_config(path: str) -> GatewayConfig:
    """Read and validate the config file at ``path``.

    :raises ConfigError: naming every problem, the unreadable file included.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(path, [Problem("", f"cannot read the config file: {e}")]) from e
    return parse_config(text, source=path)


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    """Validate TOML ``text`` into a :class:`GatewayConfig`.

    :param source: the file name to put in messages; relative paths in the
        config are resolved against its folder.
    :raises ConfigError: naming every problem found, not only the first.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [Problem("", f"invalid TOML: {e}")]) from e
    problems = Problems(Path(source).resolve().parent)
    root = Table(problems, "", data)
    config = _gateway_config(root, source)
    root.finish()
    if problems.found:
        raise ConfigError(source, problems.found)
    return config


def _gateway_config(root: Table, source: str) -> GatewayConfig:
    agents = _agents(root)
    wrapup = _wrapup(root)
    control_listen, control_token, control_show_numbers = _control(root)
    config = GatewayConfig(
        source=source,
        gateway=_identity(root),
        sip=_sip(root),
        livevox=_livevox(root),
        agents=agents,
        agent_timings=_agent_timings(root),
        hours=_hours(root),
        vendor=_vendor(root),
        media=_media(root),
        wrapup=wrapup,
        aia=_aia(root),
        control_listen=control_listen,
        vendor_api=_vendor_api(root),
        manhole=_manhole(root),
        logging=_logging(root),
        child_processes=tuple(_child(t) for t in root.tables("child_processes")),
        control_token=control_token,
        control_show_numbers=control_show_numbers,
        hep=_hep(root),
        edge=_edge(root),
    )
    if not agents and not root.problems.found:
        root.problems.add(
            "agents", "no agents: expected at least one [[agents]] or [[agent_ranges]]"
        )
    _check_stranded_grace(root, config)
    _check_media_profiles(root, config)
    _check_edge_needed(root, config)
    return config


def _check_media_profiles(root: Table, config: GatewayConfig) -> None:
    """An endpoint's media profile or codec map must be one the configured engine can carry."""
    engine = config.media.engine
    for i, endpoint in enumerate(config.vendor.endpoints):
        if not profile_supported(engine, endpoint.media_profile):
            root.problems.add(
                f"vendor.endpoints[{i}].media_profile",
                f"found {endpoint.media_profile!r}, but media.engine = {engine!r} relays plain "
                "RTP only: SRTP toward the vendor needs the rtpengine engine",
            )
        if endpoint.codec_map is not None and not codec_map_supported(engine):
            root.problems.add(
                f"vendor.endpoints[{i}].codec_map",
                f"found a codec map, but media.engine = {engine!r} does not transcode: "
                "a codec map needs the rtpengine engine",
            )


#: The longest an INVITE's setup can take: LiveVox retransmits it over UDP
#: until its transaction times out (RFC 3261 Timer B, 64 x T1 = 32 s).
INVITE_SETUP_BOUND = 32.0


def _check_stranded_grace(root: Table, config: GatewayConfig) -> None:
    """A call is taken as stranded only once its INVITE could no longer arrive and be confirmed."""
    timings, wrapup = config.agent_timings, config.wrapup
    least = wrapup.confirm_within + INVITE_SETUP_BOUND
    if timings.repair_stranded and timings.stranded_grace <= least:
        root.problems.add(
            "agent_timings.stranded_grace",
            f"found {timings.stranded_grace:g}, expected more than wrapup.confirm_within"
            f" + {INVITE_SETUP_BOUND:g} s of INVITE setup ({least:g}): a call still being"
            " set up would be closed as stranded",
        )


def _identity(root: Table) -> GatewayIdentity:
    t = _section(root, "gateway")
    identity = GatewayIdentity(
        name=t.string("name", "lvgateway"),
        state_dir=t.path_value("state_dir"),
        drain_timeout=t.number("drain_timeout", 120.0, low=1.0),
        call_drain_timeout=t.number("call_drain_timeout", 60.0, low=0.0),
    )
    if identity.call_drain_timeout >= identity.drain_timeout:
        t.problems.add(
            t.key("call_drain_timeout"),
            f"found {identity.call_drain_timeout:g}, expected less than drain_timeout "
            f"({identity.drain_timeout:g}): the wrap-ups and log-outs come after the calls",
        )
    t.finish()
    return identity


def _sip(root: Table) -> SipConfig:
    t = _section(root, "sip")
    networks: list[IPNetwork] = []
    for i, text in enumerate(t.strings("allowed_networks")):
        try:
            networks.append(ipaddress.ip_network(text, strict=True))
        except ValueError as e:
            t.problems.add(
                f"{t.key('allowed_networks')}[{i}]",
                f"found {text!r}, expected a network in CIDR form such as 10.0.0.0/8 ({e})",
            )
    if "allowed_networks" in t.data and not t.data["allowed_networks"]:
        t.problems.add(t.key("allowed_networks"), "empty: no LiveVox network could call in")
    sip = SipConfig(
        listen_host=_ip_literal(t, "listen_host", "0.0.0.0"),
        listen_port=t.integer("listen_port", 5070, low=0, high=65535),
        advertised_host=_ip_literal(t, "advertised_host", None),
        allowed_networks=tuple(networks),
        # Below RFC 4028's 90 s only for tests: short session timers in real time.
        session_min_se=t.integer("session_min_se", 90, low=1, high=86400),
        max_invites_per_second=t.number("max_invites_per_second", 0.0),
        shed_on_reactor_lag=t.boolean("shed_on_reactor_lag", True),
        receive_buffer_bytes=t.integer(
            "receive_buffer_bytes", 4 * 1024 * 1024, low=0, high=1024 * 1024 * 1024
        ),
    )
    t.finish()
    return sip


def _livevox(root: Table) -> LiveVoxConfig:
    t = _section(root, "livevox")
    base_url = t.checked("base_url", _https_base_url, "an http(s) URL with no path")
    version = t.string("version", "", allow_empty=True)
    if version and not _VERSION.match(version):
        t.problems.add(t.key("version"), f"found {version!r}, expected a version such as 'v6.0'")
    contact = t.table("contact_user")
    contact_user = None
    if contact is not None:
        contact_user = LiveVoxUser(
            user_name=contact.string("user_name"),
            password=contact.secret("password"),  # type: ignore[arg-type]
        )
        contact.finish()
    ca_bundle = t.path_value("ca_bundle", None)
    if ca_bundle and not Path(ca_bundle).is_file():
        t.problems.add(t.key("ca_bundle"), f"CA bundle {ca_bundle} does not exist")
    livevox = LiveVoxConfig(
        base_url=base_url or "",
        version=version or None,
        client_name=t.string("client_name"),
        token=t.secret("token"),  # type: ignore[arg-type]
        request_timeout=t.number("request_timeout", 10.0, low=0.1),
        max_in_flight=t.integer("max_in_flight", 20, low=1, high=1000),
        max_retries=t.integer("max_retries", 3, low=0, high=20),
        retry_base_delay=t.number("retry_base_delay", 0.5, low=0.0),
        retry_max_delay=t.number("retry_max_delay", 10.0, low=0.0),
        ca_bundle=ca_bundle,
        password_expiry_warning_days=t.integer("password_expiry_warning_days", 14, low=0),
        contact_user=contact_user,
        contact_create_method=t.string("contact_create_method", "POST", choices=("POST", "PUT")),
    )
    t.finish()
    return livevox


def _https_base_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("no http or https scheme and host")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError("a path or query is not allowed here")
    return text.rstrip("/")


def _agents(root: Table) -> tuple[AgentConfig, ...]:
    agents = [_agent(t) for t in root.tables("agents")]
    for r in root.tables("agent_ranges"):
        agents.extend(_agent_range(r))
    _check_unique(root.problems, agents, lambda a: a.user_name.lower(), "user name")
    _check_unique(root.problems, agents, lambda a: phone_key(a.phone_number), "899 number")
    return tuple(agents)


def _agent(t: Table) -> AgentConfig:
    agent = AgentConfig(
        user_name=t.string("user_name"),
        password=t.secret("password"),  # type: ignore[arg-type]
        phone_number=_phone(t, "phone_number"),
        service_id=_service_id(t),
        origin=t.path,
    )
    t.finish()
    return agent


def _agent_range(t: Table) -> list[AgentConfig]:
    """Expand ``[[agent_ranges]]``: agents ``first`` .. ``first + count - 1``.

    ``user_name`` is a pattern with ``{n}`` (``"AIVA{n:03d}"``); the 899 number
    counts up from ``phone_number_first``; ``password_file`` or
    ``password_env`` may use ``{n}`` and ``{user_name}``.
    """
    pattern = t.string("user_name")
    first = t.integer("first", 1, low=0)
    count = t.integer("count", low=1, high=10000)
    start = _phone(t, "phone_number_first")
    service_id = _service_id(t)
    names = _expand_pattern(t, pattern, first, count)
    agents: list[AgentConfig] = []
    if not names or not start:
        t.secret("password")  # taken, so its key is not reported as unknown
    for i, (n, user_name) in enumerate(names if start else []):
        password = t.secret("password", n=str(n), user_name=user_name)
        if password is None:
            break  # one message for the range is enough
        digits = start.lstrip("+")
        number = ("+" if start.startswith("+") else "") + f"{int(digits) + i:0{len(digits)}d}"
        agents.append(AgentConfig(user_name, password, number, service_id, f"{t.path}(n={n})"))
    t.finish()
    return agents


def _expand_pattern(t: Table, pattern: str, first: int, count: int) -> list[tuple[int, str]]:
    if not pattern:
        return []
    try:
        if pattern.format(n=0) == pattern.format(n=1):
            raise ValueError("it does not use {n}")
        return [(n, pattern.format(n=n)) for n in range(first, first + count)]
    except (ValueError, IndexError, KeyError) as e:
        t.problems.add(
            t.key("user_name"), f"found {pattern!r}, expected a pattern with {{n}} ({e})"
        )
        return []


def _phone(t: Table, key: str) -> str:
    value: str = t.string(key)
    if value and not _PHONE.match(value):
        t.problems.add(t.key(key), f"found {value!r}, expected digits with an optional leading +")
        return ""
    return value


def _service_id(t: Table) -> str:
    """Take a service id, given as a string or an integer, kept as a string as LiveVox's ids are."""
    t._taken.add("service_id")
    value = t.data.get("service_id")
    if value is None:
        t.problems.add(t.key("service_id"), "missing: this key is required")
        return ""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        t.problems.add(
            t.key("service_id"), f"found {value!r}, expected LiveVox's numeric service id"
        )
        return ""
    return str(value)


def _check_unique(problems: Problems, agents: list[AgentConfig], key: Any, what: str) -> None:
    seen: dict[str, AgentConfig] = {}
    for agent in agents:
        k = key(agent)
        if not k:
            continue
        if k in seen:
            problems.add(
                agent.origin,
                f"duplicate {what} {k!r}: {seen[k].origin} has it too; each agent needs its own",
            )
        else:
            seen[k] = agent


def _agent_timings(root: Table) -> AgentTimings:
    t = _section(root, "agent_timings")
    timings = AgentTimings(
        login_concurrency=t.integer("login_concurrency", 10, low=1, high=1000),
        cycle_interval=t.number("cycle_interval", 3600.0, low=60.0),
        reconcile_interval=t.number("reconcile_interval", 300.0, low=10.0),
        backoff_base=t.number("backoff_base", 1.0, low=0.01),
        backoff_max=t.number("backoff_max", 300.0, low=0.01),
        not_ready_reason=t.string("not_ready_reason", None),
        repair_stranded=t.boolean("repair_stranded", True),
        stranded_grace=t.number("stranded_grace", 60.0, low=1.0),
    )
    if timings.cycle_interval >= 7200.0:
        t.problems.add(
            t.key("cycle_interval"),
            f"found {timings.cycle_interval}, expected under 7200: LiveVox sessions die after 2 idle hours",
        )
    t.finish()
    return timings


def _hours(root: Table) -> OpenHours:
    t = _section(root, "hours")
    zone = t.checked("time_zone", _zone, "an IANA time zone such as 'America/New_York'")
    always_open = t.boolean("always_open", False)
    weekly_table = t.table("weekly", required=not always_open)
    weekly: list[tuple[TimeRange, ...]] = [() for _ in WEEKDAYS]
    if weekly_table is not None:
        for day_index, day in enumerate(WEEKDAYS):
            for i, text in enumerate(weekly_table.strings(day, [])):
                found = _time_range(text)
                if found is None:
                    weekly_table.problems.add(
                        f"{weekly_table.key(day)}[{i}]",
                        f"found {text!r}, expected 'HH:MM-HH:MM' with the end after the start",
                    )
                else:
                    weekly[day_index] += (found,)
        weekly_table.finish()
    holidays: set[datetime.date] = set()
    for i, text in enumerate(t.strings("holidays", [])):
        try:
            holidays.add(datetime.date.fromisoformat(text))
        except ValueError:
            t.problems.add(
                f"{t.key('holidays')}[{i}]", f"found {text!r}, expected a date YYYY-MM-DD"
            )
    hours = OpenHours(
        time_zone=zone or "UTC",
        always_open=always_open,
        weekly=tuple(weekly),
        holidays=frozenset(holidays),
        lead_time=t.number("lead_time", 300.0, low=0.0),
    )
    t.finish()
    return hours


def _zone(name: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError("unknown time zone") from e
    return name


def _time_range(text: str) -> TimeRange | None:
    m = re.fullmatch(r"(\d\d):(\d\d)-(\d\d):(\d\d)", text.strip())
    if not m:
        return None
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
        return None
    start = datetime.time(h1, m1)
    end = None if h2 == 24 else datetime.time(h2, m2)
    if end is not None and end <= start:
        return None
    return TimeRange(start, end)


def _vendor(root: Table) -> VendorConfig:
    t = _section(root, "vendor")
    endpoints = tuple(_endpoint(e) for e in t.tables("endpoints"))
    if not endpoints:
        t.problems.add(
            t.key("endpoints"), "no endpoints: expected at least one [[vendor.endpoints]]"
        )
    headers = t.string_table("headers")
    passed = t.strings("pass_through_headers", [])
    for name in [*headers, *passed]:
        if not _HEADER_NAME.match(name):
            t.problems.add(t.key("headers"), f"found header name {name!r}, expected a SIP token")
    vendor = VendorConfig(
        endpoints=tuple(e for e in endpoints if e is not None),
        static_headers=tuple(headers.items()),
        pass_through_headers=tuple(passed),
        max_invite_bytes=t.integer("max_invite_bytes", 1300, low=500, high=65000),
        health_interval=t.number("health_interval", 5.0, low=0.5),
        health_failures=t.integer("health_failures", 3, low=1),
        no_progress_time=t.number("no_progress_time", 5.0, low=0.5),
        no_answer_time=t.number("no_answer_time", 30.0, low=1.0),
        max_call_duration=t.number("max_call_duration", 7200.0, low=10.0),
        silence_timeout=t.number("silence_timeout", 4.0, low=0.5),
        options_timeout=t.number("options_timeout", 2.0, low=0.2),
        session_expires=t.integer("session_expires", 1800, low=0, high=86400),
        refer_targets={k.lower(): v for k, v in t.string_table("refer_targets").items()},
        mute_on_transfer=t.boolean("mute_on_transfer", True),
    )
    t.finish()
    return vendor


def _endpoint(t: Table) -> VendorEndpoint | None:
    uri = t.string("uri")
    username = t.string("username", None)
    password = t.secret("password", required=username is not None)
    if password is not None and username is None:
        t.problems.add(t.key("username"), "missing: a digest password needs a user name")
    media_profile = t.string("media_profile", "rtp", choices=MEDIA_PROFILES)
    codec_map = _codec_map(t)
    edge_address = _ip_literal(t, "edge_address", None)
    t.finish()
    m = _SIP_URI.match(uri) if uri else None
    if uri and m is None:
        t.problems.add(
            t.key("uri"), f"found {uri!r}, expected a SIP URI such as 'sip:bot@10.1.2.3:5060'"
        )
    if m is None:
        return None
    params = dict(
        (p.split("=", 1) + [""])[:2] for p in m["params"].lower().split(";") if p
    )
    transport = "tls" if m["scheme"] == "sips" else params.get("transport", "udp")
    if transport not in _TRANSPORTS:
        t.problems.add(
            t.key("uri"), f"found transport {transport!r} in {uri!r}, expected udp, tcp or tls"
        )
    port = int(m["port"] or (5061 if transport == "tls" else 5060))
    if not 0 < port < 65536:
        t.problems.add(t.key("uri"), f"found port {port} in {uri!r}, expected 1..65535")
    return VendorEndpoint(
        uri,
        m["user"],
        m["host"].strip("[]"),
        port,
        username,
        password,
        media_profile=media_profile,
        codec_map=codec_map,
        transport=transport,
        edge_address=edge_address,
    )


def _codec_map(endpoint: Table) -> CodecMap | None:
    """``codec_map = { livevox = "PCMU", vendor = "G722" }``, or None when absent."""
    t = endpoint.table("codec_map")
    if t is None:
        return None
    already = len(t.problems.found)
    livevox = t.string("livevox", choices=LIVEVOX_CODECS)
    vendor = t.string("vendor", choices=VENDOR_CODECS)
    t.finish()
    if len(t.problems.found) > already:
        return None
    if livevox == vendor:
        t.problems.add(t.key("vendor"), f"found {vendor!r} on both sides: nothing to transcode")
    return CodecMap(livevox=livevox, vendor=vendor)


def _edge(root: Table) -> EdgeConfig | None:
    """Take ``[edge]``: the Kamailio that relays the vendor leg over TLS, TCP or UDP."""
    t = root.table("edge")
    if t is None:
        return None
    key = t.path_value("client_key", None)
    edge = EdgeConfig(
        listen_host=_ip_literal(t, "listen_host", "127.0.0.1"),
        listen_port=t.integer("listen_port", 5090, low=1, high=65535),
        tls_port=t.integer("tls_port", 5091, low=1, high=65535),
        ca_file=t.path_value("ca_file", "/etc/ssl/certs/ca-certificates.crt"),
        client_certificate=t.path_value("client_certificate", None),
        client_key=key,
        kamailio=t.string("kamailio", "/usr/sbin/kamailio"),
        modules_dir=t.string("modules_dir", "/usr/lib/x86_64-linux-gnu/kamailio/modules"),
        run=t.string("run", "child", choices=("child", "external")),
        udp_mtu=t.integer("udp_mtu", 1300, low=500, high=65000),
        transaction_timeout=t.number("transaction_timeout", 3.0, low=0.5),
        verified_for=t.integer("verified_for", 120, low=5),
    )
    if (edge.client_certificate is None) != (key is None):
        t.problems.add(
            t.key("client_key"), "client_certificate and client_key go together (mutual TLS)"
        )
    if edge.tls_port == edge.listen_port:
        t.problems.add(t.key("tls_port"), f"found {edge.tls_port}, the same as listen_port")
    host = edge.listen_host
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = True  # not an address at all: _ip_literal said so already
    if not loopback:
        t.problems.add(
            t.key("listen_host"), f"found {host!r}, expected a loopback address: the edge is local"
        )
    t.finish()
    return edge


def _check_edge_needed(root: Table, config: GatewayConfig) -> None:
    """A TLS or TCP endpoint cannot be dialled without the edge: say which one."""
    if config.edge is not None:
        return
    for i, e in enumerate(config.vendor.endpoints):
        if e.transport != "udp":
            root.problems.add(
                f"vendor.endpoints[{i}].uri",
                f"found {e.uri!r}: {e.transport.upper()} toward the vendor needs an [edge]"
                " section (the gateway itself speaks UDP only)",
            )
        if e.edge_address is not None:
            root.problems.add(
                f"vendor.endpoints[{i}].edge_address", "set, but no [edge] section is configured"
            )


def _media(root: Table) -> MediaConfig:
    t = _section(root, "media")
    media = MediaConfig(
        engine=t.string("engine", "auto", choices=("auto", "rtpio", "twisted", "rtpengine")),
        listen_host=_ip_literal(t, "listen_host", "0.0.0.0"),
        advertised_host=_ip_literal(t, "advertised_host", None),
        port_min=t.integer("port_min", 20000, low=1024, high=65534),
        port_max=t.integer("port_max", 29999, low=1024, high=65535),
        initial_timeout=t.number("initial_timeout", 60.0, low=1.0),
        timeout=t.number("timeout", 120.0, low=1.0),
        vendor_latching=t.string("vendor_latching", "strict", choices=("strict", "first_packet")),
        rtpengine=_rtpengine_instances(t),
    )
    if media.engine == "rtpengine" and not media.rtpengine:
        t.problems.add(
            t.key("rtpengine"),
            'no instances: engine = "rtpengine" needs at least one [[media.rtpengine]]',
        )
    if media.port_min % 2:
        t.problems.add(t.key("port_min"), f"found {media.port_min}, expected an even port (RTP)")
    if media.port_max - media.port_min < 3:
        t.problems.add(
            t.key("port_max"),
            f"found {media.port_min}..{media.port_max}, expected room for four ports a call",
        )
    t.finish()
    return media


def _rtpengine_instances(media: Table) -> tuple[RtpengineInstance, ...]:
    """Take the ``[[media.rtpengine]]`` entries: each ``address = "IP:PORT"`` (ng, UDP) and a ``weight``."""
    instances: list[RtpengineInstance] = []
    for t in media.tables("rtpengine"):
        text = t.string("address")
        weight = t.integer("weight", 1, low=1, high=1000)
        t.finish()
        if not isinstance(text, str) or not text:
            continue
        try:
            address = _hep_address(text)
        except ValueError as e:
            t.problems.add(
                t.key("address"),
                f"found {text!r}, expected rtpengine's ng socket as IP:PORT such as"
                f" '127.0.0.1:2223' ({e})",
            )
            continue
        if any(i.address == address for i in instances):
            t.problems.add(t.key("address"), f"found {text!r} twice, expected each instance once")
            continue
        instances.append(RtpengineInstance(address, weight))
    return tuple(instances)


def _wrapup(root: Table) -> WrapupConfig:
    t = _section(root, "wrapup")
    codes = t.string_table("term_codes")
    if "term_codes" not in t.data:
        t.problems.add(
            t.key("term_codes"), "missing: name the term codes, such as done and transfer"
        )

    def named(key: str, default: Any = None, table: Table = t) -> str:
        value: str = table.string(key) if default is None else table.string(key, default)
        if value and codes and value not in codes:
            table.problems.add(
                table.key(key),
                f"found {value!r}, expected one of wrapup.term_codes: {', '.join(sorted(codes))}",
            )
        return value

    defaults_table = t.table("defaults", required=True)
    defaults: dict[str, str] = {}
    if defaults_table is not None:
        for reason in END_REASONS:
            defaults[reason] = named(reason, table=defaults_table)
        defaults_table.finish()
    wrapup = WrapupConfig(
        term_codes=codes,
        defaults=defaults,
        fallback_term_code=named("fallback_term_code"),
        transfer_term_code=named("transfer_term_code"),
        stranded_term_code=named("stranded_term_code", "") or None,
        transfer_order=t.string(
            "transfer_order",
            "term_code_then_end",
            choices=("term_code_then_end", "end_then_term_code"),
        ),
        transfer_timeout=t.number("transfer_timeout", 10.0, low=0.5),
        conference_order=t.string(
            "conference_order",
            "conference_then_term_code",
            choices=("conference_then_term_code", "term_code_then_conference"),
        ),
        create_missing_contacts=t.boolean("create_missing_contacts", False),
        max_age=t.number("max_age", 86400.0, low=60.0),
        retention=t.number("retention_days", 30.0, low=0.0) * 86400.0,
        confirm_calls=t.boolean("confirm_calls", True),
        confirm_within=t.number("confirm_within", 10.0, low=1.0),
        confirm_polls=t.integer("confirm_polls", 6, low=2, high=20),
    )
    t.finish()
    return wrapup


def _aia(root: Table) -> AiaConfig | None:
    t = root.table("aia")
    if t is None:
        return None
    url = t.checked("url", _http_url, "an http(s) URL")
    renames = t.string_table("field_names")
    for name in renames:
        if name not in AIA_FIELDS:
            t.problems.add(
                f"{t.key('field_names')}.{name}",
                "unknown AIA field, expected one of transactionId, sessionId, ani, accountNumber, "
                "nextAction, callOutcome, lvresult, Other1..Other20",
            )
    aia = AiaConfig(
        url=url or "",
        method=t.string("method", "POST", choices=("POST", "PUT")),
        auth_header=t.string("auth_header", "Authorization"),
        token=t.secret("token", required=False),
        headers=tuple(t.string_table("headers").items()),
        field_names={f: renames.get(f, f) for f in AIA_FIELDS},
        timeout=t.number("timeout", 10.0, low=0.1),
    )
    t.finish()
    return aia


def _http_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("no http or https scheme and host")
    return text


def _refuse_cleartext_beyond_loopback(t: Table, listen: str) -> None:
    """Refuse a cleartext TCP listener bound beyond loopback: it carries a bearer token."""
    kind = listen.split(":", 1)[0].lower()
    if kind in ("tcp", "tcp6") and not is_loopback(listen):
        t.problems.add(
            t.key("listen"),
            f"found {listen!r}: bound beyond loopback without TLS; expected "
            "interface=127.0.0.1 (or ::1), or an ssl: endpoint",
        )


def _control(root: Table) -> tuple[str, Secret | None, bool]:
    t = _section(root, "control")
    listen = _endpoint_string(t, "listen", "tcp:9780:interface=127.0.0.1")
    if listen:
        _refuse_cleartext_beyond_loopback(t, listen)
    token = t.secret("token", required=False)
    show_numbers = bool(t.boolean("show_numbers", False))
    t.finish()
    return listen, token, show_numbers


def _vendor_api(root: Table) -> VendorApiConfig | None:
    t = root.table("vendor_api")
    if t is None:
        return None
    listen = _endpoint_string(t, "listen")
    if listen:
        _refuse_cleartext_beyond_loopback(t, listen)
    api = VendorApiConfig(
        listen=listen,
        token=t.secret("token"),  # type: ignore[arg-type]
    )
    t.finish()
    return api


def _manhole(root: Table) -> ManholeConfig | None:
    t = root.table("manhole")
    if t is None:
        return None
    listen = _endpoint_string(t, "listen", "tcp:2323:interface=127.0.0.1")
    if listen and not is_loopback(listen):
        t.problems.add(
            t.key("listen"),
            f"found {listen!r}, expected a tcp endpoint with interface=127.0.0.1 or ::1: "
            "telnet is cleartext",
        )
    password_file = t.path_value("password_file")
    if password_file:
        read_secret_file(t.problems, t.key("password_file"), password_file)
    manhole = ManholeConfig(listen=listen, password_file=password_file)
    t.finish()
    return manhole


def _hep_address(text: str) -> tuple[str, int]:
    """``(ip, port)`` from ``127.0.0.1:9060`` or ``[::1]:9060``; raises ValueError."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError("no port")
    ip = ipaddress.ip_address(host.strip("[]"))
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {number} out of range")
    return str(ip), number


def _hep(root: Table) -> HepConfig:
    t = _section(root, "hep")
    text = t.string("address", "127.0.0.1:9060")
    address = ("127.0.0.1", 9060)
    if isinstance(text, str):
        try:
            address = _hep_address(text)
        except ValueError as e:
            t.problems.add(
                t.key("address"), f"found {text!r}, expected IP:PORT such as '127.0.0.1:9060' ({e})"
            )
    hep = HepConfig(
        address=address,
        capture_id=t.integer("capture_id", 2001, low=0, high=0xFFFFFFFF),
        enabled=bool(t.boolean("enabled", False)),
        auth_key=t.secret("auth_key", required=False),
    )
    t.finish()
    return hep


def _child(t: Table) -> ChildProcessConfig:
    """Take one ``[[child_processes]]`` entry."""
    argv = t.strings("argv")
    if "argv" in t.data and not argv:
        t.problems.add(t.key("argv"), "empty: expected the command line as an array of strings")
    bindir = str(Path(sys.executable).parent)
    child = ChildProcessConfig(
        name=t.string("name"),
        argv=tuple(a.replace("{python}", sys.executable).replace("{bindir}", bindir) for a in argv),
        env=t.string_table("env"),
        cwd=t.path_value("cwd", "."),
        stop_timeout=t.number("stop_timeout", 15.0, low=0.1),
        ready_url=t.checked("ready_url", _http_url, "an http(s) URL", None),
        ready_timeout=t.number("ready_timeout", 30.0, low=0.1),
    )
    t.finish()
    return child


def _logging(root: Table) -> LoggingConfig:
    t = _section(root, "logging")
    logging = LoggingConfig(
        level=t.string("level", "info", choices=("debug", "info", "warn", "error", "critical")),
        json_file=t.path_value("json_file", None),
        rotate=t.string("rotate", "size", choices=("size", "daily")),
        max_bytes=t.integer("max_bytes", 100_000_000, low=4096),
        keep=t.integer("keep", 10, low=1),
    )
    t.finish()
    return logging


def _section(root: Table, name: str) -> Table:
    """Take a table whose keys all have defaults: absent means all defaults."""
    found = root.table(name)
    return found if found is not None else Table(root.problems, name, {})


def _ip_literal(t: Table, key: str, default: str | None) -> Any:
    value = t.string(key, default)
    if key in t.data and isinstance(value, str) and value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            t.problems.add(t.key(key), f"found {value!r}, expected an IP address")
    return value


def _endpoint_string(t: Table, key: str, default: str | None = None) -> str:
    """Take a Twisted server endpoint string, checked by building (not listening on) it."""
    from twisted.internet import endpoints

    value: str = t.string(key) if default is None else t.string(key, default)
    if not value:
        return value
    try:
        endpoints.serverFromString(_NOT_A_REACTOR, value)  # type: ignore[no-untyped-call]
    except Exception as e:  # the parser raises several types, each a bad string
        t.problems.add(
            t.key(key),
            f"found {value!r}, expected a Twisted endpoint such as 'tcp:9780:interface=127.0.0.1' ({e})",
        )
    return value


#: Building an endpoint does not touch the reactor; this stands in for one in checks.
_NOT_A_REACTOR: Any = object()
