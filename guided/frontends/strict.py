"""OpenAI's strict mode: the JSON Schema subset that Structured Outputs accept, checked the way the API does.

A schema sent with ``"strict": true`` (in ``response_format`` or in a function tool) must obey
rules beyond JSON Schema's (OpenAI's "Supported schemas" for Structured Outputs); the API refuses
one that does not, with a message naming the place (``context``) and the rule.  `check_strict`
applies the same rules and raises `StrictSchemaError` with the same reason, so a request guided
accepts in strict mode is one OpenAI would accept too:

- the root is an object (``"type": "object"``), not an ``anyOf``;
- every object says ``"additionalProperties": false`` and lists every property in ``required``
  (an optional field is written as a required one whose type allows ``null``);
- only these keywords: ``type``, ``properties``, ``required``, ``additionalProperties``, ``items``,
  ``enum``, ``const``, ``anyOf``, ``$ref``, ``$defs``/``definitions``, ``description``,
  ``title``, ``$schema``, ``$id``, ``default``, ``examples``; strings also ``pattern`` and ``format``
  (``date-time``, ``time``, ``date``, ``duration``, ``email``, ``hostname``, ``ipv4``, ``ipv6``,
  ``uuid``); numbers ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``,
  ``multipleOf``; arrays ``minItems``, ``maxItems``.  ``allOf``, ``not``, ``oneOf``, ``if``/``then``/
  ``else``, ``dependentRequired``, ``dependentSchemas``, ``patternProperties``,
  ``unevaluatedProperties``, ``propertyNames``, ``minProperties``, ``maxProperties``,
  ``minLength``, ``maxLength``, ``unevaluatedItems``, ``contains``, ``minContains``,
  ``maxContains``, ``uniqueItems``, ``prefixItems`` are refused;
- at most 10 levels of nesting, 5,000 properties and 1,000 enum values in all.

>>> check_strict({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
...               "additionalProperties": False}, "answer")
>>> check_strict({"type": "object", "properties": {"a": {"type": "string"}}, "required": []}, "answer")
Traceback (most recent call last):
...
guided.frontends.strict.StrictSchemaError: Invalid schema for response_format 'answer': In context=(), 'additionalProperties' is required to be supplied and to be false.
"""

from __future__ import annotations

import re
from typing import Any

from guided.frontends.jsonschema import UnsupportedSchema

__all__ = ["MAX_ENUM_VALUES", "MAX_NESTING", "MAX_PROPERTIES", "StrictSchemaError", "check_name", "check_strict"]

MAX_NESTING = 10
MAX_PROPERTIES = 5_000
MAX_ENUM_VALUES = 1_000

_COMMON = {"type", "enum", "const", "anyOf", "$ref", "$defs", "definitions", "description", "title", "$schema",
           "$id", "default", "examples"}
_BY_TYPE = {
    "object": {"properties", "required", "additionalProperties"},
    "array": {"items", "minItems", "maxItems"},
    "string": {"pattern", "format"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
    "boolean": set(),
    "null": set(),
}
_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


class StrictSchemaError(UnsupportedSchema):
    """A schema that OpenAI's strict mode refuses; the message is the API's reason."""

    def __init__(self, what: str, context: tuple, keyword: str, reason: str):
        self.context = context
        pointer = "#" + "".join(f"/{c}" for c in context)
        super().__init__(pointer, keyword, reason)
        self.args = (f"Invalid schema for {what}: In context={context!r}, {reason}",)

    def __str__(self) -> str:
        return self.args[0]


def check_name(name: Any, what: str) -> str:
    """A response format's or function's ``name``: 1 to 64 of ``a-z A-Z 0-9 _ -`` (as OpenAI requires)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UnsupportedSchema("#", "name", f"Invalid '{what}': string does not match pattern. Expected a string "
                                             f"that matches the pattern '^[a-zA-Z0-9_-]+$' (1 to 64 characters), "
                                             f"got {name!r}.")
    return name


def check_strict(schema: Any, name: str, *, kind: str = "response_format") -> None:
    """Raise `StrictSchemaError` where OpenAI's strict mode would refuse ``schema``.

    ``kind``: ``"response_format"`` (the root must be an object) or ``"function"`` (a tool's
    parameters, the same rules).
    """
    what = f"{kind} '{name}'"
    if not isinstance(schema, dict):
        raise StrictSchemaError(what, (), "type", f"schema must be a JSON Schema object, got {type(schema).__name__}.")
    if "anyOf" in schema:
        raise StrictSchemaError(what, (), "anyOf", "the root schema must not be 'anyOf': it must be an object.")
    root_type = schema.get("type")
    if root_type != "object":
        raise StrictSchemaError(what, (), "type", f"schema must be a JSON Schema of 'type: \"object\"', got "
                                                  f"'type: \"{root_type}\"'.")
    counts = {"properties": 0, "enum": 0}
    _check(schema, (), 0, what, counts, schema)


def _types(node: dict) -> list[str]:
    t = node.get("type")
    if t is None:
        return []
    return [t] if isinstance(t, str) else list(t)


def _check(node: Any, context: tuple, depth: int, what: str, counts: dict, root: dict) -> None:
    if not isinstance(node, dict):
        raise StrictSchemaError(what, context, "schema", "a schema must be an object.")
    if depth > MAX_NESTING:
        raise StrictSchemaError(what, context, "nesting", f"the schema nests more than {MAX_NESTING} levels.")
    types = _types(node)
    allowed = set(_COMMON)
    for t in types:
        allowed |= _BY_TYPE.get(t, set())
    if "$ref" in node:
        allowed |= set(node)  # a reference carries its target's rules; siblings are checked there
    for key in node:
        if key not in allowed:
            raise StrictSchemaError(what, context, key, f"'{key}' is not permitted.")
    if "format" in node and node["format"] not in _FORMATS:
        raise StrictSchemaError(what, context, "format", f"'format' {node['format']!r} is not permitted.")
    if "enum" in node:
        counts["enum"] += len(node["enum"]) if isinstance(node["enum"], list) else 0
        if counts["enum"] > MAX_ENUM_VALUES:
            raise StrictSchemaError(what, context, "enum", f"the schema has more than {MAX_ENUM_VALUES} enum values.")
    if "object" in types or "properties" in node:
        props = node.get("properties", {})
        if node.get("additionalProperties", True) is not False:
            raise StrictSchemaError(what, context, "additionalProperties",
                                    "'additionalProperties' is required to be supplied and to be false.")
        required = node.get("required")
        missing = [k for k in props if not isinstance(required, list) or k not in required]
        if missing:
            raise StrictSchemaError(what, context, "required",
                                    f"'required' is required to be supplied and to be an array including every key "
                                    f"in properties. Missing '{missing[0]}'.")
        extra = [k for k in required if k not in props]
        if extra:
            raise StrictSchemaError(what, context, "required",
                                    f"'required' lists '{extra[0]}', which is not in properties.")
        counts["properties"] += len(props)
        if counts["properties"] > MAX_PROPERTIES:
            raise StrictSchemaError(what, context, "properties",
                                    f"the schema has more than {MAX_PROPERTIES} properties in all.")
        for key, sub in props.items():
            _check(sub, context + ("properties", key), depth + 1, what, counts, root)
    if "items" in node:
        _check(node["items"], context + ("items",), depth + 1, what, counts, root)
    for i, sub in enumerate(node.get("anyOf", []) or []):
        _check(sub, context + ("anyOf", i), depth + 1, what, counts, root)
    for defs in ("$defs", "definitions"):
        for key, sub in (node.get(defs) or {}).items():
            _check(sub, context + (defs, key), depth, what, counts, root)
