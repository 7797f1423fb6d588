"""allOf/anyOf/oneOf products past ``max_alternatives``: taken again without their empty, repeated
and contained alternatives (`normalise.Normaliser.reduced_conj`), exactly: `jsonschema` and the
plain product (compiled under a larger cap) are the oracles."""

from __future__ import annotations

import itertools
import json
import pathlib
import random

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guided.frontends.jsonschema import JsonSchema, SchemaTooLarge, UnsupportedSchema, schema_to_ir
from guided.ir.reference import accepts

MASKBENCH = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "maskbench"
KEYS = ["a", "b", "c", "d", "e", "f", "g"]


def _objects(rng: random.Random, n: int) -> list[dict]:
    """Random objects over KEYS, keys in KEYS order: every subset of keys is likely among them."""
    values = [1, "x", None, [1], {"a": 1}]
    return [{k: rng.choice(values) for k in KEYS if rng.random() < 0.5} for _ in range(n)]


def _declared(schema: dict, keys=KEYS) -> dict:
    """``schema`` with every key named in order at the top: the declared property order is then
    the order of ``keys`` in every alternative, the order the test's objects have."""
    return {"properties": {k: True for k in keys}, "allOf": [schema]}


def _check_exact(schema: dict, docs: list, **options) -> None:
    """No invalid object accepted (`jsonschema`), and the same ones accepted as by the plain
    product (a cap it stays under): the unexpanded construction's language, the oracle for what
    the reduction may not lose (objects' keys in KEYS order, as the declared order wants)."""
    schema = _declared(schema)
    reduced = schema_to_ir(JsonSchema(schema, **options))
    plain = schema_to_ir(JsonSchema(schema, max_alternatives=1_000_000))
    valid = jsonschema.Draft202012Validator(schema)
    accepted = 0
    for doc in docs:
        text = json.dumps(doc).encode()
        ok = accepts(reduced, text)
        assert ok == accepts(plain, text), (schema, doc)
        assert not ok or valid.is_valid(doc), (schema, doc)
        accepted += ok
    assert accepted >= 3  # the check is not vacuous


def test_product_of_required_unions_past_the_cap_compiles_exactly():
    """allOf of three anyOfs over required keys: 7 x 7 x 6 merged, fewer distinct (a key set
    containing another's is dropped: {a, b} requires more than {a})."""
    schema = {"type": "object", "allOf": [{"anyOf": [{"required": [k]} for k in KEYS]},
                                          {"anyOf": [{"required": [k, KEYS[(i + 1) % 7]]} for i, k in enumerate(KEYS)]},
                                          {"anyOf": [{"required": [k]} for k in KEYS[1:]]}],
              "properties": {k: {"type": "integer"} for k in KEYS[:3]}}
    rng = random.Random(1)
    _check_exact(schema, _objects(rng, 150) + [{}, {"a": 1}, {"a": "x"}, [], "a"])


def test_one_of_whose_negations_multiply_drops_the_empty_ones():
    """oneOf of overlapping objects: each branch with the negations of the others, most of them
    contradicting the branch's own required keys or maxProperties."""
    schema = {"oneOf": [{"type": "object", "required": ["a", "b", "c"], "additionalProperties": False,
                         "properties": {k: {"type": "integer"} for k in "abc"}},
                        {"type": "object", "required": ["a"], "maxProperties": 2},
                        {"type": "object", "required": ["b", "d"], "properties": {"d": {"type": "string"}}},
                        {"type": "object", "required": ["e", "f"], "properties": {"e": {"type": "string"}}},
                        {"type": "object", "required": ["c", "e"], "not": {"required": ["f"]}}]}
    rng = random.Random(2)
    docs = _objects(rng, 150) + [{"a": 1, "b": 1, "c": 1}, {"a": 1}, {"b": 1, "d": "x"}, {"e": "x", "f": 1, "g": 1}]
    assert any(jsonschema.Draft202012Validator(schema).is_valid(d) for d in docs)
    _check_exact(schema, docs, max_alternatives=64)  # the plain product is past 64


def test_types_apart_multiply_to_a_sum():
    """Unions whose branches have different types: only same-type pairs survive the product."""
    strings = [{"type": "string", "maxLength": n} for n in range(1, 9)]
    objects = [{"type": "object", "required": [k]} for k in KEYS]
    schema = {"allOf": [{"anyOf": strings + objects}, {"anyOf": objects + strings}]}
    docs = ["", "abc", "abcdefghij", 3, None] + _objects(random.Random(3), 60)
    _check_exact(schema, docs, max_alternatives=32)  # 113 merged, 15 left


_LEAVES = st.sampled_from([
    {"type": "object"}, {"type": "string"}, {"required": ["a"]}, {"required": ["b"]}, {"required": ["a", "b"]},
    {"maxProperties": 1}, {"minProperties": 2}, {"properties": {"a": {"type": "integer"}}},
    {"properties": {"b": False}}, {"additionalProperties": False}, {"maxLength": 1}, {"minLength": 2},
    {"enum": [1, "a", {"a": 1}]}, True, False])


def _union(inner):
    return st.one_of(st.lists(inner, min_size=2, max_size=4).map(lambda xs: {"anyOf": xs}),
                     st.lists(inner, min_size=2, max_size=3).map(lambda xs: {"allOf": xs}),
                     st.lists(inner, min_size=2, max_size=3).map(lambda xs: {"oneOf": xs}),
                     inner.map(lambda x: {"not": x}))


_VALUES = st.one_of(st.sampled_from(["", "a", "ab", 1, None]),
                    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from([1, "x", None]), max_size=3))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.recursive(_LEAVES, _union, max_leaves=6), st.lists(_VALUES, min_size=4, max_size=10))
def test_reduced_products_accept_what_the_plain_product_accepts(schema, values):
    """A cap of 2 takes nearly every product through the reduction; its language is the plain
    product's (compiled under the default cap), and it admits no instance `jsonschema` rejects."""
    schema = _declared(schema, ["a", "b", "c"])
    try:
        plain = schema_to_ir(JsonSchema(schema))
    except Exception:  # noqa: BLE001  (refused either way: nothing to compare)
        return
    try:
        reduced = schema_to_ir(JsonSchema(schema, max_alternatives=2))
    except (SchemaTooLarge, UnsupportedSchema):  # still too many (oneOf: refused as inexpressible)
        return
    valid = jsonschema.Draft202012Validator(schema)
    for value in values:
        text = json.dumps(value, sort_keys=True).encode()
        assert accepts(reduced, text) == accepts(plain, text), (schema, value)
        if accepts(reduced, text):
            assert valid.is_valid(value), (schema, value)


def test_refusal_still_names_the_pointer():
    """Distinct alternatives past the cap are still refused, at the union's pointer."""
    schema = {"type": "object", "properties": {"p": {"allOf": [
        {"anyOf": [{"required": [k]} for k in KEYS]},
        {"anyOf": [{"required": [k + k]} for k in KEYS]}]}}}
    with pytest.raises(SchemaTooLarge, match=r"^/properties/p/allOf: .*49 distinct"):
        schema_to_ir(JsonSchema(schema, max_alternatives=40))


@pytest.mark.skipif(not MASKBENCH.is_dir(), reason="the shared MaskBench data is not here")
def test_maskbench_schema_refused_before_compiles():
    """Github_hard---o37789 (a oneOf branch with allOf of anyOfs over required keys and
    dependencies): 162 x 2 alternatives before, refused; now compiles, its valid objects accepted."""
    schema = json.loads((MASKBENCH / "Github_hard---o37789.json").read_text())["schema"]
    ir = schema_to_ir(JsonSchema(schema))
    plain = schema_to_ir(JsonSchema(schema, max_alternatives=1_000_000))
    valid = jsonschema.Draft7Validator(schema)
    order = list(schema["definitions"]["api"]["properties"])  # the declared order the output follows
    accepted = 0
    for n in (1, 2, 3):
        for keys in itertools.combinations(["type", "object", "namespace", "title", "extends"], n):
            doc = {"category": "core", **{k: ("tabris" if k == "namespace" else "X") for k in keys}}
            text = json.dumps({k: doc[k] for k in sorted(doc, key=order.index)}).encode()
            ok = accepts(ir, text)
            assert ok == accepts(plain, text), doc
            assert not ok or valid.is_valid(doc), doc
            assert ok or not valid.is_valid(doc), doc
            accepted += ok
    assert accepted >= 10
