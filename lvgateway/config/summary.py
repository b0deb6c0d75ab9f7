"""A one-screen summary of a valid config, for ``--check-config``: what will run, and where each secret came from."""

from __future__ import annotations

from collections import Counter

from lvgateway.config.model import GatewayConfig, OpenHours

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def summarise(config: GatewayConfig) -> str:
    """Return the summary as text; it shows no secret's value, only its source."""
    lines = [f"{config.source}: configuration is valid", ""]
    g, sip, lv = config.gateway, config.sip, config.livevox
    lines.append(f"gateway      {g.name}, state in {g.state_dir}, drain bound {g.drain_timeout:g}s")
    lines.append(
        f"sip          udp {sip.listen_host}:{sip.listen_port}"
        + (f" (advertised {sip.advertised_host})" if sip.advertised_host else "")
        + f", allowed from {', '.join(str(n) for n in sip.allowed_networks)}"
    )
    lines.append(
        f"livevox      {lv.base_url}{'/…/' + lv.version if lv.version else ''}, client {lv.client_name}, "
        f"at most {lv.max_in_flight} requests in flight"
        + (f", contacts as {lv.contact_user.user_name}" if lv.contact_user else "")
    )
    lines.append(f"agents       {_agents(config)}")
    lines.append(f"open hours   {_hours(config.hours)}")
    for i, e in enumerate(config.vendor.endpoints):
        auth = f", digest user {e.username}" if e.username else ""
        media = f", media {e.media_profile}" if e.media_profile != "rtp" else ""
        if e.codec_map is not None:
            media += f", {e.codec_map.livevox} to {e.codec_map.vendor}"
        lines.append(f"vendor [{i}]   {e.uri}{auth}{media}")
    if config.edge is not None:
        edge = config.edge
        lines.append(
            f"edge         Kamailio ({edge.run}) on {edge.listen_host}:{edge.listen_port},"
            f" TLS socket {edge.tls_port}, CA bundle {edge.ca_file}"
            + (", client certificate" if edge.client_certificate else "")
        )
    m = config.media
    lines.append(
        f"media        engine {m.engine}, ports {m.port_min}-{m.port_max} on {m.listen_host}"
    )
    for i, r in enumerate(m.rtpengine):
        lines.append(f"rtpengine [{i}] ng {r.address[0]}:{r.address[1]}, weight {r.weight}")
    lines.append(
        f"term codes   {', '.join(f'{k}={v!r}' for k, v in config.wrapup.term_codes.items())}"
    )
    lines.append(
        f"aia          {config.aia.method + ' ' + config.aia.url if config.aia else 'off'}"
    )
    lines.append(f"control      {config.control_listen}")
    lines.append(f"vendor api   {config.vendor_api.listen if config.vendor_api else 'off'}")
    lines.append(f"manhole      {config.manhole.listen if config.manhole else 'off'}")
    if config.logging.json_file:
        lines.append(f"json log     {config.logging.json_file} (level {config.logging.level})")
    lines.append("")
    lines.append("secrets (values not shown):")
    lines.extend(_secret_sources(config))
    return "\n".join(lines)


def _agents(config: GatewayConfig) -> str:
    agents = config.agents
    services = Counter(a.service_id for a in agents)
    names = [a.user_name for a in agents]
    shown = ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]} … {names[-1]}"
    per_service = ", ".join(f"{n} in service {s}" for s, n in services.items())
    return f"{len(agents)} ({shown}); {per_service}"


def _hours(hours: OpenHours) -> str:
    if hours.always_open:
        return f"always open ({hours.time_zone})"
    days = []
    for name, ranges in zip(_DAYS, hours.weekly, strict=True):
        if ranges:
            spans = ",".join(
                f"{r.start:%H:%M}-{r.end:%H:%M}" if r.end else f"{r.start:%H:%M}-24:00"
                for r in ranges
            )
            days.append(f"{name} {spans}")
    return f"{hours.time_zone}: {'; '.join(days) or 'never open'}; {len(hours.holidays)} holidays"


def _secret_sources(config: GatewayConfig) -> list[str]:
    """List each secret's source, folding the agents' into one line per kind of source."""
    lines: list[str] = []
    agent_sources: Counter[str] = Counter()
    for path, secret in config.secrets():
        if path.startswith("agent"):
            agent_sources[secret.source.split(" ", 1)[0]] += 1
        else:
            lines.append(f"  {path:<34} {secret.source}")
    if agent_sources:
        kinds = ", ".join(f"{n} from {kind}" for kind, n in agent_sources.items())
        lines.append(f"  {'agent passwords':<34} {kinds}")
    if config.manhole is not None:
        lines.append(f"  {'manhole.password_file':<34} file {config.manhole.password_file}")
    return lines
