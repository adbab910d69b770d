"""Notion's public OAuth flow: the consent page (`GET /v1/oauth/authorize`) and the token
endpoint (`POST /v1/oauth/token`) that rotates refresh tokens.

The consent page takes `client_id`, `redirect_uri`, `response_type=code`, `owner=user`,
`state` and a PKCE challenge (the kit's ConsentDesk); the simulated user (`consent.answer`)
approves for the workspace `consent_workspace` (default: the first) and shares
`consent_share` with the integration (default: every database of that workspace), then the
page redirects with a one-time `code` and the `state`; a refusal redirects with
`error=access_denied`. A redirect the client did not register is Notion's 400.

The token endpoint authenticates the client with HTTP Basic (`client_id:client_secret`;
otherwise 401 `invalid_client`) and takes a JSON body:
- `grant_type=authorization_code`, `code`, `redirect_uri`, `code_verifier` -> a bot of its
  own in the workspace (an Integration with what was shared), `access_token` (an hour),
  `refresh_token`, `bot_id`, `workspace_id`, `workspace_name`, `owner`;
- `grant_type=refresh_token`, `refresh_token` -> a new access token and a new refresh
  token; the one used is refused from then on (400 `invalid_grant`), as Notion rotates.
Errors are RFC 6749 bodies (`{"error", "error_description"}`): a code unknown, used before,
expired, another client's, for another redirect or with a wrong verifier is
`invalid_grant`; another grant type `unsupported_grant_type`; a body that is not JSON
`invalid_request`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from kpi_pipelines.sandbox.kit import AuthorizationRequest, ConsentDesk, json_response
from kpi_pipelines.sandbox.notion.errors import notion_error
from kpi_pipelines.sandbox.notion.model import Database, NotionWorkspace, User

if TYPE_CHECKING:
    from kpi_pipelines.sandbox.notion.app import NotionSandbox

ACCESS_LIFETIME = timedelta(hours=1)
LOOPBACK_REDIRECTS = ("http://127.0.0.1", "http://[::1]")


@dataclass
class PublicIntegration:
    """A public integration's OAuth client."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uris: tuple[str, ...] = LOOPBACK_REDIRECTS


@dataclass
class NotionOAuth:
    """The OAuth side of the sandbox: clients, the consent desk, refresh tokens' rotation."""

    sandbox: NotionSandbox
    clients: dict[str, PublicIntegration] = field(default_factory=dict)
    consent_workspace: NotionWorkspace | None = None
    consent_share: list[Database] | None = None
    consent: ConsentDesk = field(init=False)
    refreshes: int = 0  # refresh grants served
    refused_refreshes: int = 0  # refresh tokens refused (unknown, spent, another client's)
    # Seconds a refresh is answered late (a test's knob: two runs refreshing at once).
    refresh_delay: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.consent = ConsentDesk(self.sandbox.clock)

    def register_client(self, client_id: str, client_secret: str) -> PublicIntegration:
        client = PublicIntegration(client_id, client_secret)
        self.clients[client_id] = client
        return client

    # -- the consent page ----------------------------------------------------------------
    def authorize(self, request: Request) -> Response:
        asked = AuthorizationRequest.parse(request.query_params)
        client = self.clients.get(asked.client_id)
        if client is None:
            return notion_error(400, "Invalid client_id.", code="invalid_request")
        if asked.problem(client.redirect_uris) is not None:
            return notion_error(400, "Invalid redirect_uri.", code="invalid_request")
        if self.consent.answer == "deny":
            return self.consent.redirect(asked, error="access_denied")
        workspace = self.consent_workspace or next(iter(self.sandbox.workspaces.values()))
        issued = self.consent.issue(asked, subject=workspace.id)
        return self.consent.redirect(asked, code=issued.code)

    # -- the token endpoint --------------------------------------------------------------
    async def token(self, request: Request) -> Response:
        client = self._client(request.headers.get("authorization", ""))
        if client is None:
            return _oauth_error(401, "invalid_client", "Client authentication failed.")
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return _oauth_error(400, "invalid_request", "The body is not JSON.")
        if not isinstance(body, dict):
            return _oauth_error(400, "invalid_request", "The body is not a JSON object.")
        grant_type = body.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange(client, body)
        if grant_type == "refresh_token":
            if self.refresh_delay:
                await asyncio.sleep(self.refresh_delay)
            return self._refresh(client, body.get("refresh_token"))
        return _oauth_error(400, "unsupported_grant_type", f"{grant_type!r} is not supported.")

    def _client(self, authorization: str) -> PublicIntegration | None:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client = self.clients.get(client_id)
        return client if client is not None and client.client_secret == secret else None

    def _exchange(self, client: PublicIntegration, body: dict[str, Any]) -> Response:
        issued = self.consent.redeem(
            body.get("code"),
            client_id=client.client_id,
            redirect_uri=body.get("redirect_uri"),
            code_verifier=body.get("code_verifier"),
        )
        if isinstance(issued, str):
            return _oauth_error(400, "invalid_grant", f"Invalid code: {issued}.")
        workspace = self.sandbox.workspaces[issued.subject]
        share = self.consent_share
        if share is None:
            share = list(workspace.databases.values())
        token = self.sandbox.add_integration(
            workspace, share=share, name="KPI pipelines (public integration)"
        )
        bot_id = self.sandbox.integration_of(token).bot.id
        self.sandbox.tokens.revoke(token)  # a public integration's tokens come from here
        return self._grant(client, bot_id, workspace)

    def _refresh(self, client: PublicIntegration, refresh_token: Any) -> Response:
        tokens = self.sandbox.tokens
        with self._lock:
            checked = tokens.check(
                refresh_token if isinstance(refresh_token, str) else None, kind="refresh"
            )
            if isinstance(checked, str) or not checked.subject.startswith(client.client_id + ":"):
                self.refused_refreshes += 1
                return _oauth_error(400, "invalid_grant", "Invalid refresh token.")
            tokens.revoke(checked.value)  # rotated: the one used is spent
            self.refreshes += 1
        bot_id = checked.subject.split(":", 1)[1]
        integration = self.sandbox.integrations[bot_id]
        return self._grant(client, bot_id, integration.workspace)

    def _grant(
        self, client: PublicIntegration, bot_id: str, workspace: NotionWorkspace
    ) -> Response:
        tokens = self.sandbox.tokens
        access = tokens.issue(bot_id, lifetime=ACCESS_LIFETIME)
        refresh = tokens.issue(f"{client.client_id}:{bot_id}", lifetime=None, kind="refresh")
        owner: User = next(iter(workspace.users.values()), User("unknown", "Unknown"))
        return json_response(
            200,
            {
                "access_token": access.value,
                "token_type": "bearer",
                "expires_in": int(ACCESS_LIFETIME.total_seconds()),
                "refresh_token": refresh.value,
                "bot_id": bot_id,
                "workspace_id": workspace.id,
                "workspace_name": workspace.name,
                "workspace_icon": None,
                "owner": {"type": "user", "user": {"object": "user", "id": owner.id}},
                "duplicated_template_id": None,
            },
            {"Cache-Control": "no-store"},
        )


def _oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description})
