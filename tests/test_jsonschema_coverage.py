"""Issue 17 (coverage, round 2), the JSON Schema normaliser: unknown formats, and combinators
that compile exactly in strict mode.  Every compiled schema is checked against `jsonschema`
(`guided.frontends.jsonschema._exact`: numbers exact, patterns ECMA-262, formats asserted) on
valid and invalid instances alike."""

from __future__ import annotations

import json
import warnings

import pytest

import guided
from guided import irstore
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


def check_exact(schema, instances, **options):
    """The compiled schema accepts exactly the instances `jsonschema` calls valid; returns how
    many of them were valid and invalid (a test must see both kinds)."""
    ir = compile_quietly(schema, **options)
    seen = {True: 0, False: 0}
    for value in instances:
        expected = is_valid(schema, value)
        got = accepts(ir, json.dumps(value).encode())
        assert got == expected, (schema, value, expected)
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
