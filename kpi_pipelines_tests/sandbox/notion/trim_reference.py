"""Trim a JSON Schema made from the SDK's response types to what the sandbox serves.

    python -m kpi_pipelines_tests.sandbox.notion.trim_reference VERSION FULL.schema.json

Keeps, of each union (`anyOf`), the members some answer of the conformance test's
(test_conformance.served_answers) matches, of each object the properties those answers
carry or require, and the definitions the answers' types then reach; drops the
descriptions. Writes reference/notion-VERSION.schema.json. Run it again (from a full
schema) when the sandbox starts serving something new: the conformance test fails first.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jsonschema

from kpi_pipelines_tests.sandbox.notion.test_conformance import schema_path, served_answers

Schema = dict[str, Any]


class Usage:
    def __init__(self, definitions: Schema) -> None:
        self.definitions = definitions
        self.branches: dict[int, set[int]] = {}  # id(anyOf node) -> members matched
        self.keys: dict[int, set[str]] = {}  # id(object node) -> properties seen

    def valid(self, node: Schema, instance: Any) -> bool:
        schema = {"definitions": self.definitions, **node}
        return jsonschema.Draft7Validator(schema).is_valid(instance)

    def mark(self, node: Any, instance: Any) -> None:
        if not isinstance(node, dict):
            return
        if "$ref" in node:
            self.mark(self.definitions[unquote(node["$ref"].rsplit("/", 1)[-1])], instance)
        for index, member in enumerate(node.get("anyOf", ())):
            if self.valid(member, instance):
                self.branches.setdefault(id(node), set()).add(index)
                self.mark(member, instance)
        for member in node.get("allOf", ()):
            self.mark(member, instance)
        if isinstance(instance, dict):
            properties = node.get("properties", {})
            self.keys.setdefault(id(node), set()).update(k for k in instance if k in properties)
            for key, value in instance.items():
                if key in properties:
                    self.mark(properties[key], value)
                elif isinstance(node.get("additionalProperties"), dict):
                    self.mark(node["additionalProperties"], value)
        if isinstance(instance, list) and isinstance(node.get("items"), dict):
            for value in instance:
                self.mark(node["items"], value)


def pruned(node: Any, usage: Usage) -> Any:
    if isinstance(node, list):
        return [pruned(item, usage) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: pruned(v, usage) for k, v in node.items() if k != "description"}
    if "anyOf" in node and id(node) in usage.branches:
        kept = sorted(usage.branches[id(node)])
        out["anyOf"] = [pruned(node["anyOf"][i], usage) for i in kept]
    if "properties" in node and id(node) in usage.keys:
        wanted = usage.keys[id(node)] | set(node.get("required", ()))
        out["properties"] = {
            k: pruned(v, usage) for k, v in node["properties"].items() if k in wanted
        }
    return out


def reached(definitions: Schema, roots: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        text = json.dumps(definitions[name])
        todo.extend(unquote(part.split('"', 1)[0]) for part in text.split('"#/definitions/')[1:])
    return seen


def trim(version: str, full: Path) -> Schema:
    schema = json.loads(full.read_text())
    definitions = schema["definitions"]
    usage = Usage(definitions)
    roots: set[str] = set()
    for expected, _, answer in served_answers(version):
        roots.add(expected)
        usage.mark(definitions[expected], answer)
    trimmed = {name: pruned(definitions[name], usage) for name in definitions}
    keep = reached(trimmed, roots)
    return {
        "$comment": schema.get("$comment", "")
        + " Trimmed to what the sandbox serves by trim_reference.py.",
        "$schema": schema["$schema"],
        "definitions": {name: trimmed[name] for name in sorted(keep)},
    }


if __name__ == "__main__":
    version, full = sys.argv[1], Path(sys.argv[2])
    text = json.dumps(trim(version, full), indent=1, sort_keys=True) + "\n"
    schema_path(version).write_text(text)
