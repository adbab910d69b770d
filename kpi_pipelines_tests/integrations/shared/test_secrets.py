"""Secrets are read from the environment variable a connection names (only variables in
its workspace's own namespace), and redacted."""

import pytest

from kpi_pipelines.integrations.shared.redaction import redact
from kpi_pipelines.integrations.shared.secrets import ForbiddenSecret, MissingSecret, read_secret
from kpi_pipelines.warehouse.control import (
    Connection,
    Workspace,
    add_connection,
    add_workspace,
    secret_namespace,
)


def test_secret_comes_from_the_named_variable_and_is_redacted(monkeypatch) -> None:
    monkeypatch.setenv("WS_ACME__PROBE_KEY", "probe-secret-value-123")
    connection = Connection(
        workspace_id="acme", provider="probe", secret_env={"api_key": "WS_ACME__PROBE_KEY"}
    )
    assert read_secret(connection, "api_key") == "probe-secret-value-123"
    assert redact("failed with probe-secret-value-123") == "failed with [REDACTED]"


def test_unset_variable_names_the_variable_not_a_value(monkeypatch) -> None:
    monkeypatch.delenv("WS_ACME__PROBE_KEY", raising=False)
    connection = Connection(
        workspace_id="acme", provider="probe", secret_env={"api_key": "WS_ACME__PROBE_KEY"}
    )
    with pytest.raises(MissingSecret, match=r"WS_ACME__PROBE_KEY .* is not set"):
        read_secret(connection, "api_key")


def test_connection_without_the_secret_says_how_to_add_it() -> None:
    connection = Connection(workspace_id="acme", provider="probe")
    with pytest.raises(MissingSecret, match="--secret api_key=WS_ACME__API_KEY"):
        read_secret(connection, "api_key")


def test_an_operator_secret_is_read_when_the_connection_names_none(monkeypatch) -> None:
    monkeypatch.setenv("KPI_PROBE_CLIENT_ID", "operator-client-id")
    monkeypatch.setenv("WS_ACME__PROBE_CLIENT_ID", "tenant-client-id")
    bare = Connection(workspace_id="acme", provider="probe")
    assert read_secret(bare, "client_id", operator_variable="KPI_PROBE_CLIENT_ID") == (
        "operator-client-id"
    )
    own = Connection(
        workspace_id="acme", provider="probe", secret_env={"client_id": "WS_ACME__PROBE_CLIENT_ID"}
    )
    assert read_secret(own, "client_id", operator_variable="KPI_PROBE_CLIENT_ID") == (
        "tenant-client-id"
    )


@pytest.mark.parametrize("value", ["sk_test_51Hxyz", "whsec_abc", "my key", "lower_case"])
def test_a_connection_refuses_anything_but_a_variable_name(value: str) -> None:
    with pytest.raises(ValueError, match="environment variable in upper case") as raised:
        Connection(workspace_id="acme", provider="probe", secret_env={"api_key": value})
    assert value not in str(raised.value)  # a pasted key must not echo into logs


@pytest.mark.parametrize(
    "variable",
    [
        "WS_GLOBEX__STRIPE_KEY",  # another workspace's secret
        "WS_ACME_EU__STRIPE_KEY",  # a workspace whose id starts like this one's
        "WS_ACME__",  # the namespace itself, no name
        "KPI_DATABASE_URL",  # the project's own variables
        "DAGSTER_PG_PASSWORD",
        "PGPASSWORD",
        "KPI_STRIPE_CONNECT_WEBHOOK_SECRET",
        "AWS_SECRET_ACCESS_KEY",  # anything else in the process's environment
        "STRIPE_KEY_ACME",  # the old, unbound convention
    ],
)
def test_a_connection_may_name_only_its_own_workspaces_variables(
    warehouse, monkeypatch, variable: str
) -> None:
    for workspace_id in ("acme", "globex", "acme-eu"):
        add_workspace(warehouse, Workspace(id=workspace_id, name=workspace_id))
    monkeypatch.setenv(variable, "someone-elses-secret")
    hostile = Connection(workspace_id="acme", provider="stripe", secret_env={"api_key": variable})
    with pytest.raises(ValueError, match="may only name variables in its own namespace WS_ACME__"):
        add_connection(warehouse, hostile)
    # A row that reached the table some other way is refused when the secret is read, too.
    with pytest.raises(ForbiddenSecret, match="WS_ACME__"):
        read_secret(hostile, "api_key")


def test_namespaces_never_nest_or_collide(warehouse) -> None:
    assert secret_namespace("acme") == "WS_ACME__"
    assert secret_namespace("acme-eu") == "WS_ACME_EU__"
    assert secret_namespace("ws-a") == "WS_WS_A__"
    # Ids that could make one namespace a prefix of another's are not workspace ids.
    for bad in ("acme__eu", "acme-", "-acme", "acme_-eu", "Acme"):
        with pytest.raises(ValueError, match="words joined by single"):
            Workspace(id=bad, name=bad)
    add_workspace(warehouse, Workspace(id="acme-eu", name="x"))
    with pytest.raises(ValueError, match="would share the secret namespace WS_ACME_EU__"):
        add_workspace(warehouse, Workspace(id="acme_eu", name="y"))


@pytest.mark.parametrize(
    "key", ["base_url", "token_url", "api_base", "host", "endpoint", "proxy", "webhook_url"]
)
def test_a_connection_cannot_choose_where_its_credentials_are_sent(warehouse, key: str) -> None:
    add_workspace(warehouse, Workspace(id="acme", name="acme"))
    connection = Connection(
        workspace_id="acme",
        provider="stripe",
        settings={key: "http://attacker.example"},
        secret_env={"api_key": "WS_ACME__STRIPE_KEY"},
    )
    with pytest.raises(ValueError, match="KPI_STRIPE_BASE_URL in the environment"):
        add_connection(warehouse, connection)
