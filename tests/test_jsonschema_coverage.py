"""Issue 17 (coverage, round 2), the JSON Schema normaliser: unknown formats, and combinators
that compile exactly in strict mode.  Every compiled schema is checked against `jsonschema`
(`guided.frontends.jsonschema._exact`: numbers exact, patterns ECMA-262, formats asserted) on
valid and invalid instances alike."""

from __future__ import annotations

import itertools
import json
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guided
from guided import irstore
from guided.errors import GuidedError
from guided.frontends.jsonschema import (
    JsonSchema,
    RelaxedSchemaWarning,
    UnknownFormatWarning,
    UnsupportedSchema,
    schema_to_ir,
    schema_to_ir_with_report,
)
from guided.frontends.jsonschema._exact import is_valid
from guided.integrations.serving import constraint_from_args
from guided.ir.reference import accepts


def compile_quietly(schema, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnknownFormatWarning)
        return schema_to_ir(JsonSchema(schema, **options))


def spellings(value) -> list[bytes]:
    """``value`` as JSON text with its top-level keys in every order (guided fixes one order of
    properties: a valid object counts as accepted when one of its orders is)."""
    if isinstance(value, dict) and 1 < len(value) <= 4:
        return [json.dumps(dict(p)).encode() for p in itertools.permutations(value.items())]
    return [json.dumps(value).encode()]


def check_exact(schema, instances, complete=True, **options):
    """The compiled schema accepts no instance `jsonschema` calls invalid (in any key order), and
    (``complete``) every valid one in some key order; returns how many were valid and invalid
    (a test must see both kinds)."""
    ir = compile_quietly(schema, **options)
    seen = {True: 0, False: 0}
    for value in instances:
        expected = is_valid(schema, value)
        got = [accepts(ir, text) for text in spellings(value)]
        if expected:
            assert any(got) or not complete, (schema, value, "valid, rejected")
        else:
            assert not any(got), (schema, value, "invalid, accepted")
        seen[expected] += 1
    return seen


# --- format: unknown formats are annotations -----------------------------------------------------


def test_unknown_formats_compile_as_plain_strings_and_warn_once_with_pointers():
    schema = {"type": "object", "properties": {
        "p": {"type": "string", "format": "path"},
        "s": {"type": "string", "format": "password", "minLength": 2},
        "d": {"type": "string", "format": "date"},
        "n": {"type": "integer", "format": "int32"},
        "l": {"type": "array", "items": {"type": "string", "format": "path"}}}}
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ir = schema_to_ir(JsonSchema(schema))
    found = [w for w in record if issubclass(w.category, UnknownFormatWarning)]
    assert len(found) == 1 and issubclass(UnknownFormatWarning, RelaxedSchemaWarning)
    message = str(found[0].message)
    assert "/properties/p: format 'path'" in message and "/properties/s: format 'password'" in message
    assert "/properties/l/items: format 'path'" in message
    assert "'date'" not in message and "int32" not in message  # known, or on a number: nothing to say
    assert accepts(ir, b'{"p": "any/thing", "s": "ab", "d": "2024-02-29", "n": 1, "l": ["", "x"]}')
    assert not accepts(ir, b'{"s": "a"}')  # the other string keywords still hold
    assert not accepts(ir, b'{"d": "2023-02-29"}')  # known formats stay exact
    assert not accepts(ir, b'{"p": 1}')
    # not relaxed keywords: the lenient report does not list them
    _, relaxed = schema_to_ir_with_report(JsonSchema(schema))
    assert relaxed == []


def test_unknown_formats_refused_on_request_naming_the_pointer():
    schema = {"type": "object", "properties": {"v": {"type": "string", "format": "positiveInteger"}}}
    with pytest.raises(UnsupportedSchema) as exc:
        schema_to_ir(JsonSchema(schema, unknown_formats="refuse"))
    assert exc.value.pointer == "/properties/v" and exc.value.keyword == "format"
    assert "positiveInteger" in str(exc.value)
    with pytest.raises(guided.UsageError):
        JsonSchema(schema, unknown_formats="yes")


@pytest.mark.parametrize("name", ["regex", "iri", "iri-reference", "idn-email", "idn-hostname", "uri-template"])
def test_formats_the_specification_defines_stay_refused(name):
    """Validators asserting formats check these: ignoring them would let invalid strings through."""
    for unknown_formats in ("ignore", "refuse"):
        with pytest.raises(UnsupportedSchema, match="defined by JSON Schema"):
            schema_to_ir(JsonSchema({"type": "string", "format": name}, unknown_formats=unknown_formats))


def test_draft3_format_names_stay_refused_there():
    draft3 = {"$schema": "http://json-schema.org/draft-03/schema#", "type": "string", "format": "host-name"}
    with pytest.raises(UnsupportedSchema):
        schema_to_ir(JsonSchema(draft3))
    compile_quietly({"type": "string", "format": "host-name"})  # unknown in later drafts


@pytest.mark.parametrize("schema", [
    {"type": "string", "format": "slug"},
    {"format": "slug", "maxLength": 3},
    {"anyOf": [{"type": "string", "format": "url"}, {"type": "integer"}]},
    {"allOf": [{"format": "date"}, {"format": "mongoId"}]},
    {"not": {"type": "string", "format": "color-hex"}},
    {"oneOf": [{"type": "string", "format": "semver"}, {"type": "string", "maxLength": 1}]},
    {"type": "object", "additionalProperties": {"type": "string", "format": "binary"}},
])
def test_unknown_formats_exact_against_jsonschema(schema):
    instances = ["", "a", "ab", "abcd", "2024-02-29", "2023-02-29", 1, 1.5, None, True, [], {},
                 {"k": "v"}, {"k": 1}]
    seen = check_exact(schema, instances)
    assert seen[True] and seen[False]


def test_unknown_formats_option_is_part_of_the_spec_and_its_keys():
    schema = {"type": "string", "format": "path"}
    a, b = JsonSchema(schema), JsonSchema(schema, unknown_formats="refuse")
    assert a.unknown_formats == "ignore" and a != b and hash(a) != hash(b)
    assert a.options()["unknown_formats"] == "ignore" and a.with_options(unknown_formats="refuse") == b
    plain = {"type": "string"}
    assert irstore.describe(JsonSchema(plain)) != irstore.describe(JsonSchema(plain, unknown_formats="refuse"))
    # a stored IR would skip the warning: such schemas stay in memory only, like lenient ones
    assert irstore.describe(a) is None and irstore.describe(b) is None
    spec = constraint_from_args({"guided_json": schema, "guided_options": {"unknown_formats": "refuse"}}).spec
    assert spec == b
    with pytest.raises(guided.SpecError):
        constraint_from_args({"guided_json": schema, "guided_options": {"unknown_formats": 1}})


def test_unknown_formats_warn_on_every_compilation(smollm2_vocab):
    schema = JsonSchema({"type": "string", "format": "x-unknown-format-test"})
    for _ in range(2):
        with pytest.warns(UnknownFormatWarning):
            guided.compile(schema, smollm2_vocab, cache=False)


# --- not over arrays and propertyNames; oneOf disjointness ------------------------------------

POOL = [None, True, 0, 1, 2, 2.5, -3, 3, 5, "", "a", "ab", "b", "abc", [], [1], ["a"], [1, "a"], ["a", 1], [1, 2], [1, 2, 3],
        ["a", "b", "c", "d"], [[1]], [{"a": 1}], {}, {"a": 1}, {"b": 1}, {"a": "x"}, {"b": "x"}, {"a": 1, "b": 2},
        {"a": "x", "b": "y"}, {"ab": 1}, {"kind": "x", "a": 1}, {"kind": "y"}, {"kind": "y", "a": 1}, {"kind": "x"},
        {"c": None}, {"a": [1]}, {"a": {"b": 1}}, {"x-1": 1}, {"x-1": "s"}, {"foo": 1, "x-1": 2}]


def test_property_names_with_not_rules_out_the_names_it_negates():
    """A 'not' inside propertyNames used to be ignored for keys beyond 'properties' (accepting
    {"a": 1} under propertyNames: {not: {pattern: a}})."""
    schema = {"type": "object", "properties": {"ab": {}}, "propertyNames": {"not": {"pattern": "a"}}}
    seen = check_exact(schema, POOL + [{"ab": 1, "c": 2}, {"c": 2}])
    assert seen[True] and seen[False]


@pytest.mark.parametrize("schema", [
    {"not": {"type": "array", "items": {"type": "integer"}}},
    {"not": {"items": {"type": "string"}}},
    {"not": {"type": "array", "prefixItems": [{"type": "integer"}], "items": False}},
    {"not": {"prefixItems": [{"type": "integer"}, {"type": "string"}]}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "not": {"items": [{"type": "integer"}],
                                                                    "additionalItems": False}},
    {"not": {"type": "array", "contains": {"type": "integer"}}},
    {"not": {"contains": {"type": "string"}, "minContains": 2}},
    {"not": {"type": "array", "contains": {"type": "integer"}, "minContains": 2, "maxContains": 3}},
    {"not": {"prefixItems": [{"type": "integer"}], "items": {"type": "string"}}},
    {"$schema": "http://json-schema.org/draft-07/schema#",
     "not": {"items": [{"type": "integer"}], "additionalItems": {"type": "string"}}},
    {"type": "array", "maxItems": 3, "not": {"prefixItems": [{"type": "integer"}, {}], "items": {"type": "integer"}}},
    {"not": {"not": {"prefixItems": [{"type": "integer"}], "items": {"type": "string"}}}},
    {"prefixItems": [{"type": "integer"}, {"type": "string"}], "contains": {"type": "string"}},
    {"prefixItems": [{"type": "integer"}], "items": {"type": "string"}, "contains": {"type": "integer"},
     "maxContains": 1},
    {"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "integer"}],
     "contains": {"type": "string"}},
    {"not": {"prefixItems": [{"type": "integer"}], "contains": {"type": "integer"}, "minContains": 2}},
    {"not": {"not": {"type": "integer", "minimum": 3}}},
    # a negation inside a negated scalar schema
    {"not": {"anyOf": [{"type": "integer", "not": {"minimum": 3}}, {"type": "string", "not": {"maxLength": 1}}]}},
    {"not": {"type": "string", "not": {"not": {"pattern": "a"}}}},
    {"oneOf": [{"type": "integer", "not": {"const": 2}}, {"type": "integer", "minimum": 1}]},
    {"not": {"not": {"type": "array", "items": {"type": "integer"}}}},
    {"type": "array", "items": {"not": {"items": {"type": "integer"}}}},
])
def test_not_over_items_and_contains_exact(schema):
    seen = check_exact(schema, POOL)
    assert seen[True] and seen[False]


@pytest.mark.parametrize("schema", [
    # required vs forbidden by additionalProperties: false
    {"oneOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                "additionalProperties": False},
               {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"],
                "additionalProperties": False}]},
    # required vs forbidden by a false property schema ('not required' reads so)
    {"oneOf": [{"type": "object", "required": ["a"]}, {"type": "object", "properties": {"a": False}}]},
    {"oneOf": [{"type": "object", "required": ["a"]}, {"type": "object", "not": {"required": ["a"]}}]},
    # a discriminator required by one side only
    {"oneOf": [{"type": "object", "properties": {"kind": {"const": "x"}, "a": {}}, "required": ["a", "kind"]},
               {"type": "object", "properties": {"kind": {"const": "y"}}}]},
    # forbidden by patternProperties / propertyNames
    {"oneOf": [{"type": "object", "required": ["x-1"]},
               {"type": "object", "patternProperties": {"^x-": False}}]},
    {"oneOf": [{"type": "object", "required": ["a"]}, {"type": "object", "propertyNames": {"maxLength": 0}}]},
    # several types on each side, kept apart type by type
    {"oneOf": [{"type": ["string", "object"], "maxLength": 1, "required": ["a"]},
               {"type": ["string", "object"], "minLength": 2, "properties": {"a": False}}]},
    # sizes apart
    {"oneOf": [{"type": "array", "maxItems": 1}, {"type": "array", "minItems": 2}]},
])
def test_one_of_proven_disjoint_compiles_exactly(schema):
    seen = check_exact(schema, POOL)
    assert seen[True] and seen[False]


def test_one_of_objects_apart_by_size_is_sound():
    """Disjoint, so compiled as the union of the branches; two object alternatives whose first
    keys overlap lose some valid documents (the grammar's lexer picks one key terminal), never
    admit an invalid one."""
    schema = {"oneOf": [{"type": "object", "maxProperties": 1},
                        {"type": "object", "minProperties": 2, "required": ["a"]}]}
    seen = check_exact(schema, POOL, complete=False)
    assert seen[True] and seen[False]


# --- not over additionalProperties, patternProperties, propertyNames (a witness key) -----------

OBJECTS = POOL + [{"foo": 1}, {"foo": "s"}, {"fo": 1, "foo": 2}, {"bar": [1]}, {"bar": 1}, {"x-1": "s", "a": 1},
                  {"aaa": 1, "b": "q"}, {"a": 1, "b": 2, "c": 3}, {"bb": False}, {"": 0}, {"ac": "x"}, {"ac": 1}]


@pytest.mark.parametrize("schema", [
    {"not": {"additionalProperties": False}},
    {"not": {"properties": {"a": {}}, "additionalProperties": False}},
    {"not": {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}}},
    {"not": {"patternProperties": {"^x-": {"type": "integer"}}}},
    {"not": {"patternProperties": {"b.*": False, "f.*": True}}},
    {"not": {"propertyNames": {"maxLength": 1}}},
    {"not": {"propertyNames": {"pattern": "^[ab]+$"}}},
    {"not": {"propertyNames": {"not": {"pattern": "a"}}}},
    {"type": "object", "properties": {"a": {}, "b": {}}, "not": {"properties": {"a": {}}, "additionalProperties": False}},
    {"type": "object", "maxProperties": 2, "not": {"patternProperties": {"^a": {"type": "integer"}}}},
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
     "not": {"additionalProperties": {"type": "integer"}}},
    {"oneOf": [{"type": "object", "properties": {"a": {}}, "additionalProperties": False},
               {"type": "object", "properties": {"b": {}}, "additionalProperties": False}]},
    {"type": "array", "items": {"not": {"additionalProperties": {"type": "integer"}}}},
])
def test_not_over_object_keywords_exact(schema):
    seen = check_exact(schema, OBJECTS + [[{"a": "x"}], [{"a": 1}], [{"a": "x"}, {"b": 2}]])
    assert seen[True] and seen[False]


def test_not_over_object_keywords_with_nested_witness_values_is_sound():
    """The witness branch and the others read the key "a" as one terminal and go on side by side
    (`rules.refine_overlaps`), but a container value (``{"a": [1]}``: the witness's array, the
    others' open array) ends in a reduce/reduce conflict that keeps one: valid documents may be
    lost there, never an invalid one admitted."""
    schema = {"not": {"additionalProperties": {"type": "integer"}, "patternProperties": {"f.o": {"minItems": 2}},
                      "properties": {"bar": {"type": "array"}, "foo": {"maxItems": 3}}}}
    seen = check_exact(schema, OBJECTS + [[{"a": "x"}], [{"a": 1}], [{"a": "x"}, {"b": 2}]], complete=False)
    assert seen[True] and seen[False]


def test_one_of_through_object_witnesses_is_sound():
    """Exactly one branch: each branch with the other's negation, two object alternatives whose
    key terminals overlap (the grammar keeps one reading of such a key: some valid documents are
    lost, as for any union of object schemas; never an invalid one admitted)."""
    schema = {"oneOf": [{"type": "object", "patternProperties": {"^a": {"type": "integer"}}},
                        {"type": "object", "propertyNames": {"maxLength": 1}}]}
    seen = check_exact(schema, OBJECTS, complete=False)
    assert seen[True] and seen[False]


@pytest.mark.parametrize("schema", [
    {"allOf": [{"not": {"additionalProperties": False}}, {"not": {"propertyNames": {"maxLength": 1}}}]},
    {"allOf": [{"not": {"properties": {"a": {}}, "additionalProperties": False}},
               {"not": {"patternProperties": {"^a": {"type": "integer"}}}},
               {"not": {"propertyNames": {"pattern": "^[ab]+$"}}}]},
    # three object branches: each with the negation of the two others (two witnesses each)
    {"oneOf": [{"type": "object", "properties": {"a": {}}, "additionalProperties": False},
               {"type": "object", "properties": {"b": {}}, "additionalProperties": False},
               {"type": "object", "properties": {"c": {}}, "additionalProperties": False}]},
])
def test_several_witness_keys_on_one_object(schema):
    seen = check_exact(schema, OBJECTS, complete="oneOf" not in schema)
    assert seen[True] and seen[False]


D7 = "http://json-schema.org/draft-07/schema#"


@pytest.mark.parametrize("schema", [
    {"not": {"enum": [{"a": 1}, {"b": "x"}, 3]}},
    {"not": {"const": {"a": 1, "b": 2}}},
    {"type": "object", "not": {"enum": [{"a": 1}, {}]}},
    {"not": {"enum": [[1], [1, "a"], []]}},
    {"$schema": D7, "not": {"enum": [[1], ["a", 1]]}},
    {"not": {"enum": [[1, 2, 3], [[1]], {"a": 1}, "a"]}},
    {"type": "array", "items": {"type": "integer"}, "not": {"const": [1, 2]}},
    {"type": "object", "not": {"type": "object", "required": ["b"], "enum": [{"a": 1}, {"b": 1}, {"b": "x"}]}},
    # draft 7 tuples merged with a negation of items
    {"$schema": D7, "items": [{"type": "integer"}], "not": {"items": [{"minimum": 2}]}},
])
def test_not_over_enums_of_objects_and_arrays_exact(schema):
    seen = check_exact(schema, OBJECTS)
    assert seen[True] and seen[False]


def test_not_over_object_keywords_lists_and_refuses_what_it_cannot():
    # more witnesses on one object than the limit: refused (not guessed), naming the place
    schema = {"allOf": [{"not": {"propertyNames": {"maxLength": n}}} for n in range(1, 8)]}
    with pytest.raises(UnsupportedSchema) as exc:
        schema_to_ir(JsonSchema(schema))
    assert exc.value.keyword == "not"
    # a negated witness (not inside not, through a reference)
    schema = {"$defs": {"d": {"not": {"additionalProperties": False}}}, "not": {"$ref": "#/$defs/d", "minProperties": 1}}
    try:
        ir = schema_to_ir(JsonSchema(schema))
    except UnsupportedSchema as exc:
        assert exc.keyword == "not"
    else:  # compiled: then exactly
        for value in OBJECTS:
            assert accepts(ir, json.dumps(value).encode()) <= is_valid(schema, value)
    # counted contains from a negation, combined with another contains: refused, not merged
    for schema in ({"type": "array", "contains": {"type": "string"},
                    "not": {"contains": {"type": "integer"}, "minContains": 2}},
                   {"contains": {"type": "integer"}, "not": {"prefixItems": [{"type": "integer"}],
                                                              "items": {"type": "string"}}}):
        with pytest.raises(UnsupportedSchema, match="contains"):
            schema_to_ir(JsonSchema(schema))


# --- randomised: whatever compiles admits no invalid instance ------------------------------------

_LEAVES = st.sampled_from([
    {"type": "integer"}, {"type": "string"}, {"type": "object"}, {"type": "array"}, {"minimum": 2},
    {"maxLength": 1}, {"required": ["a"]}, {"properties": {"a": {"type": "integer"}}}, {"properties": {"b": False}},
    {"additionalProperties": False}, {"additionalProperties": {"type": "string"}},
    {"patternProperties": {"^a": {"type": "string"}}}, {"propertyNames": {"maxLength": 1}},
    {"propertyNames": {"pattern": "^[ab]+$"}}, {"items": {"type": "integer"}}, {"prefixItems": [{"type": "string"}]},
    {"contains": {"type": "integer"}}, {"minItems": 2}, {"prefixItems": [{"type": "integer"}], "items": {"type": "string"}}, {"maxProperties": 1}, {"format": "unknown-format"},
    {"enum": [1, "a", {"a": 1}]}, {"const": [1, "a"]}, {"enum": [[], {"a": "a", "b": 1}]}, True, False])


def _combine(inner):
    return st.one_of(
        st.builds(lambda a, b: {"allOf": [a, b]}, inner, inner),
        st.builds(lambda a, b: {"oneOf": [a, b]}, inner, inner),
        st.builds(lambda a, b: {"anyOf": [a, b]}, inner, inner),
        st.builds(lambda a: {"not": a}, inner),
        st.builds(lambda a: {"items": a}, inner),
        st.builds(lambda a: {"additionalProperties": a}, inner),
        st.builds(lambda a: {"properties": {"a": a}}, inner),
        st.builds(lambda a, b: {"if": a, "then": b}, inner, inner),
    )


_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-1, 3) | st.text("ab", max_size=2),
                       lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "ab", "c"]), c,
                                                                             max_size=3), max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(st.recursive(_LEAVES, _combine, max_leaves=5), st.lists(_VALUES, max_size=6))
def test_random_combinators_admit_no_invalid_instance(schema, values):
    try:
        ir = compile_quietly(schema)
    except GuidedError:
        return
    for value in values:
        for text in spellings(value):
            if accepts(ir, text):
                assert is_valid(schema, value), (schema, value)


def test_pydantic_types_with_unknown_formats_compile_and_walk():
    """Pydantic's SecretStr, Path and bytes carry formats the specification does not define
    (password, path, binary): the Pydantic front-end knows Pydantic takes any string there, so
    they compile as plain strings without a warning; the model's own JSON output walks through."""
    import pathlib

    from pydantic import BaseModel, SecretStr

    from guided.frontends.pydantic import pydantic_spec

    class Upload(BaseModel):
        secret: SecretStr
        where: pathlib.Path
        data: bytes

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownFormatWarning)
        ir = schema_to_ir(pydantic_spec(Upload))
    instance = Upload(secret="s3cr3t", where=pathlib.Path("/tmp/x"), data=b"abc")
    text = instance.model_dump_json(round_trip=True)
    assert accepts(ir, text.encode())
    assert not accepts(ir, b'{"secret": 1, "where": "/tmp/x", "data": "abc"}')


def test_schema_warnings_point_at_the_users_line(smollm2_vocab):
    """The warning names the caller's file and line, not a line inside guided (here the caller
    may be conftest's wrapper of `guided.compile`: the first frame outside the package)."""
    import pathlib

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        guided.compile(guided.JsonSchema({"type": "string", "format": "no-such-format"}), smollm2_vocab, cache=False)
    unknown = [w for w in record if issubclass(w.category, guided.UnknownFormatWarning)]
    assert unknown and pathlib.Path(unknown[0].filename).parent == pathlib.Path(__file__).parent, \
        [w.filename for w in unknown]
