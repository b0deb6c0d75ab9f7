"""LiveVox REST API client: session, call control, contacts, and the client-specific AIA endpoint.

The parts, one concept each:

- :mod:`~lvgateway.livevox.client`: :class:`LiveVoxClient`, one method per
  LiveVox call, shared by every virtual agent;
- :mod:`~lvgateway.livevox.aia`: :class:`AiaClient` and :class:`AiaRecord`,
  the client-specific AI Integration App endpoint;
- :mod:`~lvgateway.livevox.interfaces`: the seams other parts depend on,
  :class:`ILiveVoxAgentAPI`, :class:`ILiveVoxCallAPI` and :class:`IAiaAPI`;
- :mod:`~lvgateway.livevox.errors`: LiveVox's failures as typed exceptions;
- :mod:`~lvgateway.livevox.parsing`: lenient parsing into attrs values
  (:class:`Session`, :class:`AgentStatus`, :class:`TermCodeCatalogue`…);
- :mod:`~lvgateway.livevox.transport`: the HTTP layer (headers, version
  prefix, whole-request timeout, retries, the in-flight cap) and
  :func:`http_client_for`;
- :mod:`~lvgateway.livevox.termcode_catalogue`: finding a term code in a
  service's catalogue by a config name, a LiveVox name or an id;
- :mod:`~lvgateway.livevox.calls`: the catalogue of calls and why each is,
  or is not, retried;
- :mod:`~lvgateway.livevox.metrics`: the Prometheus metrics;
- :mod:`~lvgateway.livevox.testing`: verified fakes and an in-memory HTTP
  rig, for tests only (not imported here).

Wiring, in ``makeService``::

    metrics = LiveVoxMetrics(registry)
    http = http_client_for(reactor, config.livevox)
    livevox = LiveVoxClient(config.livevox, reactor, http, metrics)
    aia = AiaClient(config.aia, reactor, http, metrics) if config.aia else None
"""

from lvgateway.livevox.aia import AiaClient, AiaRecord
from lvgateway.livevox.client import LiveVoxClient, as_epoch_millis
from lvgateway.livevox.errors import (
    ContactExistsError,
    LiveVoxClientError,
    LiveVoxConnectionError,
    LiveVoxError,
    LiveVoxServerError,
    LiveVoxTimeoutError,
    LiveVoxUnavailableError,
    LoginDeniedError,
    NotFoundError,
    PermissionDeniedError,
    SessionExpiredError,
    UnexpectedResponseError,
)
from lvgateway.livevox.interfaces import IAiaAPI, ILiveVoxAgentAPI, ILiveVoxCallAPI
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.parsing import (
    AgentStatus,
    CallDetails,
    ContactCreated,
    LineStatus,
    Session,
    TermCode,
    TermCodeCatalogue,
)
from lvgateway.livevox.transport import http_client_for

__all__ = [
    "AgentStatus",
    "AiaClient",
    "AiaRecord",
    "CallDetails",
    "ContactCreated",
    "ContactExistsError",
    "IAiaAPI",
    "ILiveVoxAgentAPI",
    "ILiveVoxCallAPI",
    "LineStatus",
    "LiveVoxClient",
    "LiveVoxClientError",
    "LiveVoxConnectionError",
    "LiveVoxError",
    "LiveVoxMetrics",
    "LiveVoxServerError",
    "LiveVoxTimeoutError",
    "LiveVoxUnavailableError",
    "LoginDeniedError",
    "NotFoundError",
    "PermissionDeniedError",
    "Session",
    "SessionExpiredError",
    "TermCode",
    "TermCodeCatalogue",
    "UnexpectedResponseError",
    "as_epoch_millis",
    "http_client_for",
]
