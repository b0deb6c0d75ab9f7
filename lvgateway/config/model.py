"""The shape of the gateway's configuration, as frozen attrs classes.

These are plain values: :mod:`lvgateway.config.parse` checks every field
before it builds one, so the classes carry no validators of their own.
Durations are in seconds, as floats.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Mapping
from typing import Literal

import attrs

from lvgateway.config.media_profiles import CodecMap, MediaProfile
from lvgateway.config.secret import Secret

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The reasons a call can end without a disposition from the vendor; each has
#: a configured default term code.
END_REASONS = ("caller_hangup", "vendor_hangup", "setup_failed", "timeout", "gateway_failure")

#: The AIA fields LiveVox's guide lists; the client-specific endpoint may
#: rename them (``[aia.field_names]``).
AIA_FIELDS = (
    "transactionId",
    "sessionId",
    "ani",
    "accountNumber",
    "nextAction",
    "callOutcome",
    "lvresult",
    *(f"Other{i}" for i in range(1, 21)),
)

MediaEngine = Literal["auto", "rtpio", "twisted", "rtpengine"]
TransferOrder = Literal["term_code_then_end", "end_then_term_code"]
ConferenceOrder = Literal["conference_then_term_code", "term_code_then_conference"]
HttpMethod = Literal["POST", "PUT"]


@attrs.frozen
class GatewayIdentity:
    """Who this gateway is, where it keeps its state, and how long it drains.

    :param name: a name for this instance, in logs and the ``User-Agent``.
    :param state_dir: where the call store lives.
    :param drain_timeout: the bound on the whole ordered drain at stop.
    :param call_drain_timeout: how long calls in progress may go on during the
        drain before they are ended with BYE; part of ``drain_timeout``.
    """

    name: str
    state_dir: str
    drain_timeout: float
    call_drain_timeout: float


@attrs.frozen
class SipConfig:
    """The SIP listener that LiveVox sends INVITEs to.

    :param listen_host: the IP literal to bind.
    :param listen_port: the UDP port (the guide's sample uses 5070).
    :param advertised_host: the address put in Contact and Via, when the
        bound one is not reachable from LiveVox (NAT); ``None`` for the bound one.
    :param allowed_networks: LiveVox's source networks; datagrams from
        elsewhere are dropped unanswered.
    :param session_min_se: the shortest session interval (RFC 4028 Min-SE)
        accepted on either leg; shorter gets 422. RFC 4028's floor is 90 s:
        lower values are for tests only.
    :param max_invites_per_second: new INVITEs past this rate get 503 with
        Retry-After (a token bucket holding one second's worth); 0 for no limit.
    :param shed_on_reactor_lag: new INVITEs get 503 while the reactor lags
        past the stall threshold on each of its recent ticks.
    :param receive_buffer_bytes: the SIP socket's receive buffer asked of the
        kernel (Linux caps it at ``net.core.rmem_max``); 0 for the kernel's default.
    """

    listen_host: str
    listen_port: int
    advertised_host: str | None
    allowed_networks: tuple[IPNetwork, ...]
    session_min_se: int = 90
    max_invites_per_second: float = 0.0
    shed_on_reactor_lag: bool = True
    receive_buffer_bytes: int = 4 * 1024 * 1024


@attrs.frozen
class LiveVoxUser:
    """A LiveVox user login, such as the optional one for the Contact API."""

    user_name: str
    password: Secret


@attrs.frozen
class LiveVoxConfig:
    """How to reach LiveVox's REST API.

    :param base_url: scheme and host, such as ``https://api.livevox.com``.
    :param version: a path version such as ``v6.0`` put after the API
        category, or ``None`` for the unversioned paths the guide uses.
    :param client_name: the ``clientName`` of every login.
    :param token: the API token sent as ``LV-Access``.
    :param request_timeout: the bound on one request, body included.
    :param max_in_flight: the cap on requests outstanding to LiveVox at once.
    :param max_retries: how many times a request that is safe to repeat is retried.
    :param retry_base_delay: the first retry's delay; it doubles, with jitter.
    :param retry_max_delay: the ceiling on one retry's delay.
    :param ca_bundle: a PEM file of CAs to verify LiveVox with, instead of the system's.
    :param password_expiry_warning_days: warn at login when a password
        expires within this many days.
    :param contact_user: a separate user login for the Contact API, where
        agent sessions are refused; ``None`` to use the agent's session.
    :param contact_create_method: ``POST`` as the API documents it, or
        ``PUT`` as the guide shows.
    """

    base_url: str
    version: str | None
    client_name: str
    token: Secret
    request_timeout: float
    max_in_flight: int
    max_retries: int
    retry_base_delay: float
    retry_max_delay: float
    ca_bundle: str | None
    password_expiry_warning_days: int
    contact_user: LiveVoxUser | None
    contact_create_method: HttpMethod


@attrs.frozen
class AgentConfig:
    """One virtual agent.

    :param user_name: its LiveVox login.
    :param password: its LiveVox password.
    :param phone_number: its 899 number, as given to the service join.
    :param service_id: the LiveVox service it joins.
    :param origin: where in the file it was defined, for messages.
    """

    user_name: str
    password: Secret
    phone_number: str
    service_id: str
    origin: str = attrs.field(eq=False)


@attrs.frozen
class AgentTimings:
    """How the agent pool paces its work with LiveVox.

    :param login_concurrency: agents logging in at once.
    :param cycle_interval: how often an idle READY agent is cycled NOT READY
        and back (LiveVox sessions die after 2 idle hours).
    :param reconcile_interval: how often each agent's state is checked at LiveVox.
    :param backoff_base: the first retry delay after a failure.
    :param backoff_max: the ceiling on a retry delay.
    :param not_ready_reason: the reason code sent with NOT READY, if any.
    :param repair_stranded: close, through LiveVox's API, a call LiveVox holds
        on an agent that the gateway does not know (see
        :mod:`lvgateway.agents.stranded`); when false such an agent is only
        reported, for a person to close.
    :param stranded_grace: how long a call unknown to the gateway must be
        held before it is closed: past the call confirmation bound
        (``WrapupConfig.confirm_within``) plus an INVITE's setup.
    """

    login_concurrency: int
    cycle_interval: float
    reconcile_interval: float
    backoff_base: float
    backoff_max: float
    not_ready_reason: str | None
    repair_stranded: bool = attrs.field(default=True, kw_only=True)
    stranded_grace: float = attrs.field(default=60.0, kw_only=True)


@attrs.frozen
class TimeRange:
    """A stretch of one day, ``start`` inclusive to ``end`` exclusive.

    ``end`` of ``None`` means midnight at the end of the day (``24:00``).
    """

    start: datetime.time
    end: datetime.time | None


@attrs.frozen
class OpenHours:
    """When the call centre is open, in its own time zone.

    :param time_zone: an IANA zone name, such as ``America/New_York``.
    :param always_open: ignore the week and holidays: agents stay in.
    :param weekly: the open ranges of each weekday, Monday first (0..6).
    :param holidays: dates on which the centre stays closed all day.
    :param lead_time: how long before opening the agents are brought in.
    """

    time_zone: str
    always_open: bool
    weekly: tuple[tuple[TimeRange, ...], ...]
    holidays: frozenset[datetime.date]
    lead_time: float


@attrs.frozen
class VendorEndpoint:
    """One of the AI vendor's SIP endpoints.

    :param uri: as configured, such as ``sip:bot@vendor.example:5060``.
    :param user: the user part of the Request-URI, if any.
    :param host: a host name or IP literal; names are resolved on their TTL.
    :param port: the UDP port.
    :param username: the digest user name, when the vendor challenges.
    :param password: the digest password.
    :param media_profile: how media to this endpoint is carried: ``rtp``,
        ``srtp-sdes`` or ``dtls-srtp`` (see :mod:`lvgateway.config.media_profiles`).
    :param codec_map: transcode LiveVox's codec to the vendor's, or None to
        pass payloads untouched.
    :param transport: ``udp``, ``tcp`` or ``tls`` (``sips:`` and
        ``;transport=tls`` say tls); anything but udp goes through ``[edge]``.
    :param edge_address: an IP literal the edge sends to instead of resolving
        ``host`` (``edge_address``); the name still goes in the Request-URI,
        the SNI and the certificate check.
    """

    uri: str
    user: str | None
    host: str
    port: int
    username: str | None
    password: Secret | None
    media_profile: MediaProfile = "rtp"
    codec_map: CodecMap | None = None
    transport: str = "udp"
    edge_address: str | None = None


@attrs.frozen
class VendorConfig:
    """The AI vendor's side of each call.

    :param endpoints: tried in order, failing over on timeout or 5xx.
    :param static_headers: headers added to every B-leg INVITE.
    :param pass_through_headers: LiveVox INVITE headers copied to the B leg.
    :param max_invite_bytes: warn when the B-leg INVITE grows past this.
    :param health_interval: how often each endpoint gets an OPTIONS.
    :param health_failures: OPTIONS failures in a row before the pool pauses.
    :param no_progress_time: a B leg with no provisional response by then fails over.
    :param no_answer_time: a B leg not answered by then ends the call.
    :param max_call_duration: a call is ended after this long.
    :param silence_timeout: a connected vendor that has sent neither RTP nor
        RTCP this long is asked an in-dialog OPTIONS; with no answer within
        ``options_timeout`` it is gone, and the customer goes to a person.
    :param options_timeout: how long that OPTIONS waits for any answer.
    :param session_expires: the session interval offered to the vendor
        (``Session-Expires`` with ``Supported: timer``); 0 offers none.
    :param refer_targets: a REFER's ``Refer-To`` user part (lower case),
        such as ``billing`` in ``sip:billing@vendor``, mapped to the term
        code name it asks for (``[vendor.refer_targets]``).
    :param mute_on_transfer: once a transfer to a person starts (the
        vendor's REFER), the bot's audio no longer reaches the customer.
    """

    endpoints: tuple[VendorEndpoint, ...]
    static_headers: tuple[tuple[str, str], ...]
    pass_through_headers: tuple[str, ...]
    max_invite_bytes: int
    health_interval: float
    health_failures: int
    no_progress_time: float
    no_answer_time: float
    max_call_duration: float
    silence_timeout: float = 4.0
    options_timeout: float = 2.0
    session_expires: int = 1800
    refer_targets: Mapping[str, str] = attrs.field(factory=dict)
    mute_on_transfer: bool = True


@attrs.frozen
class RtpengineInstance:
    """One rtpengine daemon the ``rtpengine`` media engine may give calls to.

    :param address: its ng control socket, ``(ip, port)``, UDP.
    :param weight: its share of new calls among the instances answering ping.
    """

    address: tuple[str, int]
    weight: int = 1


@attrs.frozen
class MediaConfig:
    """How RTP is relayed.

    :param engine: ``twisted`` (pure Python, strict latching),
        ``rtpengine`` (rtpengine daemons over the ng protocol, strict
        latching), ``rtpio`` (in-process rtpproxy: latches to the first
        packet from anyone), or ``auto`` for ``twisted``.
    :param listen_host: the address media ports bind.
    :param advertised_host: the address put in SDP; ``None`` for ``listen_host``.
    :param port_min: the lowest media port, even.
    :param port_max: the highest media port.
    :param initial_timeout: a side sending no RTP this long after answer ends the call.
    :param timeout: a side silent this long in the call ends it.
    :param vendor_latching: ``strict`` takes the vendor's media only from the
        address its SDP names; ``first_packet``, for a vendor behind NAT,
        latches once to the first datagram from its networks (see
        :mod:`lvgateway.media.latching`). LiveVox's side is always strict.
    :param rtpengine: the rtpengine instances (``[[media.rtpengine]]``),
        for ``engine = "rtpengine"``.
    """

    engine: MediaEngine
    listen_host: str
    advertised_host: str | None
    port_min: int
    port_max: int
    initial_timeout: float
    timeout: float
    vendor_latching: Literal["strict", "first_packet"] = "strict"
    rtpengine: tuple[RtpengineInstance, ...] = ()


@attrs.frozen
class WrapupConfig:
    """How each call is closed with LiveVox.

    :param term_codes: the gateway's names for term codes, each mapped to a
        LiveVox term code name or id in the service's catalogue.
    :param defaults: for each of :data:`END_REASONS`, the term code name
        used when the vendor gave no disposition.
    :param fallback_term_code: used, with an error logged, when a vendor
        names a term code the catalogue lacks.
    :param transfer_term_code: used for a transfer that names no term code.
    :param stranded_term_code: saved for a call LiveVox holds on an agent
        that the gateway does not know (``None``: ``transfer_term_code``, so
        a customer who may still be waiting is handed to a person).
    :param transfer_order: whether the term code is saved before the
        LiveVox leg is ended, or after.
    :param transfer_timeout: how long a transfer waits for its posts before
        ending the leg regardless.
    :param conference_order: whether a transfer to a number posts the
        manual conference before the term code (the default) or after it.
    :param create_missing_contacts: create a contact whose account LiveVox lacks.
    :param max_age: a wrap-up still failing after this long becomes a dead letter.
    :param retention: how long finished call records are kept.
    :param confirm_calls: confirm every accepted call in the agent's LiveVox
        status, and end one LiveVox shows no trace of; off only in a lab,
        where something other than LiveVox dials the 899 numbers.
    :param confirm_within: how long LiveVox may take to show a routed call
        in the agent's status; only a status read at or after it that shows
        the agent without the call ends the call.
    :param confirm_polls: the most status reads one call's confirmation makes.
    """

    term_codes: Mapping[str, str]
    defaults: Mapping[str, str]
    fallback_term_code: str
    transfer_term_code: str
    stranded_term_code: str | None = attrs.field(default=None, kw_only=True)
    transfer_order: TransferOrder
    transfer_timeout: float
    conference_order: ConferenceOrder = attrs.field(
        default="conference_then_term_code", kw_only=True
    )
    create_missing_contacts: bool
    max_age: float
    retention: float
    confirm_calls: bool = True
    confirm_within: float = 10.0
    confirm_polls: int = 6


@attrs.frozen
class AiaConfig:
    """The client-specific AI Integration App endpoint (the screen-pop data).

    :param url: the full URL LiveVox gives for this client.
    :param method: ``POST`` or ``PUT``.
    :param auth_header: the header that carries ``token``.
    :param token: the AIA token, if the endpoint wants one.
    :param headers: further static headers.
    :param field_names: the JSON name of each of :data:`AIA_FIELDS`.
    :param timeout: the bound on one request, body included.
    """

    url: str
    method: HttpMethod
    auth_header: str
    token: Secret | None
    headers: tuple[tuple[str, str], ...]
    field_names: Mapping[str, str]
    timeout: float


@attrs.frozen
class VendorApiConfig:
    """The vendor-facing API listener (dispositions, call lookup).

    :param listen: a Twisted endpoint string; ``ssl:...`` gives TLS.
    :param token: the bearer token every request must carry.
    """

    listen: str
    token: Secret


@attrs.frozen
class ManholeConfig:
    """The telnet manhole, on loopback only.

    :param listen: a Twisted endpoint string bound to 127.0.0.1 or ::1.
    :param password_file: ``user:password`` lines, mode 0600.
    """

    listen: str
    password_file: str


@attrs.frozen
class HepConfig:
    """HEP v3 capture of every SIP message to a Homer/heplify collector.

    :param address: the collector's ``(ip, port)``, UDP.
    :param capture_id: this gateway's capture agent id.
    :param enabled: whether capture is on at start (switched at run time too).
    :param auth_key: the collector's password (``auth_key_file`` or ``auth_key_env``), or ``None``.
    """

    address: tuple[str, int] = ("127.0.0.1", 9060)
    capture_id: int = 2001
    enabled: bool = False
    auth_key: Secret | None = None


@attrs.frozen
class LoggingConfig:
    """The log outputs: twistd's own and the JSON file.

    :param level: the lowest level written to every output.
    :param json_file: a file to write JSON lines to, or ``None``.
    :param rotate: ``"size"`` (at ``max_bytes``) or ``"daily"``.
    :param max_bytes: the JSON file rotates at this size (``rotate = "size"``).
    :param keep: rotated JSON files kept (either rotation).
    """

    level: str
    json_file: str | None
    rotate: str = "size"
    max_bytes: int = 100_000_000
    keep: int = 10


@attrs.frozen
class EdgeConfig:
    """The Kamailio edge that carries the vendor leg over TLS, TCP or UDP (``[edge]``).

    The gateway sends the vendor leg to it over UDP on loopback; it relays
    to each endpoint as its URI says and back, and checks the vendor's
    certificate chain and name.

    :param listen_host: the loopback address Kamailio listens on.
    :param listen_port: its UDP (and TCP) port, toward the gateway.
    :param tls_port: its TLS listen socket, which Kamailio needs to open TLS at all.
    :param ca_file: the CA bundle a vendor's certificate must chain to.
    :param client_certificate: a PEM certificate presented to vendors (mutual TLS), or ``None``.
    :param client_key: its private key, readable by its owner only.
    :param kamailio: the Kamailio binary.
    :param modules_dir: where Kamailio's modules (tls.so among them) are.
    :param run: ``child`` (the gateway runs and supervises it) or
        ``external`` (its own systemd unit runs it from the rendered files).
    :param udp_mtu: requests to UDP vendors larger than this go over TCP.
    :param transaction_timeout: seconds Kamailio waits for a vendor's first
        reply before answering the gateway 503 with why.
    :param verified_for: seconds a checked TLS connection stays trusted
        without a new health-probe reply.
    """

    listen_host: str
    listen_port: int
    tls_port: int
    ca_file: str
    client_certificate: str | None
    client_key: str | None
    kamailio: str
    modules_dir: str
    run: str
    udp_mtu: int
    transaction_timeout: float
    verified_for: int


@attrs.frozen
class ChildProcessConfig:
    """A process the gateway runs beside itself, such as the demo's sandbox.

    :param name: for logs and the service tree.
    :param argv: the command line, ``{python}`` and ``{bindir}`` filled in
        (the gateway's interpreter and its folder).
    :param env: variables added to the gateway's environment.
    :param cwd: the working directory (relative to the config file's folder).
    :param stop_timeout: seconds between SIGTERM and SIGKILL at stop.
    :param ready_url: an http(s) URL that answers 2xx once the child serves;
        the gateway sends nothing to LiveVox before it does. ``None``: ready
        once spawned.
    :param ready_timeout: seconds to wait for ``ready_url`` before logging an
        error and going on without it.
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    stop_timeout: float
    ready_url: str | None = None
    ready_timeout: float = 30.0


@attrs.frozen
class GatewayConfig:
    """The whole, validated configuration of one gateway process.

    :param source: the file it was read from.
    """

    source: str
    gateway: GatewayIdentity
    sip: SipConfig
    livevox: LiveVoxConfig
    agents: tuple[AgentConfig, ...]
    agent_timings: AgentTimings
    hours: OpenHours
    vendor: VendorConfig
    media: MediaConfig
    wrapup: WrapupConfig
    aia: AiaConfig | None
    control_listen: str
    vendor_api: VendorApiConfig | None
    manhole: ManholeConfig | None
    logging: LoggingConfig
    child_processes: tuple[ChildProcessConfig, ...] = ()
    #: The bearer token of the control listener's admin routes and status page
    #: (``[control] token_file`` or ``token_env``); without one they answer 403.
    control_token: Secret | None = None
    #: Show callers' numbers in full on the status page (``[control] show_numbers``).
    control_show_numbers: bool = False
    #: HEP capture (``[hep]``): off, to 127.0.0.1:9060, unless configured.
    hep: HepConfig = HepConfig()
    #: The Kamailio edge toward TLS and TCP vendors (``[edge]``), if configured.
    edge: EdgeConfig | None = None

    def secrets(self) -> list[tuple[str, Secret]]:
        """Return every secret with the key path it came from, for the summary and tests."""
        found: list[tuple[str, Secret]] = [("livevox.token", self.livevox.token)]
        if self.livevox.contact_user is not None:
            found.append(("livevox.contact_user.password", self.livevox.contact_user.password))
        found.extend((f"{a.origin}.password", a.password) for a in self.agents)
        found.extend(
            (f"vendor.endpoints[{i}].password", e.password)
            for i, e in enumerate(self.vendor.endpoints)
            if e.password is not None
        )
        if self.aia is not None and self.aia.token is not None:
            found.append(("aia.token", self.aia.token))
        if self.vendor_api is not None:
            found.append(("vendor_api.token", self.vendor_api.token))
        if self.control_token is not None:
            found.append(("control.token", self.control_token))
        if self.hep.auth_key is not None:
            found.append(("hep.auth_key", self.hep.auth_key))
        return found


def phone_key(number: str) -> str:
    """Return the one form of an 899 number that ``+1899…``, ``1899…`` and ``899…`` share.

    LiveVox's Request-URI carries ``+18990000001`` while a config may say
    ``8990000001``: both must find the same agent.
    """
    digits = number.strip().lstrip("+")
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits
