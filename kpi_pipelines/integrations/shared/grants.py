"""OAuth grants kept encrypted in the warehouse: sealed, read, refreshed, re-keyed.

`kpi-pipelines connect` records the grant a workspace gave (`record_grant`); a sync reads
it and refreshes it through `StoredGrant`, which the kit's `OAuthAdapter` builds for any
connection that names no refresh-token variable. What is kept (`Grant`: the refresh token,
the access token and when it expires, the scope) is sealed with `cryptography`'s Fernet
(AES-128-CBC with HMAC-SHA256) under the operator's keys, `KPI_GRANT_KEYS`: a
comma-separated list, newest first. The newest seals, any of them opens (MultiFernet), so a
key is rotated by putting a new one first, running `kpi-pipelines grants rotate-key` (every
grant sealed again under the newest) and then removing the old one.

A refresh happens inside one tenant transaction that holds the grant's row lock
(`kpi.oauth_grant_for_update`): the refreshed grant is written in the transaction that
read it, and two runs refreshing the same grant take turns. The second finds the first's
access token and uses it instead of spending the refresh token again, which a provider that
rotates refresh tokens would refuse (and might revoke the grant for). Every token and key is
registered with the redactor the moment it is read; none is logged, put in an exception or
in Dagster's metadata, and the warehouse holds only the sealed bytes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

import psycopg
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kpi_pipelines.integrations.shared.errors import ProviderAuthError, ProviderUnavailable
from kpi_pipelines.integrations.shared.oauth_flow import TokenResponse
from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.integrations.shared.secrets import MissingSecret
from kpi_pipelines.warehouse.control import (
    Connection,
    list_connections,
    secret_namespace,
    workspace_ids,
)
from kpi_pipelines.warehouse.database import Warehouse
from kpi_pipelines.warehouse.grants import (
    grant_for_update,
    grants_for_update,
    replace_grant,
    store_grant,
)

if TYPE_CHECKING:  # cryptography loads where a grant is sealed or opened
    from cryptography.fernet import MultiFernet

GRANT_KEYS_VARIABLE = "KPI_GRANT_KEYS"
NEW_KEY_COMMAND = (
    'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
)


class GrantKeyError(LookupError):
    """KPI_GRANT_KEYS is unset or malformed, or no key in it opens a stored grant."""


def connect_command(connection: Connection) -> str:
    """The command that (re)grants access for `connection`."""
    named = "" if connection.name == "default" else f" --connection {connection.name}"
    return f"kpi-pipelines connect {connection.workspace_id} {connection.provider}{named}"


def grant_cipher() -> MultiFernet:
    """The operator's keys (`KPI_GRANT_KEYS`, newest first), registered with the redactor:
    the newest seals, any of them opens."""
    keys = [key.strip() for key in os.environ.get(GRANT_KEYS_VARIABLE, "").split(",")]
    keys = [key for key in keys if key]
    if not keys:
        raise GrantKeyError(
            f"{GRANT_KEYS_VARIABLE} is not set: stored OAuth grants are encrypted with a key"
            f" from it (make one with `{NEW_KEY_COMMAND}` and keep it with the deployment's"
            " other secrets)"
        )
    from cryptography.fernet import Fernet, MultiFernet

    register_secret(*keys)
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except ValueError:
            raise GrantKeyError(
                f"{GRANT_KEYS_VARIABLE}: key {position} of {len(keys)} is not a Fernet key (32"
                f" url-safe base64-encoded bytes; make one with `{NEW_KEY_COMMAND}`)"
            ) from None
    return MultiFernet(fernets)


class Grant(BaseModel):
    """What a stored grant holds (its JSON is what gets sealed)."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    access_token: str = Field(min_length=1, repr=False)
    # None: the provider gave a long-lived access token and no way to renew it.
    refresh_token: str | None = Field(default=None, repr=False)
    expires_at: float | None = None  # Unix time; None: the provider stated no lifetime
    scope: str | None = None

    @classmethod
    def issued(cls, token: TokenResponse, *, now: float, previous: Grant | None = None) -> Grant:
        """The grant after the token endpoint answered `token` at `now` (a refresh that
        returns no refresh token keeps the one it used)."""
        register_secret(token.access_token, token.refresh_token)
        return cls(
            access_token=token.access_token,
            refresh_token=token.refresh_token or (previous.refresh_token if previous else None),
            expires_at=None if token.expires_in is None else now + token.expires_in,
            scope=token.scope or (previous.scope if previous else None),
        )

    def usable(self, *, now: float, stale: str | None, min_life: float) -> bool:
        """Whether its access token may be used: not the one the API refused (`stale`) and
        not expiring within `min_life` seconds."""
        if self.access_token == stale:
            return False
        return self.expires_at is None or self.expires_at - now > min_life

    def as_token(self, now: float) -> TokenResponse:
        """Its access token as the token endpoint would give it, with what is left of its
        lifetime."""
        left = None if self.expires_at is None else max(0.0, self.expires_at - now)
        return TokenResponse(access_token=self.access_token, expires_in=left, scope=self.scope)

    def seal(self, cipher: MultiFernet) -> bytes:
        return cipher.encrypt(self.model_dump_json().encode())

    @classmethod
    def open(cls, sealed: bytes, cipher: MultiFernet, *, whose: str) -> Grant:
        """The grant in `sealed`, its tokens registered with the redactor; GrantKeyError
        naming `whose` when no key opens it."""
        from cryptography.fernet import InvalidToken

        try:
            grant = cls.model_validate_json(cipher.decrypt(sealed))
        except InvalidToken:
            raise GrantKeyError(
                f"no key in {GRANT_KEYS_VARIABLE} opens the stored grant of {whose} (the key"
                " it was sealed with was removed or changed): put that key back in the list,"
                " or grant access again"
            ) from None
        except ValidationError:
            raise GrantKeyError(f"the stored grant of {whose} is not a grant") from None
        register_secret(grant.access_token, grant.refresh_token)
        return grant


def _whose(connection: Connection) -> str:
    return (
        f"workspace {connection.workspace_id!r}'s {connection.provider} connection"
        f" {connection.name!r}"
    )


def record_grant(
    warehouse: Warehouse,
    connection: Connection,
    token: TokenResponse,
    *,
    actor: str,
    clock: Callable[[], float] = time.time,
) -> Grant:
    """Seal and store the grant the token endpoint just issued for `connection` (replacing
    any it had), as `actor` (the user who ran `connect`)."""
    if connection.id is None:
        raise ValueError("the connection must be saved before its grant")
    cipher = grant_cipher()
    grant = Grant.issued(token, now=clock())
    with warehouse.tenant(connection.workspace_id, actor=actor) as db:
        store_grant(db, connection.id, grant.seal(cipher))
    return grant


class GrantTokens(NamedTuple):
    token: TokenResponse  # the access token to use, with what is left of its lifetime
    refreshed: bool  # True: the token endpoint was asked; False: the stored one is used


@dataclass
class StoredGrant:
    """One connection's stored grant, read and refreshed in tenant transactions of its
    workspace as `actor` (the run)."""

    warehouse: Warehouse
    connection: Connection
    actor: str
    clock: Callable[[], float] = time.time
    _cipher: MultiFernet | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.connection.id is None:
            raise ValueError("a stored grant belongs to a saved connection")

    def tokens(
        self,
        exchange: Callable[[str], TokenResponse],
        *,
        stale: str | None = None,
        min_life: float = 0.0,
    ) -> GrantTokens:
        """The access token to use: the stored one while it is not `stale` (refused by the
        API) and lives more than `min_life` seconds; else a new one from
        `exchange(refresh_token)` (the token endpoint), stored before the grant's row lock
        is released. Runs that ask at once take turns, and each uses what the one before it
        stored."""
        cipher = self._cipher = self._cipher or grant_cipher()
        provider = self.connection.provider
        try:
            with self.warehouse.tenant(self.connection.workspace_id, actor=self.actor) as db:
                sealed = grant_for_update(db, self.connection.id)  # type: ignore[arg-type]
                if sealed is None:
                    raise MissingSecret(self._missing())
                grant = Grant.open(sealed.sealed, cipher, whose=_whose(self.connection))
                now = self.clock()
                if grant.usable(now=now, stale=stale, min_life=min_life):
                    return GrantTokens(grant.as_token(now), refreshed=False)
                if grant.refresh_token is None:
                    raise ProviderAuthError(
                        provider,
                        "the stored grant's access token expired or was refused and it has no"
                        f" refresh token; grant access again with `{connect_command(self.connection)}`",
                        status=401,
                    )
                token = exchange(grant.refresh_token)
                renewed = Grant.issued(token, now=self.clock(), previous=grant)
                replace_grant(db, sealed.connection_id, renewed.seal(cipher), sealed.version)
                return GrantTokens(token, refreshed=True)
        except sa.exc.OperationalError as exc:
            if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                raise ProviderUnavailable(
                    provider,
                    "another run held this connection's OAuth grant (refreshing it) for longer"
                    " than KPI_DB_LOCK_TIMEOUT_SECONDS",
                ) from None
            raise

    def _missing(self) -> str:
        example = f"{secret_namespace(self.connection.workspace_id) or 'WS_<ID>__'}REFRESH_TOKEN"
        return (
            f"{_whose(self.connection)} has no stored grant and names no refresh-token"
            f" variable: grant access with `{connect_command(self.connection)}` (or name a"
            f" variable holding a refresh token: `--secret refresh_token={example}`)"
        )


@dataclass
class KeyRotation:
    """What `rotate_grant_keys` did."""

    resealed: int = 0
    workspaces: int = 0
    # Grants no key opens, as "workspace 'acme''s notion connection 'default'".
    unreadable: list[str] = field(default_factory=list)


def rotate_grant_keys(warehouse: Warehouse, *, actor: str) -> KeyRotation:
    """Seal every stored grant again under the newest key of KPI_GRANT_KEYS, one workspace
    per transaction (its grants locked, so no refresh is lost to it)."""
    from cryptography.fernet import InvalidToken

    cipher = grant_cipher()
    outcome = KeyRotation()
    with warehouse.control() as db:
        connections = {c.id: c for c in list_connections(db)}
    for workspace_id in workspace_ids(warehouse):
        with warehouse.tenant(workspace_id, actor=actor) as db:
            grants = grants_for_update(db)
            for sealed in grants:
                try:
                    resealed = cipher.rotate(sealed.sealed)
                except InvalidToken:
                    known = connections.get(sealed.connection_id)
                    outcome.unreadable.append(
                        _whose(known)
                        if known
                        else f"workspace {workspace_id!r}'s connection {sealed.connection_id}"
                    )
                    continue
                replace_grant(db, sealed.connection_id, resealed, sealed.version)
                outcome.resealed += 1
            outcome.workspaces += bool(grants)
    return outcome
