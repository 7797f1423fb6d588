"""Exact JSON Schema validation: the `jsonschema` library with numbers compared by their value.

The specification compares numbers as mathematical values.  Python's `json` reads a number with
a fraction or an exponent as a double, which rounds (``0.99999999999999999999`` reads as 1.0)
and makes ``multipleOf`` with a fractional divisor inexact (``0.07 / 0.01`` is
``7.000000000000001``).  Here a number is read as a `decimal.Decimal`, ``integer`` means an
integral value (drafts 6 and later; drafts 3 and 4 count only spellings without a fraction or
exponent, as `jsonschema` decides) and ``multipleOf`` is decided exactly, whatever the size of
the exponent.  A float inside a schema object stands for its shortest spelling (``repr``), which
is what the schema's JSON text says.  ``pattern`` and ``patternProperties`` are read as ECMA-262
regexes, as the specification says (`jsonschema` uses Python's ``re``, whose ``$`` also matches
before a final newline and whose ``\\w`` is Unicode), by the front-end's own pattern automata.

This is the reference the JSON Schema front-end is tested against, and what it uses to filter
``enum`` values against their sibling keywords.

>>> schema = loads('{"multipleOf": 0.01, "maximum": 1}')
>>> [is_valid(schema, loads(x)) for x in ("0.07", "1.0000000000000000001", "1e-2")]
[True, False, True]
>>> is_valid({"pattern": "^a$"}, "a\\n"), is_valid({"pattern": "^\\\\w$"}, "é")
(False, False)
"""

from __future__ import annotations

import functools
import json
from decimal import Decimal
from typing import Any, Callable

import jsonschema
import jsonschema.validators

__all__ = ["ecma_search", "exact_validator_class", "is_multiple", "is_valid", "loads"]


def loads(text: str | bytes) -> Any:
    """JSON text with its numbers exact: integers as `int`, the others as `Decimal`."""
    return json.loads(text, parse_float=Decimal)


def _decimal(x) -> Decimal:
    if isinstance(x, Decimal):
        return x
    if isinstance(x, float):
        return Decimal(repr(x))
    return Decimal(x)


def is_multiple(value, divisor) -> bool:
    """Is ``value`` an integer multiple of ``divisor`` (> 0)?  Exact for any exponent.

    >>> is_multiple(Decimal("0.07"), 0.01), is_multiple(Decimal("1e999999999"), 3), is_multiple(5, Decimal("2.5"))
    (True, False, True)
    """
    x, d = _decimal(value), _decimal(divisor)
    if not x.is_finite() or not d.is_finite() or d == 0:
        return False
    _, x_digits, x_exp = x.as_tuple()
    _, d_digits, d_exp = d.as_tuple()
    mx = int("".join(map(str, x_digits)))
    md = int("".join(map(str, d_digits)))
    if mx == 0:
        return True
    shift = x_exp - d_exp  # value / divisor = (mx / md) * 10**shift
    if shift >= 0:
        # Beyond md's bit length more factors of 10 cannot change divisibility by md.
        return mx * pow(10, min(shift, md.bit_length()), md) % md == 0
    if -shift > len(str(mx)):
        return False  # md * 10**-shift > mx > 0
    return mx % (md * 10 ** -shift) == 0


def ecma_search(pattern: str, text: str) -> bool:
    """Does ``text`` contain a match of the ECMA-262 regex ``pattern``?  (`RegexError` if unsupported.)"""
    from guided.frontends.jsonschema._strings import pattern_content

    return pattern_content(pattern).fullmatch(json.dumps(text, ensure_ascii=False)[1:-1].encode())


@functools.cache
def exact_validator_class(base: type, search: Callable[[str, str], bool] | None = None) -> type:
    """``base`` (a `jsonschema` validator class) with exact ``integer`` and ``multipleOf``, and
    ECMA-262 ``pattern``, ``patternProperties`` and ``additionalProperties``: ``search(pattern,
    text)`` decides a pattern (default: the front-end's own automata, `ecma_search`; the
    soundness harness passes an independent ECMA-262 engine)."""
    search = search if search is not None else ecma_search
    old = base.META_SCHEMA.get("$schema", "") in (jsonschema.Draft3Validator.META_SCHEMA["$schema"],
                                                   jsonschema.Draft4Validator.META_SCHEMA["$schema"])

    def is_integer(checker, instance) -> bool:
        if isinstance(instance, bool):
            return False
        if isinstance(instance, int):
            return True
        if old:
            return False
        if isinstance(instance, float):
            return instance.is_integer()
        if isinstance(instance, Decimal):
            return instance.is_finite() and instance == instance.to_integral_value()
        return False

    def multiple_of(validator, divisor, instance, schema):
        if validator.is_type(instance, "number") and not is_multiple(instance, divisor):
            yield jsonschema.ValidationError(f"{instance!r} is not a multiple of {divisor}")

    def pattern(validator, patrn, instance, schema):
        if validator.is_type(instance, "string") and not search(patrn, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {patrn!r}")

    def pattern_properties(validator, patterns, instance, schema):
        if validator.is_type(instance, "object"):
            for patrn, sub in patterns.items():
                for name, value in instance.items():
                    if search(patrn, name):
                        yield from validator.descend(value, sub, path=name, schema_path=patrn)

    def additional_properties(validator, extra, instance, schema):
        if not validator.is_type(instance, "object"):
            return
        named, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
        extras = [k for k in instance if k not in named and not any(search(p, k) for p in patterns)]
        if validator.is_type(extra, "object"):
            for name in extras:
                yield from validator.descend(instance[name], extra, path=name)
        elif not extra and extras:
            yield jsonschema.ValidationError(f"additional properties are not allowed: {extras!r}")

    keywords = {"multipleOf": multiple_of, "pattern": pattern, "patternProperties": pattern_properties,
                "additionalProperties": additional_properties}
    return jsonschema.validators.extend(base, keywords,
                                        type_checker=base.TYPE_CHECKER.redefine("integer", is_integer))


def is_valid(schema: Any, instance: Any, *, formats: bool = True) -> bool:
    """Is ``instance`` valid under ``schema`` (both read with `loads`)?  ``formats``: assert them."""
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls = exact_validator_class(base)
    checker = cls.FORMAT_CHECKER if formats else None
    return cls(schema, format_checker=checker).is_valid(instance)
