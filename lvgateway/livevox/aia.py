"""The client for the client-specific AI Integration App (AIA) endpoint.

The AIA carries call-specific data LiveVox screen-pops to a human agent
(docs/livevox-api.md, section 8, step 4). Its URL, method, headers and body
come from a specification LiveVox writes per client, so everything about
the request comes from :class:`~lvgateway.config.model.AiaConfig`: the URL,
``POST`` or ``PUT``, the header that carries the token, further static
headers, and the JSON name of each field the guide lists (transactionId,
sessionId, ani, accountNumber, nextAction, callOutcome, lvresult,
Other1…Other20). Fields whose value is unknown (``None``) are left out.

A 2xx is success, whatever its body; anything else raises one of the
exceptions of :mod:`lvgateway.livevox.errors` with the call name
``aia_post`` (a 401 here is a plain client error: the AIA has no LiveVox
session). The post is never retried here: what a repeat does at the
endpoint is unknown, so the wrap-up outbox decides.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import DeferredSemaphore
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from lvgateway.config.model import AIA_FIELDS, AiaConfig
from lvgateway.livevox.calls import AIA_POST
from lvgateway.livevox.interfaces import IAiaAPI
from lvgateway.livevox.metrics import LiveVoxMetrics
from lvgateway.livevox.parsing import parse_json
from lvgateway.livevox.transport import deferred_method, error_for, exchange

__all__ = ["AiaClient", "AiaRecord", "aia_body"]

log = Logger()


def _check_other(instance: AiaRecord, attribute: attrs.Attribute[Any], value: Any) -> None:
    """Reject ``other`` keys outside 1..20."""
    bad = [k for k in value if not (isinstance(k, int) and 1 <= k <= 20)]
    if bad:
        raise ValueError(f"AIA Other fields are numbered 1 to 20, not {bad!r}")


@attrs.frozen
class AiaRecord:
    """One call's AIA data, by the guide's field names; ``None`` means unknown.

    :param transaction_id: LiveVox's ``callTransactionId`` (``transactionId``).
    :param session_id: LiveVox's ``callSessionId`` (``sessionId``).
    :param ani: the caller's number.
    :param account_number: the contact's account.
    :param next_action: what happens next, such as ``done`` or ``transfer``.
    :param call_outcome: the vendor's outcome for the call.
    :param lvresult: the LiveVox result of the chosen term code.
    :param other: ``Other1``…``Other20`` by number.
    """

    transaction_id: str | None = None
    session_id: str | None = None
    ani: str | None = None
    account_number: str | None = None
    next_action: str | None = None
    call_outcome: str | None = None
    lvresult: str | None = None
    other: Mapping[int, str | None] = attrs.field(factory=dict, validator=_check_other)

    def fields(self) -> dict[str, str]:
        """Return the known values under the guide's names (:data:`AIA_FIELDS`), in its order."""
        values: dict[str, str | None] = {
            "transactionId": self.transaction_id,
            "sessionId": self.session_id,
            "ani": self.ani,
            "accountNumber": self.account_number,
            "nextAction": self.next_action,
            "callOutcome": self.call_outcome,
            "lvresult": self.lvresult,
        }
        values.update({f"Other{n}": v for n, v in self.other.items()})
        return {name: v for name in AIA_FIELDS if (v := values.get(name)) is not None}


def aia_body(record: AiaRecord, field_names: Mapping[str, str]) -> dict[str, str]:
    """Return the JSON body for ``record``, each field renamed as configured.

    :param record: the call's data.
    :param field_names: the JSON name of each guide field; a field not in
        it keeps the guide's name.
    """
    return {field_names.get(name, name): value for name, value in record.fields().items()}


@implementer(IAiaAPI)
class AiaClient:
    """Posts AIA records to the client-specific endpoint.

    :param config: the endpoint's settings.
    :param clock: the clock the timeout runs on.
    :param http: the treq client.
    :param metrics: where requests are counted (call ``aia_post``); the same
        object the LiveVox client uses.
    :param max_in_flight: the cap on posts outstanding at once.
    """

    def __init__(
        self,
        config: AiaConfig,
        clock: IReactorTime,
        http: HTTPClient,
        metrics: LiveVoxMetrics,
        max_in_flight: int = 8,
    ) -> None:
        self._config = config
        self._clock = clock
        self._http = http
        self._metrics = metrics
        self._slots = DeferredSemaphore(max(1, max_in_flight))

    def _headers(self) -> dict[str, list[str]]:
        """Return the request headers: JSON, the configured ones, and the token."""
        headers: dict[str, list[str]] = {
            "Accept": ["application/json"],
            "Content-Type": ["application/json"],
            "User-Agent": ["lvgateway"],
        }
        for name, value in self._config.headers:
            headers.setdefault(name, []).append(value)
        if self._config.token is not None:
            headers[self._config.auth_header] = [self._config.token.reveal()]
        return headers

    @deferred_method
    async def post(self, record: AiaRecord) -> Any:
        """Send one record; return the endpoint's JSON answer, or ``None`` for none.

        A 2xx whose body is not JSON is still a success (``None``): the
        endpoint's answer is not specified.

        :param record: the call's data.
        :raises LiveVoxError: the typed failure, call ``aia_post``.
        """
        body = json.dumps(aia_body(record, self._config.field_names), separators=(",", ":"))
        await self._slots.acquire()
        started = self._clock.seconds()
        failure: BaseException | None = None
        try:
            result = await exchange(
                self._http,
                self._clock,
                AIA_POST,
                self._config.method,
                self._config.url,
                headers=self._headers(),
                data=body.encode("utf-8"),
                timeout=self._config.timeout,
            )
            error = error_for(AIA_POST, result, sessions=False)
            if error is not None:
                raise error
            try:
                answer = parse_json(result.body)
            except ValueError:
                answer = None
        except BaseException as e:
            failure = e
            log.warn(
                "AIA post for transaction {transaction} failed: {error}",
                transaction=record.transaction_id,
                error=str(e),
            )
            raise
        finally:
            self._slots.release()
            self._metrics.observe(AIA_POST, self._clock.seconds() - started, failure)
        log.info(
            "AIA post for transaction {transaction}: HTTP {status}",
            transaction=record.transaction_id,
            status=result.status,
        )
        return answer
