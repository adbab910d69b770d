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
    concurrently,
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


def _numbers(count: int | None, *, made: list[int] | None = None) -> Callable[[], Any]:
    """A source of 0, 1, ... (endless with None), noting each item it makes."""

    def source() -> Any:
        n = 0
        while count is None or n < count:
            if made is not None:
                made.append(n)
            yield n
            n += 1

    return source


def test_lists_read_at_once_give_every_item_in_each_lists_order_and_say_when_each_ends() -> None:
    sources = [(name, _numbers(size)) for name, size in (("a", 50), ("b", 3), ("c", 0), ("d", 7))]
    seen: dict[str, list[int]] = {name: [] for name, _ in sources}
    ended: list[str] = []
    for name, item in concurrently(sources, at_once=2):
        assert name not in ended, f"{name} gave an item after it ended"
        if item is None:
            ended.append(name)
        else:
            seen[name].append(item)
    assert seen == {"a": list(range(50)), "b": [0, 1, 2], "c": [], "d": list(range(7))}
    assert sorted(ended) == ["a", "b", "c", "d"]


def test_lists_read_at_once_really_overlap_up_to_the_limit_and_no_further() -> None:
    both_running = threading.Barrier(2, timeout=10)
    running = 0
    most = 0
    lock = threading.Lock()

    def waiting_list() -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        both_running.wait()  # raises BrokenBarrierError unless another list runs meanwhile
        yield "page"
        with lock:
            running -= 1

    read = list(concurrently([(n, waiting_list) for n in range(4)], at_once=2))
    assert sorted(n for n, page in read if page == "page") == [0, 1, 2, 3]
    assert most == 2


def test_a_failing_list_fails_the_read_and_stops_the_others() -> None:
    made: list[int] = []

    def failing() -> Any:
        yield "first page"
        raise PagingError("served page 2 the same as page 1")

    read = concurrently([("endless", _numbers(None, made=made)), ("bad", failing)], at_once=2)
    with pytest.raises(PagingError, match="same as page 1"):
        for _ in read:
            pass
    made_at_failure = len(made)
    threading.Event().wait(0.3)
    assert len(made) == made_at_failure, "a list kept reading after the read failed"


def test_a_caller_that_stops_early_stops_every_list_and_what_waits_stays_bounded() -> None:
    made: dict[str, list[int]] = {"a": [], "b": []}
    read = concurrently([(name, _numbers(None, made=made[name])) for name in made], at_once=2)
    taken = [next(read) for _ in range(5)]
    assert len(taken) == 5
    # what waits to be taken: at most `at_once` items queued and one in each list's hand
    threading.Event().wait(0.3)
    assert len(made["a"]) + len(made["b"]) <= 5 + 2 + 2
    workers_before = {t for t in threading.enumerate() if t.name.startswith("lists")}
    read.close()
    assert not any(t.is_alive() for t in workers_before), "a list's thread outlived the read"


def test_lists_read_at_once_need_a_positive_limit() -> None:
    with pytest.raises(ValueError, match="at least one"):
        list(concurrently([("a", _numbers(1))], at_once=0))
