"""Helpers for tests that run against the LiveVox simulator, in memory or over loopback.

- :func:`sandbox_config_dict` / :func:`make_sandbox_config`: a small,
  complete configuration built in Python (three agents ``AIVA1``..``AIVA3``,
  one user, service ``1234567`` with a "done" and a "transfer" term code,
  one contact, an AIA endpoint), with the credentials below.
- :class:`SimDriver`: drives a :class:`~lvgateway.sandbox.simulator.Simulator`
  with plain requests, no HTTP, for tests on ``task.Clock``.

Over real HTTP use :func:`lvgateway.sandbox.livevox_web.start_simulator`; with
treq's in-memory client use ``StubTreq(SimulatorRoot(simulator))``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime

from lvgateway.sandbox.sandbox_config import SandboxConfig, sandbox_config_from_dict
from lvgateway.sandbox.simulator import SimRequest, SimResponse, Simulator

CLIENT_NAME = "demo"
TOKEN = "test-api-token"
SECOND_TOKEN = "test-api-token-2"
AGENT_PASSWORD = "test-agent-password"
USER_NAME = "vendor"
USER_PASSWORD = "test-user-password"
AIA_HEADER = "X-AIA-Token"
AIA_TOKEN = "test-aia-token"
AIA_PATH = "/aia/v1/result"
SERVICE_ID = "1234567"
DONE_CODE = "101416228"
TRANSFER_CODE = "101416229"
CONTACT_ACCOUNT = "1001"


def agent_number(n: int) -> str:
    """Return the 899 number configured for agent ``AIVA<n>``: ``+1899000000<n>``."""
    return f"+1899{n:07d}"


def sandbox_config_dict() -> dict[str, Any]:
    """Return a fresh, valid configuration mapping; change it and pass it to
    :func:`~lvgateway.sandbox.sandbox_config.sandbox_config_from_dict`."""
    return copy.deepcopy(
        {
            "livevox": {
                "client_name": CLIENT_NAME,
                "client_id": 4242,
                "token": TOKEN,
                "extra_tokens": [SECOND_TOKEN],
            },
            "users": [
                {
                    "name": f"AIVA{n}",
                    "password": AGENT_PASSWORD,
                    "user_id": 5000 + n,
                    "days_until_password_expires": 30 + n,
                    "phone_number": agent_number(n),
                }
                for n in (1, 2, 3)
            ]
            + [{"name": USER_NAME, "password": USER_PASSWORD, "agent": False, "user_id": 6001}],
            "services": [
                {
                    "id": SERVICE_ID,
                    "name": "AI Inbound",
                    "term_code_categories": [
                        {
                            "name": "AI",
                            "term_codes": [
                                {"id": DONE_CODE, "name": "AI Completed"},
                                {"id": TRANSFER_CODE, "name": "Transfer To Agent"},
                            ],
                        }
                    ],
                }
            ],
            "contacts": [
                {
                    "account": CONTACT_ACCOUNT,
                    "person": {"firstName": "John", "lastName": "Doe", "email": "j@example.com"},
                    "phone": [{"phone": "9195550100", "ordinal": 1}],
                    "customFields": [{"field": "COL1", "value": "gold"}],
                }
            ],
            "aia": {"path": AIA_PATH, "auth_header": AIA_HEADER, "token": AIA_TOKEN},
        }
    )


def make_sandbox_config(**livevox: Any) -> SandboxConfig:
    """Return :func:`sandbox_config_dict` as a config, with ``[livevox]`` keys overridden.

    :param livevox: keys of the ``[livevox]`` table, such as ``agent_contact_access=False``.
    """
    data = sandbox_config_dict()
    data["livevox"].update(livevox)
    return sandbox_config_from_dict(data, "<test config>", environ={})


@attrs.define
class SimDriver:
    """Sends plain requests to a simulator, the way the REST client would over HTTP.

    :param simulator: the simulator to drive.
    """

    simulator: Simulator

    @classmethod
    def create(cls, clock: IReactorTime, config: SandboxConfig | None = None) -> SimDriver:
        """Build a simulator on ``clock`` (with :func:`make_sandbox_config` by default)."""
        return cls(Simulator(config or make_sandbox_config(), clock))

    def request(
        self,
        method: str,
        path: str,
        *,
        session: str | None = None,
        token: str | None = None,
        json_body: Any = None,
        body: bytes | None = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> SimResponse:
        """Send one request and return the simulator's answer.

        :param method: the HTTP method.
        :param path: the path, without query.
        :param session: sent as ``LV-Session``.
        :param token: sent as ``LV-Access``.
        :param json_body: encoded as the JSON body.
        :param body: or the raw body.
        :param query: query arguments.
        :param headers: more headers.
        """
        all_headers = {k.lower(): v for k, v in (headers or {}).items()}
        if session is not None:
            all_headers["lv-session"] = session
        if token is not None:
            all_headers["lv-access"] = token
        raw = body if body is not None else b""
        if json_body is not None:
            raw = json.dumps(json_body).encode("utf-8")
            all_headers.setdefault("content-type", "application/json")
        return self.simulator.handle(SimRequest(method, path, dict(query or {}), all_headers, raw))

    def login_response(
        self,
        user: str,
        *,
        password: str = AGENT_PASSWORD,
        token: str = TOKEN,
        agent: Any = True,
        client_name: str = CLIENT_NAME,
    ) -> SimResponse:
        """Send ``POST /session/login`` and return the raw answer."""
        body = {"clientName": client_name, "userName": user, "password": password, "agent": agent}
        return self.request("POST", "/session/login", token=token, json_body=body)

    def login(self, user: str, **kwargs: Any) -> str:
        """Log in (see :meth:`login_response`) and return the session id; fail unless 200."""
        response = self.login_response(user, **kwargs)
        if response.status != 200:
            raise AssertionError(f"login of {user} answered {response.status} {response.body!r}")
        session_id = response.json()["sessionId"]
        assert isinstance(session_id, str)
        return session_id

    def ready_agent(self, user: str, phone_number: str | None = None) -> str:
        """Log an agent in, join it to the service and make it READY; return its session."""
        session = self.login(user)
        query = {"serviceId": SERVICE_ID}
        if phone_number is not None:
            query["phoneNumber"] = phone_number
        for path, q in (
            ("/callControl/agent/service/join", query),
            ("/callControl/agent/status/ready", {}),
        ):
            response = self.request("POST", path, session=session, query=q)
            if response.status != 204:
                raise AssertionError(f"{path} answered {response.status} {response.body!r}")
        return session

    def status(self, session: str) -> dict[str, Any]:
        """Return the agent's status line (``agentStatus.lines[0]``); fail unless 200."""
        response = self.request("POST", "/callControl/agent/status", session=session, json_body={})
        if response.status != 200:
            raise AssertionError(f"status answered {response.status} {response.body!r}")
        line = response.json()["agentStatus"]["lines"][0]
        assert isinstance(line, dict)
        return line

    def term_code(
        self,
        session: str,
        call_transaction_id: str | int,
        call_session_id: str,
        term_code_id: str = DONE_CODE,
        **extra: Any,
    ) -> SimResponse:
        """Send ``PUT /callControl/agent/call/termCode`` and return the answer."""
        body: dict[str, Any] = {
            "callTransactionId": call_transaction_id,
            "callSessionId": call_session_id,
            "termCodeId": term_code_id,
            "phoneDialed": "9195550100",
            "moveAgentToNotReady": False,
        }
        body.update(extra)
        body = {k: v for k, v in body.items() if v is not None}
        return self.request(
            "PUT", "/callControl/agent/call/termCode", session=session, json_body=body
        )
