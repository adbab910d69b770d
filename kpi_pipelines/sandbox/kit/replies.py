"""Answers broken in transit (a body cut to half, a connection dropped mid-body) or hostile
(a gzip bomb)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send


def truncated(response: Response) -> Response:
    """`response` with its body cut to half its bytes, framed as a whole response (its
    Content-Length says the half): a 200 whose body is not valid JSON."""
    body = bytes(response.body)
    response.body = body[: max(1, len(body) // 2)]
    response.headers["content-length"] = str(len(response.body))
    return response


class _CutShort(Response):
    """A response whose body stops half-way: the server closes the connection after half
    of the bytes its Content-Length promised (the client sees a protocol error)."""

    def __init__(self, whole: Response) -> None:
        self.status_code = whole.status_code
        self.body = bytes(whole.body)
        self.raw_headers = whole.raw_headers  # Content-Length of the whole body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        # Returning without the rest makes the server drop the connection mid-body.


def cut_short(response: Response) -> Response:
    return _CutShort(response)


# The bomb's filler, compressed once: after a full flush deflate starts afresh, so the same
# megabyte of spaces compresses to the same bytes every time (about a kilobyte).
_MEGABYTE = 1024 * 1024


def gzip_bomb(size: int, *, prefix: bytes = b'{"object": "list", "data": [') -> Response:
    """A 200 whose gzip body inflates to about `size` bytes: `prefix`, spaces (JSON
    whitespace), then the list's end, so a client without limits decodes all of it. Sent
    lazily, a compressed megabyte at a time: the server never holds the inflated body."""
    suffix = b'], "has_more": false}'

    def body() -> Iterator[bytes]:
        deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # gzip header, no name or time
        yield deflate.compress(prefix) + deflate.flush(zlib.Z_FULL_FLUSH)
        filler = b" " * _MEGABYTE
        block = deflate.compress(filler) + deflate.flush(zlib.Z_FULL_FLUSH)
        crc = zlib.crc32(prefix)
        for _ in range(max(1, size // _MEGABYTE)):
            crc = zlib.crc32(filler, crc)
            yield block
        yield deflate.compress(suffix) + deflate.flush()
        crc = zlib.crc32(suffix, crc)
        total = len(prefix) + max(1, size // _MEGABYTE) * _MEGABYTE + len(suffix)
        yield struct.pack("<II", crc, total & 0xFFFFFFFF)

    return StreamingResponse(
        body(), headers={"content-encoding": "gzip", "content-type": "application/json"}
    )
