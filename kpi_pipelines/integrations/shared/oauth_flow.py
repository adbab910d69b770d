"""What a provider's OAuth 2.0 authorization-code flow needs, declared once in its spec.

    SPEC = ProviderSpec(..., oauth=OAuthFlow(
        authorize_url="https://api.notion.com/v1/oauth/authorize",
        token_url="https://api.notion.com/v1/oauth/token",
        authorize_url_variable="KPI_NOTION_AUTHORIZE_URL",
        token_url_variable="KPI_NOTION_TOKEN_URL",
        client_variables={"client_id": "KPI_NOTION_CLIENT_ID",
                          "client_secret": "KPI_NOTION_CLIENT_SECRET"},
        client_auth="client_secret_basic", token_body="json",
        rotates_refresh_tokens=True, authorize_params={"owner": "user"},
    ))

`kpi-pipelines connect WORKSPACE PROVIDER` runs the flow (oauth_connect.py) and keeps the
grant encrypted in the warehouse (grants.py); the provider's adapter then reads and
refreshes it through `OAuthAdapter` (oauth.py) with the same declaration. Hosts are the
operator's: each URL has a default (the provider's own) and an environment variable that
overrides it (a sandbox, a proxy), https only except on loopback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kpi_pipelines.settings import operator_url

# How the token endpoint authenticates the client (RFC 6749 section 2.3.1, authlib's names):
# the id and secret in the body (Google) or as HTTP Basic (Notion, LinkedIn, Salesforce).
ClientAuthMethod = Literal["client_secret_post", "client_secret_basic"]
# How a token request's parameters are sent: a form (RFC 6749) or a JSON object (Notion).
TokenBody = Literal["form", "json"]


@dataclass(frozen=True)
class OAuthFlow:
    """A provider's authorization-code flow (with PKCE, S256) and token endpoint."""

    authorize_url: str  # the provider's consent page
    token_url: str  # its token endpoint (the code exchange and every refresh)
    # The operator's OAuth client: purpose ("client_id", "client_secret") -> the variable
    # read when a connection names none of its own.
    client_variables: Mapping[str, str]
    scopes: tuple[str, ...] = ()
    # The variables that override the URLs (KPI_GOOGLE_AUTHORIZE_URL, ...); None: fixed.
    authorize_url_variable: str | None = None
    token_url_variable: str | None = None
    client_auth: ClientAuthMethod = "client_secret_post"
    token_body: TokenBody = "form"
    # The provider issues a new refresh token on each refresh and refuses the old one
    # (Notion; Salesforce can): a grant in an environment variable nobody updates stops
    # working after one refresh, so such a connection must be connected with `connect`.
    rotates_refresh_tokens: bool = False
    # Extra parameters of the consent page's URL (Google: access_type=offline for a
    # refresh token, prompt=consent; Notion: owner=user).
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    scope_separator: str = " "
    # The token endpoint's answers besides RFC 6749's `invalid_grant` that mean a refresh
    # token is gone (an error code and the start of its description; LinkedIn answers a
    # revoked or expired one with `invalid_request`): the run asks to reconnect.
    grant_gone: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        missing = {"client_id", "client_secret"} - set(self.client_variables)
        if missing:
            raise ValueError(f"an OAuthFlow names the operator's variables for {sorted(missing)}")
        reserved = {"client_id", "redirect_uri", "state", "code_challenge", "response_type"}
        if reserved & set(self.authorize_params):
            raise ValueError(
                f"authorize_params may not set {sorted(reserved & set(self.authorize_params))}:"
                " the flow sets them itself"
            )

    def authorize_endpoint(self) -> str:
        """The consent page: its variable when set, else the provider's own."""
        return _endpoint(self.authorize_url, self.authorize_url_variable)

    def token_endpoint(self, configured: str | None = None) -> str:
        """The token endpoint: `configured` (a resource's config), its variable, or the
        provider's own."""
        if configured:
            return operator_url(configured, "the resource's token_url")
        return _endpoint(self.token_url, self.token_url_variable)

    @property
    def scope(self) -> str | None:
        """The scopes as the consent page takes them (None: the provider's default)."""
        return self.scope_separator.join(self.scopes) or None


def _endpoint(default: str, variable: str | None) -> str:
    if variable is None:
        return operator_url(default, "the provider's OAuth endpoint")
    return operator_url(os.environ.get(variable) or default, variable)


class TokenResponse(BaseModel):
    """A successful token endpoint response (RFC 6749 section 5.1), of a code exchange or a
    refresh; what else a provider adds (Notion's workspace, Google's id_token) is ignored."""

    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

    access_token: str = Field(min_length=1, repr=False)
    token_type: str = "Bearer"
    expires_in: float | None = Field(default=None, ge=0)
    refresh_token: str | None = Field(default=None, repr=False)
    scope: str | None = None

    @field_validator("token_type")
    @classmethod
    def _bearer(cls, value: str) -> str:
        if value.lower() != "bearer":
            raise ValueError(f"token_type {value!r} is not supported (only Bearer)")
        return value
