"""The control plane: workspaces, their connections, and fx rates (as kpi_control)."""

from __future__ import annotations

import contextlib
import csv
import ipaddress
import json
import re
from collections.abc import Collection, Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.engine import Connection as DbConnection

from kpi_pipelines.warehouse.database import Warehouse

# Words of lowercase letters and digits joined by single '-' or '_': so that no two
# workspaces' secret namespaces (below) can be equal or one a prefix of the other.
WORKSPACE_ID = re.compile(r"^(?=.{1,63}$)[a-z0-9]+(?:[_-][a-z0-9]+)*$")
# Upper case only: a lower-case "name" is far more likely a pasted key (sk_test_...).
ENV_VAR_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
# Connection settings that would choose where credentials are sent: hosts are the
# operator's (environment), never a tenant's. Refused by name at any depth, and by value
# (a URL, a host name, an IP address) under any key.
_HOST_SETTING = re.compile(
    r"(^|_)(url|uri|host|hostname|endpoint|base|origin|proxy|server|domain)$"
)
_URL = re.compile(r"(?i)[a-z][a-z0-9+.-]*://|^//")
_DNS_NAME = re.compile(
    r"(?i)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?\.?"
)


def looks_like_host(text: str, *, bare_names: bool = True) -> bool:
    """Whether `text` is, or holds, a URL, or is a host name or IP address (with or without
    a user, port or path): something a request could be sent to. With `bare_names=False` a
    dotted name alone ("Sales.Total", the header of a tenant's own column) is not taken
    for a host; with a user, a port or a path it still is."""
    text = text.strip()
    if _URL.search(text):
        return True
    if not text or any(char.isspace() for char in text):
        return False
    try:
        parts = urlsplit("//" + text)
        host = parts.hostname or ""
    except ValueError:  # "[bold]": brackets that hold no IPv6 address, so no host at all
        return False
    # What an HTTP client would resolve: "évil.example", full-width dots.
    with contextlib.suppress(UnicodeError):
        host = host.encode("idna").decode("ascii")
    if host == "localhost" or _DNS_NAME.fullmatch(host):
        return bare_names or text != parts.netloc or "@" in text or ":" in text
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _named_like_host(key: str) -> bool:
    """ "base_url", "baseUrl", "api-base", "server": in snake case, ends with a host word."""
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower().replace("-", "_")
    return bool(_HOST_SETTING.search(snake))


def settings_host_problem(
    settings: Any,
    *,
    skip: Collection[str] = (),
    names: Collection[tuple[str, ...]] = (),
    bare_names: bool = True,
) -> str | None:
    """Where connection settings (JSON: objects, arrays, strings) name a host: the first
    key path, in order, whose key is named like a host setting or is a host, or whose
    value holds a URL or host name, as "options.base_url holds a URL or host name"; or
    None. `skip`: top-level keys not to look into. `names`: key paths ("*" for any key or
    index) that hold names of the tenant's own data, where a dotted name alone is allowed
    (see `looks_like_host`), as it is everywhere with `bare_names=False`."""
    pending: list[tuple[tuple[str, ...], Any]] = [((), settings)]
    while pending:
        path, value = pending.pop()
        children: list[tuple[tuple[str, ...], Any]] = []
        if isinstance(value, dict):
            for key, item in value.items():
                where = (*path, str(key))
                if _named_like_host(str(key)) or looks_like_host(str(key)):
                    return f"{'.'.join(where)} is named like a host setting"
                if path or key not in skip:
                    children.append((where, item))
        elif isinstance(value, list | tuple):
            children = [((*path, str(index)), item) for index, item in enumerate(value)]
        elif isinstance(value, str) and looks_like_host(
            value, bare_names=bare_names and not any(_matches(path, name) for name in names)
        ):
            return f"{'.'.join(path) or 'the settings'} holds a URL or host name"
        pending.extend(reversed(children))
    return None


def _matches(path: tuple[str, ...], pattern: tuple[str, ...]) -> bool:
    return len(path) == len(pattern) and all(
        p in ("*", part) for part, p in zip(path, pattern, strict=True)
    )


def secret_namespace(workspace_id: str) -> str | None:
    """`WS_<ID>__`: the only environment variables a workspace's connections may name for
    their secrets (`-` in the id is `_`), e.g. WS_ACME__STRIPE_KEY. None for an id that
    predates the prefix-safe rule (such a workspace cannot name secrets)."""
    if not WORKSPACE_ID.match(workspace_id):
        return None
    return f"WS_{workspace_id.upper().replace('-', '_')}__"


def secret_binding_problem(workspace_id: str, purpose: str, variable: str) -> str | None:
    """Why `variable` may not hold the `purpose` secret of `workspace_id`, or None."""
    namespace = secret_namespace(workspace_id)
    if namespace is None:
        return (
            f"workspace {workspace_id!r} has an id from before secret namespaces and cannot"
            " name secrets; create a workspace with an id of lowercase words joined by single"
            " '-' or '_'"
        )
    if not variable.startswith(namespace) or len(variable) == len(namespace):
        return (
            f"secret {purpose!r} names {variable}, but workspace {workspace_id!r} may only name"
            f" variables in its own namespace {namespace}* (for example"
            f" {namespace}{purpose.upper()})"
        )
    return None


class Workspace(BaseModel):
    id: str
    name: str = Field(min_length=1, max_length=200)
    reporting_currency: str = "USD"
    timezone: str = "UTC"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not WORKSPACE_ID.match(value):
            raise ValueError(
                f"workspace id {value!r} must be 1-63 characters: lowercase letters and digits,"
                " words joined by single '-' or '_' (like 'acme' or 'acme-eu')"
            )
        return value

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value):
            raise ValueError(f"reporting currency {value!r} is not a 3-letter ISO 4217 code")
        return value.upper()

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"time zone {value!r} is not an IANA zone such as 'Europe/Paris'"
            ) from None
        return value


class Connection(BaseModel):
    """A workspace's link to one provider; secrets are named by environment variable only."""

    # A pasted secret must not be echoed back in a validation error.
    model_config = ConfigDict(hide_input_in_errors=True)

    id: int | None = None
    workspace_id: str
    provider: str
    name: str = "default"
    settings: dict[str, Any] = Field(default_factory=dict)
    secret_env: dict[str, str] = Field(default_factory=dict)
    enabled: bool = True
    consecutive_failures: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    next_attempt_at: datetime | None = None
    # The provider account this connection's own credentials were shown to belong to (by
    # its sync), and when: what a shared webhook endpoint routes by. The control role
    # writes it (record_proved_account); a tenant session cannot.
    proved_account: str | None = None
    account_proved_at: datetime | None = None

    @field_validator("secret_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for purpose, name in value.items():
            if not ENV_VAR_NAME.match(name):
                raise ValueError(
                    f"secret {purpose!r} must name an environment variable in upper case (like"
                    " STRIPE_KEY_ACME) that holds the secret, not the secret itself"
                )
        return value


class UnknownWorkspace(LookupError):
    pass


class UnknownConnection(LookupError):
    pass


def add_workspace(warehouse: Warehouse, workspace: Workspace) -> Workspace:
    with warehouse.control() as db:
        exists = db.execute(
            sa.text("SELECT 1 FROM workspaces WHERE id = :id"), {"id": workspace.id}
        ).first()
        if exists:
            raise ValueError(f"workspace {workspace.id!r} already exists")
        sharing = db.execute(
            sa.text(
                "SELECT id FROM workspaces"
                " WHERE upper(translate(id, '-', '_')) = upper(translate(:id, '-', '_'))"
            ),
            {"id": workspace.id},
        ).scalar()
        if sharing:
            raise ValueError(
                f"workspace id {workspace.id!r} would share the secret namespace"
                f" {secret_namespace(workspace.id)}* of workspace {sharing!r}; choose another id"
            )
        db.execute(
            sa.text(
                "INSERT INTO workspaces (id, name, reporting_currency, timezone)"
                " VALUES (:id, :name, :reporting_currency, :timezone)"
            ),
            workspace.model_dump(),
        )
    return workspace


def list_workspaces(warehouse: Warehouse) -> list[Workspace]:
    with warehouse.control() as db:
        rows = db.execute(
            sa.text("SELECT id, name, reporting_currency, timezone FROM workspaces ORDER BY id")
        ).mappings()
        return [_stored_workspace(row) for row in rows]


def workspace_ids(warehouse: Warehouse) -> list[str]:
    with warehouse.control() as db:
        return list(db.execute(sa.text("SELECT id FROM workspaces ORDER BY id")).scalars())


def get_workspace(db: DbConnection, workspace_id: str) -> Workspace:
    """Read one workspace in any transaction that may see it (control, or its own tenant)."""
    row = (
        db.execute(
            sa.text("SELECT id, name, reporting_currency, timezone FROM workspaces WHERE id = :id"),
            {"id": workspace_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise UnknownWorkspace(f"workspace {workspace_id!r} does not exist")
    return _stored_workspace(row)


def _stored_workspace(row: Any) -> Workspace:
    # Rows were validated when they were written; an id from before today's rules still loads.
    return Workspace.model_construct(**row)


def remove_workspace(warehouse: Warehouse, workspace_id: str) -> None:
    """Delete a workspace and, by cascade, every row it owns."""
    with warehouse.control() as db:
        deleted = db.execute(sa.text("DELETE FROM workspaces WHERE id = :id"), {"id": workspace_id})
        if deleted.rowcount == 0:
            raise UnknownWorkspace(f"workspace {workspace_id!r} does not exist")


# What a connection's settings may hold at most, as JSON (a mapping, ids, options).
MAX_SETTINGS_BYTES = 64 * 1024


def check_connection_input(connection: Connection) -> None:
    """Refuse what a tenant must not choose: secrets outside its namespace, provider hosts,
    names that are not plain words, settings beyond any real need."""
    if not WORKSPACE_ID.match(connection.name):
        raise ValueError(
            f"connection name {connection.name[:40]!r} must be 1-63 characters: lowercase"
            " letters and digits, words joined by single '-' or '_' (like 'default' or 'eu-shop')"
        )
    size = len(json.dumps(connection.settings, default=str).encode())
    if size > MAX_SETTINGS_BYTES:
        raise ValueError(
            f"connection settings take {size} bytes as JSON; at most {MAX_SETTINGS_BYTES}"
        )
    for purpose, variable in connection.secret_env.items():
        problem = secret_binding_problem(connection.workspace_id, purpose, variable)
        if problem:
            raise ValueError(problem)
    # What the provider's settings model checked with its types (the names a tenant's own
    # data uses may be dotted), the warehouse checks again for any caller: every URL, IP
    # address, host with a user, port or path, and key named like a host.
    problem = settings_host_problem(connection.settings, bare_names=False)
    if problem:
        raise ValueError(
            f"connection setting {problem}, which is not allowed: the hosts a provider is"
            f" reached at are operator settings (KPI_{connection.provider.upper()}_BASE_URL in"
            " the environment of the Dagster processes), never a connection's"
        )


# An upsert that leaves a connection's settings and secrets as they were keeps its proof.
_UNCHANGED = (
    "connections.settings = excluded.settings AND connections.secret_env = excluded.secret_env"
)


def add_connection(warehouse: Warehouse, connection: Connection) -> Connection:
    """Save a connection; replacing one with other settings or secrets drops its proved
    account (its next sync proves it again, with what the connection now names)."""
    check_connection_input(connection)
    with warehouse.control() as db:
        get_workspace(db, connection.workspace_id)
        row = db.execute(
            sa.text(
                "INSERT INTO connections (workspace_id, provider, name, settings, secret_env)"
                " VALUES (:workspace_id, :provider, :name, :settings, :secret_env)"
                " ON CONFLICT (workspace_id, provider, name) DO UPDATE"
                " SET settings = excluded.settings, secret_env = excluded.secret_env,"
                f" proved_account = CASE WHEN {_UNCHANGED} THEN connections.proved_account END,"
                f" account_proved_at = CASE WHEN {_UNCHANGED}"
                " THEN connections.account_proved_at END"
                " RETURNING id"
            ).bindparams(
                sa.bindparam("settings", type_=sa.JSON), sa.bindparam("secret_env", type_=sa.JSON)
            ),
            connection.model_dump(
                include={"workspace_id", "provider", "name", "settings", "secret_env"}
            ),
        ).scalar_one()
    return connection.model_copy(update={"id": row})


_CONNECTION_COLUMNS = (
    "id, workspace_id, provider, name, settings, secret_env, enabled, consecutive_failures,"
    " last_error, last_attempt_at, last_success_at, next_attempt_at, proved_account,"
    " account_proved_at"
)


def record_proved_account(warehouse: Warehouse, connection_id: int, account: str | None) -> None:
    """Remember which provider account the connection's own credentials belong to, as the
    provider just said (None: they were shown not to belong to the one it claims)."""
    with warehouse.control() as db:
        db.execute(
            sa.text(
                "UPDATE connections SET proved_account = CAST(:account AS text),"
                " account_proved_at = CASE WHEN CAST(:account AS text) IS NULL THEN NULL"
                " ELSE now() END"
                " WHERE id = :id"
            ),
            {"account": account, "id": connection_id},
        )


def list_connections(
    db: DbConnection, *, provider: str | None = None, workspace_id: str | None = None
) -> list[Connection]:
    query = f"SELECT {_CONNECTION_COLUMNS} FROM connections WHERE true"
    params: dict[str, Any] = {}
    if provider:
        query += " AND provider = :provider"
        params["provider"] = provider
    if workspace_id:
        query += " AND workspace_id = :ws"
        params["ws"] = workspace_id
    rows = db.execute(sa.text(query + " ORDER BY workspace_id, provider, name"), params).mappings()
    return [Connection(**row) for row in rows]


def get_connection(
    db: DbConnection, workspace_id: str, provider: str, name: str | None = None
) -> Connection:
    """The workspace's connection to `provider` (by name, or its only one)."""
    found = [
        c
        for c in list_connections(db, provider=provider, workspace_id=workspace_id)
        if name is None or c.name == name
    ]
    if not found:
        named = f" named {name!r}" if name else ""
        raise UnknownConnection(
            f"workspace {workspace_id!r} has no {provider} connection{named}; add one with"
            f" `kpi-pipelines connection add {workspace_id} {provider} ...`"
        )
    if len(found) > 1:
        names = ", ".join(c.name for c in found)
        raise UnknownConnection(
            f"workspace {workspace_id!r} has several {provider} connections ({names}); name one"
        )
    return found[0]


# A connection that keeps failing is retried less often: after n consecutive failures
# the next scheduled attempt waits cadence * 2**(n-1), at most a day.
MAX_BACKOFF = timedelta(days=1)
# What a connection keeps of its last error (the run's own log has the rest).
MAX_ERROR_CHARS = 2000


def bounded_error(error: str | None) -> str | None:
    """An error message cut to MAX_ERROR_CHARS, saying so."""
    if error is None or len(error) <= MAX_ERROR_CHARS:
        return error
    return error[:MAX_ERROR_CHARS] + f"... ({len(error) - MAX_ERROR_CHARS} more characters)"


def record_sync_outcome(
    db: DbConnection,
    connection_id: int,
    *,
    success: bool,
    error: str | None,
    cadence: timedelta | None,
    now: datetime | None = None,
) -> Connection:
    now = now or datetime.now(UTC)
    current = db.execute(
        sa.text("SELECT consecutive_failures FROM connections WHERE id = :id"),
        {"id": connection_id},
    ).scalar_one()
    failures = 0 if success else current + 1
    next_attempt = None
    if failures and cadence is not None:
        next_attempt = now + min(cadence * 2 ** (failures - 1), MAX_BACKOFF)
    row = (
        db.execute(
            sa.text(
                "UPDATE connections SET consecutive_failures = :failures, last_error = :error,"
                " last_attempt_at = :now,"
                " last_success_at = CASE WHEN :success THEN :now ELSE last_success_at END,"
                " next_attempt_at = :next_attempt"
                f" WHERE id = :id RETURNING {_CONNECTION_COLUMNS}"
            ),
            {
                "failures": failures,
                "error": None if success else bounded_error(error),
                "now": now,
                "success": success,
                "next_attempt": next_attempt,
                "id": connection_id,
            },
        )
        .mappings()
        .one()
    )
    return Connection(**row)


def due_for_sync(connection: Connection, now: datetime | None = None) -> bool:
    """False while a failing connection waits out its backoff."""
    if not connection.enabled:
        return False
    if connection.next_attempt_at is None:
        return True
    return (now or datetime.now(UTC)) >= connection.next_attempt_at


class FxRate(BaseModel):
    base: str
    quote: str
    day: date
    rate: float = Field(gt=0, allow_inf_nan=False)

    @field_validator("base", "quote")
    @classmethod
    def _code(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{3}", value.strip()):
            raise ValueError(f"{value!r} is not a 3-letter currency code")
        return value.strip().upper()


def import_fx_rates(warehouse: Warehouse, rates: Iterable[FxRate]) -> int:
    rows = [r.model_dump() for r in rates]
    if not rows:
        return 0
    with warehouse.control() as db:
        db.execute(
            sa.text(
                "INSERT INTO fx_rates (base, quote, day, rate) VALUES (:base, :quote, :day, :rate)"
                " ON CONFLICT (base, quote, day) DO UPDATE SET rate = excluded.rate"
            ),
            rows,
        )
    return len(rows)


def read_fx_csv(path: Path) -> list[FxRate]:
    """Parse a `day,base,quote,rate` CSV; any bad row rejects the file with its line number."""
    from pydantic import ValidationError

    rates, errors = [], []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"day", "base", "quote", "rate"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path.name}: missing column(s) {', '.join(sorted(missing))}")
        for row in reader:
            try:
                rates.append(FxRate.model_validate(row))
            except ValidationError as exc:
                reasons = "; ".join(e["msg"] for e in exc.errors())
                errors.append(f"line {reader.line_num}: {reasons}")
    if errors:
        raise ValueError(
            f"{path.name}: {len(errors)} bad row(s), nothing imported:\n" + "\n".join(errors)
        )
    return rates
