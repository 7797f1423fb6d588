"""Numbers by value in every JSON spelling: negation, oneOf, if/then/else, const/enum, contains.

The JSON Schema front-end's rule (``docs/json-schema-coverage.md``, *Numbers*): over the
exponent-free spellings every number constraint is exact (accepted if and only if valid, the
value compared exactly), and an exponent spelling is accepted only where it is valid.  Each
property re-spells random values every way JSON allows (trailing and leading fraction zeros,
``-0``, exponents with either case, sign and leading zeros) and checks both halves against the
exact reference (`guided.frontends.jsonschema._exact`, i.e. `jsonschema` over exact numbers).
"""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guided.errors import GuidedError
from guided.frontends.jsonschema import JsonSchema, schema_to_ir
from guided.frontends.jsonschema._exact import is_valid, loads
from guided.ir.reference import accepts

DRAFT4 = "http://json-schema.org/draft-04/schema#"


def spellings(value: Decimal) -> list[str]:
    """Many JSON spellings of ``value``: plain, padded with zeros, signed zero, exponents."""
    sign = "-" if value < 0 else ""
    digits = format(abs(value).normalize(), "f") if value else "0"
    whole, _, frac = digits.partition(".")
    out = {sign + digits, sign + whole + "." + (frac or "0") + "00"}
    if value == 0:
        out |= {"-0", "-0.0", "0.000", "0e0", "-0E+3", "0.0e-7"}
    if value == 0:
        return sorted(out)
    mantissa = (whole + frac).lstrip("0")
    point = len(whole) if whole != "0" else -(len(frac) - len(frac.lstrip("0")))
    for shift in (-2, -1, 0, 1, 3):
        # value = 0.<mantissa> * 10**point = <m-with-point-after-(shift+1)-digits> * 10**exp
        head = max(shift + 1, 1)
        body = mantissa.ljust(head, "0")
        m = body[:head] + ("." + body[head:] if body[head:] else "")
        exp = point - head
        for e in ("e", "E"):
            out.add(f"{sign}{m}{e}{exp}")
            out.add(f"{sign}{m}{e}{'+' if exp >= 0 else '-'}0{abs(exp)}")
    return sorted(out)


def test_spellings_are_the_value():
    for v in ("0", "1", "-1", "10", "0.5", "-0.001", "123.25", "1E+3"):
        d = Decimal(v)
        for s in spellings(d):
            assert Decimal(s) == d and json.loads(s) is not None, (v, s)


VALUES = st.one_of(st.integers(-30, 30).map(Decimal),
                   st.tuples(st.integers(-400, 400), st.sampled_from([1, 2])).map(
                       lambda t: Decimal(t[0]).scaleb(-t[1])))
BOUND = st.one_of(st.integers(-12, 12), st.sampled_from([0.5, -2.5, 10, 0, 1.25]))


def leaf():
    return st.one_of(
        st.sampled_from([{"type": "integer"}, {"type": "number"}, {}]),
        BOUND.map(lambda b: {"minimum": b}), BOUND.map(lambda b: {"maximum": b}),
        BOUND.map(lambda b: {"exclusiveMinimum": b}), BOUND.map(lambda b: {"exclusiveMaximum": b}),
        st.sampled_from([2, 3, 0.5, 0.25]).map(lambda m: {"multipleOf": m}),
        BOUND.map(lambda b: {"const": b}),
        st.lists(BOUND, min_size=1, max_size=3).map(lambda v: {"enum": v}),
        st.builds(lambda a, b: {**a, **b}, st.sampled_from([{"type": "integer"}, {"type": "number"}]),
                  BOUND.map(lambda b: {"minimum": b})),
    )


SCHEMAS = st.recursive(
    leaf(),
    lambda inner: st.one_of(
        inner.map(lambda a: {"not": a}),
        st.builds(lambda a, b: {"oneOf": [a, b]}, inner, inner),
        st.builds(lambda a, b, c: {"if": a, "then": b, "else": c}, inner, inner, inner),
        st.builds(lambda a, b: {"allOf": [a, b]}, inner, inner),
    ),
    max_leaves=3,
)


def check(schema, texts, *, exact=True):
    """Every text accepted is valid; over the exact space every valid text is accepted."""
    spec = JsonSchema(schema)
    try:
        ir = schema_to_ir(spec)
    except GuidedError:
        return None
    ref = loads(spec.schema)
    for text in texts:
        got = accepts(ir, text.encode())
        valid = is_valid(ref, loads(text))
        assert not got or valid, f"invalid accepted: {text} under {schema}"
        if exact and valid and "e" not in text.lower():
            assert got, f"valid exponent-free spelling rejected: {text} under {schema}"
    return ir


@settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(SCHEMAS, st.lists(VALUES, min_size=1, max_size=4), st.booleans())
def test_value_constraints_exact_over_every_spelling(schema, values, draft4):
    if draft4:
        schema = {"$schema": DRAFT4, **schema}
        if isinstance(schema.get("exclusiveMinimum"), (int, float)) or "const" in json.dumps(schema) or \
                "exclusiveMaximum" in json.dumps(schema) or "if" in schema:
            return  # draft 4 spells these differently (or not at all)
    texts = [s for v in values for s in spellings(v)]
    # Draft 4 types spellings (1 is an integer, 1.0 is not): an enum value is produced only in
    # the spellings of its own type there, so only soundness is exact.
    check(schema, texts, exact=not draft4)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(leaf(), st.lists(VALUES, min_size=1, max_size=3), st.integers(0, 2), st.integers(0, 2))
def test_contains_counts_values_not_spellings(contains, values, min_c, extra):
    schema = {"type": "array", "items": {"type": "number"}, "contains": contains, "minContains": min_c,
              "maxContains": min_c + extra}
    rows = [s for v in values for s in spellings(v)]
    arrays = []
    for i in range(len(rows)):
        arrays.append(f"[{rows[i]}, {rows[(i * 7 + 3) % len(rows)]}]")
        arrays.append(f"[{rows[i]}]")
    check(schema, arrays)


@pytest.mark.parametrize("schema, texts", [
    ({"not": {"minimum": 10}}, ["4E2", "57e5", "10", "10.0", "1e1"]),
    ({"if": {"minimum": 0}, "then": False}, ["1e0", "0", "-0", "-0.0"]),
    ({"not": {"const": 1}}, ["1e0", "10e-1", "1.00", "1"]),
    ({"not": {"enum": [0]}}, ["-0", "0E0", "0.0", "0"]),
    ({"not": {"type": "integer"}}, ["1.0", "1E2", "-0.0"]),
    ({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 5}]}, ["7.0", "7", "5", "5.00"]),
    ({"type": "array", "contains": {"const": 1}, "maxContains": 1}, ["[1, 1e0]", "[1, 1.0]", "[1.00, 1]"]),
    ({"$schema": DRAFT4, "type": "integer", "enum": [0]}, ["0.0", "-0.0", "0e0"]),
    ({"$schema": DRAFT4, "enum": [1.0], "not": {"type": "integer"}}, ["1", "-0", "1e0"]),
    ({"$schema": DRAFT4, "type": "integer", "not": {"enum": [1.0]}}, ["1", "1.0"]),
])
def test_issue_cases_are_rejected(schema, texts):
    """The spellings issue 21 found accepted: each is invalid and now rejected."""
    ir = check(schema, texts)
    assert ir is not None
    for text in texts:
        assert not accepts(ir, text.encode()), text


def test_json_dumps_spellings_of_enum_values_walk_through():
    """``json.dumps`` writes 1e-05 and 100000000000.0: both are the enum's values and accepted."""
    schema = {"enum": [1e-05, 100000000000.0, 1.0, 1e+16]}
    ir = check(schema, [])
    for v in schema["enum"]:
        assert accepts(ir, json.dumps(v).encode())
    for text in ("0.00001", "0.000010", "100000000000", "1", "1.000", "10000000000000000"):
        assert accepts(ir, text.encode()), text


def test_integers_may_have_a_zero_fraction_from_draft_6_on():
    assert accepts(schema_to_ir(JsonSchema({"type": "integer", "minimum": 1})), b"2.00")
    assert not accepts(schema_to_ir(JsonSchema({"$schema": DRAFT4, "type": "integer"})), b"2.0")
    assert accepts(schema_to_ir(JsonSchema({"$schema": DRAFT4, "type": "integer"})), b"-0")
