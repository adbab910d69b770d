"""List paging as providers do it, over objects a simulator keeps in order.

- keyset (Stripe, and every API with "after this id" cursors): `key_range` narrows a sorted
  key column to a filter such as `created[gte]`, `newest_first` takes one page of positions
  from it after or before a cursor position, and says whether there is more;
- offset (GA4 `offset`/`limit`, LinkedIn `start`/`count`): `offset_page`;
- page sizes: `PageSize` says a provider's default, its maximum and what it does past it.
A simulator declares which it uses; only its parameter names and error bodies are its own.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")


def key_range(
    keys: Sequence[int],
    *,
    gte: int | None = None,
    gt: int | None = None,
    lte: int | None = None,
    lt: int | None = None,
) -> tuple[int, int]:
    """The positions [lo, hi) of the ascending `keys` that pass the bounds given."""
    lo, hi = 0, len(keys)
    if gte is not None:
        lo = max(lo, bisect_left(keys, gte))
    if gt is not None:
        lo = max(lo, bisect_right(keys, gt))
    if lte is not None:
        hi = min(hi, bisect_right(keys, lte))
    if lt is not None:
        hi = min(hi, bisect_left(keys, lt))
    return lo, max(lo, hi)


def newest_first(
    lo: int,
    hi: int,
    limit: int,
    *,
    after: int | None = None,
    before: int | None = None,
    accept: Callable[[int], bool] | None = None,
) -> tuple[list[int], bool]:
    """One page of positions, newest (highest) first, from the range [lo, hi) of an
    ascending order, and whether more follow.

    `after`: the position of the cursor object the page continues past (older ones follow);
    `before`: the page is the `limit` objects just newer than that position (paging back).
    `accept`: a filter on positions, applied while walking so a page is still `limit` long.
    """
    out: list[int] = []
    if before is not None:
        i = max(before + 1, lo)
        while i < hi and len(out) <= limit:
            if accept is None or accept(i):
                out.append(i)
            i += 1
        has_more = len(out) > limit
        out = out[:limit]
        out.reverse()
        return out, has_more
    i = (hi if after is None else min(after, hi)) - 1
    while i >= lo and len(out) <= limit:
        if accept is None or accept(i):
            out.append(i)
        i -= 1
    has_more = len(out) > limit
    return out[:limit], has_more


def offset_page(items: Sequence[T], offset: int, limit: int) -> tuple[Sequence[T], int | None]:
    """The `limit` items from `offset`, and the offset of the next page (None: no more)."""
    if offset < 0 or limit < 1:
        raise ValueError("offset is 0 or more and limit at least 1")
    page = items[offset : offset + limit]
    following = offset + len(page)
    return page, (following if following < len(items) else None)


@dataclass(frozen=True)
class PageSize:
    """A provider's page size: `default` when none is asked for, at most `maximum`;
    past it the provider either refuses the request or serves the maximum (`over`)."""

    default: int
    maximum: int
    minimum: int = 1
    over: Literal["refuse", "clamp"] = "refuse"

    def resolve(self, asked: int | None) -> int | None:
        """The page size to serve, or None when the provider refuses `asked`."""
        if asked is None:
            return self.default
        if asked < self.minimum:
            return None
        if asked > self.maximum:
            return self.maximum if self.over == "clamp" else None
        return asked
