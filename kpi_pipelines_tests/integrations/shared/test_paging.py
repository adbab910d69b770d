"""The paginators over a list served from memory: each asks for what its provider expects
and stops where its provider's list ends."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from kpi_pipelines.integrations.shared.paging import (
    NextUrl,
    Offset,
    Page,
    PageRequest,
    PageToken,
    PagingError,
    StartingAfter,
    items,
    link_header_next,
    pages,
)

OBJECTS = [{"id": f"obj_{i:03d}"} for i in range(23)]


def starting_after_list(objects: list[dict[str, Any]], size: int) -> Callable[[PageRequest], Page]:
    """A Stripe-style list: `limit` objects after `starting_after`, and has_more."""

    def fetch(request: PageRequest) -> Page:
        after = request.query.get("starting_after")
        start = 0 if after is None else [o.get("id") for o in objects].index(after) + 1
        data = objects[start : start + size]
        return Page(items=data, has_more=start + size < len(objects))

    return fetch


@pytest.mark.parametrize("prefetch", [False, True])
def test_starting_after_reads_every_object_once(prefetch: bool) -> None:
    paginator = StartingAfter(lambda o: o.get("id"))
    read = list(items(paginator, starting_after_list(OBJECTS, 5), prefetch=prefetch))
    assert read == OBJECTS


def test_starting_after_pages_past_an_object_without_an_id() -> None:
    objects = [*OBJECTS[:2], {"name": "no id"}, *OBJECTS[2:]]  # not last on its page
    read = list(items(StartingAfter(lambda o: o.get("id")), starting_after_list(objects, 5)))
    assert read == objects


def test_starting_after_stops_on_a_page_without_any_id() -> None:
    def fetch(request: PageRequest) -> Page:
        return Page(items=[{"name": "x"}], has_more=True)

    with pytest.raises(PagingError, match="no ids"):
        list(pages(StartingAfter(lambda o: o.get("id")), fetch))


def test_starting_after_can_start_after_a_known_object() -> None:
    paginator = StartingAfter(lambda o: o.get("id"), start="obj_019")
    assert list(items(paginator, starting_after_list(OBJECTS, 5))) == OBJECTS[20:]


def offset_list(rows: list[int], *, with_total: bool) -> Callable[[PageRequest], Page]:
    """A GA4-style report: offset and limit in the JSON body, rowCount in the answer."""

    def fetch(request: PageRequest) -> Page:
        offset, limit = request.body["offset"], request.body["limit"]
        return Page(items=rows[offset : offset + limit], total=len(rows) if with_total else None)

    return fetch


@pytest.mark.parametrize("with_total", [True, False])
@pytest.mark.parametrize(("count", "limit", "requests"), [(0, 10, 1), (30, 10, 3), (31, 10, 4)])
def test_offset_stops_at_the_total_or_a_short_page(
    with_total: bool, count: int, limit: int, requests: int
) -> None:
    rows = list(range(count))
    sent: list[PageRequest] = []
    fetch = offset_list(rows, with_total=with_total)

    def counted(request: PageRequest) -> Page:
        sent.append(request)
        return fetch(request)

    assert list(items(Offset(limit, in_body=True), counted)) == rows
    # Without a total, a list that ends on a full page costs one more (empty) page.
    extra = 1 if not with_total and count and count % limit == 0 else 0
    assert len(sent) == requests + extra
    assert all(not request.query for request in sent)


def test_page_token_in_the_query_until_the_body_names_none() -> None:
    tokens = {None: ("a", [1, 2]), "a": ("b", [3]), "b": (None, [4, 5])}

    def fetch(request: PageRequest) -> Page:
        token = request.query.get("pageToken")
        following, data = tokens[token]
        return Page(items=data, next_token=following)

    assert list(items(PageToken("pageToken"), fetch)) == [1, 2, 3, 4, 5]


def test_cursor_in_the_body_stops_when_has_more_is_false() -> None:
    """Notion: start_cursor in the JSON body; the last page may still carry a cursor."""

    def fetch(request: PageRequest) -> Page:
        cursor = request.body.get("start_cursor")
        if cursor is None:
            return Page(items=["p1"], has_more=True, next_token="c1")
        return Page(items=["p2"], has_more=False, next_token="c2")

    assert list(items(PageToken("start_cursor", in_body=True), fetch)) == ["p1", "p2"]


def test_next_url_from_the_link_header() -> None:
    base = "https://api.example.com/v1/things"
    links = {
        None: f'<{base}?page=2>; rel="next", <{base}?page=3>; rel="last"',
        f"{base}?page=2": f'<{base}?page=3>; rel="next"',
        f"{base}?page=3": f'<{base}?page=1>; rel="first"',
    }

    def fetch(request: PageRequest) -> Page:
        url = request.url or base
        response = httpx.Response(
            200,
            headers={"Link": links[request.url]},
            json=[url],
            request=httpx.Request("GET", url),
        )
        return Page(items=response.json(), next_url=link_header_next(response))

    assert list(items(NextUrl(), fetch)) == [base, f"{base}?page=2", f"{base}?page=3"]


def test_a_provider_naming_the_same_page_again_ends_the_list_with_an_error() -> None:
    def fetch(request: PageRequest) -> Page:
        return Page(items=[1], next_token="same")

    with pytest.raises(PagingError, match="goes round in circles"):
        list(pages(PageToken("token"), fetch))


def test_prefetch_asks_for_the_next_page_while_the_caller_handles_this_one() -> None:
    handled = threading.Event()
    fetched_meanwhile: list[bool] = []
    fetch = starting_after_list(OBJECTS, 10)

    def watched(request: PageRequest) -> Page:
        if request.query:  # a later page: was it asked for before the first was handled?
            fetched_meanwhile.append(not handled.is_set())
        return fetch(request)

    read = []
    for page in pages(StartingAfter(lambda o: o["id"]), watched, prefetch=True):
        if not read:
            # the second page is requested while this one is being handled
            for _ in range(200):
                if fetched_meanwhile:
                    break
                threading.Event().wait(0.01)
            handled.set()
        read.extend(page.items)
    assert read == OBJECTS
    assert fetched_meanwhile[0] is True
