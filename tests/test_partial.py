"""stream="objects" and on_field: each value reported the moment the grammar completes it, in document order."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
from typing import Annotated, Literal, Optional

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

import guided
from guided import cli
from guided.errors import UsageError
from guided.partial import FieldTracker
from guided.testing import ScriptedModel


class Address(BaseModel):
    street: str
    zip: int


class Person(BaseModel):
    name: str
    born: datetime.date
    address: Address
    tags: list[str]
    friends: list[Address]
    score: float


DOC = ('{"name": "Ada", "born": "1815-12-10", "address": {"street": "Main St", "zip": 12345}, '
       '"tags": ["math", "code"], "friends": [{"street": "A", "zip": 1}, {"street": "B", "zip": 2}], "score": 9.5}')


def document_order(text: str) -> list[tuple[tuple, object, int]]:
    """Reference: every value of ``text`` with its path and the offset of its last byte, in the
    order values end (a container after its members), found with Python's JSON scanner."""
    decoder = json.JSONDecoder()
    out = []

    def walk(at: int, path: tuple) -> int:
        while text[at] in " \n\t\r":
            at += 1
        if text[at] == "{":
            at += 1
            value = {}
            while True:
                while text[at] in " \n\t\r,":
                    at += 1
                if text[at] == "}":
                    break
                key, at = decoder.raw_decode(text, at)
                at = text.index(":", at) + 1
                at = walk(at, path + (key,))
                value[key] = out[-1][1]
            out.append((path, value, at))
            return at + 1
        if text[at] == "[":
            at += 1
            value = []
            while True:
                while text[at] in " \n\t\r,":
                    at += 1
                if text[at] == "]":
                    break
                at = walk(at, path + (len(value),))
                value.append(out[-1][1])
            out.append((path, value, at))
            return at + 1
        value, end = decoder.raw_decode(text, at)
        out.append((path, value, end - 1))
        return end

    walk(0, ())
    return out


def test_callbacks_in_document_order_for_nested_objects_and_arrays():
    seen = []
    out = guided.generate(ScriptedModel([DOC]), "q", schema=Person, on_field=lambda p, v: seen.append((p, v)))
    assert out == Person.model_validate_json(DOC)
    assert seen == [(path, value) for path, value, _ in document_order(DOC)]
    assert seen[-1] == ((), json.loads(DOC))


def test_each_value_fires_the_moment_it_is_complete():
    """Byte by byte: a string at its closing quote, a literal at its last letter, a container at its
    bracket; a number when the next byte cannot extend it, or at once when none could."""
    schema = {"type": "object", "properties": {
        "s": {"type": "string"}, "n": {"type": "integer"}, "small": {"type": "integer", "maximum": 9},
        "b": {"type": "boolean"}, "a": {"type": "array", "items": {"type": "number"}},
        "o": {"type": "object", "properties": {"x": {"type": "null"}}}}}
    text = '{"s": "x,y", "n": 42, "small": 7, "b": true, "a": [1.5, 2], "o": {"x": null}}'
    fired = {}
    tracker = FieldTracker.for_spec(guided.JsonSchema(schema), on_field=lambda p, v: fired.setdefault(p, at))
    for at, byte in enumerate(text.encode()):
        tracker.feed(bytes([byte]))
    tracker.finish()
    expected = {path: end for path, _, end in document_order(text)}
    for path, end in expected.items():
        number = isinstance(json.loads(json.dumps(_at(json.loads(text), path))), (int, float)) and \
            not isinstance(_at(json.loads(text), path), bool)
        if number:  # (even "small", at most 9: an integer may be written 7.0)
            assert fired[path] == end + 1, path  # the byte after it ends the number
        else:
            assert fired[path] == end, path  # complete at its own last byte
    assert list(fired) == [p for p, _, _ in document_order(text)]


def _at(value, path):
    for k in path:
        value = value[k]
    return value


def test_partial_objects_are_typed_and_the_last_is_validated():
    partials = list(guided.generate(ScriptedModel([DOC]), "q", schema=Person, stream="objects"))
    assert partials[-1] == Person.model_validate_json(DOC)
    assert all(isinstance(p, Person) for p in partials)
    seen_fields = [set(p.model_fields_set) for p in partials]
    assert seen_fields == sorted(seen_fields, key=len) and seen_fields[0] == {"name"}
    born = next(p for p in partials if "born" in p.model_fields_set)
    assert born.born == datetime.date(1815, 12, 10)  # a complete field is validated to its type
    nested = next(p for p in partials if "address" in p.model_fields_set)
    assert isinstance(nested.address, Address) and nested.address.model_fields_set == {"street"}
    friends = [p for p in partials if "friends" in p.model_fields_set]
    assert all(isinstance(f, Address) for f in friends[0].friends)
    # one update per change: no two consecutive partials are the same
    dumps = [json.dumps(p.model_dump(mode="json", exclude_unset=True), sort_keys=True) for p in partials[:-1]]
    assert all(a != b for a, b in zip(dumps, dumps[1:]))


def test_json_schema_partials_are_plain_json():
    schema = {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "integer"}}}}
    text = '[{"k": 1}, {"k": 2}]'
    partials = list(guided.generate(ScriptedModel([text]), "q", json_schema=schema, stream="objects"))
    assert partials[0] == [{"k": 1}] and partials[-1] == json.loads(text)
    fmt = {"type": "json_schema", "json_schema": {"name": "k", "strict": True, "schema": {
        "type": "object", "properties": {"k": {"type": "integer"}}, "required": ["k"], "additionalProperties": False}}}
    assert list(guided.generate(ScriptedModel(['{"k": 3}']), "q", response_format=fmt, stream="objects")) == \
        [{"k": 3}, {"k": 3}]


def test_partials_after_a_thought():
    script = "<think>Ada it is {maybe}.</think>\n" + DOC
    seen = []
    partials = list(guided.generate(ScriptedModel([script]), "q", schema=Person, reasoning=("<think>", "</think>"),
                                    stream="objects", on_field=lambda p, v: seen.append(p), max_new_tokens=400))
    assert partials[-1] == Person.model_validate_json(DOC)
    assert seen == [p for p, _, _ in document_order(DOC)]


def test_random_documents_fire_for_every_value():
    word = {"type": "string", "maxLength": 6}
    schema = {"type": "object", "properties": {
        "name": word, "n": {"type": "integer", "minimum": 0, "maximum": 999},
        "tags": {"type": "array", "items": word, "maxItems": 3},
        "inner": {"type": "object", "properties": {"ok": {"type": "boolean"}, "x": {"type": ["number", "null"]}},
                  "required": ["ok", "x"], "additionalProperties": False}},
        "required": ["name", "n", "tags", "inner"], "additionalProperties": False}
    for seed in range(4):
        seen = []
        g = guided.generate(ScriptedModel(None, seed=seed), "q", json_schema=schema, temperature=1.0, seed=seed,
                            max_new_tokens=400, on_field=lambda p, v: seen.append((p, v)), details=True)
        assert seen == [(path, value) for path, value, _ in document_order(g.text)]


def same(a, b) -> bool:
    """JSON equality: ``true`` is not ``1`` (Python's ``==`` says it is); ``1`` is ``1.0``."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(same, a, b))
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def consistent(partial, final) -> bool:
    """``partial`` is a stage of ``final`` being written: every scalar in it is final, every key
    is one of final's, every member but the one still open (at most one per container) equals
    its final value, and a list is a prefix."""
    if isinstance(partial, dict):
        if not isinstance(final, dict) or not set(partial) <= set(final):
            return False
        still_open = [k for k in partial if not same(partial[k], final[k])]
        return len(still_open) <= 1 and all(consistent(partial[k], final[k]) for k in still_open)
    if isinstance(partial, list):
        if not isinstance(final, list) or len(partial) > len(final):
            return False
        last = len(partial) - 1
        return same(partial[:last], final[:last]) and (not partial or consistent(partial[last], final[last]))
    return same(partial, final)


def as_json(value):
    return value.model_dump(mode="json", exclude_unset=True) if isinstance(value, BaseModel) else value


def check_partials(partials: list, final) -> None:
    """Each partial is a stage of the final value and of the next partial; every one changes something."""
    assert partials and partials[-1] == final
    docs = [as_json(p) for p in partials]
    whole = as_json(final)
    for i, doc in enumerate(docs):
        assert consistent(doc, whole), (i, doc, whole)
    for before, after in zip(docs[:-2], docs[1:-1]):
        assert not same(before, after) and consistent(before, after), (before, after)


def test_consistent_is_strict_enough():
    final = {"a": [1, {"b": "x"}], "c": True}
    assert consistent({}, final) and consistent({"a": [1, {}]}, final) and consistent(final, final)
    assert not consistent({"a": [2]}, final)  # a scalar that is not the final one
    assert not consistent({"a": [{"b": "x"}]}, final)  # not a prefix of the list
    assert not consistent({"a": [1, {}], "c": False}, final)
    assert not consistent({"a": [1], "c": True, "d": 0}, final)  # a key final lacks
    assert not consistent({"c": 1}, final)  # true is not 1


def test_partials_of_a_nested_model_are_stages_of_the_final_instance():
    partials = list(guided.generate(ScriptedModel([DOC]), "q", schema=Person, stream="objects"))
    check_partials(partials, Person.model_validate_json(DOC))
    # every value of the document shows up: one partial per completed field or element, less
    # the closing brackets that complete a container without changing what is written
    scalars = [p for p, v, _ in document_order(DOC) if not isinstance(v, (dict, list))]
    assert len(partials) - 1 == len(scalars)


def test_on_field_while_streaming_text():
    """stream=True still yields text chunks; the callbacks fire as the chunks pass their values."""
    seen = []
    chunks = guided.generate(ScriptedModel([DOC]), "q", schema=Person, stream=True,
                             on_field=lambda p, v: seen.append((p, v, len(text))))
    text = ""
    for chunk in chunks:
        text += chunk
    assert text == DOC
    order = document_order(DOC)
    assert [(p, v) for p, v, _ in seen] == [(p, v) for p, v, _ in order]
    # one byte a token here: a callback fires in the step that writes the value's last byte (a
    # number's: the byte after it), before that step's chunk reaches the caller
    assert all(end <= written <= end + 1 for (_, _, written), (_, _, end) in zip(seen, order))


def test_keys_a_model_ignores_fire_but_change_no_partial():
    seen = []
    text = '{"street": "Main", "zip": 7, "extra": [1]}'
    open_address = guided.JsonSchema.from_pydantic(Address, closed=False)  # schema=Address is closed
    partials = list(guided.generate(ScriptedModel([text]), "q", schema=open_address, stream="objects",
                                    on_field=lambda p, v: seen.append(p)))
    assert seen == [("street",), ("zip",), ("extra", 0), ("extra",), ()]
    assert [p.model_dump(exclude_unset=True) for p in partials] == [  # the validated one last
        {"street": "Main"}, {"street": "Main", "zip": 7}, {"street": "Main", "zip": 7}]
    assert partials[-1] == Address(street="Main", zip=7)


# -- random shapes, written by ScriptedModel's random walk (hypothesis, derandomised) ----------------

NAMES = st.sampled_from(["a", "b", "name", "tags", "x1", "inner"])
LEAVES = st.sampled_from(["str", "int", "bool", "float", "int?", "enum"])


def _object(inner):
    """``("object", [(name, shape, optional)], closed)``: ``closed`` forbids other keys."""
    return st.tuples(st.just("object"), st.lists(st.tuples(NAMES, inner, st.booleans()), min_size=1, max_size=3,
                                                 unique_by=lambda f: f[0]), st.booleans())


SHAPES = st.recursive(LEAVES, lambda inner: st.one_of(st.tuples(st.just("array"), inner, st.integers(0, 3)),
                                                       _object(inner)), max_leaves=6)
ROOTS = _object(SHAPES)

RANDOM = settings(max_examples=12, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))


def shape_schema(shape) -> dict:
    """The JSON Schema of a shape: bounded strings and numbers, arrays of at most N items,
    objects whose optional flag makes a property optional (closed ones allow no other keys)."""
    leaves = {"str": {"type": "string", "maxLength": 5}, "int": {"type": "integer", "minimum": -50, "maximum": 500},
              "bool": {"type": "boolean"}, "float": {"type": "number", "minimum": 0, "maximum": 10},
              "int?": {"type": ["integer", "null"], "minimum": 0, "maximum": 9}, "enum": {"enum": ["x", "yz", 3]}}
    if isinstance(shape, str):
        return leaves[shape]
    if shape[0] == "array":
        return {"type": "array", "items": shape_schema(shape[1]), "maxItems": shape[2]}
    schema = {"type": "object", "properties": {name: shape_schema(s) for name, s, _ in shape[1]},
              "required": [name for name, _, optional in shape[1] if not optional]}
    return schema | ({"additionalProperties": False} if shape[2] else {})


def shape_model(shape, name="Root"):
    """The Pydantic type of a shape (every field required; objects become nested models that
    forbid other keys when closed, or ignore them, Pydantic's default)."""
    leaves = {"str": Annotated[str, StringConstraints(max_length=5)], "int": Annotated[int, Field(ge=-50, le=500)],
              "bool": bool, "float": Annotated[float, Field(ge=0, le=10)], "int?": Optional[Annotated[int, Field(ge=0, le=9)]],
              "enum": Literal["x", "yz"]}
    if isinstance(shape, str):
        return leaves[shape]
    if shape[0] == "array":
        return Annotated[list[shape_model(shape[1], name + "Item")], Field(max_length=shape[2])]
    fields = {field: (shape_model(s, name + field.title()), ...) for field, s, _ in shape[1]}
    return create_model(name, __config__=ConfigDict(extra="forbid" if shape[2] else "ignore"), **fields)


def _run(seed: int, **constraint):
    """One random document under ``constraint``: its `Generation` with the on_field calls seen on the way,
    and the stream of partials of the same decode (same seed)."""
    seen = []
    kw = dict(temperature=1.0, seed=seed, max_new_tokens=400)
    g = guided.generate(ScriptedModel(None, seed=seed), "q", details=True, on_field=lambda p, v: seen.append((p, v)),
                        **constraint, **kw)
    partials = list(guided.generate(ScriptedModel(None, seed=seed), "q", stream="objects", **constraint, **kw))
    return g, seen, partials


@RANDOM
@given(shape=SHAPES, seed=st.integers(0, 2**16))
def test_random_json_schemas_fire_once_per_value_and_stream_stages_of_the_result(shape, seed):
    schema = shape_schema(shape)
    g, seen, partials = _run(seed, json_schema=schema)
    assert g.finish_reason in ("stop", "closed_early")
    expected = [(path, value) for path, value, _ in document_order(g.text)]
    assert [p for p, _ in seen] == [p for p, _ in expected]  # each value once, in document order
    assert all(same(v, w) and same(v, _at(g.value, p)) for (p, v), (_, w) in zip(seen, expected))
    check_partials(partials, g.value)


@RANDOM
@given(shape=ROOTS, seed=st.integers(0, 2**16))
def test_random_models_stream_typed_stages_of_the_validated_instance(shape, seed):
    model = shape_model(shape)
    g, seen, partials = _run(seed, schema=model)
    assert isinstance(g.value, model)
    expected = [(path, value) for path, value, _ in document_order(g.text)]
    assert [p for p, _ in seen] == [p for p, _ in expected]
    assert all(same(v, w) for (_, v), (_, w) in zip(seen, expected))
    assert seen[-1][0] == () and same(g.value.model_validate(seen[-1][1]).model_dump(), g.value.model_dump())
    assert all(isinstance(p, model) for p in partials)
    check_partials(partials, g.value)


@pytest.mark.parametrize("kwargs,match", [
    ({"regex": "[a-z]+", "stream": "objects"}, "follow JSON"),
    ({"stream": "objects"}, "follow JSON"),
    ({"schema": Person, "on_field": "print"}, "on_field="),
    ({"schema": Person, "on_field": print, "n": 2, "temperature": 1.0}, "single prompt"),
    ({"schema": Person, "stream": "object"}, "stream="),
])
def test_streaming_arguments_are_checked(kwargs, match):
    with pytest.raises(UsageError, match=match):
        guided.generate(ScriptedModel(["x"]), "q", **kwargs)


def test_cli_stream_objects(monkeypatch, capsys, tmp_path):
    schema = tmp_path / "address.json"
    schema.write_text(json.dumps(Address.model_json_schema()))
    monkeypatch.setattr(guided, "load_model", lambda path=None, **kw: ScriptedModel(['{"street": "Main", "zip": 7}']))
    assert cli.main(["generate", "--schema", str(schema), "--stream", "objects", "an address"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines == [{"street": "Main"}, {"street": "Main", "zip": 7}, {"street": "Main", "zip": 7}]
    assert cli.main(["generate", "--regex", "x", "--stream", "objects", "p"]) == 2


@pytest.mark.model
def test_cli_stream_objects_on_the_default_model(tmp_path):
    schema = tmp_path / "address.json"
    schema.write_text(json.dumps(Address.model_json_schema()))
    done = subprocess.run([sys.executable, "-m", "guided.cli", "generate", "--schema", str(schema), "--stream",
                           "objects", "--max-new-tokens", "40", "Give an address as JSON."],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and Address.model_validate(lines[-1])
    assert all(set(a) <= set(b) for a, b in zip(lines, lines[1:]))
