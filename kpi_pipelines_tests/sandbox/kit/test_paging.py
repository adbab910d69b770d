"""The kit's paging: key ranges over a sorted column, keyset pages newest first both ways,
offset pages, and page sizes that refuse or clamp."""

from __future__ import annotations

import pytest

from kpi_pipelines.sandbox.kit import PageSize, key_range, newest_first, offset_page

KEYS = [10, 20, 20, 30, 40, 50]


def test_key_range_applies_every_bound() -> None:
    assert key_range(KEYS) == (0, 6)
    assert key_range(KEYS, gte=20) == (1, 6)
    assert key_range(KEYS, gt=20) == (3, 6)
    assert key_range(KEYS, lte=20) == (0, 3)
    assert key_range(KEYS, lt=20) == (0, 1)
    assert key_range(KEYS, gte=30, lt=30) == (3, 3)  # empty, never inverted
    assert key_range(KEYS, gt=50) == (6, 6)


def walk(lo: int, hi: int, limit: int) -> list[list[int]]:
    pages, after = [], None
    while True:
        page, more = newest_first(lo, hi, limit, after=after)
        pages.append(page)
        if not more:
            return pages
        after = page[-1]


def test_keyset_pages_run_newest_first_without_gaps_or_repeats() -> None:
    assert walk(0, 7, 3) == [[6, 5, 4], [3, 2, 1], [0]]
    assert walk(0, 6, 3) == [[5, 4, 3], [2, 1, 0]]
    assert walk(2, 2, 3) == [[]]


def test_paging_back_returns_the_objects_just_newer_than_the_cursor() -> None:
    assert newest_first(0, 10, 3, before=2) == ([5, 4, 3], True)
    assert newest_first(0, 10, 3, before=7) == ([9, 8], False)


def test_a_filter_keeps_pages_full() -> None:
    even = newest_first(0, 10, 3, accept=lambda i: i % 2 == 0)
    assert even == ([8, 6, 4], True)
    assert newest_first(0, 10, 3, after=4, accept=lambda i: i % 2 == 0) == ([2, 0], False)


def test_offset_pages_say_where_the_next_one_starts() -> None:
    rows = list(range(7))
    assert offset_page(rows, 0, 3) == ([0, 1, 2], 3)
    assert offset_page(rows, 6, 3) == ([6], None)
    assert offset_page(rows, 9, 3) == ([], None)
    with pytest.raises(ValueError):
        offset_page(rows, -1, 3)


def test_page_sizes_default_refuse_or_clamp() -> None:
    stripe_like = PageSize(default=10, maximum=100)
    assert stripe_like.resolve(None) == 10
    assert stripe_like.resolve(100) == 100
    assert stripe_like.resolve(0) is None and stripe_like.resolve(101) is None
    ga4_like = PageSize(default=10_000, maximum=250_000, over="clamp")
    assert ga4_like.resolve(1_000_000) == 250_000
