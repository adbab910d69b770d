"""Every environment variable the project reads, in one place.

Secrets are never read here: a connection names the variable that holds its secret, and
the adapter reads that variable when it connects (see integrations/shared/secrets.py).
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_HOME = Path.home() / ".kpi_pipelines"


def kpi_home() -> Path:
    """Folder for the embedded PostgreSQL, the Dagster home and CSV drop folders."""
    return Path(os.environ.get("KPI_HOME") or DEFAULT_HOME).expanduser().resolve()


def database_url() -> str | None:
    """The warehouse server; None means the embedded PostgreSQL under KPI_HOME."""
    return os.environ.get("KPI_DATABASE_URL") or None


def role_password(role: str) -> str | None:
    """The password of one of the warehouse's login roles (`KPI_OWNER_DB_PASSWORD` for
    kpi_owner, ...); None when the server does not ask for one (the embedded server, peer
    or certificate authentication). `db upgrade` sets it on the role."""
    return os.environ.get(f"{role.upper()}_DB_PASSWORD") or None


def batch_size() -> int:
    """Rows per write batch (one transaction each) for API providers."""
    return _positive_int("KPI_BATCH_SIZE", 5000)


def workspaces_per_run(declared: int) -> int:
    """Workspaces one scheduled tick's or backfill's run syncs at most: the provider's
    declared `workspaces_per_run` unless KPI_WORKSPACES_PER_RUN sets one for every provider
    (1: one run per workspace, as before runs were grouped)."""
    return _positive_int("KPI_WORKSPACES_PER_RUN", declared)


def csv_max_bytes() -> int:
    """Largest CSV file accepted for import."""
    return _positive_int("KPI_CSV_MAX_BYTES", 50 * 1024 * 1024)


def http_max_body_bytes() -> int:
    """Largest provider response body read, once decompressed (and the most bytes read off
    the wire for one); a larger one fails the sync (see integrations/shared/bounds.py)."""
    return _positive_int("KPI_HTTP_MAX_BODY_BYTES", 64 * 1024 * 1024)


def record_max_bytes() -> int:
    """Largest provider record (its JSON text) validated or landed; a larger one is rejected."""
    return _positive_int("KPI_RECORD_MAX_BYTES", 16 * 1024 * 1024)


def record_max_string_chars() -> int:
    """Longest string value (or key) a landed or validated provider record may hold; a record
    with a longer one is rejected. Salesforce's long text fields hold 131,072 characters."""
    return _positive_int("KPI_RECORD_MAX_STRING_CHARS", 256 * 1024)


def rejection_retention_days() -> int:
    """Days a rejected table's report is kept (KPI_HOME/rejections/, drop folders' rejected/)."""
    return _positive_int("KPI_REJECTION_RETENTION_DAYS", 30)


def rejection_max_reports() -> int:
    """Reports kept at most per folder (one workspace's, or one drop folder's rejected/)."""
    return _positive_int("KPI_REJECTION_MAX_REPORTS", 100)


def webhook_max_bytes() -> int:
    """Largest webhook request body accepted (Stripe's events are under 1 MB); a larger
    Content-Length is refused at once, a longer streamed body as soon as it passes this."""
    return _positive_int("KPI_WEBHOOK_MAX_BYTES", 1024 * 1024)


def webhook_header_timeout_seconds() -> float:
    """Time a webhook client has to send its request line and headers, counted from the
    moment the server is ready for them (connection accepted, or previous response sent)."""
    return _positive_float("KPI_WEBHOOK_HEADER_TIMEOUT_SECONDS", 5.0)


def webhook_read_timeout_seconds() -> float:
    """Time a webhook client has to send its request body once its headers are in."""
    return _positive_float("KPI_WEBHOOK_READ_TIMEOUT_SECONDS", 10.0)


def webhook_max_connections() -> int:
    """Connections and requests the webhook receiver serves at once; beyond it, 503."""
    return _positive_int("KPI_WEBHOOK_MAX_CONNECTIONS", 100)


def db_statement_timeout_seconds() -> float:
    """Longest statement a pipeline session (kpi_tenant, kpi_control) may run."""
    return _positive_float("KPI_DB_STATEMENT_TIMEOUT_SECONDS", 900.0)


def db_lock_timeout_seconds() -> float:
    """Longest a pipeline session waits for a lock before its statement fails."""
    return _positive_float("KPI_DB_LOCK_TIMEOUT_SECONDS", 60.0)


def db_idle_in_transaction_timeout_seconds() -> float:
    """Longest a pipeline session may hold a transaction open while sending nothing; the
    server then ends the session (and the locks and snapshot it held)."""
    return _positive_float("KPI_DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", 600.0)


def webhook_inbox_quota() -> int:
    """Unprocessed webhook events one workspace may hold in the inbox; past it the receiver
    answers a verified delivery 503 (the provider retries it later) until the sensor drains
    the inbox."""
    return _positive_int("KPI_WEBHOOK_INBOX_QUOTA", 1000)


def webhook_inbox_retention_days() -> float:
    """How long a processed webhook event is kept (it deduplicates the provider's retries:
    Stripe's last for three days) before the inbox sensor deletes it."""
    return _positive_float("KPI_WEBHOOK_INBOX_RETENTION_DAYS", 7.0)


def csv_drop_dir() -> Path:
    """Root of the per-workspace CSV drop folders watched by a sensor."""
    configured = os.environ.get("KPI_CSV_DROP_DIR")
    return Path(configured).expanduser().resolve() if configured else kpi_home() / "csv_drop"


def provider_base_url(provider: str, default: str, configured: str | None = None) -> str:
    """A provider's API host: `configured` (the resource's config in Definitions), else
    `KPI_<PROVIDER>_BASE_URL` (a sandbox, a proxy), else the provider's own. Hosts are the
    operator's to choose, never a connection's; https only, except on loopback."""
    variable = f"KPI_{provider.upper()}_BASE_URL"
    if configured:
        return operator_url(configured, f"the {provider} resource's base_url")
    return operator_url(os.environ.get(variable) or default, variable)


def operator_url(url: str, what: str) -> str:
    """`url` if it is https, or http to a loopback address (a local sandbox or proxy)."""
    parsed = urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme == "https" and host:
        return url
    if parsed.scheme == "http" and _is_loopback(host):
        return url
    shown = f"{parsed.scheme}://{host}" if host else repr(parsed.scheme or url[:20])
    raise ValueError(
        f"{what} must be an https:// address (http:// only on loopback, such as"
        f" http://127.0.0.1:8080), not {shown}"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _positive_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


def _positive_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive number, got {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name} must be a positive number, got {raw!r}")
    return value
