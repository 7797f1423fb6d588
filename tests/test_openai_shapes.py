"""OpenAI request shapes: response_format (strict mode's refusals included) and tools dicts with tool_choice."""

from __future__ import annotations

import json
import warnings

import jsonschema
import pytest
from pydantic import BaseModel

import guided
from guided.errors import SpecError, UsageError
from guided.frontends.strict import StrictSchemaError, check_strict
from guided.testing import ScriptedModel


def strict_object(properties: dict, **extra) -> dict:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False,
            **extra}


def json_schema_format(schema: dict, strict: bool = True, name: str = "answer") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": strict}}


PERSON = strict_object({"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0},
                        "email": {"type": ["string", "null"], "format": "email"},
                        "pets": {"type": "array", "items": strict_object({"kind": {"enum": ["cat", "dog"]}})}})



def test_strict_json_schema_is_enforced():
    script = '{"name": "Ada", "age": 36, "email": null, "pets": [{"kind": "cat"}]}'
    out = guided.generate(ScriptedModel([script]), "q", response_format=json_schema_format(PERSON))
    assert out == json.loads(script)
    for seed in range(3):  # random logits: whatever comes out obeys the schema
        value = guided.generate(ScriptedModel(None, seed=seed), "q", response_format=json_schema_format(PERSON),
                                max_new_tokens=200, temperature=1.0, seed=seed)
        jsonschema.validate(value, PERSON)


# Schemas strict mode refuses, and the reason OpenAI gives (its wording, "In context=(...), ...").
REFUSED = [
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
     "In context=(), 'additionalProperties' is required to be supplied and to be false."),
    (strict_object({"etymology": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]}}),
     "In context=('properties', 'etymology'), 'additionalProperties' is required to be supplied and to be false."),
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"],
      "additionalProperties": False},
     "In context=(), 'required' is required to be supplied and to be an array including every key in properties. "
     "Missing 'b'."),
    ({"type": "array", "items": {"type": "string"}}, "schema must be a JSON Schema of 'type: \"object\"'"),
    ({"anyOf": [strict_object({"a": {"type": "string"}})]}, "the root schema must not be 'anyOf'"),
    (strict_object({"a": {"type": "string", "minLength": 2}}), "In context=('properties', 'a'), 'minLength' is not "
                                                               "permitted."),
    (strict_object({"a": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}),
     "'uniqueItems' is not permitted."),
    (strict_object({"a": {"allOf": [{"type": "string"}]}}), "'allOf' is not permitted."),
    (strict_object({"a": {"type": "string", "format": "uri"}}), "'format' 'uri' is not permitted."),
    (strict_object({"a": {"type": "object", "patternProperties": {"x": {}}, "additionalProperties": False,
                          "properties": {}, "required": []}}), "'patternProperties' is not permitted."),
    (strict_object({"a": {"enum": list(range(1001))}}), "more than 1000 enum values"),
]


def _nested(depth: int) -> dict:
    node = strict_object({"leaf": {"type": "string"}})
    for _ in range(depth):
        node = strict_object({"child": node})
    return node


REFUSED.append((_nested(11), "nests more than 10 levels"))


@pytest.mark.parametrize("schema,reason", REFUSED)
def test_strict_mode_refuses_what_openai_refuses(schema, reason):
    with pytest.raises(StrictSchemaError) as info:
        guided.generate(ScriptedModel(["{}"]), "q", response_format=json_schema_format(schema, name="my_format"))
    assert str(info.value).startswith("Invalid schema for response_format 'my_format': ")
    assert reason in str(info.value)
    assert isinstance(info.value, guided.UnsupportedSchema) and info.value.pointer.startswith("#")


def test_strict_mode_accepts_what_openai_accepts():
    check_strict(PERSON, "p")
    check_strict(_nested(9), "deep")
    defs = {"type": "object", "properties": {"node": {"$ref": "#/$defs/node"}}, "required": ["node"],
            "additionalProperties": False,
            "$defs": {"node": strict_object({"value": {"type": "number", "minimum": 0, "multipleOf": 0.5},
                                             "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}})}}
    check_strict(defs, "recursive")
    script = '{"node": {"value": 1.5, "next": {"value": 2, "next": null}}}'
    assert guided.generate(ScriptedModel([script]), "q", response_format=json_schema_format(defs)) == json.loads(script)


def test_non_strict_relaxes_like_lenient():
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "object"},
                                                         "uniqueItems": True, "contains": {"type": "object"}}}}
    with pytest.raises(guided.UnsupportedSchema):  # guided's own strictness: not enforceable exactly
        guided.generate(ScriptedModel(["{}"]), "q", json_schema=schema)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = guided.generate(ScriptedModel(['{"items": [{}]}']), "q",
                              response_format=json_schema_format(schema, strict=False))
    assert out == {"items": [{}]}
    assert any(issubclass(w.category, guided.RelaxedSchemaWarning) for w in caught)


def test_json_object_text_and_pydantic_formats():
    out = guided.generate(ScriptedModel(None, seed=1), "q", response_format={"type": "json_object"},
                          temperature=1.0, seed=1, max_new_tokens=80)
    assert isinstance(out, dict)
    assert guided.generate(ScriptedModel(["just text"]), "q", response_format={"type": "text"}) == "just text"

    class Answer(BaseModel):
        city: str
        confidence: float

    out = guided.generate(ScriptedModel(['{"city": "Oslo", "confidence": 0.9}']), "q", response_format=Answer)
    assert out == Answer(city="Oslo", confidence=0.9)


@pytest.mark.parametrize("bad,error", [
    ("json", SpecError),
    ({"type": "xml"}, SpecError),
    ({"type": "json_schema"}, SpecError),
    ({"type": "json_schema", "json_schema": {"name": "has space", "schema": PERSON}}, SpecError),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": PERSON, "strict": "yes"}}, SpecError),
    ({"type": "json_schema", "json_schema": {"name": "a", "schema": PERSON, "stict": True}}, SpecError),
])
def test_malformed_response_formats(bad, error):
    with pytest.raises(error):
        guided.generate(ScriptedModel(["{}"]), "q", response_format=bad)


def test_response_format_is_one_constraint():
    with pytest.raises(UsageError, match="response_format= cannot be combined with regex"):
        guided.generate(ScriptedModel(["{}"]), "q", response_format={"type": "json_object"}, regex="x")


# -- tools -------------------------------------------------------------------------------------


def tool(name: str, properties: dict, required=None, **extra) -> dict:
    params = {"type": "object", "properties": properties,
              "required": list(properties) if required is None else required}
    return {"type": "function", "function": {"name": name, "description": name, "parameters": params, **extra}}


WEATHER = tool("get_weather", {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}}, ["city"])
TIME = tool("get_time", {"tz": {"type": "string"}})
CALL = '<tool_call>{{"name": "{}", "arguments": {}}}</tool_call>'


def test_tool_choice_auto_required_none_and_named():
    weather = CALL.format("get_weather", '{"city": "Oslo"}')
    calls = guided.generate(ScriptedModel([weather]), "q", tools=[WEATHER, TIME])
    assert calls == [guided.ToolCall("get_weather", {"city": "Oslo"})]
    assert guided.generate(ScriptedModel(["Hello!"]), "q", tools=[WEATHER, TIME], tool_choice="auto") == "Hello!"
    forced = guided.generate(ScriptedModel(["Hello!"]), "q", tools=[WEATHER, TIME], tool_choice="required",
                             max_new_tokens=80)
    assert isinstance(forced, list) and forced[0].name in ("get_weather", "get_time")
    # "none": the model wanted to call, it may not: a free answer without any call
    for seed in range(2):
        text = guided.generate(ScriptedModel([weather], seed=seed), "q", tools=[WEATHER, TIME], tool_choice="none",
                               max_new_tokens=60)
        assert isinstance(text, str) and "<tool_call>" not in text
    named = {"type": "function", "function": {"name": "get_time"}}
    out = guided.generate(ScriptedModel([weather]), "q", tools=[WEATHER, TIME], tool_choice=named, max_new_tokens=80)
    assert [c.name for c in out] == ["get_time"]


def test_parallel_tool_calls():
    two = CALL.format("get_weather", '{"city": "Oslo"}') + "\n" + CALL.format("get_time", '{"tz": "CET"}')
    both = guided.generate(ScriptedModel([two]), "q", tools=[WEATHER, TIME], tool_choice="required",
                           parallel_tool_calls=True)
    assert [c.name for c in both] == ["get_weather", "get_time"]
    one = guided.generate(ScriptedModel([two]), "q", tools=[WEATHER, TIME], tool_choice="required",
                          parallel_tool_calls=False)
    assert [c.name for c in one] == ["get_weather"]


def test_per_function_strict():
    loose = tool("lookup", {"q": {"type": "string"}}, [])  # q optional: strict mode wants it required
    loose["function"]["parameters"]["additionalProperties"] = False
    loose["function"]["strict"] = True
    with pytest.raises(StrictSchemaError, match=r"Invalid schema for function 'lookup': In context=\(\), 'required'"):
        guided.generate(ScriptedModel(["x"]), "q", tools=[loose])
    strict_ok = tool("lookup", {"q": {"type": "string"}}, strict=True)
    strict_ok["function"]["parameters"]["additionalProperties"] = False
    out = guided.generate(ScriptedModel([CALL.format("lookup", '{"q": "x"}')]), "q", tools=[strict_ok],
                          tool_choice="required")
    assert out == [guided.ToolCall("lookup", {"q": "x"})]
    unenforceable = tool("tagger", {"tags": {"type": "array", "items": {"type": "object"}, "uniqueItems": True,
                                             "contains": {"type": "object"}}})
    with pytest.raises(guided.UnsupportedSchema):
        guided.generate(ScriptedModel(["x"]), "q", tools=[unenforceable], tool_choice="required")
    relaxed = {**unenforceable, "function": {**unenforceable["function"], "strict": False}}
    out = guided.generate(ScriptedModel([CALL.format("tagger", '{"tags": [{}]}')]), "q", tools=[relaxed],
                          tool_choice="required")
    assert out == [guided.ToolCall("tagger", {"tags": [{}]})]


@pytest.mark.parametrize("kwargs,match", [
    ({"parallel_tool_calls": True}, "parallel_tool_calls= needs tools="),
    ({"tools": [WEATHER], "parallel_tool_calls": "yes"}, "parallel_tool_calls="),
    ({"tools": [WEATHER], "tool_choice": "sometimes"}, "tool_choice="),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {}}}, "tool_choice="),
    ({"tools": "get_weather"}, "takes a list of tools"),
])
def test_tool_arguments_are_checked(kwargs, match):
    with pytest.raises(guided.GuidedError, match=match):
        guided.generate(ScriptedModel(["x"]), "q", **kwargs)


@pytest.mark.model
def test_real_model_strict_response_format_with_details(smollm2_model):
    schema = strict_object({"city": {"type": "string"}, "country": {"type": "string"}})
    g = guided.generate(smollm2_model, "Name the capital of Japan and its country as JSON.",
                        response_format=json_schema_format(schema, name="capital"), max_new_tokens=60, details=True)
    jsonschema.validate(g.value, schema)
    assert g.value == json.loads(g.text) and g.finish_reason in ("stop", "closed_early")
    assert g.prompt_tokens > 0 and 0 < g.completion_tokens <= 60 and g.reasoning is None
