"""Saying why something failed validation, the same way everywhere.

`describe_validation` turns a pydantic error into one line of field paths and reasons
(never the input, which may be a tenant's secret or a provider's record);
`validated_settings` validates a connection's settings with a message that says which
connection to fix; `Rejections` counts the records an engine skipped and names the first
ones (SyncResult.errors stays bounded however many there are, each line redacted and cut:
a record's id or description is the provider's text).
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ValidationError

from kpi_pipelines.integrations.shared.redaction import redact
from kpi_pipelines.warehouse.control import Connection

M = TypeVar("M", bound=BaseModel)
# A rejection's line, cut (after redaction: a cut could leave half a secret unmatched).
MAX_REJECTION_CHARS = 500


def describe_validation(exc: Exception, *, limit: int | None = None, whole: str = "value") -> str:
    """A validation error as one line: `field.path: reason; ...` (the first `limit`
    problems); any other error as its message. `whole` names a problem with no field (""
    when its reason names its own place)."""
    if not isinstance(exc, ValidationError):
        return str(exc)
    problems = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or whole
        reason = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {reason}" if where else reason)
    return "; ".join(problems)


def validated_settings(
    connection: Connection,
    model: type[M],
    *,
    error: type[Exception] = ValueError,
    problem: str = "unusable settings",
    hint: str = "",
) -> M:
    """`connection`'s settings as `model`, or `error` naming the connection and every
    problem (`hint` may say what valid settings look like)."""
    try:
        return model.model_validate(connection.settings)
    except ValidationError as exc:
        raise error(
            f"the {connection.provider} connection {connection.name!r} of workspace"
            f" {connection.workspace_id!r} has {problem}:"
            f" {describe_validation(exc, whole='settings')}{hint}"
        ) from None


def named(text: str, limit: int = 100) -> str:
    """A provider's name for a record (an id, a row's labels), fit for a rejection: redacted,
    then cut, so the reason after it is never lost."""
    text = redact(text)
    return text if len(text) <= limit else text[:limit] + "..."


class Rejections:
    """Records that failed validation in one sync: all counted, the first `limit` named
    (then one line that counts the rest)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.errors: list[str] = []
        self._unnamed = 0

    def add(self, message: str) -> None:
        self.count += 1
        if len(self.errors) < self.limit:
            message = redact(message)
            if len(message) > MAX_REJECTION_CHARS:
                message = message[:MAX_REJECTION_CHARS] + "..."
            self.errors.append(message)
            return
        self._unnamed += 1
        note = f"... and {self._unnamed} more rejected record(s), not named"
        if self._unnamed > 1:
            self.errors[-1] = note
        else:
            self.errors.append(note)
