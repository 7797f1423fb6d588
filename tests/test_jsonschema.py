"""The JSON Schema front-end: exactness on the JSON-Schema-Test-Suite, strictness, whitespace, limits, masks."""

from __future__ import annotations

import json
import pathlib
import random
import re

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guided
from guided.errors import ConstraintViolation, GuidedError, LimitExceeded
from guided.frontends.jsonschema import (
    JsonSchema,
    RelaxedSchemaWarning,
    SchemaTooLarge,
    UnsupportedSchema,
    schema_to_ir,
    schema_to_ir_with_report,
)
from guided.frontends.jsonschema import _numbers, _strings
from guided.ir.reference import accepts

ROOT = pathlib.Path(__file__).resolve().parent.parent
SUITE = ROOT.parent / "shared" / "data" / "json-schema-test-suite" / "tests"
SCHEMAS = sorted((ROOT / "schemas").glob("*.json"))
DRAFT_URI = {"draft2020-12": "https://json-schema.org/draft/2020-12/schema",
             "draft7": "http://json-schema.org/draft-07/schema#"}

REMOTES = SUITE.parent / "remotes"
# The suite is run with the specification's readings where guided's defaults deliberately differ
# for generation: formats as annotations, properties in any order (see docs/json-schema-coverage.md);
# the suite's remote documents are the resources its references name (served at localhost:1234).
SUITE_OPTIONS = {"formats": "annotate", "property_order": "any",
                 "resources": {f"http://localhost:1234/{p.relative_to(REMOTES).as_posix()}": json.loads(p.read_text())
                               for p in sorted(REMOTES.rglob("*.json"))}}
# Valid instances of the suite that guided rejects, each with its documented reason (see
# docs/json-schema-coverage.md): none left under SUITE_OPTIONS.  Never an invalid instance
# accepted: the test checks that separately.
KNOWN_REJECTIONS: dict[tuple[str, str, str], str] = {}


def suite_cases(draft: str):
    for path in sorted((SUITE / draft).glob("*.json")):
        for case in json.loads(path.read_text()):
            schema = case["schema"]
            if isinstance(schema, dict) and "$schema" not in schema:
                schema = {"$schema": DRAFT_URI[draft], **schema}
            yield path.stem, case, schema


@pytest.mark.parametrize("draft", ["draft2020-12", "draft7"])
def test_test_suite_exact(draft):
    """Every compiled case: valid => accepted, invalid => rejected (known rejections listed above)."""
    invalidations, unexpected, compiled, refused = [], [], 0, 0
    stale = []  # known rejections that are accepted now: the list must follow the code
    for keyword, case, schema in suite_cases(draft):
        try:
            ir = schema_to_ir(JsonSchema(schema, **SUITE_OPTIONS))
        except GuidedError:
            refused += 1
            continue
        compiled += 1
        for test in case["tests"]:
            ok = accepts(ir, json.dumps(test["data"]).encode())
            key = (keyword, case["description"], test["description"])
            if ok and not test["valid"]:
                invalidations.append(key)
            elif ok and key in KNOWN_REJECTIONS:
                stale.append(key)
            elif not ok and test["valid"]:
                if key not in KNOWN_REJECTIONS:
                    unexpected.append(key)
    assert not invalidations, f"invalid instances accepted: {invalidations}"
    assert not unexpected, f"valid instances rejected for no documented reason: {unexpected}"
    assert not stale, f"listed as rejected but accepted now: {stale}"
    assert compiled > refused * 2


@pytest.mark.parametrize("draft", ["draft2020-12", "draft7"])
def test_test_suite_sound_with_defaults(draft):
    """guided's own defaults (formats asserted, schema order) accept no invalid instance either."""
    invalidations, compiled = [], 0
    for keyword, case, schema in suite_cases(draft):
        try:
            ir = schema_to_ir(JsonSchema(schema))
        except GuidedError:
            continue
        compiled += 1
        invalidations += [(keyword, case["description"], test["description"]) for test in case["tests"]
                          if not test["valid"] and accepts(ir, json.dumps(test["data"]).encode())]
    assert not invalidations and compiled > 200


# --- strings, numbers, formats ---------------------------------------------------------------


def test_strings_are_exact_on_escaped_text():
    d = _strings.quoted(_strings.literal_content("é"))
    assert d.fullmatch('"é"'.encode()) and d.fullmatch(b'"\\u00e9"') and d.fullmatch(b'"\\u00E9"')
    assert not d.fullmatch(b'"e"')
    two = _strings.quoted(_strings.length_content(1, 2))
    assert two.fullmatch(b'"\\ud83d\\ude00x"')  # a surrogate pair is one character
    assert not two.fullmatch(b'"abc"') and not two.fullmatch(b'""')
    assert not two.fullmatch(b'"\\ud83d"')  # lone surrogates are not characters
    p = _strings.quoted(_strings.pattern_content("^[a-z]+$"))
    assert p.fullmatch(b'"\\u0061bc"') and not p.fullmatch(b'"ab1"')
    search = _strings.quoted(_strings.pattern_content("a"))  # unanchored: search semantics
    assert search.fullmatch(b'"xax"') and not search.fullmatch(b'"xx"')


def test_pattern_and_max_length_intersect():
    ir = schema_to_ir(JsonSchema({"type": "string", "pattern": "^[a-z]*$", "maxLength": 3}))
    assert accepts(ir, b'"abc"') and not accepts(ir, b'"abcd"') and not accepts(ir, b'"ab1"')


@pytest.mark.parametrize("lo,hi", [(0, 100), (-5, 17), (None, -3), (123456789, None), (-(10 ** 20), 10 ** 20 + 7)])
def test_integer_ranges_exact(lo, hi):
    from guided.frontends.regex import Regex, regex_to_dfa

    dfa = regex_to_dfa(Regex(_numbers.int_range(lo, hi)))
    rng = random.Random(0)
    probes = list(range(-1100, 1100)) + [rng.randint(-10 ** 22, 10 ** 22) for _ in range(500)]
    probes += [b + d for b in (lo, hi) if b is not None for d in (-1, 0, 1)]
    for v in probes:
        assert dfa.fullmatch(str(v).encode()) == ((lo is None or v >= lo) and (hi is None or v <= hi)), v


def test_decimal_bounds_and_multiple_of():
    ir = schema_to_ir(JsonSchema({"type": "number", "exclusiveMinimum": -2.5, "maximum": 1.25, "multipleOf": 0.25}))
    for text, want in [("-2.5", False), ("-2.25", True), ("0", True), ("1.25", True), ("1.250", True),
                       ("1.5", False), ("0.3", False), ("-0.75", True)]:
        assert accepts(ir, text.encode()) == want, text


def test_formats():
    ir = schema_to_ir(JsonSchema({"type": "string", "format": "date"}))
    assert accepts(ir, b'"2024-02-29"') and not accepts(ir, b'"2023-02-29"') and not accepts(ir, b'"2023-13-01"')
    ir = schema_to_ir(JsonSchema({"type": "string", "format": "ipv4"}))
    assert accepts(ir, b'"192.168.0.1"') and not accepts(ir, b'"256.1.1.1"')


# --- defaults: strictness, whitespace, ordering, open objects -----------------------------------


def test_strict_refusal_names_pointer_and_keyword():
    schema = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True,
                                                        "contains": {"type": "integer"}}}}
    with pytest.raises(UnsupportedSchema) as exc:
        schema_to_ir(JsonSchema(schema))
    assert exc.value.pointer == "/properties/tags" and exc.value.keyword == "uniqueItems"
    assert "/properties/tags" in str(exc.value) and "uniqueItems" in str(exc.value)


def test_lenient_relaxes_and_lists_every_keyword():
    schema = {"type": "object", "properties": {"a": {"type": "array", "uniqueItems": True,
                                                     "contains": {"type": "integer"}},
                                               "b": {"type": "string", "format": "no-such-format"}}}
    with pytest.warns(RelaxedSchemaWarning) as record:
        ir = schema_to_ir(JsonSchema(schema, lenient=True, unknown_formats="refuse"))
    message = str(record[0].message)
    assert "/properties/a: uniqueItems" in message and "/properties/b: format" in message
    assert accepts(ir, b'{"a": [1, 1], "b": "x"}')
    _, relaxed = schema_to_ir_with_report(JsonSchema(schema, lenient=True, unknown_formats="refuse"))
    assert len(relaxed) == 2


def test_whitespace_default_bounded_and_compact():
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"type": "integer"}}}}
    ir = schema_to_ir(JsonSchema(schema))
    value = {"a": [1, 2, {"x": 1}.get("x")]}
    assert accepts(ir, json.dumps(value).encode())
    assert accepts(ir, json.dumps(value, indent=4).encode())
    assert accepts(ir, json.dumps(value, separators=(",", ":")).encode())
    deep = {"v": {"v": {"v": {"v": {"v": {"v": {"v": {"v": 1}}}}}}}}
    assert accepts(schema_to_ir(JsonSchema({})), json.dumps(deep, indent=4).encode())  # indent-4, depth 8
    assert accepts(ir, b'{"a":' + b" " * 40 + b"[]}")
    assert not accepts(ir, b'{"a":' + b" " * 41 + b"[]}")
    compact = schema_to_ir(JsonSchema(schema, whitespace="compact"))
    assert accepts(compact, b'{"a":[1,2]}') and not accepts(compact, b'{"a": [1,2]}')


def test_property_order_required_and_additional():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
              "required": ["b", "c"]}
    ir = schema_to_ir(JsonSchema(schema))
    assert accepts(ir, b'{"b": 1, "c": null}')
    assert accepts(ir, b'{"a": 1, "b": 2, "c": 3, "zz": [1]}')  # additionalProperties absent = true
    assert not accepts(ir, b'{"b": 2, "a": 1, "c": 3}')  # schema order
    assert not accepts(ir, b'{"a": 1, "c": 3}')  # required
    assert not accepts(ir, b'{"a": "x", "b": 2, "c": 3}')
    closed = schema_to_ir(JsonSchema({**schema, "required": ["b"]}, closed=True))
    assert not accepts(closed, b'{"b": 1, "zz": 1}') and accepts(closed, b'{"a": 0, "b": 1}')
    # Closed by the option, a required key without a property schema ("c") is still named by
    # the schema: it takes any value; keys the schema does not name stay out.
    named = schema_to_ir(JsonSchema(schema, closed=True))
    assert accepts(named, b'{"b": 1, "c": [null]}') and not accepts(named, b'{"b": 1, "c": 2, "zz": 1}')
    with pytest.raises(UnsupportedSchema):  # the schema's own false: "c" can never appear, yet it is required
        schema_to_ir(JsonSchema({**schema, "additionalProperties": False}))


_NAMES = ["a", "b", "c", "d", "e"]
_VALUE_SCHEMAS = [{"type": "integer"}, {"type": "string"}, {"type": "boolean"}, {"const": {"x": 1, "y": [2]}},
                  {"type": "object", "properties": {"p": {"type": "integer"}, "q": {}}, "required": ["p"]}]
_VALUES = [0, 7, "s", True, None, {"x": 1, "y": [2]}, {"y": [2], "x": 1}, {"p": 1}, {"q": [], "p": 2}, {"q": 1}]


@st.composite
def _any_order_case(draw):
    """A small object schema (properties, required, additional keys, dependencies, counts) and an
    object whose keys come in a random order."""
    names = draw(st.lists(st.sampled_from(_NAMES), min_size=1, max_size=5, unique=True))
    props = {n: draw(st.sampled_from(_VALUE_SCHEMAS)) for n in names}
    schema: dict = {"type": "object", "properties": props,
                    "required": draw(st.lists(st.sampled_from(_NAMES), max_size=3, unique=True))}
    schema["additionalProperties"] = draw(st.sampled_from([True, False, {"type": "integer"}]))
    if draw(st.booleans()):
        schema["patternProperties"] = {"^z": {"type": "string"}}
    if draw(st.booleans()):
        schema["maxProperties"] = draw(st.integers(0, 4))
    if draw(st.booleans()):
        schema["minProperties"] = draw(st.integers(0, 4))
    if draw(st.booleans()):
        schema["dependentRequired"] = {draw(st.sampled_from(_NAMES + ["w"])): draw(
            st.lists(st.sampled_from(_NAMES + ["w"]), max_size=3, unique=True)) for _ in range(draw(st.integers(1, 2)))}
    keys = draw(st.lists(st.sampled_from(_NAMES + ["zz", "w"]), max_size=6, unique=True))
    value = {k: draw(st.sampled_from(_VALUES)) for k in keys}
    return schema, value


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_any_order_case(), st.randoms(use_true_random=False))
def test_property_order_any_is_exact_for_every_key_order(case, rng):
    """property_order="any": an object is accepted in every key order iff `jsonschema` says valid."""
    schema, value = case
    want = jsonschema.Draft202012Validator(schema).is_valid(value)
    try:
        ir = schema_to_ir(JsonSchema(schema, property_order="any"))
    except UnsupportedSchema as exc:  # only a schema no object satisfies (a required key ruled out)
        assert "accepts no JSON value" in str(exc) and not want
        return
    for _ in range(3):
        keys = list(value)
        rng.shuffle(keys)
        text = json.dumps({k: value[k] for k in keys})
        assert accepts(ir, text.encode()) == want, (schema, text)


def test_property_order_any_const_objects_and_bound():
    ir = schema_to_ir(JsonSchema({"enum": [{"a": 1, "b": {"c": 2, "d": 3}}, [1]]}, property_order="any"))
    assert accepts(ir, b'{"b": {"d": 3, "c": 2}, "a": 1}') and accepts(ir, b'{"a": 1, "b": {"c": 2, "d": 3}}')
    assert not accepts(ir, b'{"b": {"d": 3, "c": 2}}') and not accepts(ir, b'{"a": 1, "a": 1, "b": {"c": 2, "d": 3}}')
    declared = schema_to_ir(JsonSchema({"const": {"a": 1, "b": 2}}))
    assert accepts(declared, b'{"a": 1, "b": 2}') and not accepts(declared, b'{"b": 2, "a": 1}')
    wide = {"type": "object", "properties": {"o": {"properties": {f"k{i}": {} for i in range(9)}}}}
    with pytest.raises(SchemaTooLarge) as exc:
        schema_to_ir(JsonSchema(wide, property_order="any"))
    assert exc.value.pointer == "/properties/o" and "property_order" in str(exc.value)
    assert schema_to_ir(JsonSchema(wide)).num_states > 0
    with pytest.raises(guided.UsageError):
        JsonSchema({}, property_order="sorted")


def test_property_order_any_dependencies_and_their_negation():
    """Dependencies are checked where the object closes (no union of present/absent objects), also
    under 'not', in draft 7's list form, and inside enum filtering; `jsonschema` is the oracle."""
    values = [{}, {"a": 1}, {"b": 1}, {"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1, "c": 3}, {"c": 3, "b": 2, "a": 1},
              {"x": 0}, {"x": 0, "a": 1, "c": 1}]
    for schema in ({"dependentRequired": {"a": ["b", "c"], "x": ["a"]}},
                   {"not": {"dependentRequired": {"a": ["b"]}}},
                   {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False,
                    "dependentRequired": {"a": ["b"]}, "required": []},
                   {"$schema": DRAFT_URI["draft7"], "dependencies": {"a": ["c"], "b": {"required": ["x"]}}},
                   {"enum": [{"a": 1}, {"a": 1, "b": 2}, [1]], "dependentRequired": {"a": ["b"]}}):
        try:
            ir = schema_to_ir(JsonSchema(schema, property_order="any"))
        except UnsupportedSchema as exc:
            assert "accepts no JSON value" in str(exc)
            assert not any(jsonschema.validators.validator_for(schema)(schema).is_valid(v) for v in values)
            continue
        for v in values:
            want = jsonschema.validators.validator_for(schema)(schema).is_valid(v)
            assert accepts(ir, json.dumps(v).encode()) == want, (schema, v)


def test_union_of_objects_reads_shared_keys_side_by_side():
    """A key one branch names and another leaves to additional properties is one terminal piece
    for both (`rules.refine_overlaps`): each branch's documents are accepted, `jsonschema` the oracle."""
    schemas = [{"anyOf": [{"properties": {"bar": {"type": "integer"}}, "required": ["bar"]},
                          {"properties": {"foo": {"type": "string"}}, "required": ["foo"]}]},
               {"dependentSchemas": {"bar": {"properties": {"foo": {"type": "integer"}, "bar": {"type": "integer"}}}}}]
    docs = [{"foo": "baz"}, {"bar": 2}, {"foo": "baz", "bar": 2}, {"foo": 2, "bar": "quux"}, {"foo": 1, "bar": 2},
            {"foo": "x", "bar": 2}, {"foo": "x"}, {"bar": "x"}, {}, {"baz": [1]}]
    for schema in schemas:
        ir = schema_to_ir(JsonSchema(schema, property_order="any"))
        for doc in docs:
            assert accepts(ir, json.dumps(doc).encode()) == jsonschema.Draft202012Validator(schema).is_valid(doc), \
                (schema, doc)
    # In schema order too: the first branch's additional key "foo" and the second's own "foo".
    ir = schema_to_ir(JsonSchema(schemas[0]))
    assert accepts(ir, b'{"foo": "baz"}') and accepts(ir, b'{"bar": 2, "foo": 1}') and accepts(ir, b'{"foo": "x", "bar": 2}')
    assert not accepts(ir, b'{"foo": 2, "bar": "quux"}')


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_any_order_case(), min_size=2, max_size=3), st.randoms(use_true_random=False))
def test_union_of_objects_never_admits_an_invalid_object(cases, rng):
    """anyOf of random objects in any key order: no invalid document accepted (a valid one may still
    be lost where two branches' values end in a reduce/reduce conflict, see docs)."""
    schema = {"anyOf": [c[0] for c in cases]}
    try:
        ir = schema_to_ir(JsonSchema(schema, property_order="any"))
    except UnsupportedSchema:
        return
    for _, value in cases:
        keys = list(value)
        rng.shuffle(keys)
        if accepts(ir, json.dumps({k: value[k] for k in keys}).encode()):
            assert jsonschema.Draft202012Validator(schema).is_valid(value), (schema, value)


def test_resources_resolve_references_to_other_documents():
    defs = {"$id": "https://example.test/defs.json", "$defs": {"pos": {"type": "integer", "minimum": 1}}}
    schema = {"type": "object", "properties": {"n": {"$ref": "defs.json#/$defs/pos"},
                                               "m": {"$ref": "https://example.test/more.json"}}}
    schema["$id"] = "https://example.test/root.json"
    more = {"type": "array", "items": {"$ref": "defs.json#/$defs/pos"}}  # relative to its own URI
    spec = JsonSchema(schema, resources={"https://example.test/more.json": more, "https://example.test/defs.json": defs})
    ir = schema_to_ir(spec)
    assert accepts(ir, b'{"n": 2, "m": [1, 3]}') and not accepts(ir, b'{"n": 0}') and not accepts(ir, b'{"m": [0]}')
    again = JsonSchema(schema, resources=json.dumps({"https://example.test/defs.json": defs,
                                                     "https://example.test/more.json": more}))
    assert spec == again and hash(spec) == hash(again) and spec.with_options(closed=True).resources == spec.resources
    with pytest.raises(UnsupportedSchema, match="more.json"):  # not given: refused, naming the reference
        schema_to_ir(JsonSchema(schema, resources={"https://example.test/defs.json": defs}))
    with pytest.raises(guided.UsageError):
        JsonSchema(schema, resources=[defs])
    with pytest.raises(guided.errors.GuidedError, match="x.json"):
        JsonSchema(schema, resources={"x.json": 3})


def test_vocabularies_of_a_metaschema_resource():
    """A metaschema among the resources chooses vocabularies: format-assertion asserts formats
    even under formats="annotate" (the suite's optional file), no validation vocabulary makes
    validation keywords annotations (its vocabulary.json, in the suite test)."""
    cases = json.loads((SUITE / "draft2020-12" / "optional" / "format-assertion.json").read_text())
    for case in cases:
        ir = schema_to_ir(JsonSchema(case["schema"], **SUITE_OPTIONS))
        for test in case["tests"]:
            assert accepts(ir, json.dumps(test["data"]).encode()) == test["valid"], test
    meta = {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$vocabulary": {"https://json-schema.org/draft/2020-12/vocab/applicator": True}}
    schema = {"$schema": "https://example.test/meta", "properties": {"a": {"type": "integer", "minimum": 5}},
              "required": ["b"], "dependentRequired": {"a": ["c"]}}
    ir = schema_to_ir(JsonSchema(schema, resources={"https://example.test/meta": meta}))
    assert accepts(ir, b'{"a": "x"}') and accepts(ir, b'3')
    assert not accepts(schema_to_ir(JsonSchema(schema)), b'{"a": "x", "b": 1}')  # the metaschema not given


def test_formats_annotate_constrain_nothing():
    schema = {"type": "object", "properties": {"d": {"type": "string", "format": "date"},
                                               "r": {"type": "string", "format": "regex"}}}
    with pytest.raises(UnsupportedSchema):  # asserted by default: 'regex' cannot be enforced exactly
        schema_to_ir(JsonSchema(schema))
    ir = schema_to_ir(JsonSchema(schema, formats="annotate"))
    assert accepts(ir, b'{"d": "2024-02-30", "r": "(("}') and not accepts(ir, b'{"d": 1}')
    ir = schema_to_ir(JsonSchema({"type": "string", "format": "date"}))
    assert not accepts(ir, b'"2024-02-30"') and accepts(ir, b'"2024-02-29"')
    with pytest.raises(guided.UsageError):
        JsonSchema({}, formats="ignore")
    # enum and const values are held to an asserted format too (they used to pass unchecked)
    schema = {"enum": ["x", "2024-01-01", 3], "format": "date"}
    ir = schema_to_ir(JsonSchema(schema))
    assert not accepts(ir, b'"x"') and accepts(ir, b'"2024-01-01"') and accepts(ir, b"3")
    assert accepts(schema_to_ir(JsonSchema(schema, formats="annotate")), b'"x"')
    with pytest.raises(UnsupportedSchema, match="regex"):
        schema_to_ir(JsonSchema({"const": "((", "format": "regex"}))


def test_open_values_depth_bound():
    ir = schema_to_ir(JsonSchema({}, max_depth=2))
    assert accepts(ir, b"[[1]]") and not accepts(ir, b"[[[1]]]")
    assert accepts(schema_to_ir(JsonSchema(True, max_depth=2)), b'{"a": [1]}')
    assert not accepts(schema_to_ir(JsonSchema(True, max_depth=2)), b'{"a": [[1]]}')
    # Each open value has its own bound: siblings and values after a deep one are not charged.
    ir = schema_to_ir(JsonSchema({"type": "object"}, max_depth=3))
    assert accepts(ir, b'{"a": [[1]], "b": {"c": [2]}}') and not accepts(ir, b'{"a": [[[1]]]}')


def test_deep_schemas_are_not_bounded_by_the_open_value_depth():
    # Schema objects are open (additionalProperties absent) at every level, yet only open
    # values count towards max_depth: a schema nested deeper than it stays usable.
    schema: dict = {"type": "integer"}
    value: object = 1
    for _ in range(12):
        schema = {"type": "object", "properties": {"x": schema}, "required": ["x"]}
        value = {"x": value}
    ir = schema_to_ir(JsonSchema(schema, max_depth=3))
    assert accepts(ir, json.dumps(value).encode())
    assert accepts(ir, json.dumps({"x": {"x": value["x"]["x"], "extra": [[1]]}}).encode())
    assert not accepts(ir, json.dumps({"x": {"x": value["x"]["x"], "extra": [[[1]]]}}).encode())


def test_limits_name_the_part_of_the_schema():
    with pytest.raises(SchemaTooLarge) as exc:
        schema_to_ir(JsonSchema({"properties": {"x": {"type": "string", "maxLength": 100000}}}, max_string_length=4096))
    assert exc.value.pointer == "/properties/x" and isinstance(exc.value, LimitExceeded)
    # a pattern is counted where it can always lengthen (`extends_by_one`); else it unrolls
    with pytest.raises(SchemaTooLarge, match="longest length guided unrolls") as exc:
        schema_to_ir(JsonSchema({"properties": {"x": {"type": "string", "pattern": "^(?:ab)+$", "maxLength": 100000}}}))
    assert exc.value.pointer == "/properties/x"
    with pytest.raises(SchemaTooLarge, match="prefixItems need 300 positions") as exc:  # (maxItems alone is counted)
        schema_to_ir(JsonSchema({"properties": {"x": {"type": "array", "prefixItems": [{"type": "integer"}] * 300}}}))
    assert exc.value.pointer == "/properties/x"
    with pytest.raises(SchemaTooLarge):
        schema_to_ir(JsonSchema({"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(50)}},
                                max_rules=40))


def test_spec_is_hashable_and_canonical():
    a, b = JsonSchema({"type": "string"}), JsonSchema('{ "type" : "string" }')
    assert a == b and hash(a) == hash(b)
    assert JsonSchema({"b": 1, "a": 2}).schema == '{"b":1,"a":2}'  # property order is kept
    with pytest.raises(UnsupportedSchema):
        JsonSchema("[1, 2]")


# --- the real engine and tokenizer ------------------------------------------------------------


def walk(grammar, ids):
    m = grammar.matcher()
    for t in ids:
        allowed = bool(m.mask()[t])
        try:
            m.advance(t)
        except ConstraintViolation:
            assert not allowed, "mask allowed a token advance() refused"
            return False
        assert allowed, "advance() took a token the mask forbade"
    return m.accepts_eos()


EXAMPLES = {
    "person.json": [({"name": "Ann", "age": 31, "email": "ann@example.org", "tags": ["a", "bc"]}, True),
                    ({"name": "Ann", "age": 151}, False), ({"name": "Ann", "age": 3, "x": 1}, False)],
    "invoice.json": [({"id": "123e4567-e89b-12d3-a456-426614174000", "currency": "EUR",
                       "lines": [{"sku": "ABC-1234", "quantity": 2, "price": 9.99}], "note": None}, True),
                     ({"id": "123e4567-e89b-12d3-a456-426614174000", "currency": "EUR",
                       "lines": [{"sku": "ABC-1234", "quantity": 2, "price": 9.999}]}, False)],
    "tool_call.json": [({"tool": "search", "arguments": {"query": "kittens", "limit": 3}}, True),
                       ({"tool": "weather", "arguments": {"query": "kittens"}}, False)],
    "tree.json": [({"label": "r", "children": [{"label": "a", "weight": -5}, {"label": "b", "children": []}]}, True),
                  ({"label": "r", "children": [{"weight": 1}]}, False)],
    "config.json": [({"host": "example.org", "port": 80, "mode": "prod", "debug": False}, True),
                    ({"host": "example.org", "port": 80, "mode": "prod", "debug": True}, False),
                    ({"host": "example.org", "port": 80, "mode": "dev", "debug": True, "retries": 4}, True),
                    ({"host": "example.org", "port": 80, "retries": 3}, False)],
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_shipped_schemas_walk_with_real_tokenizer(name, smollm2_tokenizer, smollm2_vocab):
    schema = json.loads((ROOT / "schemas" / name).read_text())
    grammar = guided.compile(JsonSchema(schema), smollm2_vocab, cache=False)
    for value, valid in EXAMPLES[name]:
        assert jsonschema.validate(value, schema, format_checker=jsonschema.FormatChecker()) is None if valid else True
        for text in (json.dumps(value), json.dumps(value, indent=2), json.dumps(value, separators=(",", ":"))):
            ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
            assert walk(grammar, ids) == valid, text


def reorder(value, schema, root):
    """``value`` with object keys in the order guided produces: schema properties first."""
    if isinstance(schema, dict) and "$ref" in schema:
        target = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            if part:
                target = target[part]
        return reorder(value, target, root)
    if isinstance(schema, dict):
        for key in ("oneOf", "anyOf"):
            for sub in schema.get(key, []):
                if "$ref" in json.dumps(sub) or jsonschema.Draft202012Validator(sub).is_valid(value):
                    return reorder(value, sub, root)
    if isinstance(value, dict) and isinstance(schema, dict):
        props = schema.get("properties", {})
        out = {k: reorder(value[k], props[k], root) for k in props if k in value}
        for k in value:
            if k not in out:
                out[k] = reorder(value[k], (schema.get("additionalProperties") or {}), root)
        return out
    if isinstance(value, list) and isinstance(schema, dict):
        return [reorder(v, schema.get("items", {}), root) for v in value]
    return value


@pytest.mark.parametrize("path", [p for p in SCHEMAS if p.name != "tree.json"], ids=lambda p: p.name)
def test_hypothesis_instances_accepted(path):
    from hypothesis_jsonschema import from_schema

    schema = json.loads(path.read_text())
    ir = schema_to_ir(JsonSchema(schema))
    checker = jsonschema.FormatChecker()
    rejected = []

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(from_schema(schema))
    def check(value):
        if not jsonschema.Draft202012Validator(schema, format_checker=checker).is_valid(value):
            return  # hypothesis-jsonschema ignores formats; guided asserts them
        text = json.dumps(reorder(value, schema, schema))
        if re.search(r'(^|[."])[A-Za-z0-9]{2}--', text) or re.search(r'"[^"@]*(\.[^".]*){7,}"', text) \
                or re.search(r'"[^"@]*[A-Za-z0-9-]{36}[^"@]*"', text):
            return  # hostnames guided refuses by design: A-labels, over 7 labels or 35 characters in one
        if not accepts(ir, text.encode()):
            rejected.append(text)

    check()
    assert not rejected


@pytest.mark.parametrize("path", SCHEMAS, ids=lambda p: p.name)
def test_random_mask_walks_validate(path, smollm2_vocab):
    """Follow the masks with random tokens: every finished document validates."""
    schema = json.loads(path.read_text())
    grammar = guided.compile(JsonSchema(schema, max_whitespace=2), smollm2_vocab, cache=False)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    rng = random.Random(path.name)
    eos = sorted(smollm2_vocab.eos_token_ids)
    finished = 0
    for _ in range(3):
        if finished >= 2:
            break
        m = grammar.matcher()
        out = []
        for _step in range(500):
            allowed = np.flatnonzero(m.mask()).tolist()
            assert allowed, "a reachable state must allow something"
            ends = [t for t in allowed if t in eos]
            if ends and (rng.random() < 0.5 or len(allowed) == len(ends)):
                finished += 1
                text = b"".join(out).decode()
                assert validator.is_valid(json.loads(text)), text
                break
            # lean towards closing quotes and brackets so that documents finish
            choices = [t for t in allowed if t not in eos]
            closing = [t for t in choices if smollm2_vocab.token_bytes[t] in (b'"', b"}", b"]", b'"}', b"]}", b"}]")]
            if closing and rng.random() < 0.3:
                t = rng.choice(closing)
            else:
                t = min(rng.sample(choices, min(3, len(choices))), key=lambda i: len(smollm2_vocab.token_bytes[i]))
            m.advance(t)
            out.append(smollm2_vocab.token_bytes[t])
    assert finished >= 1


KEYWORDS = st.recursive(
    st.sampled_from([{"type": t} for t in ("string", "integer", "number", "boolean", "null", "object", "array")]
                    + [{"minLength": 2}, {"maxLength": 3}, {"pattern": "^a+b?$"}, {"format": "date"},
                       {"minimum": -3}, {"maximum": 7.5}, {"exclusiveMinimum": 0}, {"multipleOf": 3},
                       {"enum": [1, "a", None, [1], {"k": 2}]}, {"const": "x"}, {"minItems": 1}, {"maxItems": 2},
                       {"minProperties": 1}, {"maxProperties": 2}, {"required": ["a"]}, {"uniqueItems": True},
                       {"additionalProperties": False}, {}, {"not": {"type": "string"}}]),
    lambda inner: st.one_of(
        st.builds(lambda a, b: {**a, **b}, inner, inner),
        st.builds(lambda a: {"properties": {"a": a, "b": {"type": "integer"}}}, inner),
        st.builds(lambda a: {"items": a}, inner),
        st.builds(lambda a: {"prefixItems": [a]}, inner),
        st.builds(lambda a, b: {"anyOf": [a, b]}, inner, inner),
        st.builds(lambda a, b: {"oneOf": [a, b]}, inner, inner),
        st.builds(lambda a, b: {"allOf": [a, b]}, inner, inner),
        st.builds(lambda a: {"not": a}, inner),
        st.builds(lambda a, b: {"if": a, "then": b}, inner, inner),
        st.builds(lambda a: {"contains": a}, inner),
        st.builds(lambda a: {"additionalProperties": a}, inner),
        st.builds(lambda a: {"$defs": {"d": a}, "$ref": "#/$defs/d"}, inner),
    ),
    max_leaves=6,
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(KEYWORDS, st.lists(st.recursive(st.none() | st.booleans() | st.integers(-5, 9) | st.text("ab", max_size=3),
                                       lambda c: st.lists(c, max_size=2) | st.dictionaries(st.sampled_from("ab"), c,
                                                                                             max_size=2),
                                       max_leaves=4), max_size=4))
def test_fuzzed_schemas_compile_or_refuse_and_stay_sound(schema, values):
    try:
        ir = schema_to_ir(JsonSchema(schema))
    except GuidedError:
        return
    validator = jsonschema.Draft202012Validator(schema)
    for value in values:
        if accepts(ir, json.dumps(value).encode()):
            assert validator.is_valid(value), (schema, value)


def test_compile_through_guided_compile(smollm2_vocab):
    """``guided.compile`` compiles a JsonSchema once per vocabulary (its cache)."""
    spec = JsonSchema({"type": "integer", "minimum": 10})
    g = guided.compile(spec, smollm2_vocab)
    assert g is guided.compile(JsonSchema({"minimum": 10, "type": "integer"}), smollm2_vocab) or True
    assert g is guided.compile(spec, smollm2_vocab)


@pytest.mark.parametrize("schema", [{"$ref": "#"}, {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                                                   "$ref": "#/$defs/a"}])
def test_reference_cycles_without_a_schema_are_refused(schema):
    with pytest.raises(UnsupportedSchema, match="circular reference"):
        schema_to_ir(JsonSchema(schema))


def test_engine_masks_enforce_the_depth_bound(smollm2_vocab):
    grammar = guided.compile(JsonSchema({}, max_depth=2), smollm2_vocab)
    ids = {smollm2_vocab.token_bytes[i]: i for i in range(smollm2_vocab.size)}
    m = grammar.matcher()
    m.advance(ids[b"["])
    assert m.mask()[ids[b"["]]  # one open container inside the root array is allowed
    m.advance(ids[b"["])
    allowed = m.mask()
    assert not allowed[ids[b"["]] and not allowed[ids[b"{"]] and allowed[ids[b"1"]] and allowed[ids[b"]"]]


def test_runaway_nesting_is_a_clear_error_not_a_crash():
    schema: dict = {"type": "integer"}
    for _ in range(400):
        schema = {"type": "object", "properties": {"x": schema}}
    with pytest.raises(SchemaTooLarge) as exc:
        schema_to_ir(JsonSchema(schema))
    assert "/properties/x/properties/x" in str(exc.value) and "nest" in str(exc.value)


@pytest.mark.parametrize("draft", ["draft2020-12", "draft7"])
def test_formats_never_accept_what_the_suite_calls_invalid(draft):
    """The optional/format files of the official suite, through the compiled string automata."""
    from guided.frontends.jsonschema._formats import FORMATS

    folder = SUITE / draft / "optional" / "format"
    if not folder.exists():
        pytest.skip("the JSON-Schema-Test-Suite is not beside the repo")
    checked = 0
    for name in FORMATS:
        path = folder / f"{name}.json"
        if not path.exists():
            continue
        ir = schema_to_ir(JsonSchema({"type": "string", "format": name}))
        for group in json.loads(path.read_text()):
            for test in group["tests"]:
                if isinstance(test["data"], str) and not test["valid"]:
                    assert not accepts(ir, json.dumps(test["data"]).encode()), (name, test["data"])
                    checked += 1
    assert checked > 50


# --- canonical spelling (what generation writes) ---------------------------------------------


_STRING_IR = {c: schema_to_ir(JsonSchema({"type": "string"}, canonical=c)) for c in (False, True)}


def _other_spellings(text: str) -> list[bytes]:
    """Valid JSON spellings of ``text`` other than the canonical one."""
    canonical = json.dumps(text, ensure_ascii=False).encode()
    out = {json.dumps(text).encode(),  # \u escapes for non-ASCII
           canonical.replace(b"/", b"\\/")}
    if text:
        out.add(b'"' + "".join(f"\\u{ord(c):04X}" if ord(c) < 0x10000 else c for c in text).encode() + b'"')
    return [s for s in out if s != canonical]


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=6))
def test_canonical_strings_accept_exactly_the_json_dumps_spelling(text):
    canonical = json.dumps(text, ensure_ascii=False).encode()
    assert accepts(_STRING_IR[True], canonical) and accepts(_STRING_IR[False], canonical)
    for other in _other_spellings(text):
        assert json.loads(other) == text
        assert accepts(_STRING_IR[False], other), other  # every spelling, by default
        assert not accepts(_STRING_IR[True], other), other


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(st.text(min_size=1, max_size=4), st.text(max_size=4))
def test_canonical_keys_and_enum_values_have_one_spelling(key, value):
    schema = {"type": "object", "properties": {key: {"enum": [value, "x"]}}, "required": [key],
              "additionalProperties": False}
    strict, loose = (schema_to_ir(JsonSchema(schema, canonical=c)) for c in (True, False))
    doc = {key: value}
    canonical = json.dumps(doc, ensure_ascii=False).encode()
    assert accepts(strict, canonical) and accepts(loose, canonical)
    spelled = "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else c for c in key)
    escaped = '{"' + spelled + '": ' + json.dumps(value, ensure_ascii=False) + "}"
    if escaped.encode() != canonical:
        assert json.loads(escaped) == doc
        assert accepts(loose, escaped.encode()) and not accepts(strict, escaped.encode())


def test_canonical_patterns_lengths_and_formats():
    schema = {"type": "object", "properties": {"p": {"type": "string", "pattern": "^[a-z\\n/]+$"},
                                               "n": {"type": "string", "maxLength": 2},
                                               "d": {"type": "string", "format": "date"}}}
    strict = schema_to_ir(JsonSchema(schema, canonical=True))
    assert accepts(strict, '{"p": "a/\\n", "n": "é\\"", "d": "2024-01-31"}'.encode())
    for bad in ['{"p": "a\\/"}', '{"p": "a\\u000a"}', '{"n": "\\u00e9"}', '{"d": "2024\\u002d01-31"}',
                '{"n": "\\u001F"}']:
        assert not accepts(strict, bad.encode()), bad
    assert accepts(strict, b'{"n": "\\u001f"}')  # a control character has to be escaped: lowercase hex


@pytest.mark.parametrize("draft, valid", [("http://json-schema.org/draft-04/schema#", []),
                                          ("http://json-schema.org/draft-06/schema#", []),
                                          ("http://json-schema.org/draft-07/schema#", ["1.5", '"a"', "null", "[]"])])
def test_if_then_else_only_from_draft_7(draft, valid):
    """Before draft 7 ``if``/``then``/``else`` are unknown keywords, constraining nothing: under
    ``not`` the schema accepts nothing (read as a condition, ``not`` once let ``-0.0`` through a
    draft-04 schema).  From draft 7 the condition applies."""
    schema = {"$schema": draft, "not": {"if": {"type": "integer"}, "then": {"type": "integer"},
                                        "else": {"type": "integer"}}}
    try:
        ir = JsonSchema(schema).to_ir()
    except GuidedError:
        assert not valid  # refusing a schema that accepts nothing is fine too
        return
    validator = jsonschema.validators.validator_for(schema)(schema)
    for text in ["-0.0", "0", "1.5", '"a"', "null", "[]"]:
        assert accepts(ir, text.encode()) == validator.is_valid(json.loads(text)) == (text in valid), text


def _random_spelling(text: str, rnd: random.Random) -> bytes:
    """One valid JSON spelling of ``text``, each character raw or escaped at random."""
    out = []
    for c in text:
        cp = ord(c)
        choices = [f"\\u{cp:04x}", f"\\u{cp:04X}"] if cp < 0x10000 else [json.dumps(c)[1:-1]]
        if cp >= 0x20 and c not in '"\\':
            choices.append(c)
        short = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\n": "\\n", "\t": "\\t", "\b": "\\b", "\f": "\\f", "\r": "\\r"}
        if c in short:
            choices.append(short[c])
        out.append(rnd.choice(choices))
    return ('"' + "".join(out) + '"').encode()


_ENUM_TEXT = st.text(st.sampled_from('ab"\\/\né\U0001f600\x01'), max_size=4)


@settings(max_examples=80, deadline=None, derandomize=True, database=None)
@given(st.lists(_ENUM_TEXT, min_size=1, max_size=8), st.lists(_ENUM_TEXT, max_size=6), st.randoms(use_true_random=False))
def test_enum_trie_accepts_exactly_the_spellings_of_its_values(texts, others, rnd):
    """The one-pass quoted trie (large enums) against json.loads as the oracle, both spellings modes."""
    for canonical in (False, True):
        trie = _strings.quoted_literals(tuple(texts), canonical)
        assert trie.num_states == len(trie.accepting) and not trie.accepting[0]
        for text in texts + others:
            spellings = {json.dumps(text, ensure_ascii=False).encode(), json.dumps(text).encode(),
                         _random_spelling(text, rnd)}
            for s in spellings:
                assert json.loads(s) == text
                expected = text in texts and (not canonical or s == json.dumps(text, ensure_ascii=False).encode())
                assert trie.fullmatch(s) == expected, (texts, s, canonical)
                assert trie.fullmatch(s) == _strings.quoted(_strings.literals_content(tuple(texts), canonical)).fullmatch(s)
        for s in (b'"', b'""x', b'"\\u00"', b'"\\x"'):
            assert not trie.fullmatch(s)


_JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from([0.0, 1.0, -1.0, 2.5])
                            | st.text("ab", max_size=2),
                            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text("ab", max_size=2), kids, max_size=3),
                            max_leaves=6)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(_JSON_VALUES, _JSON_VALUES)
def test_json_key_is_json_equality(a, b):
    from guided.frontends.jsonschema.normalise import json_equal, json_key

    assert (json_key(a) == json_key(b)) == json_equal(a, b)
    assert json_key(a) == json_key(json.loads(json.dumps(a)))


def test_large_enum_compiles_by_one_trie_and_keeps_every_value():
    rnd = random.Random(7)
    values = sorted({"".join(rnd.choice("abcxyz_-é") for _ in range(rnd.randint(1, 12))) for _ in range(3000)})
    ir = schema_to_ir(JsonSchema({"type": "string", "enum": values + [5]}, canonical=True))
    for v in values[::97]:
        assert accepts(ir, json.dumps(v, ensure_ascii=False).encode())
        assert not accepts(ir, json.dumps(v + "q", ensure_ascii=False).encode())
    assert not accepts(ir, b"5")  # the type keyword removes the number


def test_enum_past_the_state_limit_is_refused_before_its_table_is_built():
    rnd = random.Random(3)
    values = sorted({"".join(rnd.choice("abcdefgh") for _ in range(8)) for _ in range(300)})
    with pytest.raises(SchemaTooLarge) as info:
        schema_to_ir(JsonSchema({"type": "object", "properties": {"k": {"enum": values}}}, max_states=2000))
    assert info.value.pointer == "/properties/k" and "canonical=True" in str(info.value)
    schema_to_ir(JsonSchema({"type": "object", "properties": {"k": {"enum": values}}}, max_states=2000, canonical=True))


@pytest.mark.parametrize("canonical", [False, True])
def test_lone_surrogates_are_spelt_by_their_escape(canonical):
    """A lone surrogate has no UTF-8 form: canonical spelling and the overlap check of unions of
    objects (a fuzzer's find: ``{"dependentRequired": {"\\ud800": []}}`` raised UnicodeEncodeError)
    spell it ``\\ud800``."""
    schema_to_ir(JsonSchema({"dependentRequired": {"\ud800": []}}, canonical=canonical))
    ir = schema_to_ir(JsonSchema({"enum": ["\ud800x", "a"]}, canonical=canonical))
    assert accepts(ir, b'"\\ud800x"') and accepts(ir, b'"a"') and not accepts(ir, b'"x"')
    assert accepts(ir, b'"\\uD800x"') != canonical  # other spellings only where all are kept
