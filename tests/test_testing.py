"""Testing helpers: assert_matches / validate offsets, ScriptedModel."""

from __future__ import annotations

import pytest

import guided
from guided.testing import ScriptedModel, assert_matches, assert_not_matches
from guided.validate import validate

BROKEN = [  # (text, spec kwargs, offset of the first byte outside the language)
    ('{"a": 1,}', dict(grammar="json"), 8),
    ('{"a" 1}', dict(grammar="json"), 5),
    ('[1, 2', dict(grammar="json"), 5),
    ('{"é": tru}', dict(grammar="json"), 9),
    ("2024-1x-01", dict(regex=r"\d{4}-\d{2}-\d{2}"), 6),
    ("abc", dict(regex=r"ab"), 2),
    ("<r>line1\nline2 <a></b>", dict(format="xml"), 20),
    ("<a>\n  <b>x</c>", dict(format="xml"), 12),
]


@pytest.mark.parametrize("text,spec,offset", BROKEN)
def test_assert_matches_reports_exact_offset(text, spec, offset):
    with pytest.raises(AssertionError) as info:
        assert_matches(text, **spec)
    assert f"at offset {offset} " in str(info.value)
    r = assert_not_matches(text, **spec)
    assert r.offset == offset
    before = text[:offset]
    assert (r.line, r.column) == (before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1)


def test_validate_ok_and_expected():
    assert validate("[1, 2]", grammar="json").ok
    r = validate("[1, 2", grammar="json")
    assert "]" in r.expected and "," in r.expected and "the text ends too early" in r.message


def test_validate_accepts_keys_in_any_order_as_jsonschema_does():
    """JSON objects are unordered: `validate` agrees with `jsonschema` on every key order, and where
    an object has too many properties for any order it says the order was checked as declared."""
    import itertools
    import json

    import jsonschema

    schema = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"},
                                               "c": {"type": "boolean"}},
              "required": ["a", "b"], "additionalProperties": False}
    values = {"a": 1, "b": "x", "c": True}
    for n in range(4):
        for keys in itertools.permutations(values, n):
            text = json.dumps({k: values[k] for k in keys})
            assert validate(text, json_schema=schema).ok == jsonschema.Draft202012Validator(schema).is_valid(
                json.loads(text)), text
    wide = {"type": "object", "properties": {k: {"type": "integer"} for k in "abcdefghij"}}
    assert validate('{"a": 1, "j": 2}', json_schema=wide).ok
    r = validate('{"j": 1, "a": 2}', json_schema=wide)
    assert not r.ok and "keys checked in declared order: any order stopped at #: property_order='any'" in r.message


def test_scripted_model_follows_the_script_under_constraints():
    model = ScriptedModel(['{"city": "Oslo"}', "not json at all"])
    regex = r'\{"city": "[A-Za-z]+"\}'
    assert guided.generate(model, "Where?", regex=regex) == '{"city": "Oslo"}'
    off_script = guided.generate(model, "Again", regex=regex, max_new_tokens=40)
    assert_matches(off_script, regex=regex)  # the constraint still holds when the script breaks it
    assert len(model.calls) == 2


def test_scripted_model_random_is_deterministic_and_works_with_any_tokenizer(smollm2_tokenizer):
    a = ScriptedModel(seed=3, tokenizer=smollm2_tokenizer)
    b = ScriptedModel(seed=3, tokenizer=smollm2_tokenizer)
    kw = dict(grammar="json", temperature=1.0, seed=0, max_new_tokens=30)
    assert guided.generate(a, "x", **kw) == guided.generate(b, "x", **kw)
    calls = guided.generate(ScriptedModel(['<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>']), "x",
                            tools=[lambda_tool()], max_new_tokens=120)
    assert calls[0].name == "f" and calls[0].arguments == {"x": 1}


def lambda_tool():
    def f(x: int) -> int:
        return x

    return f


def test_scripted_xml():
    model = ScriptedModel(["<a><b>hi</b></a>"])
    assert guided.generate(model, "x", format="xml") == "<a><b>hi</b></a>"


def test_plugin_fixtures(scripted_model, assert_matches):
    """The fixtures come from the pytest11 entry point that installing guided registers."""
    model = scripted_model(["42"])
    out = guided.generate(model, "n?", regex=r"\d+")
    assert_matches(out, regex=r"\d+")
    assert out == "42"
