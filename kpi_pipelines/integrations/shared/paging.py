"""Paginators: how to ask a list endpoint for its next page, and when to stop.

A provider's hook sends one request and reads the response into a `Page` (its items and
what the provider said about what comes next: `has_more`, a token, a next link, a total).
A paginator sees only that `Page` and answers with the next `PageRequest`, or None when
the list is complete; it never sends anything itself, so one paginator serves every
provider that pages the same way. `pages()` drives the two, and can fetch the next page
on a worker thread while the caller handles this one (the next request is known as soon
as a page arrives). `concurrently()` pages several lists at once, each still in order.

The family: `OnePage` (a list answered whole), `StartingAfter` (Stripe: the last object's id), `NextUrl` (a next link in the
body, or in the Link header: `link_header_next`), `PageToken` (a token or cursor the body
names: Google's nextPageToken, Notion's next_cursor with has_more, HubSpot's
paging.next.after; sent in the query or, with `in_body=True`, in a JSON body as Notion's
start_cursor) and `Offset` (offset/limit until the total, or until a short page).

A list that goes round in circles ends with PagingError, whatever the paginator and however
long the circle: a page whose next request (cursor, token, next link, offset) was already
sent in this listing, or a page the same as one already read (a provider that ignores the
offset, or serves the same objects under new tokens).
"""

from __future__ import annotations

import queue
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
import msgspec

T = TypeVar("T")
K = TypeVar("K")


class PagingError(ValueError):
    """A list that cannot be paged further (a page without a cursor, a page asked for twice);
    the caller names the endpoint."""


@dataclass(frozen=True)
class PageRequest:
    """What to add to a list request for one page: query fields, JSON body fields, or an
    absolute next link to GET instead."""

    query: Mapping[str, Any] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)
    url: str | None = None


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page as the provider's hook read it."""

    items: Sequence[T]
    has_more: bool | None = None  # None: the provider does not say
    next_token: str | None = None
    next_url: str | None = None
    total: int | None = None  # items the whole list has, where the provider counts them


class Paginator(ABC):
    """Asks for the first page, then for each next one until its stop condition holds."""

    def __init__(self, *, in_body: bool = False) -> None:
        self.in_body = in_body

    def first(self) -> PageRequest:
        return PageRequest()

    @abstractmethod
    def next(self, request: PageRequest, page: Page[Any]) -> PageRequest | None:
        """The request for the page after `page` (asked for with `request`), or None."""

    def _fields(self, fields: Mapping[str, Any]) -> PageRequest:
        return PageRequest(body=fields) if self.in_body else PageRequest(query=fields)

    def _sent(self, request: PageRequest) -> Mapping[str, Any]:
        return request.body if self.in_body else request.query


class OnePage(Paginator):
    """A list the provider answers whole in one response (X's stats, LinkedIn's adAnalytics,
    an async job's result file)."""

    def next(self, request: PageRequest, page: Page[Any]) -> PageRequest | None:
        return None


class StartingAfter(Paginator):
    """Stripe's lists: `starting_after` the last object's id while `has_more` is true.

    `id_of` reads an item's id (None for an item that has none: it is rejected downstream,
    and the id of the last item that has one is used)."""

    def __init__(
        self,
        id_of: Callable[[Any], str | None],
        *,
        param: str = "starting_after",
        start: str | None = None,
    ) -> None:
        super().__init__()
        self.id_of = id_of
        self.param = param
        self.start = start

    def first(self) -> PageRequest:
        return self._fields({self.param: self.start} if self.start else {})

    def next(self, request: PageRequest, page: Page[Any]) -> PageRequest | None:
        if not page.has_more or not page.items:
            return None
        for item in reversed(page.items):
            item_id = self.id_of(item)
            if item_id is not None:
                return self._fields({self.param: item_id})
        raise PagingError("sent a page whose objects have no ids")


class NextUrl(Paginator):
    """A next link the provider gives (in the body, or `link_header_next` of the response);
    none on the last page."""

    def next(self, request: PageRequest, page: Page[Any]) -> PageRequest | None:
        return PageRequest(url=page.next_url) if page.next_url else None


class PageToken(Paginator):
    """A token or cursor the body names for the next page, sent back as `param`; the list
    ends without one, or when the body says `has_more` is false."""

    def __init__(self, param: str, *, in_body: bool = False) -> None:
        super().__init__(in_body=in_body)
        self.param = param

    def next(self, request: PageRequest, page: Page[Any]) -> PageRequest | None:
        if page.has_more is False or not page.next_token:
            return None
        return self._fields({self.param: page.next_token})


class Offset(Paginator):
    """offset/limit: the next offset after the rows read, until `total` (where the page
    says it, as GA4's rowCount) or until an empty or short page."""

    def __init__(
        self,
        limit: int,
        *,
        offset_param: str = "offset",
        limit_param: str = "limit",
        in_body: bool = False,
    ) -> None:
        super().__init__(in_body=in_body)
        if limit < 1:
            raise ValueError(f"a page holds at least one item, not {limit}")
        self.limit = limit
        self.offset_param = offset_param
        self.limit_param = limit_param

    def first(self) -> PageRequest:
        return self._fields({self.offset_param: 0, self.limit_param: self.limit})

    def next(self, request: PageRequest, page: Page[Any]) -> PageRequest | None:
        offset = int(self._sent(request)[self.offset_param]) + len(page.items)
        if not page.items:
            return None
        if page.total is not None:
            if offset >= page.total:
                return None
        elif len(page.items) < self.limit:
            return None
        return self._fields({self.offset_param: offset, self.limit_param: self.limit})


def link_header_next(response: httpx.Response) -> str | None:
    """The `rel="next"` target of a response's Link header (GitHub, Shopify style)."""
    return response.links.get("next", {}).get("url")


def pages(
    paginator: Paginator,
    fetch: Callable[[PageRequest], Page[T]],
    *,
    prefetch: bool = False,
) -> Iterator[Page[T]]:
    """Every page of a list: `fetch` sends one request and reads its page.

    With `prefetch`, the next page is fetched on a worker thread while the caller handles
    this one (one request in flight at a time; `fetch` must then be safe to call from
    another thread). A list that cycles (see the module) ends with PagingError rather
    than looping forever.
    """
    listing = _Listing(paginator)
    if not prefetch:
        request: PageRequest | None = paginator.first()
        while request is not None:
            page = fetch(request)
            upcoming = listing.next(request, page)
            yield page
            request = upcoming
        return

    def fetch_and_next(request: PageRequest) -> tuple[Page[T], PageRequest | None]:
        page = fetch(request)
        return page, listing.next(request, page)

    with ThreadPoolExecutor(max_workers=1) as worker:
        pending = worker.submit(fetch_and_next, paginator.first())
        while True:
            page, upcoming = pending.result()
            if upcoming is not None:
                pending = worker.submit(fetch_and_next, upcoming)
            yield page
            if upcoming is None:
                return


def items(
    paginator: Paginator,
    fetch: Callable[[PageRequest], Page[T]],
    *,
    prefetch: bool = False,
) -> Iterator[T]:
    """Every item of a list, page after page (see `pages`)."""
    for page in pages(paginator, fetch, prefetch=prefetch):
        yield from page.items


def concurrently(
    sources: Sequence[tuple[K, Callable[[], Iterator[T]]]], *, at_once: int
) -> Iterator[tuple[K, T | None]]:
    """The items of several sources (a list's pages, each source paging in order) as they
    arrive, `at_once` sources running at a time on worker threads, in the order given.

    Yields `(key, item)`, and `(key, None)` once a source is exhausted. What a latency-bound
    list waits for (each next page needs the last one's cursor) overlaps with the others.
    At most `at_once` items wait to be taken, so memory stays bounded however fast the
    sources are. A source's error is raised here, to the caller, and stops the others: each
    stops before its next request (one in flight finishes, bounded by its timeout).
    """
    if at_once < 1:
        raise ValueError(f"at least one source at a time, not {at_once}")
    arrived: queue.Queue[tuple[K, T | None, BaseException | None]] = queue.Queue(at_once)
    stop = threading.Event()

    def hand_over(entry: tuple[K, T | None, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                arrived.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def drain(key: K, source: Callable[[], Iterator[T]]) -> None:
        try:
            for item in source():
                if not hand_over((key, item, None)):
                    return
        except BaseException as exc:  # raised to the caller, in its thread
            hand_over((key, None, exc))
            return
        hand_over((key, None, None))

    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="lists") as workers:
        running = [workers.submit(drain, key, source) for key, source in sources]
        try:
            for _ in range(len(sources)):
                while True:
                    key, item, error = arrived.get()
                    if error is not None:
                        raise error
                    yield key, item
                    if item is None:
                        break
        finally:
            stop.set()
            for future in running:
                future.cancel()


class _Listing:
    """What one listing has asked for and read so far, to see it going round in circles.

    Kept small whatever the list's size: each request sent (a cursor, a token or a link) and
    one hash per page, of its size and its first and last items (two pages of one list never
    share both, unless the provider serves the same page again)."""

    def __init__(self, paginator: Paginator) -> None:
        self.paginator = paginator
        self.read = 0
        self.requests: dict[tuple[Any, ...], int] = {_key(paginator.first()): 1}
        self.pages: dict[int, int] = {}

    def next(self, request: PageRequest, page: Page[Any]) -> PageRequest | None:
        self.read += 1
        if page.items:
            fingerprint = hash(
                (len(page.items), _item_key(page.items[0]), _item_key(page.items[-1]))
            )
            seen = self.pages.setdefault(fingerprint, self.read)
            if seen != self.read:
                raise PagingError(
                    f"served page {self.read} the same as page {seen} (the same objects again):"
                    " the list goes round in circles"
                )
        upcoming = self.paginator.next(request, page)
        if upcoming is None:
            return None
        key = _key(upcoming)
        seen = self.requests.setdefault(key, self.read + 1)
        if seen != self.read + 1:
            raise PagingError(
                f"named as the page after page {self.read} the request of page {seen}"
                f" ({_shown(upcoming)}) again: the list goes round in circles"
            )
        return upcoming


def _key(request: PageRequest) -> tuple[Any, ...]:
    return (request.url, _items(request.query), _items(request.body))


def _items(fields: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(name), repr(value)) for name, value in fields.items()))


def _item_key(item: Any) -> bytes | str:
    if isinstance(item, bytes | str):
        return item
    try:
        return msgspec.json.encode(item)
    except (TypeError, ValueError, OverflowError):
        return repr(item)


def _shown(request: PageRequest) -> str:
    fields = {**request.query, **request.body}
    text = request.url or ", ".join(f"{name}={value}" for name, value in fields.items())
    return text if len(text) <= 120 else text[:120] + "..."
