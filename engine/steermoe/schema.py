"""Checking JSON values against the JSON Schemas that zod generates for the run files.

jsonschema is not a dependency, so this covers the keywords zod's `toJSONSchema` emits for
run-files.ts (type, properties, required, additionalProperties, propertyNames, items, minItems,
enum, const, anyOf, minimum, maximum, pattern); a schema using any other keyword is refused, so a
new zod feature cannot be silently ignored.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

SUPPORTED = {
    "$schema",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "propertyNames",
    "items",
    "minItems",
    "enum",
    "const",
    "anyOf",
    "minimum",
    "maximum",
    "pattern",
    "description",
}

TYPES: dict[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


class SchemaError(ValueError):
    """A run file that does not match the schema the CLI writes it with."""


@cache
def run_file_schema(name: str) -> dict[str, Any]:
    """The shipped schema of a run file (samples, experts, train_log, eval_results)."""
    text = resources.files("steermoe").joinpath("schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def problem(value: Any, schema: dict[str, Any], where: str = "") -> str | None:
    """The first place `value` breaks `schema`, as 'field: what', or None when it matches."""
    unknown = set(schema) - SUPPORTED
    if unknown:
        raise SchemaError(f"schema keyword(s) {sorted(unknown)} are not supported by steermoe's validator")
    at = where or "(top level)"
    if "anyOf" in schema:
        if all(problem(value, option, where) for option in schema["anyOf"]):
            return f"{at}: matches none of the allowed forms"
        return None
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if kinds and not any(TYPES[kind](value) for kind in kinds):
        return f"{at}: expected {' or '.join(kinds)}, got {type(value).__name__}"
    if value is None:
        return None
    if "const" in schema and value != schema["const"]:
        return f"{at}: must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{at}: {value!r} is not one of {schema['enum']}"
    if "minimum" in schema and value < schema["minimum"]:
        return f"{at}: {value} is below {schema['minimum']}"
    if "maximum" in schema and value > schema["maximum"]:
        return f"{at}: {value} is above {schema['maximum']}"
    if "pattern" in schema and not re.search(schema["pattern"], value):
        return f"{at}: {value!r} does not match {schema['pattern']}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return f"{at}: needs at least {schema['minItems']} items"
        for i, item in enumerate(value):
            found = problem(item, schema.get("items", {}), f"{where}[{i}]")
            if found:
                return found
    if isinstance(value, dict):
        return _object_problem(value, schema, where)
    return None


def _object_problem(value: dict[str, Any], schema: dict[str, Any], where: str) -> str | None:
    properties: dict[str, Any] = schema.get("properties", {})
    for key in schema.get("required", []):
        if key not in value:
            return f"{where + '.' if where else ''}{key}: missing"
    extra = schema.get("additionalProperties", {})
    for key, item in value.items():
        path = f"{where}.{key}" if where else key
        if "propertyNames" in schema:
            found = problem(key, schema["propertyNames"], path)
            if found:
                return found
        if key in properties:
            found = problem(item, properties[key], path)
        elif extra is False:
            found = f"{path}: unknown field"
        else:
            found = problem(item, extra, path)
        if found:
            return found
    return None
