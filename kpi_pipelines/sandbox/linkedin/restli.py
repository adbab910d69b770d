"""Rest.li protocol 2.0 query strings, parsed as strictly as LinkedIn's gateway parses them.

In Rest.li 2.0 a query value is structured: a record `(key:value,key:value)`, a list
`List(a,b)`, or a string. The structure's characters `( ) , : '` stand raw, and the same
characters inside a string are percent-encoded: `accounts=List(urn%3Ali%3AsponsoredAccount%3A5100)`
is a list of one URN, while `accounts=List(urn:li:sponsoredAccount:5100)` (colons raw in a
list) and `dateRange=%28start%3A...` (the structure encoded, so one long string) are not what
the finder takes: LinkedIn answers 400 PARAM_INVALID naming the parameter.
`''` is the empty string. A `%` that starts no escape is a syntax error too.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

_STRUCTURE = "(),:'"
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class RestliSyntaxError(ValueError):
    """A query parameter that is not a Rest.li 2.0 value (or not the one expected)."""

    def __init__(self, param: str, description: str) -> None:
        super().__init__(f"{param}: {description}")
        self.param = param
        self.description = description


def query_params(raw_query: str) -> dict[str, str]:
    """The raw query string as name -> still-encoded value; a repeated name is an error."""
    params: dict[str, str] = {}
    for part in raw_query.split("&") if raw_query else ():
        name, _, value = part.partition("=")
        name = _decode(name, name)
        if name in params:
            raise RestliSyntaxError(name, "Parameter is given more than once")
        params[name] = value
    return params


def parse(param: str, text: str) -> Any:
    """One Rest.li 2.0 value: dict for a record, list for a list, str for a string."""
    parser = _Parser(param, text)
    value = parser.value()
    if parser.pos != len(text):
        raise RestliSyntaxError(param, "Invalid value for param; wrong type or other syntax error")
    return value


class _Parser:
    def __init__(self, param: str, text: str) -> None:
        self.param = param
        self.text = text
        self.pos = 0

    def fail(self) -> RestliSyntaxError:
        return RestliSyntaxError(
            self.param, "Invalid value for param; wrong type or other syntax error"
        )

    def value(self) -> Any:
        if self.text.startswith("List(", self.pos):
            self.pos += len("List(")
            items: list[Any] = []
            if self._take(")"):
                return items
            while True:
                items.append(self.value())
                if self._take(")"):
                    return items
                if not self._take(","):
                    raise self.fail()
        if self._take("("):
            record: dict[str, Any] = {}
            if self._take(")"):
                return record
            while True:
                key = self.string()
                if not key or key in record or not self._take(":"):
                    raise self.fail()
                record[key] = self.value()
                if self._take(")"):
                    return record
                if not self._take(","):
                    raise self.fail()
        return self.string()

    def string(self) -> str:
        if self.text.startswith("''", self.pos):
            self.pos += 2
            return ""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _STRUCTURE:
            self.pos += 1
        return _decode(self.param, self.text[start : self.pos])

    def _take(self, char: str) -> bool:
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False


def _decode(param: str, raw: str) -> str:
    if _BAD_ESCAPE.search(raw):
        raise RestliSyntaxError(param, "Invalid value for param; wrong type or other syntax error")
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise RestliSyntaxError(param, "Invalid value for param; not UTF-8") from None
