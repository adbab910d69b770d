"""Keep secrets out of log lines, exception messages and reprs.

Two layers: exact values registered at runtime (API keys, OAuth tokens as they are
issued), and common secret shapes (Authorization values, `access_token=` parameters,
Stripe keys, ...) so that a secret nobody registered is still caught when it looks like one.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"

# Shorter values would mangle ordinary text without protecting anything real.
MIN_SECRET_LENGTH = 4

_HEADER_NAMES = (
    r"(?:proxy-)?authorization|x-api-key|api-key|x-goog-api-key|private-token|cookie|set-cookie"
)
_SECRET_KEYS = (
    r"access_token|refresh_token|id_token|client_secret|client_assertion|api_key|apikey|"
    r"api_secret|password|passwd|secret|token|oauth_token|oauth_token_secret|oauth_signature|"
    r"oauth_consumer_key|consumer_secret|private_key"
)
_COMPOUND_KEYS = (
    r"access_token|refresh_token|id_token|client_secret|api_key|apikey|api_secret|"
    r"oauth_token|oauth_token_secret|oauth_signature|consumer_secret|private_key"
)

# (pattern, replacement); applied in order, each idempotent on already-redacted text.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header with a quoted value: {'Authorization': 'Bearer abc'} or "authorization": "..."
    (
        re.compile(rf"(?i)(\b(?:{_HEADER_NAMES})[\"']?\s*[:=]\s*)([\"'])(?:\\.|(?!\2).)*\2"),
        rf"\1\2{REDACTED}\2",
    ),
    # Header with an unquoted value (raw header dumps): everything to the end of the line.
    (
        re.compile(rf"(?i)(\b(?:{_HEADER_NAMES})\s*[:=][ \t]*)(?![\"'\s])[^\r\n]+"),
        rf"\1{REDACTED}",
    ),
    (
        re.compile(r"(?i)\b(bearer|basic)\s+(?!\[REDACTED\])[A-Za-z0-9\-._~+/]+=*"),
        rf"\1 {REDACTED}",
    ),
    # Query strings, form bodies and free text: access_token=..., key=...
    (
        re.compile(rf"(?i)(?<![A-Za-z0-9_.\-])({_SECRET_KEYS}|key)=[^&\s\"'#,;)]+"),
        rf"\1={REDACTED}",
    ),
    # JSON and Python reprs: "refresh_token": "...", 'client_secret': '...'
    (
        re.compile(rf"(?i)([\"'](?:{_SECRET_KEYS})[\"']\s*:\s*)([\"'])(?:\\.|(?!\2).)*\2"),
        rf"\1\2{REDACTED}\2",
    ),
    # Free text: "refresh_token: abc" (only compound names: "unexpected token: FROM" is not one)
    (
        re.compile(
            rf"(?i)(?<![A-Za-z0-9_.\-])((?:{_COMPOUND_KEYS}):[ \t]*)(?![\"'\s])[^\s,;\"'}}]+"
        ),
        rf"\1{REDACTED}",
    ),
    # Passwords in URLs: postgresql://user:password@host/db
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://[^:/@\s]+:)[^@/\s]+@"), rf"\1{REDACTED}@"),
    # Stripe secret and restricted keys, webhook signing secrets.
    (re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9A-Za-z]+"), REDACTED),
    (re.compile(r"\bwhsec_[0-9A-Za-z+/=]+"), REDACTED),
    # Google OAuth access and refresh tokens, HubSpot private app tokens, Notion secrets.
    (re.compile(r"\bya29\.[0-9A-Za-z\-_.]+"), REDACTED),
    (re.compile(r"(?<![0-9A-Za-z/])1//[0-9A-Za-z\-_]{20,}"), REDACTED),
    (re.compile(r"\bpat-(?:na|eu|ap)\d+-[0-9a-fA-F\-]{36}"), REDACTED),
    (re.compile(r"\b(?:secret|ntn)_[0-9A-Za-z]{30,}"), REDACTED),
)


class Redactor:
    """Replaces registered secret values and common secret shapes with `[REDACTED]`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._bytes_patterns: list[tuple[bytes, re.Pattern[bytes]]] | None = None
        self.register(*secrets)

    def register(self, *secrets: str | None) -> None:
        """Redact these exact values (and their URL-encoded forms) from now on.

        Empty values and values shorter than MIN_SECRET_LENGTH are ignored.
        """
        new: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LENGTH:
                continue
            new.update({secret, quote(secret, safe=""), quote_plus(secret)})
        with self._lock:
            if new <= self._values:
                return
            self._values |= new
            # Longest first, so a secret that contains another is replaced whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(value) for value in ordered))
            self._bytes_patterns = None  # rebuilt by the next found_in()

    def registered(self) -> frozenset[str]:
        """Every value registered so far (for leak scans in tests)."""
        with self._lock:
            return frozenset(self._values)

    def found_in(self, data: bytes) -> bool:
        """Whether UTF-8 `data` (a provider's JSON, say) holds a registered secret: as it is,
        URL-encoded, or with the escapes JSON needs for it. (A secret spelt with optional
        escapes, such as `\\u0073k_...`, is found only in text decoded first.)"""
        with self._lock:
            if self._bytes_patterns is None:
                self._bytes_patterns = _by_prefix(self._values)
            groups = self._bytes_patterns
        # Secrets share a few prefixes (sk_live_, ya29., 1//): a fast scan for each prefix,
        # and the values' trie only where one occurs.
        return any(prefix in data and pattern.search(data) for prefix, pattern in groups)

    def redact(self, text: str) -> str:
        """Return `text` with every registered secret and secret shape replaced."""
        if not text:
            return text
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        for shape, replacement in _SHAPES:
            text = shape.sub(replacement, text)
        return text


def _by_prefix(values: Iterable[str]) -> list[tuple[bytes, re.Pattern[bytes]]]:
    """Every form of `values` that found_in looks for, grouped by their first bytes: each
    group's prefix, and a trie of its values."""
    groups: dict[bytes, set[bytes]] = {}
    for value in values:
        for form in (value.encode(), json.dumps(value, ensure_ascii=False)[1:-1].encode()):
            groups.setdefault(form[:MIN_SECRET_LENGTH], set()).add(form)
    return [(prefix, _literal_trie(forms)) for prefix, forms in groups.items()]


def _literal_trie(values: Iterable[bytes]) -> re.Pattern[bytes]:
    """A regex matching any of `values`, shaped as a trie: one branch per distinct next byte,
    so a search costs about the same with one secret or hundreds (a flat alternation tries
    every value at every position)."""
    root: dict[int, dict] = {}
    for value in values:
        node = root
        for byte in value:
            node = node.setdefault(byte, {})
        node[-1] = {}  # a value ends here: anything longer adds nothing to "found"

    def branches(node: dict[int, dict]) -> bytes:
        chain = b""
        while -1 not in node and len(node) == 1:  # no choice here: one literal byte
            ((byte, node),) = node.items()
            chain += re.escape(bytes([byte]))
        if -1 in node or not node:
            return chain
        parts = [re.escape(bytes([byte])) + branches(child) for byte, child in node.items()]
        return chain + b"(?:" + b"|".join(parts) + b")"

    return re.compile(branches(root))


default_redactor = Redactor()


def register_secret(*secrets: str | None) -> None:
    """Register secrets with the process-wide redactor used by logs and ProviderError."""
    default_redactor.register(*secrets)


def redact(text: str) -> str:
    """Redact `text` with the process-wide redactor."""
    return default_redactor.redact(text)


# A traceback kept for debugging (run metadata) is cut to its last frames.
MAX_TRACEBACK_CHARS = 8000


def redacted_traceback(exc: BaseException) -> str:
    """`exc`'s traceback (with its causes) as text, redacted and bounded."""
    text = redact("".join(traceback.format_exception(exc)).rstrip("\n"))
    return text if len(text) <= MAX_TRACEBACK_CHARS else "..." + text[-MAX_TRACEBACK_CHARS:]


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message, args, traceback and stack.

    It never drops a record. The message is formatted with its args first and the args
    cleared, because an arg of any type (a URL, an exception) may render a secret.
    """

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact `record` in place; always keep it."""
        redactor = self._redactor or default_redactor
        try:
            message = record.getMessage()
        except Exception:
            # A broken format string: keep its parts, each redacted, rather than lose the line.
            message = " ".join(str(part) for part in (record.msg, record.args))
        record.msg = redactor.redact(message)
        record.args = None
        # uvicorn's coloured twin of the message (`extra={"color_message": ...}`) is a format
        # string for the args just cleared: a terminal would show it unformatted (`%d`), and
        # unredacted. Without it, uvicorn's formatter colours the redacted message.
        record.__dict__.pop("color_message", None)
        if record.exc_info and record.exc_info[0] is not None:
            formatted = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = redactor.redact(formatted)
            # The handler would otherwise format the raw traceback again (and the args of
            # the exception object can still hold secrets).
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redactor.redact(record.stack_info)
        return True


class RedactingLogger(logging.LoggerAdapter):
    """A logger (a run's `context.log`, say) whose every message is redacted first;
    `prefix` starts every message (the workspace, in a run that syncs several)."""

    def __init__(self, logger: Any, prefix: str = "") -> None:
        super().__init__(logger, {})
        self.prefix = prefix

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        text = str(msg) % args if args else str(msg)
        super().log(level, redact(self.prefix + text), **kwargs)  # type: ignore[arg-type]


def install_redaction_filter(*logger_names: str, redactor: Redactor | None = None) -> None:
    """Attach a RedactingFilter to each named logger, once.

    A logger's filters do not apply to records of its child loggers, so name each logger
    that emits records (e.g. "httpx", "httpcore.http11").
    """
    for name in logger_names:
        target = logging.getLogger(name)
        if not any(isinstance(existing, RedactingFilter) for existing in target.filters):
            target.addFilter(RedactingFilter(redactor))
