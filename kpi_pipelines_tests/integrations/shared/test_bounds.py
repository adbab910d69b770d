"""Hostile responses, served over loopback HTTP, cost what the kit's limits allow and no more:
bodies (compressed and decompressed), nesting, and lists that go round in circles."""

from __future__ import annotations

import gzip
import json
import random
import ssl
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kpi_pipelines.integrations.shared.bounds import (
    BoundedTransport,
    NestingTracker,
    ResponseLimits,
    tls_context,
)
from kpi_pipelines.integrations.shared.errors import ProviderResponseRefused, ProviderUnavailable
from kpi_pipelines.integrations.shared.http import ProviderHttpClient
from kpi_pipelines.integrations.shared.paging import (
    NextUrl,
    Offset,
    Page,
    PageRequest,
    PageToken,
    PagingError,
    StartingAfter,
    items,
)
from kpi_pipelines.sandbox.kit.replies import gzip_bomb
from kpi_pipelines.sandbox.kit.server import LoopbackServer

MiB = 1024 * 1024
LIMIT = 1 * MiB
BOMB = 64 * MiB  # what a client without limits would inflate (and hold twice over)
HITS: Counter[str] = Counter()
# A list that goes round in circles is served this many pages at most, then ends: without
# cycle detection a listing still terminates (and the test fails instead of hanging).
CIRCLES = 40


def hit(request: Request) -> int:
    HITS[request.url.path] += 1
    return HITS[request.url.path]


# --- hostile bodies -------------------------------------------------------------------------


async def bomb(request: Request) -> Response:
    hit(request)
    return gzip_bomb(BOMB)


async def endless(request: Request) -> StreamingResponse:
    """A plain body with no Content-Length that goes on and on (JSON whitespace)."""
    hit(request)

    def body() -> Iterator[bytes]:
        yield b'{"data": ['
        for _ in range(BOMB // (64 * 1024)):
            yield b" " * (64 * 1024)
        yield b"]}"

    return StreamingResponse(body(), media_type="application/json")


async def empty_blocks(request: Request) -> StreamingResponse:
    """gzip that inflates to nothing: megabytes of empty deflate blocks on the wire."""
    hit(request)

    def body() -> Iterator[bytes]:
        deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
        empty = deflate.flush(zlib.Z_FULL_FLUSH) * 10_000  # 5 bytes each
        for _ in range(BOMB // len(empty)):
            yield empty

    return StreamingResponse(body(), headers={"content-encoding": "gzip"})


class Declared(Response):
    """Headers declaring a 4 GiB body, then a few bytes: a client that trusts the length
    would try to read (or allocate) all of it."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-length", str(4 * 1024**3).encode()), (b"content-type", b"text/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b'{"data": [', "more_body": True})


async def declared(request: Request) -> Response:
    hit(request)
    return Declared()


async def deep(request: Request) -> Response:
    hit(request)
    levels = 100_000
    return Response(b"[" * levels + b"]" * levels, media_type="application/json")


async def brackets_in_strings(request: Request) -> JSONResponse:
    """Shallow JSON whose strings hold thousands of brackets and escaped quotes."""
    hit(request)
    return JSONResponse({"data": [{"name": '[{"' * 5000 + "\\"}, {"note": "]]]"}]})


# --- files an async report's result is downloaded from --------------------------------------


async def file_bomb(request: Request) -> Response:
    """A gzip file (not a gzip-encoded response) inflating to 64 MiB."""
    hit(request)
    response = gzip_bomb(BOMB)
    del response.headers["content-encoding"]
    response.headers["content-type"] = "application/gzip"
    return response


async def file_deep(request: Request) -> Response:
    hit(request)
    return Response(gzip.compress(b"[" * 100_000 + b"]" * 100_000), media_type="application/gzip")


async def file_cut_short(request: Request) -> Response:
    hit(request)
    whole = gzip.compress(json.dumps({"data": list(range(1000))}).encode())
    return Response(whole[: len(whole) // 2], media_type="application/gzip")


async def file_presigned(request: Request) -> Response:
    """A file whose content says which credentials came with the request for it."""
    hit(request)
    seen = {"authorization": request.headers.get("authorization"), "data": [1, 2, 3]}
    return Response(gzip.compress(json.dumps(seen).encode()), media_type="application/gzip")


# --- lists that go round in circles ---------------------------------------------------------

OBJECTS = [{"id": f"obj_{i:02d}"} for i in range(30)]


async def starting_after(request: Request) -> JSONResponse:
    """Pages of 5; the page after obj_09 is the first one again (A -> B -> A)."""
    n = hit(request)
    after = request.query_params.get("starting_after")
    start = 0 if after is None else int(after.removeprefix("obj_")) + 1
    if after == "obj_09" and n < CIRCLES:
        start = 0
    return JSONResponse({"data": OBJECTS[start : start + 5], "has_more": start + 5 < 30})


async def next_url(request: Request) -> JSONResponse:
    """Pages 1 -> 2 -> 3 -> 1, each naming the next by its link."""
    n = hit(request)
    page = int(request.path_params["page"])
    following = page % 3 + 1
    return JSONResponse(
        {
            "data": OBJECTS[page * 5 : page * 5 + 5],
            "next": str(request.url_for("next_url", page=following)) if n < CIRCLES else None,
        }
    )


async def page_token(request: Request) -> JSONResponse:
    """Tokens t1 -> t2 -> t3 -> t1: the provider's cursor loops back."""
    n = hit(request)
    token = request.query_params.get("pageToken", "t0")
    page = int(token[1:])
    following = f"t{page % 3 + 1}"
    return JSONResponse(
        {
            "rows": OBJECTS[page * 5 : page * 5 + 5],
            "nextPageToken": following if n < CIRCLES else "",
        }
    )


async def offset(request: Request) -> JSONResponse:
    """Says 1,000 rows, but ignores the offset: always the same first page."""
    n = hit(request)
    return JSONResponse({"rows": OBJECTS[:5], "rowCount": 1000 if n < CIRCLES else 5})


APP = Starlette(
    routes=[
        Route("/bomb", bomb),
        Route("/endless", endless),
        Route("/empty-blocks", empty_blocks),
        Route("/declared", declared),
        Route("/deep", deep),
        Route("/brackets-in-strings", brackets_in_strings),
        Route("/starting-after", starting_after),
        Route("/next/{page}", next_url, name="next_url"),
        Route("/tokens", page_token),
        Route("/offset", offset),
        Route("/files/bomb.json.gz", file_bomb),
        Route("/files/deep.json.gz", file_deep),
        Route("/files/cut.json.gz", file_cut_short),
        Route("/files/presigned.json.gz", file_presigned),
    ]
)


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer(APP) as running:
        yield running


@pytest.fixture
def client(server: LoopbackServer) -> Iterator[ProviderHttpClient]:
    HITS.clear()
    with ProviderHttpClient(
        "hostile",
        server.base_url,
        limits=ResponseLimits(LIMIT, LIMIT),
        sleep=lambda _: None,
        cache=False,  # every page asked for reaches the server, to be counted
    ) as http:
        yield http


def refused(client: ProviderHttpClient, path: str) -> tuple[str, int]:
    """The refusal of GET `path` and the peak memory traced while it was read."""
    tracemalloc.start()
    try:
        with pytest.raises(ProviderResponseRefused) as caught:
            client.get_json(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return str(caught.value), peak


# --- bodies ---------------------------------------------------------------------------------


def test_a_gzip_bomb_is_read_only_up_to_the_limit_and_not_retried(
    client: ProviderHttpClient,
) -> None:
    message, peak = refused(client, "/bomb")
    assert message.startswith("hostile sent a response we refuse to read: GET /bomb sent a body")
    assert "more than 1,048,576 bytes once decompressed" in message
    assert "KPI_HTTP_MAX_BODY_BYTES" in message and "not retried" in message
    assert HITS["/bomb"] == 1  # a hostile answer is not asked for again
    # Inflated in 64 KiB steps and dropped at the limit: a few MiB at most (the server's
    # thread included), where a client without limits holds the 64 MiB inflated, twice.
    assert peak < 6 * MiB, peak


def test_the_operators_setting_is_the_default_limit(
    server: LoopbackServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    HITS.clear()
    monkeypatch.setenv("KPI_HTTP_MAX_BODY_BYTES", str(2 * MiB))
    with ProviderHttpClient("hostile", server.base_url) as http:
        message, peak = refused(http, "/bomb")
    assert "more than 2,097,152 bytes once decompressed" in message
    assert peak < 8 * MiB, peak


def test_a_body_that_goes_on_and_on_is_cut_at_the_limit(client: ProviderHttpClient) -> None:
    message, peak = refused(client, "/endless")
    assert "GET /endless sent more than 1,048,576 bytes (the limit" in message
    assert peak < 6 * MiB, peak


def test_compressed_bytes_are_counted_on_the_wire_even_when_they_inflate_to_nothing(
    client: ProviderHttpClient,
) -> None:
    message, _ = refused(client, "/empty-blocks")
    assert "GET /empty-blocks sent more than 1,048,576 bytes (the limit" in message


def test_a_declared_length_over_the_limit_is_refused_unread(client: ProviderHttpClient) -> None:
    message, peak = refused(client, "/declared")
    assert "declared a body of 4,294,967,296 bytes, over the limit of 1,048,576" in message
    assert "nothing of it was read" in message
    assert peak < 2 * MiB, peak


def test_json_nested_100k_deep_is_refused_before_any_decoder_sees_it(
    client: ProviderHttpClient,
) -> None:
    message, _ = refused(client, "/deep")
    assert "GET /deep sent JSON nested deeper than 64 levels (the limit)" in message
    assert HITS["/deep"] == 1


def test_brackets_and_escaped_quotes_inside_strings_are_not_nesting(
    client: ProviderHttpClient,
) -> None:
    body = client.get_json("/brackets-in-strings")
    assert body["data"][0]["name"].startswith('[{"[{"')


def test_a_gzip_file_is_inflated_only_up_to_the_limit_and_not_retried(
    client: ProviderHttpClient,
) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ProviderResponseRefused) as caught:
            client.download_json("/files/bomb.json.gz", gzipped=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "GET /files/bomb.json.gz sent a file of more than 1,048,576 bytes once" in message
    assert HITS["/files/bomb.json.gz"] == 1
    assert peak < 6 * MiB, peak


def test_a_gzip_file_nested_too_deep_is_refused(client: ProviderHttpClient) -> None:
    with pytest.raises(ProviderResponseRefused, match="nested deeper than 64 levels"):
        client.download_json("/files/deep.json.gz", gzipped=True)


def test_a_gzip_file_cut_short_is_asked_for_again_then_fails(server: LoopbackServer) -> None:
    HITS.clear()
    with (
        ProviderHttpClient(
            "hostile", server.base_url, sleep=lambda _: None, max_attempts=3
        ) as http,
        pytest.raises(ProviderUnavailable, match="is cut short") as caught,
    ):
        http.download_json("/files/cut.json.gz?X-Amz-Signature=presigned-capability", gzipped=True)
    assert "after 3 attempts" in str(caught.value)
    assert "presigned-capability" not in str(caught.value)  # a presigned URL's query
    assert HITS["/files/cut.json.gz"] == 3


def test_a_file_is_downloaded_without_the_clients_credentials_and_only_from_known_hosts(
    server: LoopbackServer,
) -> None:
    with ProviderHttpClient(
        "hostile", server.base_url, headers={"Authorization": "Bearer file-host-must-not-see"}
    ) as http:
        body = http.download_json(server.url("/files/presigned.json.gz"), gzipped=True)
        assert body == {"authorization": None, "data": [1, 2, 3]}
        with pytest.raises(ValueError, match="refusing to download from http://localhost"):
            http.download_json("http://localhost:1/files/presigned.json.gz", gzipped=True)
    with ProviderHttpClient(
        "hostile", "https://api.example.invalid", file_origins=[server.base_url]
    ) as http:
        assert http.download_json(server.url("/files/presigned.json.gz"), gzipped=True)["data"]


def test_nesting_is_tracked_across_pieces_as_the_decoder_counts_it() -> None:
    """Random JSON (brackets and escapes in strings and keys), split anywhere: the tracker
    refuses exactly the texts deeper than its limit."""
    rng = random.Random(7)

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth > 10 or roll < 0.3:
            return rng.choice(["[a", '"]}"', '\\"[', "\\", "", "{{", 1, None, "\\u005b"])
        if roll < 0.65:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["k", "[", '"{']) + str(i): value(depth + 1) for i in range(3)}

    def depth_of(decoded: Any) -> int:
        if isinstance(decoded, dict | list):
            children = decoded.values() if isinstance(decoded, dict) else decoded
            return 1 + max((depth_of(child) for child in children), default=0)
        return 0

    for _ in range(1500):
        decoded = value(0)
        text = json.dumps(decoded).encode()
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 5))))
        for limit in (depth_of(decoded) - 1, depth_of(decoded)):
            tracker = NestingTracker(max(limit, 0))
            starts = [0, *cuts]
            ok = all(
                tracker.feed(text[a:b]) for a, b in zip(starts, [*cuts, len(text)], strict=True)
            )
            assert ok == (depth_of(decoded) <= max(limit, 0)), (text, limit, cuts)


# --- lists that go round in circles ---------------------------------------------------------


def listing(client: ProviderHttpClient, path: str, paginator: Any, rows: str) -> list[Any]:
    def fetch(request: PageRequest) -> Page[Any]:
        body = client.get_json(request.url or path, params=dict(request.query) or None)
        return Page(
            items=body[rows],
            has_more=body.get("has_more"),
            next_token=body.get("nextPageToken"),
            next_url=body.get("next"),
            total=body.get("rowCount"),
        )

    return list(items(paginator, fetch))


@pytest.mark.parametrize(
    ("path", "paginator", "rows", "requests", "said"),
    [
        # A -> B -> A: the third page is the first again
        ("/starting-after", StartingAfter(lambda o: o["id"]), "data", 3, "same as page 1"),
        # 1 -> 2 -> 3 -> 1: the fourth page is the first again
        ("/next/1", NextUrl(), "data", 4, "same as page 1"),
        # t1 -> t2 -> t3 -> t1: the token of page 2 named again by page 4
        ("/tokens", PageToken("pageToken"), "rows", 4, "pageToken=t1"),
        # offsets go up, the rows do not: page 2 is page 1 again
        ("/offset", Offset(5), "rows", 2, "same as page 1"),
    ],
    ids=["StartingAfter", "NextUrl", "PageToken", "Offset"],
)
def test_a_list_that_goes_round_in_circles_ends_with_an_error(
    client: ProviderHttpClient, path: str, paginator: Any, rows: str, requests: int, said: str
) -> None:
    with pytest.raises(PagingError, match="goes round in circles") as caught:
        listing(client, path, paginator, rows)
    assert said in str(caught.value)
    assert sum(HITS.values()) == requests  # one lap, not CIRCLES of them


# --- TLS ------------------------------------------------------------------------------------


def _tls_of(transport: BoundedTransport) -> ssl.SSLContext:
    return transport._inner._pool._ssl_context  # type: ignore[attr-defined]


def test_every_client_verifies_with_the_processs_one_tls_context(server: LoopbackServer) -> None:
    """Loading a CA bundle costs about 20 ms of CPU: the clients of every workspace's sync
    share one context per bundle, which still verifies certificates and host names."""
    with (
        ProviderHttpClient("one", server.base_url) as first,
        ProviderHttpClient("two", server.base_url) as second,
    ):
        transports = [c._client._transport for c in (first, second)]
        assert {_tls_of(t) for t in transports} == {tls_context(None)}  # type: ignore[arg-type]
    # a client with its own CA bundle (Stripe's SDK ships one) shares that bundle's context
    bundled = [BoundedTransport("stripe", verify=stripe.ca_bundle_path) for _ in range(2)]
    assert {_tls_of(t) for t in bundled} == {tls_context(stripe.ca_bundle_path)}
    assert tls_context(None) is not tls_context(stripe.ca_bundle_path)
    for context in (tls_context(None), tls_context(stripe.ca_bundle_path)):
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.cert_store_stats()["x509_ca"] > 0
