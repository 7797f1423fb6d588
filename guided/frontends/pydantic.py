"""Pydantic v2 models as constraints: the model's JSON Schema, compiled by the JSON Schema front-end.

``guided.compile(MyModel, vocab)`` compiles ``MyModel.model_json_schema(by_alias=True)`` (through
`pydantic_spec`, a `guided.JsonSchema`): nested models and recursive models
(``$defs``/``$ref``), ``Optional``/``Union`` (``anyOf``), discriminated unions (``oneOf`` whose
branches differ by a required ``Literal`` tag: provably disjoint, so exact), ``Literal`` and
``Enum`` (``const``/``enum``), constrained types (``constr``/``conint``/``Field`` bounds,
``pattern``), ``datetime``/``date``/``time``/``UUID``/``EmailStr`` (``format``), ``list``/``set``
/``tuple``/``dict``, and aliases (the output uses the alias, as ``model_validate_json`` expects).

What Pydantic validates beyond the schema (custom validators) is not part of the constraint:
`guided.generate(..., schema=Model)` validates the result with ``Model.model_validate_json``.

Generation defaults (`pydantic_spec`, ``generate(..., schema=Model)``, ``guided.compile(Model,
...)``): objects are **closed** (no undeclared key; a model with ``extra="allow"`` says
``additionalProperties: true`` in its schema and stays open) and strings **canonical** (no
needless ``\\u`` escapes, see `guided.JsonSchema`).  ``validate(text, schema=Model)`` instead
accepts what Pydantic accepts: any spelling, and the undeclared keys ``extra="ignore"`` drops.

**Dates and times.** JSON Schema's ``date-time`` and ``time`` formats (RFC 3339) require a UTC
offset, but Pydantic's plain ``datetime`` and ``time`` take naive values too and write them
without one (``"2024-05-01T12:00:00"``).  So a field's format follows its Pydantic type:
``datetime``/``time`` become guided's ``date-time-or-naive``/``time-or-naive`` (offset
optional), ``NaiveDatetime`` (``tz_constraint="naive"``) ``naive-date-time``/``naive-time``
(no offset), ``AwareDatetime`` keeps ``date-time`` (offset required).  Pydantic's own JSON
output of a model always validates.

>>> from pydantic import BaseModel
>>> class Point(BaseModel):
...     x: int
...     y: int = 0
>>> spec = pydantic_spec(Point)
>>> spec.value["required"]
['x']
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from guided.errors import SpecError
from guided.frontends.jsonschema import JsonSchema

GENERATION_DEFAULTS = {"closed": True, "canonical": True}
"""`JsonSchema` options a Pydantic model's schema gets for generation unless told otherwise."""


def is_pydantic_model(obj: Any) -> bool:
    """True for a Pydantic v2 model class."""
    return isinstance(obj, type) and hasattr(obj, "model_json_schema") and hasattr(obj, "model_validate_json")


def pydantic_schema(model: Any) -> dict:
    """The JSON Schema of a Pydantic v2 model class (validation mode, keys by alias)."""
    if not is_pydantic_model(model):
        raise SpecError(f"expected a Pydantic v2 model class, got {model!r}")
    try:
        schema = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_TemporalFormats)
    except Exception as exc:  # noqa: BLE001 - pydantic raises its own errors for unsupported types
        raise SpecError(f"Pydantic cannot produce a JSON Schema for {model.__name__}: {exc}") from exc
    return _drop_unique_items(schema)


class _TemporalFormats(GenerateJsonSchema):
    """Pydantic's schema generator, with the formats of datetimes and times following their
    timezone constraint (see the module docstring)."""

    def datetime_schema(self, schema):
        return _temporal(super().datetime_schema(schema), schema, "date-time")

    def time_schema(self, schema):
        return _temporal(super().time_schema(schema), schema, "time")


def _temporal(out: dict, core: dict, fmt: str) -> dict:
    if out.get("format") != fmt:  # ser_json_temporal="seconds"...: a number, nothing to change
        return out
    tz = core.get("tz_constraint")
    if tz == "naive":
        return {**out, "format": f"naive-{fmt}"}
    if tz is None:
        return {**out, "format": f"{fmt}-or-naive"}
    return out  # "aware" or a fixed offset: RFC 3339's own format


def _drop_unique_items(node: Any) -> Any:
    """Pydantic marks ``set``/``frozenset`` fields ``uniqueItems``, yet validates a JSON array with
    repeated items into a set (duplicates collapse), so for ``model_validate_json`` the keyword
    constrains nothing: it is dropped rather than refused."""
    if isinstance(node, dict):
        return {k: _drop_unique_items(v) for k, v in node.items() if not (k == "uniqueItems" and v is True)}
    if isinstance(node, list):
        return [_drop_unique_items(v) for v in node]
    return node


def pydantic_spec(model: Any, **options: Any) -> JsonSchema:
    """A `guided.JsonSchema` for ``model`` (options as for `JsonSchema`; `GENERATION_DEFAULTS`
    unless given), remembering ``model`` so that `guided.generate` returns an instance of it."""
    return JsonSchema(pydantic_schema(model), **{**GENERATION_DEFAULTS, **options}).of_model(model)

