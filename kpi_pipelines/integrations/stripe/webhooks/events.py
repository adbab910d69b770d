"""A verified webhook body, read as a Stripe event: bounded, storable, with a sane envelope.

A verified body is still tenant input (a tenant holds its own signing secret), so it is
read as carefully as any other: UTF-8, one JSON object, no nesting deeper than a Stripe
event has, no text PostgreSQL cannot store in jsonb (NUL, lone surrogates), no number it
cannot store or read back (NaN, Infinity, 1e99999), and an envelope whose id and type can
key the inbox.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

# Stripe objects nest a handful of levels (event.data.object.items.data[].price.recurring).
MAX_DEPTH = 64
# A double has 17 significant digits; an int64 20 characters. Longer literals are not
# numbers a Stripe event carries, and their cost (and PostgreSQL's numeric range) is unbounded.
MAX_NUMBER_CHARS = 40
# jsonb refuses U+0000 and lone surrogates (which json.loads yields for "\ud800").
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Printable ASCII without spaces: ids and types are logged and used as keys.
Token = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,255}$")]


class StripeEvent(BaseModel):
    """The envelope of a Stripe (snapshot) event; the rest of the body is stored as sent."""

    # Strict: `"created": "1"` or `"id": 1` is not a Stripe event; input stays out of errors.
    model_config = ConfigDict(strict=True, hide_input_in_errors=True, frozen=True)

    id: Token
    object: Literal["event"]
    type: Token
    created: int = Field(ge=0, lt=2**63)
    account: Token | None = None
    data: dict[str, Any]


class MalformedEvent(ValueError):
    """The body is not a Stripe event we can store; says why, never quoting the body."""


def parse_event(body: bytes) -> tuple[StripeEvent, str]:
    """The event's envelope and its JSON text (to store exactly as received)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("the body is not UTF-8") from None
    try:
        value = json.loads(text, parse_int=_integer, parse_float=_real, parse_constant=_no_constant)
    except RecursionError:
        raise MalformedEvent("the body's JSON is nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise MalformedEvent(f"the body is not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise MalformedEvent(f"the body is a JSON {type(value).__name__}, not an object")
    _check_storable(value)
    try:
        event = StripeEvent.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise MalformedEvent(f"the body is not a Stripe event ({problems})") from None
    return event, text


def _integer(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise MalformedEvent(f"the body has a number longer than {MAX_NUMBER_CHARS} characters")
    return int(literal)


def _real(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise MalformedEvent(f"the body has a number longer than {MAX_NUMBER_CHARS} characters")
    value = float(literal)
    # 1e400 would be read back as infinity, 1e-400 as zero: outside what a double holds.
    if not math.isfinite(value) or (value == 0 and Decimal(literal) != 0):
        raise MalformedEvent("the body has a number outside the range of a double")
    return value


def _no_constant(name: str) -> Any:
    raise MalformedEvent(f"the body has {name}, which is not JSON")


def _check_storable(value: dict[str, Any]) -> None:
    """No nesting deeper than MAX_DEPTH and no text jsonb refuses (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                raise MalformedEvent("the body has a NUL character or a lone surrogate")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise MalformedEvent(f"the body's JSON is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                pending.extend((key, depth) for key in item)
                pending.extend((child, depth + 1) for child in item.values())
            else:
                pending.extend((child, depth + 1) for child in item)
