"""Redaction of registered secrets and secret shapes, in text and in log records."""

from __future__ import annotations

import logging
import secrets
import uuid

import pytest

from kpi_pipelines.integrations.shared.redaction import (
    REDACTED,
    RedactingFilter,
    Redactor,
    install_redaction_filter,
    redact,
    register_secret,
)


def _secret() -> str:
    return "tok-" + secrets.token_urlsafe(18)


def _logger(redactor: Redactor | None = None) -> logging.Logger:
    logger = logging.getLogger(f"kpi_pipelines_tests.redaction.{uuid.uuid4().hex}")
    logger.addFilter(RedactingFilter(redactor))
    return logger


def test_registered_secret_is_replaced_everywhere_including_url_encoded() -> None:
    secret = "ab/cd+ef=" + secrets.token_hex(8)
    redactor = Redactor([secret])
    text = f"a {secret} b https://x.test/cb?state={secret.replace('/', '%2F').replace('+', '%2B').replace('=', '%3D')}"
    out = redactor.redact(text)
    assert secret not in out
    assert "%2F" not in out
    assert out.startswith(f"a {REDACTED} b")


def test_empty_and_very_short_values_are_not_registered() -> None:
    redactor = Redactor(["", None, "abc"])
    assert redactor.redact("abc and a") == "abc and a"


def test_longest_secret_wins_when_one_contains_another() -> None:
    short, long = "abcdef12", "abcdef1234567890"
    redactor = Redactor([short, long])
    assert redactor.redact(f"x {long} y") == f"x {REDACTED} y"


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("Authorization: Bearer eyJhbGciOi.abc.def", "eyJhbGciOi", "Authorization: "),
        (
            "{'Authorization': 'Basic dXNlcjpwYXNz', 'Accept': 'application/json'}",
            "dXNlcjpwYXNz",
            "'Accept': 'application/json'",
        ),
        ('{"authorization": "Bearer q1w2e3r4"}', "q1w2e3r4", '{"authorization": "'),
        (
            'Authorization: OAuth oauth_consumer_key="ck1", oauth_token="tok1", oauth_signature="s"',
            "tok1",
            "Authorization: ",
        ),
        ("request failed: bearer 0123456789abcdef", "0123456789abcdef", "request failed"),
        (
            "GET https://graph.facebook.com/v19.0/act_1/insights?access_token=EAAB123xyz&limit=5",
            "EAAB123xyz",
            "limit=5",
        ),
        (
            "refresh_token=1%2F%2Fabcdef&grant_type=refresh_token",
            "abcdef",
            "grant_type=refresh_token",
        ),
        ("client_secret=shh-123&client_id=public-id", "shh-123", "client_id=public-id"),
        ("https://www.googleapis.com/x?key=AIzaSyA-123&alt=json", "AIzaSyA-123", "alt=json"),
        (
            '{"access_token": "opaque-1234", "expires_in": 3599}',
            "opaque-1234",
            '"expires_in": 3599',
        ),
        ("{'refresh_token': 'r-9876', 'scope': 'read'}", "r-9876", "'scope': 'read'"),
        ("refresh_token: plain-5555 was rejected", "plain-5555", "was rejected"),
        ("stripe key sk_live_51Habc123XYZ failed", "51Habc123XYZ", "failed"),
        ("key sk_test_4eC39HqLyjWDarjtT1zdp7dc", "4eC39HqLyjWDarjtT1zdp7dc", "key "),
        ("restricted rk_live_abcDEF123456", "abcDEF123456", "restricted"),
        (
            "webhook whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "webhook",
        ),
        ("google ya29.a0AfH6SMBx-abc_def", "a0AfH6SMBx", "google"),
        ("postgresql://kpi:hunter2pass@db:5432/kpi", "hunter2pass", "@db:5432/kpi"),
        ("X-Api-Key: abc123xyz789", "abc123xyz789", "X-Api-Key"),
    ],
)
def test_secret_shapes_are_redacted(text: str, gone: str, kept: str) -> None:
    out = redact(text)
    assert gone not in out
    assert kept in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "monkey=banana&page_token=next123&code=17&limit=100",
        "error code 17: (#17) User request limit reached",
        "Invalid dimension: date; keyEvents is not a metric",
        "MALFORMED_QUERY: unexpected token: FROM; secret: santa; password: too short",
        "pk_live_publishable_is_public and skip_test_flag",
        "subscription sub_1234 for customer cus_ABC, invoice in_987",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_redaction_is_idempotent() -> None:
    text = "Authorization: Bearer abc123 access_token=xyz sk_test_123abc"
    once = redact(text)
    assert redact(once) == once


def test_module_functions_use_the_process_wide_redactor() -> None:
    secret = _secret()
    assert redact(f"value {secret}") == f"value {secret}"
    register_secret(secret)
    assert redact(f"value {secret}") == f"value {REDACTED}"


def test_filter_redacts_message_and_args(caplog: pytest.LogCaptureFixture) -> None:
    secret = _secret()
    logger = _logger(Redactor([secret]))
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.warning("token %s in %r (%d)", secret, {"token": secret}, 3)
    [record] = caplog.records
    assert secret not in caplog.text
    assert record.args is None
    assert record.getMessage().startswith(f"token {REDACTED} in ")
    assert record.getMessage().endswith("(3)")


def test_filter_redacts_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    secret = _secret()
    logger = _logger(Redactor([secret]))
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        try:
            raise RuntimeError(f"boom with {secret}")
        except RuntimeError:
            logger.exception("call failed for %s", secret)
    assert "RuntimeError: boom with [REDACTED]" in caplog.text
    assert secret not in caplog.text


def test_filter_survives_a_broken_format_string(caplog: pytest.LogCaptureFixture) -> None:
    secret = _secret()
    logger = _logger(Redactor([secret]))
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        logger.warning("%s and %s", secret)
    assert len(caplog.records) == 1
    assert secret not in caplog.text
    assert REDACTED in caplog.text


def test_filter_without_a_redactor_follows_later_registrations(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = _logger()
    secret = _secret()
    register_secret(secret)
    with caplog.at_level(logging.INFO, logger=logger.name):
        logger.info("refreshed to %s", secret)
    assert secret not in caplog.text


def test_install_redaction_filter_is_idempotent() -> None:
    name = f"kpi_pipelines_tests.redaction.install.{uuid.uuid4().hex}"
    install_redaction_filter(name)
    install_redaction_filter(name)
    filters = logging.getLogger(name).filters
    assert sum(isinstance(f, RedactingFilter) for f in filters) == 1


def test_uvicorns_coloured_lines_show_their_redacted_values_in_a_terminal() -> None:
    """uvicorn logs with a coloured twin of each message (`color_message`), which its
    formatter uses on a terminal: after redaction cleared the args, that twin showed
    `Started server process [%d]` as is (and would show a secret unredacted)."""
    from uvicorn.logging import DefaultFormatter

    secret = _secret()
    record = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, "pid %d %s", (42, secret), None
    )
    record.color_message = "pid \x1b[36m%d\x1b[0m %s"
    RedactingFilter(Redactor([secret])).filter(record)
    shown = DefaultFormatter("%(levelprefix)s %(message)s", use_colors=True).format(record)
    assert shown.endswith(f"pid 42 {REDACTED}") and "%d" not in shown
