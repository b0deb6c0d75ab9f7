"""Kamailio's configuration for the edge, rendered from the gateway's config: pure text, no I/O.

Why the script looks as it does (Kamailio 5.6):

- Requests that start a dialog are taken from the gateway only; everything
  else is in-dialog and follows Record-Route (Kamailio record-routes twice
  when the two sides differ in transport), or, from the gateway, its
  Request-URI when the vendor's answer left the Record-Route out.
- 5.6 checks a TLS peer's chain (``verify_certificate``) but not its name, and
  its ``event_route[tls:connection-out]`` is not run for requests relayed by
  ``tm`` (``p_onsend`` is unset there). So the name is checked on the replies:
  every reply that comes over TLS must come on a connection whose certificate
  names the vendor's domain. The gateway's health probe (OPTIONS) is what
  opens a connection; its reply marks the connection's destination checked
  for ``verified_for`` seconds, or closes it and notes why. Other requests
  go only over a connection already open (``set_forward_no_connect``) to a
  destination checked, so an INVITE never opens a TLS connection itself and
  never goes to a peer whose name did not match.
- When the vendor cannot be reached, the gateway gets 503 with a
  ``Warning: 399`` that says why, from the edge's own checks or timers.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from lvgateway.config.model import EdgeConfig, VendorEndpoint

__all__ = ["WARNING_AGENT", "EdgeFiles", "Route", "render_kamailio_cfg", "render_tls_cfg", "routes"]

#: The agent of the `Warning` the edge puts on a reply it makes when a vendor cannot be reached.
WARNING_AGENT = "lvgateway-edge"

#: The Kamailio modules the script uses; ``--check-config`` looks for each.
MODULES = (
    "tm.so",
    "tmx.so",
    "sl.so",
    "rr.so",
    "pv.so",
    "textops.so",
    "xlog.so",
    "maxfwd.so",
    "siputils.so",
    "htable.so",
    "tcpops.so",
    "tls.so",
)


@attrs.frozen
class EdgeFiles:
    """Where the rendered files and the edge's own listen-socket certificate live."""

    directory: str
    kamailio_cfg: str
    tls_cfg: str
    server_certificate: str
    server_key: str

    @classmethod
    def under(cls, directory: str) -> EdgeFiles:
        """The files' places in ``directory`` (the gateway's ``state_dir/edge``)."""
        return cls(
            directory,
            f"{directory}/kamailio.cfg",
            f"{directory}/tls.cfg",
            f"{directory}/listen-cert.pem",
            f"{directory}/listen-key.pem",
        )


@attrs.frozen
class Route:
    """How the edge reaches one endpoint.

    :param domain: the configured host, matched against the Request-URI.
    :param port: the configured port.
    :param transport: udp, tcp or tls.
    :param next_hop: the ``$du`` Kamailio sends to (resolved by Kamailio when a name).
    :param match_port: also match the port (two endpoints share the domain).
    """

    domain: str
    port: int
    transport: str
    next_hop: str
    match_port: bool

    @property
    def dest(self) -> str:
        """The destination's key in the edge's tables and messages."""
        return f"{self.domain}:{self.port}"


def routes(endpoints: Sequence[VendorEndpoint]) -> list[Route]:
    """One route per distinct endpoint destination, in configured order."""
    found: list[Route] = []
    for e in endpoints:
        shared = sum(1 for other in endpoints if other.host.lower() == e.host.lower()) > 1
        host = e.edge_address or e.host
        literal = f"[{host}]" if ":" in host else host
        route = Route(
            e.host.lower(),
            e.port,
            e.transport,
            f"sip:{literal}:{e.port};transport={e.transport}",
            shared,
        )
        if all(r.dest != route.dest for r in found):
            found.append(route)
    return found


def _quoted(text: str) -> str:
    """A Kamailio string literal (the values come from a validated config, but quote anyway)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _vendor_route(route_list: Sequence[Route]) -> str:
    lines = ["route[VENDOR] {"]
    for r in route_list:
        cond = f"$(rd{{s.tolower}}) == {_quoted(r.domain)}"
        if r.match_port:
            cond += f" && $rp == {r.port}"
        lines += [
            f"    if ({cond}) {{",
            f"        $avp(dest) = {_quoted(r.dest)};",
            f"        $avp(domain) = {_quoted(r.domain)};",
            f"        $avp(transport) = {_quoted(r.transport)};",
            f"        $du = {_quoted(r.next_hop)};",
        ]
        if r.transport == "tls":
            lines.append(f"        $xavp(tls=>server_name) = {_quoted(r.domain)};")
        lines += ["        return;", "    }"]
    lines += [
        '    xlog("L_WARN", "refused $rm for $ru: not a configured vendor endpoint\\n");',
        '    sl_send_reply("404", "Not A Configured Vendor");',
        "    exit;",
        "}",
    ]
    return "\n".join(lines)


_SCRIPT = """#!KAMAILIO
# The lvgateway edge, rendered from {source}.
# Edit the gateway's config and restart it; changes here are overwritten.

debug=2
log_stderror=yes
log_facility=LOG_LOCAL0
children=2
tcp_children=2
auto_aliases=no
dns_try_ipv6=no
server_signature=no
listen=udp:{host}:{port}
listen=tcp:{host}:{port}
listen=tls:{host}:{tls_port}
enable_tls=yes
udp_mtu={udp_mtu}
udp_mtu_try_proto=TCP

mpath="{modules_dir}"
{loadmodules}

modparam("tls", "config", "{tls_cfg}")
modparam("tls", "xavp_cfg", "tls")
modparam("tm", "fr_timer", {fr_timer})
modparam("tm", "fr_inv_timer", 120000)
modparam("htable", "htable", "tlsok=>size=6;autoexpire={verified_for};")
modparam("htable", "htable", "tlsbad=>size=6;autoexpire=600;")

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (has_totag()) {{
        route(IN_DIALOG);
        exit;
    }}
    if (is_method("CANCEL")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    if ($si != "{gateway_host}") {{
        xlog("L_WARN", "refused $rm from $si:$sp: only the gateway starts requests here\\n");
        sl_send_reply("403", "Forbidden");
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    t_check_trans();
    route(VENDOR);
    if ($avp(transport) == "tls" && !is_method("OPTIONS")) {{
        if ($sht(tlsok=>$avp(domain)) == $null) {{
            if ($sht(tlsbad=>$avp(domain)) != $null) {{
                $var(why) = $sht(tlsbad=>$avp(domain));
            }} else {{
                $var(why) = "no checked TLS connection to " + $avp(dest) + " yet";
            }}
            xlog("L_WARN", "refused $rm to $avp(dest): $var(why)\\n");
            append_to_reply("Warning: 399 {agent} \\"$var(why)\\"\\r\\n");
            sl_send_reply("503", "Vendor Unreachable");
            exit;
        }}
        set_forward_no_connect();
    }}
    xlog("L_INFO", "$rm $ru via $avp(transport) to $du\\n");
    if (is_method("INVITE")) record_route();
    t_on_failure("EDGE_FAILED");
    if (!t_relay()) {{
        append_to_reply("Warning: 399 {agent} \\"cannot send to $avp(dest)\\"\\r\\n");
        sl_send_reply("503", "Vendor Unreachable");
    }}
    exit;
}}

route[IN_DIALOG] {{
    # The gateway's in-dialog requests go to their Request-URI even when the vendor left
    # out the Record-Route (the edge is the gateway's outbound proxy).
    if (loose_route() || $si == "{gateway_host}") {{
        if ($si == "{gateway_host}" && ($(du{{s.tolower}}) =~ "transport=tls" || $(ru{{s.tolower}}) =~ "transport=tls")) {{
            set_forward_no_connect();
        }}
        if (!t_relay()) sl_reply_error();
        exit;
    }}
    if (is_method("ACK")) {{
        if (t_check_trans()) t_relay();
        exit;
    }}
    sl_send_reply("404", "Not Here");
    exit;
}}

{vendor_route}

reply_route {{
    # Every reply over TLS, before tm sees it: the connection's certificate
    # must name the domain in To (the configured host, for requests the
    # gateway starts). A reply dropped here times its transaction out, and
    # failure_route answers the gateway with the reason.
    if ($proto != "tls") return;
    $var(domain) = $(td{{s.tolower}});
    $var(san) = $(tls_peer_san_hostname{{s.tolower}});
    if ($var(san) == $var(domain) || ($(var(san){{s.substr,0,2}}) == "*." && $(var(san){{s.substr,1,0}}) == $(var(domain){{re.subst,/^[^.]*//}}))) {{
        $sht(tlsok=>$var(domain)) = 1;
        $sht(tlsbad=>$var(domain)) = $null;
        return;
    }}
    $sht(tlsok=>$var(domain)) = $null;
    $sht(tlsbad=>$var(domain)) = "the TLS certificate of " + $var(domain) + " at " + $si + ":" + $sp + " names " + $var(san) + ", not " + $var(domain);
    xlog("L_WARN", "closing the connection to $si:$sp: its certificate names $var(san), not $var(domain)\\n");
    tcp_close_connection();
    drop;
}}

failure_route[EDGE_FAILED] {{
    if (t_is_canceled()) exit;
    if ($T(reply_type) != 1) exit;
    if ($sht(tlsbad=>$avp(domain)) != $null) {{
        $var(why) = $sht(tlsbad=>$avp(domain));
    }} else {{
        if ($avp(transport) == "tls") {{
            $var(why) = "no TLS connection to " + $avp(dest) + ": refused, or its certificate did not verify against the CA bundle";
            $sht(tlsbad=>$avp(domain)) = $var(why);
        }} else {{
            $var(why) = "no reply from " + $avp(dest) + " over " + $avp(transport) + " (" + $T_reply_code + " " + $T_reply_reason + ")";
        }}
    }}
    xlog("L_WARN", "$rm to $avp(dest) failed: $var(why)\\n");
    append_to_reply("Warning: 399 {agent} \\"$var(why)\\"\\r\\n");
    t_reply("503", "Vendor Unreachable");
}}
"""


def render_kamailio_cfg(
    edge: EdgeConfig,
    endpoints: Sequence[VendorEndpoint],
    gateway_host: str,
    files: EdgeFiles,
    source: str = "the gateway's config",
) -> str:
    """Return ``kamailio.cfg`` for the edge.

    :param gateway_host: the address the gateway's requests come from; only
        it may start a dialog through the edge.
    """
    return _SCRIPT.format(
        source=source,
        host=edge.listen_host,
        port=edge.listen_port,
        tls_port=edge.tls_port,
        udp_mtu=edge.udp_mtu,
        modules_dir=edge.modules_dir,
        loadmodules="\n".join(f'loadmodule "{m}"' for m in MODULES),
        tls_cfg=files.tls_cfg,
        fr_timer=int(edge.transaction_timeout * 1000),
        verified_for=edge.verified_for,
        gateway_host=gateway_host,
        agent=WARNING_AGENT,
        vendor_route=_vendor_route(routes(endpoints)),
    )


def render_tls_cfg(edge: EdgeConfig, files: EdgeFiles) -> str:
    """Return ``tls.cfg``: the vendor side verified against the CA bundle, an optional client certificate.

    The server profile exists because Kamailio opens TLS only with a TLS
    listen socket; it listens on loopback with a certificate of its own.
    """
    client = [
        "[client:default]",
        "method = TLSv1.2+",
        "verify_certificate = yes",
        "require_certificate = yes",
        "verify_depth = 9",
        f"ca_list = {edge.ca_file}",
    ]
    if edge.client_certificate is not None and edge.client_key is not None:
        client += [f"certificate = {edge.client_certificate}", f"private_key = {edge.client_key}"]
    server = [
        "[server:default]",
        "method = TLSv1.2+",
        "verify_certificate = no",
        "require_certificate = no",
        f"certificate = {files.server_certificate}",
        f"private_key = {files.server_key}",
    ]
    return "\n".join(server) + "\n\n" + "\n".join(client) + "\n"
