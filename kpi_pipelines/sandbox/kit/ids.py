"""Stable ids: the same text always gives the same id, in a platform's own id shape.

stable_digits("meta:7:act:1:campaign:3", 18)  # "238514..." (Meta, LinkedIn: numeric)
stable_base36("x:7:18ce54:campaign:3", 5)     # "8wku2"     (X Ads: short base-36)
"""

from __future__ import annotations

import hashlib

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _number(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")


def stable_digits(text: str, digits: int) -> str:
    """A `digits`-long decimal id for `text` that never starts with 0."""
    if digits < 1:
        raise ValueError("an id has at least one digit")
    low = 10 ** (digits - 1)
    return str(low + _number(text) % (9 * low))


def stable_base36(text: str, length: int) -> str:
    """A `length`-long lower-case base-36 id for `text` that never starts with 0."""
    if length < 1:
        raise ValueError("an id has at least one character")
    n = _number(text)
    out = [_BASE36[1 + n % 35]]
    n //= 35
    for _ in range(length - 1):
        out.append(_BASE36[n % 36])
        n //= 36
    return "".join(out)
