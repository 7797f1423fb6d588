"""OpenAI's ``response_format``: the request shapes of the Chat Completions API, as guided specs.

`response_format_constraint` turns what a user would send to OpenAI into ``(spec, parse)``:

- ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}, "strict": true}}``:
  strict mode refuses what OpenAI refuses (`guided.frontends.strict`, with OpenAI's reason) and
  compiles the schema exactly; ``"strict": false`` (OpenAI's default) compiles it like
  ``JsonSchema(schema, lenient=True)`` (keywords that cannot be enforced exactly are relaxed,
  with a `RelaxedSchemaWarning`); returns the parsed JSON value;
- ``{"type": "json_object"}`` (JSON mode): any JSON object; returns it as a dict;
- ``{"type": "text"}``: no constraint;
- a Pydantic model class (what ``client.beta.chat.completions.parse`` takes): as ``schema=Model``,
  returns a validated instance.

>>> spec, parse = response_format_constraint({"type": "json_object"})
>>> spec.value, parse('{"a": [1]}')
({'type': 'object'}, {'a': [1]})
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

from guided.errors import SpecError
from guided.frontends.jsonschema import JsonSchema
from guided.frontends.pydantic import is_pydantic_model
from guided.frontends.strict import check_name, check_strict

__all__ = ["response_format_constraint"]

_KINDS = ("json_schema", "json_object", "text")


def response_format_constraint(response_format: Any) -> tuple[Any, Callable[[str], Any]]:
    """``(spec, parse)`` for a ``response_format`` (see the module docstring); ``spec`` is
    ``None`` for ``{"type": "text"}``.  Raises `SpecError` for a malformed one and
    `guided.frontends.strict.StrictSchemaError` for a schema strict mode refuses."""
    if is_pydantic_model(response_format):
        return response_format, response_format.model_validate_json
    if not isinstance(response_format, Mapping):
        raise SpecError(f"response_format= takes a dict such as {{'type': 'json_schema', 'json_schema': {{...}}}} "
                        f"or a Pydantic model class, got {type(response_format).__name__}")
    kind = response_format.get("type")
    if kind not in _KINDS:
        raise SpecError(f"response_format.type={kind!r}: expected one of {', '.join(map(repr, _KINDS))}")
    if kind == "text":
        return None, lambda text: text
    if kind == "json_object":
        return JsonSchema({"type": "object"}, canonical=True), json.loads
    body = response_format.get("json_schema")
    if not isinstance(body, Mapping):
        raise SpecError("response_format.json_schema is required for type 'json_schema': "
                        "{'name': ..., 'schema': {...}, 'strict': true}")
    unknown = sorted(set(body) - {"name", "schema", "strict", "description"})
    if unknown:
        raise SpecError(f"response_format.json_schema has unknown keys {unknown}: expected name, schema, strict, "
                        f"description")
    name = check_name(body.get("name"), "response_format.json_schema.name")
    schema = body.get("schema", {})
    strict = body.get("strict", False)
    if not isinstance(strict, bool):
        raise SpecError(f"response_format.json_schema.strict must be true or false, got {strict!r}")
    if strict:
        check_strict(schema, name)
        return JsonSchema(schema, canonical=True), json.loads
    return JsonSchema(schema, lenient=True, canonical=True), json.loads
