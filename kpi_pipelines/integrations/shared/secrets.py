"""Secrets come from environment variables only; a connection names the variable.

A connection is tenant input, so the variables it may name are bound to its workspace:
only names in the workspace's own namespace (`WS_<ID>__...`, see
`warehouse.control.secret_namespace`), checked when the connection is saved and again
here, when the secret is read. The project's own variables (KPI_*, DAGSTER_*, PG*) are
never in a workspace's namespace. Secrets that belong to the deployment rather than to a
tenant (say the OAuth client of the operator's Google Cloud project) are operator
settings, read from their own variable when the connection names none.
"""

from __future__ import annotations

import os

from kpi_pipelines.integrations.shared.redaction import register_secret
from kpi_pipelines.warehouse.control import Connection, secret_binding_problem, secret_namespace


class MissingSecret(LookupError):
    """The variable a connection names is unset or empty; says which one to set."""


class ForbiddenSecret(PermissionError):
    """A connection names a variable outside its workspace's namespace."""


def read_secret(
    connection: Connection,
    purpose: str,
    *,
    operator_variable: str | None = None,
    public: bool = False,
) -> str:
    """The secret `purpose` of `connection`, registered for redaction before it is returned.

    `operator_variable`: the deployment-wide variable to read when the connection names no
    variable for `purpose` (an operator setting, never chosen by a tenant). `public`: a
    value kept in a variable like a secret but shown by design (an OAuth client id is in
    every consent page's address, RFC 6749 section 2.2), so not redacted.
    """
    name = connection.secret_env.get(purpose)
    if not name and operator_variable:
        return _read(
            operator_variable, f"the operator's {purpose} ({operator_variable})", public=public
        )
    if not name:
        example = f"{secret_namespace(connection.workspace_id) or 'WS_<ID>__'}{purpose.upper()}"
        raise MissingSecret(
            f"the {connection.provider} connection {connection.name!r} of workspace"
            f" {connection.workspace_id!r} names no environment variable for its {purpose};"
            f" add one with `kpi-pipelines connection add {connection.workspace_id}"
            f" {connection.provider} --secret {purpose}={example}`"
        )
    problem = secret_binding_problem(connection.workspace_id, purpose, name)
    if problem:
        raise ForbiddenSecret(problem)
    return _read(
        name,
        f"the {purpose} of workspace {connection.workspace_id!r}'s {connection.provider}"
        " connection",
        public=public,
    )


def _read(variable: str, what: str, *, public: bool = False) -> str:
    value = os.environ.get(variable, "")
    if not value.strip():
        raise MissingSecret(f"environment variable {variable} ({what}) is not set")
    if not public:
        register_secret(value)
    return value
