"""Every environment variable the project reads, in one place.

Secrets are never read here: a connection names the variable that holds its secret, and
the adapter reads that variable when it connects (see integrations/shared/secrets.py).
"""

from __future__ import annotations

import os
from pathlib import Path

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


def csv_max_bytes() -> int:
    """Largest CSV file accepted for import."""
    return _positive_int("KPI_CSV_MAX_BYTES", 50 * 1024 * 1024)


def csv_drop_dir() -> Path:
    """Root of the per-workspace CSV drop folders watched by a sensor."""
    configured = os.environ.get("KPI_CSV_DROP_DIR")
    return Path(configured).expanduser().resolve() if configured else kpi_home() / "csv_drop"


def provider_base_url(provider: str, default: str) -> str:
    """`KPI_<PROVIDER>_BASE_URL` overrides a provider's API host (sandbox, proxy)."""
    return os.environ.get(f"KPI_{provider.upper()}_BASE_URL") or default


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
