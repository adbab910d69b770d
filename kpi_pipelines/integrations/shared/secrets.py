"""Secrets come from environment variables only; a connection names the variable."""

from __future__ import annotations

import os

from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.warehouse.control import Connection


class MissingSecret(LookupError):
    """The variable a connection names is unset or empty; says which one to set."""


def read_secret(connection: Connection, purpose: str) -> str:
    """The secret `purpose` of `connection`, registered for redaction before it is returned."""
    name = connection.secret_env.get(purpose)
    if not name:
        raise MissingSecret(
            f"the {connection.provider} connection {connection.name!r} of workspace"
            f" {connection.workspace_id!r} names no environment variable for its {purpose};"
            f" add one with `kpi-pipelines connection add {connection.workspace_id}"
            f" {connection.provider} --secret {purpose}=ENV_VAR_NAME`"
        )
    value = os.environ.get(name, "")
    if not value.strip():
        raise MissingSecret(
            f"environment variable {name} (the {purpose} of workspace"
            f" {connection.workspace_id!r}'s {connection.provider} connection) is not set"
        )
    register_secret(value)
    return value
