"""Hold sandbox responses to the discovery documents shipped in google-api-python-client.

`assert_conforms(api, schema, body)` walks `body` against the named response schema: every key
the sandbox sends must be declared there, with the declared JSON type (int64 fields are
strings holding integers, enums must be one of the declared values).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import googleapiclient

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"


@cache
def discovery(api: str) -> dict[str, Any]:
    """The discovery document, e.g. discovery("analyticsdata.v1beta")."""
    return json.loads((DOCUMENTS / f"{api}.json").read_text())


def assert_conforms(api: str, schema: str, body: Any) -> None:
    doc = discovery(api)
    _check(doc, {"$ref": schema}, body, schema)


def _fail(path: str, message: str) -> None:
    raise AssertionError(f"{path}: {message}")


def _check(doc: dict[str, Any], spec: dict[str, Any], value: Any, path: str) -> None:
    if "$ref" in spec:
        spec = doc["schemas"][spec["$ref"]]
    kind = spec.get("type")
    if kind == "object" or "properties" in spec:
        if not isinstance(value, dict):
            _fail(path, f"expected an object, got {type(value).__name__}")
        declared = spec.get("properties", {})
        extra = spec.get("additionalProperties")
        for key, item in value.items():
            if key in declared:
                _check(doc, declared[key], item, f"{path}.{key}")
            elif extra is not None:
                _check(doc, extra, item, f"{path}.{key}")
            else:
                _fail(path, f"key {key!r} is not declared in the schema")
    elif kind == "array":
        if not isinstance(value, list):
            _fail(path, f"expected an array, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check(doc, spec["items"], item, f"{path}[{i}]")
    elif kind == "string":
        if not isinstance(value, str):
            _fail(path, f"expected a string, got {value!r}")
        if spec.get("format") in ("int64", "uint64"):
            try:
                int(value)
            except ValueError:
                _fail(path, f"expected an int64 string, got {value!r}")
        if "enum" in spec and value not in spec["enum"]:
            _fail(path, f"{value!r} is not one of {spec['enum']}")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            _fail(path, f"expected an integer, got {value!r}")
    elif kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            _fail(path, f"expected a number, got {value!r}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            _fail(path, f"expected a boolean, got {value!r}")
    elif kind == "any":
        # JSON values a cell can hold: string, number, boolean.
        if not isinstance(value, str | int | float | bool):
            _fail(path, f"expected a scalar cell value, got {value!r}")
    else:
        _fail(path, f"schema type {kind!r} is not handled")
