"""Secrets are read from the environment variable a connection names, and redacted."""

import pytest

from kpi_pipelines.integrations.shared.redaction import redact
from kpi_pipelines.integrations.shared.secrets import MissingSecret, read_secret
from kpi_pipelines.warehouse.control import Connection


def test_secret_comes_from_the_named_variable_and_is_redacted(monkeypatch, caplog) -> None:
    monkeypatch.setenv("PROBE_KEY_ACME", "probe-secret-value-123")
    connection = Connection(
        workspace_id="acme", provider="probe", secret_env={"api_key": "PROBE_KEY_ACME"}
    )
    assert read_secret(connection, "api_key") == "probe-secret-value-123"
    assert redact("failed with probe-secret-value-123") == "failed with [REDACTED]"


def test_unset_variable_names_the_variable_not_a_value(monkeypatch) -> None:
    monkeypatch.delenv("PROBE_KEY_ACME", raising=False)
    connection = Connection(
        workspace_id="acme", provider="probe", secret_env={"api_key": "PROBE_KEY_ACME"}
    )
    with pytest.raises(MissingSecret, match=r"PROBE_KEY_ACME .* is not set"):
        read_secret(connection, "api_key")


def test_connection_without_the_secret_says_how_to_add_it() -> None:
    connection = Connection(workspace_id="acme", provider="probe")
    with pytest.raises(MissingSecret, match="--secret api_key=ENV_VAR_NAME"):
        read_secret(connection, "api_key")


@pytest.mark.parametrize("value", ["sk_test_51Hxyz", "whsec_abc", "my key", "lower_case"])
def test_a_connection_refuses_anything_but_a_variable_name(value: str) -> None:
    with pytest.raises(ValueError, match="environment variable in upper case") as raised:
        Connection(workspace_id="acme", provider="probe", secret_env={"api_key": value})
    assert value not in str(raised.value)  # a pasted key must not echo into logs
