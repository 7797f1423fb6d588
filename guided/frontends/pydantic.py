"""Pydantic v2 models as constraints: the model's JSON Schema, compiled by the JSON Schema front-end.

``guided.compile(MyModel, vocab)`` compiles ``MyModel.model_json_schema(by_alias=True)`` (through
`pydantic_spec`, a `guided.JsonSchema`): nested models and recursive models
(``$defs``/``$ref``), ``Optional``/``Union`` (``anyOf``), discriminated unions (``oneOf`` whose
branches differ by a required ``Literal`` tag: provably disjoint, so exact), ``Literal`` and
``Enum`` (``const``/``enum``), constrained types (``constr``/``conint``/``Field`` bounds,
``pattern``), ``datetime``/``date``/``time``/``UUID``/``EmailStr`` (``format``), ``list``/``set``
/``tuple``/``dict``, and aliases (the output uses the alias, as ``model_validate_json`` expects).

**Pydantic's own types** (URLs, ``EmailStr``, ``IPvAny*``, ``Decimal``, ``Path``, ``SecretStr``,
``bytes``, sets) are said as Pydantic validates them rather than by the format names of its schema
(`guided.frontends.pydantic_patterns`; the table in ``docs/json-schema-coverage.md``): every
string a pattern matches is accepted by Pydantic, and Pydantic's own output of common values
matches.

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

import re
from decimal import Decimal
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from guided.errors import SpecError
from guided.frontends import pydantic_patterns as _patterns
from guided.frontends.jsonschema import JsonSchema, _numbers

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
    return _pydantic_strings(schema)


class _TemporalFormats(GenerateJsonSchema):
    """Pydantic's schema generator, with the strings of Pydantic's own types said as Pydantic
    validates them (see the module docstring): datetimes' and times' formats following their
    timezone constraint, URLs and decimals as patterns (`guided.frontends.pydantic_patterns`)."""

    def datetime_schema(self, schema):
        return _temporal(super().datetime_schema(schema), schema, "date-time")

    def time_schema(self, schema):
        return _temporal(super().time_schema(schema), schema, "time")

    def url_schema(self, schema):
        return _url(super().url_schema(schema), schema)

    def multi_host_url_schema(self, schema):
        # one host (``postgres://u@h/db``): the multi-host spellings (``h1,h2``) are left out
        return _url(super().multi_host_url_schema(schema), schema, multi_host=True)

    def decimal_schema(self, schema):
        return _decimal(schema)


def _url(out: dict, core: dict, multi_host: bool = False) -> dict:
    schemes = core.get("allowed_schemes")
    schemes = tuple(re.escape(s.lower()) for s in schemes) if schemes else None
    out = {k: v for k, v in out.items() if k != "format"}
    return {**out, "pattern": _patterns.url_pattern(schemes, bool(core.get("host_required")), multi_host)}


def _decimal(core: dict) -> dict:
    """A ``Decimal``: a JSON number or a string (how Pydantic writes it), both with its bounds and
    its ``max_digits``/``decimal_places`` (counted as Pydantic counts them)."""
    md, dp = core.get("max_digits"), core.get("decimal_places")
    if core.get("multiple_of") is not None:
        return {_REFUSED: f"a Decimal with multiple_of={core['multiple_of']} is not supported: its string "
                          f"spelling (how Pydantic writes a Decimal) cannot carry it"}
    bounds = {}
    for name, key in (("gt", "exclusiveMinimum"), ("ge", "minimum"), ("lt", "exclusiveMaximum"), ("le", "maximum")):
        if core.get(name) is not None:
            bounds[key] = float(core[name])
            if Decimal(repr(bounds[key])) != Decimal(str(core[name])):  # a JSON Schema bound is a float
                return {_REFUSED: f"a Decimal bound {name}={core[name]} is not supported: no JSON number "
                                  f"guided reads says it exactly"}
    number: dict = {"type": "number", **bounds}
    digits: list[dict] = []  # the values of at most md digits and dp decimals, as number schemas
    if md is not None and dp is None:
        digits = [{"multipleOf": float(Decimal(1).scaleb(-d)), "exclusiveMaximum": float(10 ** (md - d)),
                   "exclusiveMinimum": -float(10 ** (md - d))} for d in range(md + 1)]
    elif md is not None and dp is not None and dp >= md:
        # no integer digit, and not zero: "0" counts one (its spellings "0.0" do not, but a
        # number's value cannot tell them apart)
        digits = [{"multipleOf": float(Decimal(1).scaleb(-md)), "exclusiveMaximum": 1, "exclusiveMinimum": -1,
                   "not": {"const": 0}}]
    elif md is not None:
        digits = [{"multipleOf": float(Decimal(1).scaleb(-dp)), "exclusiveMaximum": float(10 ** (md - dp)),
                   "exclusiveMinimum": -float(10 ** (md - dp))}]
    elif dp is not None:
        digits = [{"multipleOf": float(Decimal(1).scaleb(-dp))}]
    if digits:
        number["anyOf"] = digits
    patterns = [_patterns.decimal_pattern(md, dp)]
    for key, regex in (("exclusiveMinimum", lambda b: _numbers.number_ge(b, True)),
                       ("minimum", lambda b: _numbers.number_ge(b, False)),
                       ("exclusiveMaximum", lambda b: _numbers.number_le(b, True)),
                       ("maximum", lambda b: _numbers.number_le(b, False))):
        if key in bounds:
            r = regex(Decimal(str(core[{"exclusiveMinimum": "gt", "minimum": "ge", "exclusiveMaximum": "lt",
                                         "maximum": "le"}[key]])))
            patterns.append(f"^(?:{r})$" if r is not None else "^(?!)$")
    string = {"type": "string", "allOf": [{"pattern": p} for p in patterns]}
    return {"anyOf": [number, string]}


_REFUSED = "x-guided-refused"  # a type guided cannot enforce: `_pydantic_strings` raises, naming the field


def _temporal(out: dict, core: dict, fmt: str) -> dict:
    if out.get("format") != fmt:  # ser_json_temporal="seconds"...: a number, nothing to change
        return out
    tz = core.get("tz_constraint")
    if tz == "naive":
        return {**out, "format": f"naive-{fmt}"}
    if tz is None:
        return {**out, "format": f"{fmt}-or-naive"}
    return out  # "aware" or a fixed offset: RFC 3339's own format


# Pydantic's own ``format`` names: the pattern of what Pydantic accepts, or None where it accepts
# any string (a Path, a SecretStr, bytes in UTF-8).  EmailStr's "email" is email-validator's
# (stricter than JSON Schema's: "a@b" has no period).
_FORMAT_PATTERNS: dict[str, str | None] = {
    "email": _patterns.EMAIL,
    "ipvanyaddress": _patterns.IP_ANY_ADDRESS,
    "ipvanyinterface": _patterns.IP_ANY_INTERFACE,
    "ipv4interface": _patterns.IPV4_INTERFACE,
    "ipv6interface": _patterns.IPV6_INTERFACE,
    "ipvanynetwork": _patterns.IPV4_NETWORK,  # IPv4 networks only (stricter)
    "ipv4network": _patterns.IPV4_NETWORK,
    "path": None, "password": None, "binary": None,
}


def _pydantic_strings(node: Any, pointer: str = "") -> Any:
    """Pydantic's format names replaced by what Pydantic validates (`_FORMAT_PATTERNS`); and
    ``uniqueItems`` dropped where it constrains nothing: Pydantic marks ``set``/``frozenset``
    fields so, yet validates a JSON array with repeated items into a set (duplicates collapse).
    It checks ``min_length`` on the set, though: with ``minItems`` above 1 ``[1, 1]`` fails, so
    there the keyword stays (stricter only on ``max_length``, which a collapsed set may meet)."""
    if isinstance(node, list):
        return [_pydantic_strings(v, f"{pointer}/{i}") for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get(_REFUSED), str):
        raise SpecError(f"{pointer or '#'}: {node[_REFUSED]}")
    collapse = node.get("uniqueItems") is True and node.get("minItems", 0) <= 1
    out = {k: _pydantic_strings(v, f"{pointer}/{k}") for k, v in node.items()
           if not (k == "uniqueItems" and collapse)}
    fmt = out.get("format")
    if isinstance(fmt, str) and out.get("type") == "string" and fmt in _FORMAT_PATTERNS:
        del out["format"]
        pattern = _FORMAT_PATTERNS[fmt]
        if pattern is not None:
            out = {**out, "allOf": [*out.get("allOf", []), {"pattern": pattern}]} if "pattern" in out \
                else {**out, "pattern": pattern}
    return out


def pydantic_spec(model: Any, **options: Any) -> JsonSchema:
    """A `guided.JsonSchema` for ``model`` (options as for `JsonSchema`; `GENERATION_DEFAULTS`
    unless given), remembering ``model`` so that `guided.generate` returns an instance of it."""
    return JsonSchema(pydantic_schema(model), **{**GENERATION_DEFAULTS, **options}).of_model(model)

