"""Checking a schema document before it is compiled: its size and nesting, and keyword types.

One iterative pass over the document (an explicit stack: a schema nested thousands of levels
deep, or a Python object that contains itself, cannot exhaust the interpreter's stack) that
refuses, naming the JSON pointer:

- a document nested deeper than ``max_nesting`` levels, or holding more than `MAX_VALUES`
  values (a Python object sharing sub-objects can stand for an exponentially large document)
  with `SchemaTooLarge`;
- a keyword whose value has a type JSON Schema does not allow (``"required": 5``,
  ``"minimum": "3"``, ``"properties": [...]``, ``"allOf": {...}``), or an unknown type name
  (``"type": "strin"``), with `InvalidSchema`: such a schema means nothing, and guessing
  would silently change what it accepts.

The metaschema check of the ``jsonschema`` library says the same for valid depths, but is
recursive and takes milliseconds per schema (about as long as compiling one), so the keywords
guided reads are checked here, against their types in the 2020-12 and draft-07/-04
metaschemas.

>>> check_document({"type": "object", "required": 5}, 64)
Traceback (most recent call last):
...
guided.frontends.jsonschema.errors.InvalidSchema: #/required: required: must be an array of strings, not integer 5
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from guided.frontends.jsonschema.errors import InvalidSchema, SchemaTooLarge

MAX_VALUES = 1_000_000  # values in one schema document (objects, arrays and scalars alike)

TYPE_NAMES = ("null", "boolean", "object", "array", "number", "integer", "string")

# keyword -> what its value must be
SCHEMA = "a schema (an object or a boolean)"
SCHEMA_MAP = "an object whose values are schemas"
SCHEMA_LIST = "a non-empty array of schemas"
NUMBER = "a number"
COUNT = "a non-negative integer"
STRING = "a string"
BOOLEAN = "a boolean"
STRINGS = "an array of strings"
ARRAY = "an array"

KEYWORDS = {
    "additionalProperties": SCHEMA, "additionalItems": SCHEMA, "contains": SCHEMA, "propertyNames": SCHEMA,
    "not": SCHEMA, "if": SCHEMA, "then": SCHEMA, "else": SCHEMA, "unevaluatedProperties": SCHEMA,
    "unevaluatedItems": SCHEMA, "items": SCHEMA,  # or, before 2020-12, an array of schemas (below)
    "properties": SCHEMA_MAP, "patternProperties": SCHEMA_MAP, "$defs": SCHEMA_MAP, "definitions": SCHEMA_MAP,
    "dependentSchemas": SCHEMA_MAP,
    "allOf": SCHEMA_LIST, "anyOf": SCHEMA_LIST, "oneOf": SCHEMA_LIST, "prefixItems": SCHEMA_LIST,
    "minimum": NUMBER, "maximum": NUMBER, "multipleOf": NUMBER,
    "exclusiveMinimum": NUMBER, "exclusiveMaximum": NUMBER,  # or, in draft-04, a boolean (below)
    "minLength": COUNT, "maxLength": COUNT, "minItems": COUNT, "maxItems": COUNT, "minProperties": COUNT,
    "maxProperties": COUNT, "minContains": COUNT, "maxContains": COUNT,
    "pattern": STRING, "format": STRING, "$ref": STRING, "$dynamicRef": STRING, "$recursiveRef": STRING,
    "$schema": STRING, "$id": STRING, "$anchor": STRING, "$dynamicAnchor": STRING,
    "uniqueItems": BOOLEAN,
    "required": STRINGS,
    "enum": ARRAY,
}


def check_document(root: Any, max_nesting: int) -> None:
    """Refuse ``root`` (a parsed schema) as the module docstring says; returns nothing when it is fine."""
    # ``items`` as an array of schemas is the tuple form of drafts 4 to 2019-09 only.
    declared = root.get("$schema") if isinstance(root, dict) else None
    tuple_items = isinstance(declared, str) and ("draft-0" in declared or "2019-09" in declared)
    # Every value is visited once per path that leads to it, as in the JSON text it stands for.
    # Entries: (value, pointer, depth, is it a schema?).
    stack: list[tuple[Any, str, int, bool]] = [(root, "#", 1, True)]
    seen = 0
    while stack:
        value, pointer, depth, is_schema = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise SchemaTooLarge("#", f"the schema document holds more than {MAX_VALUES} values")
        if depth > max_nesting:
            raise SchemaTooLarge(pointer, f"the schema nests more than max_nesting={max_nesting} levels deep "
                                          f"(raise max_nesting=, or flatten it with $defs and $ref)")
        if is_schema:
            if not isinstance(value, (dict, bool)):
                raise InvalidSchema(pointer, "schema", f"a schema must be an object or a boolean, not "
                                                       f"{_json_type(value)}")
            if isinstance(value, dict):
                _check_keywords(value, pointer, depth, stack, tuple_items)
            continue
        if isinstance(value, dict):
            stack.extend((v, f"{pointer}/{_escape(str(k))}", depth + 1, False) for k, v in value.items())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{pointer}/{i}", depth + 1, False) for i, v in enumerate(value))


def _check_keywords(node: dict, pointer: str, depth: int, stack: list, tuple_items: bool) -> None:
    for key, value in node.items():
        if not isinstance(key, str):
            raise InvalidSchema(pointer, str(key), f"property names must be strings, not {_json_type(key)}")
        where = f"{pointer}/{_escape(key)}"
        want = KEYWORDS.get(key)
        if key == "type":
            _check_type(value, where)
        elif key == "items" and isinstance(value, (list, tuple)):  # the tuple form of drafts 4 to 2019-09
            if not tuple_items or "prefixItems" in node:
                raise InvalidSchema(where, key, "must be a schema: an array of schemas is the spelling of drafts 4 to "
                                                "2019-09 (declare one with \"$schema\"), prefixItems in 2020-12")
            stack.extend((v, f"{where}/{i}", depth + 1, True) for i, v in enumerate(value))
            continue
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
            continue  # draft-04's boolean form
        elif key == "dependencies" or key == "dependentRequired":
            _check_dependencies(key, value, where, depth, stack)
            continue
        elif want is not None and not _fits(value, want):
            raise InvalidSchema(where, key, f"must be {want}, not {_describe(value)}")
        if want == SCHEMA:
            stack.append((value, where, depth + 1, True))
        elif want == SCHEMA_MAP:
            stack.extend((v, f"{where}/{_escape(k)}", depth + 2, True) for k, v in value.items())
        elif want == SCHEMA_LIST:
            stack.extend((v, f"{where}/{i}", depth + 2, True) for i, v in enumerate(value))
        elif key == "multipleOf" and not value > 0:
            raise InvalidSchema(where, key, f"must be greater than 0, not {value!r}")
        else:  # data (enum, const, default, examples, annotations): only its size and depth matter
            stack.append((value, where, depth + 1, False))


def _check_type(value: Any, where: str) -> None:
    names = value if isinstance(value, (list, tuple)) else [value]
    if not isinstance(value, (str, list, tuple)) or not names:
        raise InvalidSchema(where, "type", f"must be a type name or a non-empty array of them, not "
                                           f"{_describe(value)}")
    for name in names:
        if not isinstance(name, str):
            raise InvalidSchema(where, "type", f"type names are strings, not {_describe(name)}")
        if name not in TYPE_NAMES:
            close = difflib.get_close_matches(name, TYPE_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InvalidSchema(where, "type", f"unknown type {name!r}{hint}; the types are {', '.join(TYPE_NAMES)}")


def _check_dependencies(key: str, value: Any, where: str, depth: int, stack: list) -> None:
    if not isinstance(value, dict):
        raise InvalidSchema(where, key, f"must be an object, not {_describe(value)}")
    for name, dep in value.items():
        at = f"{where}/{_escape(name)}"
        if isinstance(dep, (list, tuple)):
            if not all(isinstance(x, str) for x in dep):
                raise InvalidSchema(at, key, f"must list property names (strings), not {_describe(dep)}")
        elif key == "dependentRequired":
            raise InvalidSchema(at, key, f"must be an array of strings, not {_describe(dep)}")
        else:
            stack.append((dep, at, depth + 2, True))


def _fits(value: Any, want: str) -> bool:
    if want in (SCHEMA, NUMBER, COUNT, BOOLEAN) and isinstance(value, (list, tuple)):
        return False
    if want == SCHEMA:
        return isinstance(value, (dict, bool))
    if want == SCHEMA_MAP:
        return isinstance(value, dict)
    if want == SCHEMA_LIST:
        return isinstance(value, (list, tuple)) and len(value) > 0
    if want == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    if want == COUNT:
        return (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
                and float(value).is_integer())
    if want == STRING:
        return isinstance(value, str)
    if want == BOOLEAN:
        return isinstance(value, bool)
    if want == STRINGS:
        return isinstance(value, (list, tuple)) and all(isinstance(x, str) for x in value)
    if want == ARRAY:
        return isinstance(value, (list, tuple))
    return True


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe(value: Any) -> str:
    kind = _json_type(value)
    if isinstance(value, (dict, list, tuple)):
        return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")
