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

from guided.errors import SpecError
from guided.frontends.jsonschema import JsonSchema


def is_pydantic_model(obj: Any) -> bool:
    """True for a Pydantic v2 model class."""
    return isinstance(obj, type) and hasattr(obj, "model_json_schema") and hasattr(obj, "model_validate_json")


def pydantic_schema(model: Any) -> dict:
    """The JSON Schema of a Pydantic v2 model class (validation mode, keys by alias)."""
    if not is_pydantic_model(model):
        raise SpecError(f"expected a Pydantic v2 model class, got {model!r}")
    try:
        schema = model.model_json_schema(by_alias=True, mode="validation")
    except Exception as exc:  # noqa: BLE001 - pydantic raises its own errors for unsupported types
        raise SpecError(f"Pydantic cannot produce a JSON Schema for {model.__name__}: {exc}") from exc
    return _drop_unique_items(schema)


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
    """A `guided.JsonSchema` for ``model`` (options as for `JsonSchema`)."""
    return JsonSchema(pydantic_schema(model), **options)

