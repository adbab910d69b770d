"""Answers broken in transit: a body cut to half, or a connection dropped mid-body."""

from __future__ import annotations

from starlette.responses import Response
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
