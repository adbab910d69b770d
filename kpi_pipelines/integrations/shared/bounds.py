"""What one response or one record of a provider may cost us, whatever the provider sends.

A provider's answers are hostile input like any other. Every HTTP client of the kit (the
REST client, the OAuth token client, the Stripe SDK's client) reads through a
`BoundedTransport`, and every engine checks each record with a `RecordGuard` before it is
validated, turned into points or landed:

- a body is read as it streams, counting its bytes on the wire and once decompressed (gzip
  and deflate, decoded here in steps of at most 64 KiB, so a gzip bomb costs what the limit
  allows and no more); a declared Content-Length over the limit is refused unread; an
  encoding we did not ask for is refused;
- its JSON nesting is tracked as it streams, without recursion (a 100,000-deep array is
  refused after its first levels, not handed to a recursive decoder);
- a response over a limit fails the sync with `ProviderResponseRefused` (which request,
  which limit), and is not retried: it is a hostile or broken answer;
- a record whose JSON text, or any of whose strings, is over its limit, or which holds a
  secret this process uses (a provider echoing the request's key or token into a 200),
  is rejected by the engine: named, counted, never stored, and the rest is stored.

The limits are the deployment's (`KPI_HTTP_MAX_BODY_BYTES`, `KPI_RECORD_MAX_BYTES`,
`KPI_RECORD_MAX_STRING_CHARS`) unless a provider's spec sets its own (`ProviderLimits`).
"""

from __future__ import annotations

import functools
import itertools
import re
import ssl
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec

from kpi_pipelines import settings
from kpi_pipelines.integrations.shared.errors import ProviderResponseRefused
from kpi_pipelines.integrations.shared.redaction import default_redactor, redact

# Stripe's objects nest a dozen levels with their expansions, Google's responses fewer.
DEFAULT_MAX_JSON_DEPTH = 64
# Decompressed at most this much at a time (zlib's output of one step).
_INFLATE_STEP = 64 * 1024
# What the transport asks for: the encodings it decodes itself, within the limits.
ACCEPT_ENCODING = "gzip, deflate"


@dataclass(frozen=True)
class ResponseLimits:
    """What one response body may cost."""

    max_body_bytes: int  # once decompressed
    max_wire_bytes: int  # as read off the wire (compressed)
    max_json_depth: int | None = DEFAULT_MAX_JSON_DEPTH  # None: not JSON, not tracked


@dataclass(frozen=True)
class RecordLimits:
    """What one record (an object landed, a report row) may hold."""

    max_record_bytes: int  # its JSON text
    max_string_chars: int  # any one string value or key in it


@dataclass(frozen=True)
class ProviderLimits:
    """A provider's limits, as its spec declares them; None: the deployment's setting."""

    max_body_bytes: int | None = None  # KPI_HTTP_MAX_BODY_BYTES (also the most on the wire)
    max_json_depth: int | None = DEFAULT_MAX_JSON_DEPTH
    max_record_bytes: int | None = None  # KPI_RECORD_MAX_BYTES
    max_string_chars: int | None = None  # KPI_RECORD_MAX_STRING_CHARS

    def response(self) -> ResponseLimits:
        body = self.max_body_bytes or settings.http_max_body_bytes()
        return ResponseLimits(body, body, self.max_json_depth)

    def record(self) -> RecordLimits:
        return RecordLimits(
            self.max_record_bytes or settings.record_max_bytes(),
            self.max_string_chars or settings.record_max_string_chars(),
        )


# --- responses ------------------------------------------------------------------------------


@functools.cache
def tls_context(ca_bundle: str | None, /) -> ssl.SSLContext:
    """The process's one verifying TLS context for a CA bundle file (None: httpx's default,
    certifi or SSL_CERT_FILE / SSL_CERT_DIR). Making one loads the bundle, about 20 ms of
    CPU, and every client of every workspace's sync made its own; a context serves any
    number of connections and threads."""
    if ca_bundle is None:
        return httpx.create_ssl_context()
    return ssl.create_default_context(cafile=ca_bundle)


class BoundedTransport(httpx.BaseTransport):
    """An httpx transport whose responses cannot cost more than `limits` (see the module).

    Wraps `inner` (by default an `httpx.HTTPTransport` made with `transport_options`, such as
    `verify`, through the proxy the environment names for the URL's scheme, as httpx does
    for a client without a transport of its own). Bodies come out decoded: the response has
    no Content-Encoding any more.
    """

    def __init__(
        self,
        provider: str,
        limits: ResponseLimits | None = None,
        *,
        inner: httpx.BaseTransport | None = None,
        **transport_options: Any,
    ) -> None:
        self.provider = provider
        self.limits = limits or ProviderLimits().response()
        verify = transport_options.get("verify", True)
        if verify is True or isinstance(verify, str):
            transport_options["verify"] = tls_context(None if verify is True else verify)
        self._inner = inner or httpx.HTTPTransport(**transport_options)
        # HTTP_PROXY / HTTPS_PROXY / NO_PROXY, which httpx ignores once given a transport.
        self._proxied = (
            {}
            if inner is not None
            else {
                scheme: httpx.HTTPTransport(proxy=url, **transport_options)
                for scheme, url in urllib.request.getproxies().items()
                if scheme in ("http", "https")
            }
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["Accept-Encoding"] = ACCEPT_ENCODING
        inner = self._proxied.get(request.url.scheme, self._inner)
        if inner is not self._inner and urllib.request.proxy_bypass(request.url.host):
            inner = self._inner
        response = inner.handle_request(request)
        path = request.url.path  # never the query: it may carry a token
        what = f"{request.method} {path if len(path) <= 200 else path[:200] + '...'}"
        try:
            encodings = self._encodings(response, what)
            self._check_declared_length(response, what)
        except BaseException:
            response.close()
            raise
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if not (encodings and name.lower() in ("content-encoding", "content-length"))
        ]
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=headers,
            stream=_BoundedStream(self, response.stream, encodings, what, response.status_code),
            extensions=response.extensions,
        )

    def close(self) -> None:
        self._inner.close()
        for proxied in self._proxied.values():
            proxied.close()

    def refused(
        self, what: str, problem: str, status: int | None = None
    ) -> ProviderResponseRefused:
        return ProviderResponseRefused(self.provider, what, problem, status=status)

    def _encodings(self, response: httpx.Response, what: str) -> list[str]:
        named = response.headers.get("content-encoding", "")
        encodings = [e.strip().lower() for e in named.split(",") if e.strip()]
        unknown = [e for e in encodings if e not in ("gzip", "x-gzip", "deflate", "identity")]
        if unknown:
            raise self.refused(
                what,
                f"sent a body encoded {', '.join(unknown)!r}, which was not asked for"
                f" (Accept-Encoding: {ACCEPT_ENCODING})",
                response.status_code,
            )
        return [e for e in encodings if e != "identity"]

    def _check_declared_length(self, response: httpx.Response, what: str) -> None:
        declared = response.headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > self.limits.max_wire_bytes:
            raise self.refused(
                what,
                f"declared a body of {int(declared):,} bytes, over the limit of"
                f" {self.limits.max_wire_bytes:,} (KPI_HTTP_MAX_BODY_BYTES); nothing of it was read",
                response.status_code,
            )


class _BoundedStream(httpx.SyncByteStream):
    """The body of one response: counted, decoded in bounded steps, its nesting tracked."""

    def __init__(
        self,
        transport: BoundedTransport,
        raw: httpx.SyncByteStream,
        encodings: list[str],
        what: str,
        status: int,
    ) -> None:
        self._transport = transport
        self._raw = raw
        self._what = what
        self._status = status
        # Decoded in the reverse of the order applied (RFC 9110 8.4).
        self._decoders = [_Inflater(encoding) for encoding in reversed(encodings)]
        self._nesting = (
            NestingTracker(transport.limits.max_json_depth)
            if transport.limits.max_json_depth is not None
            else None
        )

    def __iter__(self) -> Iterator[bytes]:
        limits = self._transport.limits
        wire = decoded = 0
        for chunk in self._raw:
            wire += len(chunk)
            if wire > limits.max_wire_bytes:
                raise self._refused(
                    f"sent more than {limits.max_wire_bytes:,} bytes (the limit,"
                    " KPI_HTTP_MAX_BODY_BYTES); the rest was not read"
                )
            for piece in self._decoded(chunk):
                decoded += len(piece)
                if decoded > limits.max_body_bytes:
                    raise self._refused(
                        f"sent a body of more than {limits.max_body_bytes:,} bytes once"
                        f" decompressed (the limit, KPI_HTTP_MAX_BODY_BYTES), from {wire:,}"
                        " bytes on the wire; the rest was not read"
                    )
                self._track(piece)
                yield piece

    def close(self) -> None:
        self._raw.close()

    def _decoded(self, chunk: bytes) -> Iterator[bytes]:
        pieces: Iterator[bytes] = iter((chunk,))
        for decoder in self._decoders:
            pieces = decoder.feed_all(pieces, self._refused)
        return pieces

    def _track(self, piece: bytes) -> None:
        if self._nesting is not None and not self._nesting.feed(piece):
            raise self._refused(
                f"sent JSON nested deeper than {self._nesting.limit} levels (the limit)"
            )

    def _refused(self, problem: str) -> ProviderResponseRefused:
        return self._transport.refused(self._what, problem, self._status)


class _Inflater:
    """One gzip or deflate layer, decoded in steps of at most _INFLATE_STEP bytes."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._raw_deflate = False
        self._started = False
        self._zlib = self._new()

    def _new(self) -> Any:
        if self.encoding in ("gzip", "x-gzip"):
            return zlib.decompressobj(zlib.MAX_WBITS | 16)
        # "deflate" is zlib-wrapped by the standard, raw by some servers: try zlib first.
        return zlib.decompressobj(-zlib.MAX_WBITS if self._raw_deflate else zlib.MAX_WBITS)

    @property
    def ended(self) -> bool:
        """Whether the (last) stream was read to its end."""
        return bool(self._zlib.eof)

    def feed_all(
        self, pieces: Iterator[bytes], refused: Callable[[str], Exception]
    ) -> Iterator[bytes]:
        for piece in pieces:
            yield from self._feed(piece, refused)

    def _feed(self, data: bytes, refused: Callable[[str], Exception]) -> Iterator[bytes]:
        while data:
            if self._zlib.eof:
                if self.encoding == "deflate" or not data.startswith(b"\x1f\x8b"):
                    return  # bytes after the end of the stream are ignored, as httpx does
                self._zlib = self._new()  # another gzip member follows (RFC 1952)
            try:
                out = self._zlib.decompress(data, _INFLATE_STEP)
            except zlib.error:
                if self.encoding == "deflate" and not (self._raw_deflate or self._started):
                    self._raw_deflate = True
                    self._zlib = self._new()
                    continue
                raise refused(f"sent a body that is not valid {self.encoding}") from None
            self._started = True
            if out:
                yield out
            data = self._zlib.unconsumed_tail or (self._zlib.unused_data if self._zlib.eof else b"")


def file_json_text(
    provider: str, what: str, data: bytes, limits: ResponseLimits, *, gzipped: bool
) -> bytes:
    """The JSON text of a downloaded file (an async report's result): gunzipped in bounded
    steps where it is gzip, no bigger than `limits.max_body_bytes` once decompressed and
    nested no deeper than `limits.max_json_depth`. A file over a limit, or not valid gzip, is
    refused (ProviderResponseRefused); one cut short raises ValueError (ask for it again)."""

    def refused(problem: str) -> ProviderResponseRefused:
        return ProviderResponseRefused(provider, what, problem)

    pieces: Iterator[bytes] = iter((data,))
    inflater = None
    if gzipped and data.startswith(b"\x1f\x8b"):  # else a server already decoded it
        inflater = _Inflater("gzip")
        pieces = inflater.feed_all(pieces, refused)
    nesting = NestingTracker(limits.max_json_depth) if limits.max_json_depth else None
    out = bytearray()
    for piece in pieces:
        if len(out) + len(piece) > limits.max_body_bytes:
            raise refused(
                f"sent a file of more than {limits.max_body_bytes:,} bytes once decompressed"
                f" (the limit, KPI_HTTP_MAX_BODY_BYTES), from {len(data):,} bytes"
            )
        if nesting is not None and not nesting.feed(piece):
            raise refused(f"sent JSON nested deeper than {nesting.limit} levels (the limit)")
        out += piece
    if inflater is not None and not inflater.ended:
        raise ValueError(f"the gzip file of {len(data):,} bytes is cut short")
    return bytes(out)


# --- JSON nesting ---------------------------------------------------------------------------

_ESCAPES = re.compile(rb"\\.", re.DOTALL)
_STRINGS = re.compile(rb'"[^"]*"')
# Keep quotes and brackets only; objects and arrays nest alike.
_STRUCTURE_TABLE = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'"[]{}'))
_STEP = [0] * 256
_STEP[ord("[")] = 1
_STEP[ord("]")] = -1


class NestingTracker:
    """The nesting depth of a JSON text fed in pieces, without decoding it (linear, no
    recursion; strings and their escapes are skipped, even across pieces). `feed` says False
    once the depth passes `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.depth = 0
        self._in_string = False
        self._escaped = False

    def feed(self, data: bytes) -> bool:
        if self._escaped:
            data, self._escaped = data[1:], False
        if b"\\" in data:
            data = _ESCAPES.sub(b"", data)
            if data.endswith(b"\\"):  # its escaped character comes with the next piece
                data, self._escaped = data[:-1], True
        kept = data.translate(_STRUCTURE_TABLE, _NOT_STRUCTURE)
        if self._in_string:
            end = kept.find(b'"')
            if end < 0:
                return True
            kept, self._in_string = kept[end + 1 :], False
        # Two quotes side by side close one string and open the next (or are an empty one):
        # dropping them keeps every bracket on its side of every string.
        kept = kept.replace(b'""', b"")
        if b'"' in kept:
            kept = _STRINGS.sub(b"", kept)
            opened = kept.find(b'"')
            if opened >= 0:  # a string that goes on in the next piece
                kept, self._in_string = kept[:opened], True
        return self._brackets(kept)

    def _brackets(self, kept: bytes) -> bool:
        # Pairs closed within this piece, innermost first: each pass removes one level.
        rest, levels = kept, 0
        while b"[]" in rest and levels <= self.limit:
            rest, levels = rest.replace(b"[]", b""), levels + 1
        # What is left is "]]][[": unmatched closes, then opens. Within this piece the depth
        # never passes the opens left plus the levels of the pairs removed.
        if self.depth + rest.count(b"[") + levels > self.limit:  # maybe too deep: walk it
            for depth in itertools.accumulate(map(_STEP.__getitem__, kept), initial=self.depth):
                if depth > self.limit:
                    return False
        self.depth += 2 * kept.count(b"[") - len(kept)
        return True


# --- records ------------------------------------------------------------------------------


class RecordGuard:
    """Says why a provider's record must not be validated, turned into points or landed:
    too big, a string too long, or a registered secret in it (None: it may)."""

    def __init__(self, limits: RecordLimits) -> None:
        self.limits = limits

    def problem(self, text: bytes) -> str | None:
        """Why the record whose JSON text is `text` is refused, or None."""
        limits = self.limits
        if len(text) > limits.max_record_bytes:
            return (
                f"the record is {len(text):,} bytes of JSON, over the limit of"
                f" {limits.max_record_bytes:,} (KPI_RECORD_MAX_BYTES); not stored"
            )
        decoded: Any = _UNDECODED
        # A string of N characters takes at least N + 2 bytes of JSON: most records are
        # shorter than one string may be, and need no look inside.
        if len(text) > limits.max_string_chars + 2:
            decoded = _decoded(text)
            longest = _longest_string(decoded)
            if longest > limits.max_string_chars:
                return (
                    f"a string of {longest:,} characters, over the limit of"
                    f" {limits.max_string_chars:,} (KPI_RECORD_MAX_STRING_CHARS); not stored"
                )
        if b"\\" in text:
            # Escapes (\u0073, \/) could spell a secret: look at the text as stored.
            decoded = _decoded(text) if decoded is _UNDECODED else decoded
            if decoded is not _UNDECODED:
                text = msgspec.json.encode(decoded)
        if default_redactor.found_in(text):
            return (
                "it holds a secret this deployment uses (a key or token sent to the provider,"
                " echoed back); refused, not stored"
            )
        return None

    def problem_of(self, value: Any) -> str | None:
        """`problem` for a record already decoded (a report row)."""
        try:
            text = msgspec.json.encode(value)
        except (TypeError, ValueError, OverflowError):
            text = redact(repr(value)).encode()
        return self.problem(text)


_UNDECODED = object()


def _decoded(text: bytes) -> Any:
    try:
        return msgspec.json.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return _UNDECODED  # not JSON: validation says so


def _longest_string(value: Any) -> int:
    if value is _UNDECODED:
        return 0
    longest = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            longest = max(longest, len(item))
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return longest
