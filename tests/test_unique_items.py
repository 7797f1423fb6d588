"""JSON Schema ``uniqueItems`` for any item schema (`guided.ir.UniqueItems`, `guided.engine.unique`).

Acceptance is checked against the ``jsonschema`` package on arrays written in several spellings
(``1`` and ``1.0``, object members reordered, string escapes); the engine byte by byte and the
reference recogniser must both agree with it.  Masks of finite item domains are searched
exhaustively for dead ends.  (Masks against the reference, token by token: `tests/test_oracle.py`.)
"""

from __future__ import annotations

import json
import random

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guided
from guided.engine.unique import UniqueGrammar
from guided.errors import InvalidIR
from guided.ir import CfgIR, UniqueItems, canonical_json
from guided.ir.reference import accepts, is_prefix

BYTES = guided.Vocabulary.from_token_bytes([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_ids=[256])
EOS = 256

SCHEMAS = {
    "integer": {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
    "number": {"type": "array", "items": {"type": "number"}, "uniqueItems": True, "maxItems": 5},
    "string": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
    "object": {"type": "array", "uniqueItems": True, "items": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}}}},
    "any": {"type": "array", "uniqueItems": True},
    "enum": {"type": "array", "items": {"enum": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "A"]},
             "uniqueItems": True},
    "nested": {"type": "object", "properties": {"rows": {"type": "array", "uniqueItems": True, "items": {
        "type": "array", "items": {"type": "integer"}, "uniqueItems": True}}}, "required": ["rows"]},
    "tuple": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "number"}],
              "items": {"type": "number"}, "uniqueItems": True, "minItems": 1},
}


def _spell(value, rng: random.Random, shuffle: bool = True) -> str:
    """``value`` as JSON text in one of its spellings (object members reordered if ``shuffle``:
    guided writes a schema's declared properties in their order)."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return rng.choice([str(value), f"{value}.0", f"{value}.00"] if value else ["0", "-0", "0.0"])
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(f"\\u{ord(c):04x}" if rng.random() < 0.3 and c.isalnum() else
                             json.dumps(c)[1:-1] for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_spell(v, rng, shuffle) for v in value) + "]"
    items = sorted(value.items())
    if shuffle:
        rng.shuffle(items)
    return "{" + ", ".join(f"{json.dumps(k)}: {_spell(v, rng, shuffle)}" for k, v in items) + "}"


SCALARS = st.one_of(st.integers(-3, 12), st.sampled_from([0.5, 1.5, -2.25]), st.sampled_from(["a", "b", "A", "ab"]),
                    st.booleans(), st.none())
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2)), max_leaves=6)
ITEMS = {
    "integer": st.integers(-3, 12), "number": st.one_of(st.integers(-3, 12), st.sampled_from([0.5, 1.5, 1.0])),
    "string": st.sampled_from(["a", "b", "A", "ab", "é", ""]),
    "object": st.fixed_dictionaries({}, optional={"a": st.integers(0, 3), "b": st.sampled_from(["x", "y"])}),
    "any": VALUES, "enum": st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "i", "A"]),
    "nested": st.lists(st.integers(0, 3), max_size=3), "tuple": st.integers(0, 6),
}


def _engine_accepts(grammar, text: bytes) -> bool:
    m = grammar.matcher()
    for b in text:
        if not m.mask()[b]:
            return False
        m.advance(b)
    return bool(m.mask()[EOS]) and m.accepts_eos()


@pytest.fixture(scope="module")
def compiled():
    out = {}
    for name, schema in SCHEMAS.items():
        spec = guided.JsonSchema(schema)
        ir = guided.compiler.lower(spec)
        assert ir.unique_items is not None, name
        out[name] = (schema, ir, guided.compile(spec, BYTES, engine="python"))
    return out


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_agrees_with_jsonschema(name, compiled, data):
    schema, ir, grammar = compiled[name]
    items = data.draw(st.lists(ITEMS[name], max_size=5))
    if items and data.draw(st.booleans()):  # a duplicate, often in another spelling
        items.insert(data.draw(st.integers(0, len(items))), data.draw(st.sampled_from(items)))
    rng = random.Random(data.draw(st.integers(0, 1 << 30)))
    text = _spell(items, rng, shuffle=name != "object")
    document = {"rows": items} if name == "nested" else items
    if name == "nested":
        text = '{"rows": ' + text + "}"
    valid = jsonschema.Draft202012Validator(schema).is_valid(json.loads(text))
    assert accepts(ir, text.encode()) == valid, text
    assert _engine_accepts(grammar, text.encode()) == valid, text
    assert json.loads(text) == document


@pytest.mark.parametrize("text,valid", [
    (b"[1, 1.0]", False), (b"[1, 1e0]", False), (b"[0, -0]", False), (b"[1, 10, 1]", False), (b"[1, 2, 3]", True),
    (b'[{"a": 1, "b": "x"}, {"b": "x", "a": 1.0}]', False), (b'[{"a": 1}, {"a": 1, "b": "x"}]', True),
    (b'["A", "\\u0041"]', False), (b'["\\u00e9", "\xc3\xa9"]', False), (b'["a", "A"]', True),
    (b"[true, 1]", True), (b"[false, 0, null, []]", True), (b"[[1, 2], [2, 1]]", True), (b"[[1, 2], [1, 2.0]]", False),
    (b'[{"a": [1]}, {"a": [1.0]}]', False), (b'[[], {}, "", 0, false, null]', True),
])
def test_equality_as_json_schema_defines_it(text, valid):
    ir = guided.compiler.lower(guided.JsonSchema(SCHEMAS["any"]))
    assert accepts(ir, text) == valid
    assert _engine_accepts(guided.compile(guided.JsonSchema(SCHEMAS["any"]), BYTES, engine="python"), text) == valid
    assert jsonschema.Draft202012Validator(SCHEMAS["any"]).is_valid(json.loads(text)) == valid


def test_a_duplicate_is_refused_at_the_byte_that_completes_it():
    ir = guided.compiler.lower(guided.JsonSchema(SCHEMAS["any"]))
    assert is_prefix(ir, b"[1, 1")  # may still be 10
    assert not is_prefix(ir, b"[1, 1 ") and not is_prefix(ir, b"[1, 1,") and not is_prefix(ir, b"[1, 1]")
    assert not is_prefix(ir, b'[{"a": 1}, {"a": 1}')  # the "}" cannot grow: it ends a duplicate
    assert is_prefix(ir, b'[{"a": 1}, {"a": 1')
    assert not is_prefix(ir, b'["x", "x"')
    assert not is_prefix(ir, b"[[1], [1]")
    assert is_prefix(ir, b"[[1], [1")


def test_canonical_json():
    assert canonical_json(b"1") == canonical_json(b"1.0") == canonical_json(b"10e-1")
    assert canonical_json(b"1") != canonical_json(b"true") and canonical_json(b"0") != canonical_json(b"false")
    assert canonical_json(b'{"a": 1, "b": [2]}') == canonical_json(b'{"b": [2.0], "a": 1}')
    assert canonical_json(b'"\\ud83d\\ude00"') == canonical_json('"\U0001F600"'.encode())
    assert canonical_json(b"[1, 2]") != canonical_json(b"[2, 1]")
    assert canonical_json(b"100000000000000000000000001") != canonical_json(b"100000000000000000000000000")


# -- no dead ends ------------------------------------------------------------------------------------


def _no_dead_ends(schema, tokens: list[bytes], prefix: bytes = b"", limit: int = 50_000) -> int:
    """Every configuration reachable through the masks (after ``prefix``) can still reach
    end-of-sequence; the number of configurations."""
    # Every printable ASCII byte as a token too (a vocabulary that cannot spell a value would
    # make dead ends of its own), but for space and backslash: whitespace runs and escapes would
    # multiply the configurations (the values all have plain spellings).
    tokens = list(dict.fromkeys(tokens + [bytes([b]) for b in range(0x21, 0x7F) if b != 0x5C]))
    vocab = guided.Vocabulary.from_token_bytes(tokens + [b"<eos>"], eos_token_ids=[len(tokens)])
    grammar = guided.compile(guided.JsonSchema(schema), vocab, engine="python")
    assert isinstance(grammar, UniqueGrammar)
    ok: dict = {}
    start = grammar.walk(grammar.start, prefix)
    assert start is not None
    order, seen, edges = [start], {start}, {}
    while order:
        config = order.pop()
        mask = grammar.words(config)
        allowed = np.flatnonzero(guided.engine.bitmask.unpack(mask, vocab.size))
        nxt = []
        for t in allowed.tolist():
            if t == len(tokens):
                ok[config] = True
                continue
            after = grammar.walk(config, tokens[t])
            assert after is not None, (config, tokens[t])
            nxt.append(after)
            if after not in seen:
                seen.add(after)
                order.append(after)
        edges[config] = nxt
        assert len(seen) < limit
    changed = True
    while changed:  # completable: EOS allowed, or a token leads to a completable configuration
        changed = False
        for config, nxt in edges.items():
            if config not in ok and any(n in ok for n in nxt):
                ok[config] = changed = True
    dead = [c for c in edges if c not in ok]
    assert not dead, f"{len(dead)} dead ends, e.g. after {dead[0].texts!r} {dead[0].lexeme!r}"
    return len(edges)


def test_no_dead_ends_enum_of_strings():
    values = ["a", "ab", "abc", "b", "ba", "c", "d", "e", "f"]  # 9: above the small-set construction
    schema = {"type": "array", "items": {"enum": values}, "uniqueItems": True, "maxItems": 2}
    tokens = [b"[", b"]", b",", b", ", b'"', b'"]', b'",', b"a", b"b", b"c", b"d", b"e", b"f", b'"a', b'"ab',
              b'"ab"', b'"b"', b"bc", b'c"']
    assert _no_dead_ends(schema, tokens) > 100
    del schema["maxItems"]
    assert _no_dead_ends(schema, tokens, prefix=b'["a", "b", "c", "d", "e"') > 10


def test_no_dead_ends_finite_domain_is_bounded():
    schema = {"type": "array", "items": {"anyOf": [{"type": "boolean"}, {"enum": ["x", "y", "z", "w", "v", "u", "t"]}]},
              "uniqueItems": True}
    ir = guided.compiler.lower(guided.JsonSchema(schema))
    assert ir.unique_items is not None  # nine values: checked at run time
    assert accepts(ir, b'[true,false,"x","y","z","w","v","u","t"]')
    assert not is_prefix(ir, b'[true,false,"x","y","z","w","v","u","t",')  # every value used: no ","
    tokens = [b"[", b"]", b",", b"true", b"false", b"tr", b"ue", b'"x"', b'"y"', b'"z"', b'"w"', b'"v"', b'"u"',
              b'"t"', b'"', b"x", b'"x']
    assert _no_dead_ends(schema, tokens, prefix=b'[true,false,"x","y","z"') > 10


# -- IR, routing, matcher ------------------------------------------------------------------------------


def test_ir_round_trip_and_validation():
    ir = guided.compiler.lower(guided.JsonSchema(SCHEMAS["nested"]))
    back = CfgIR.from_bytes(ir.to_bytes())
    assert back.unique_items == ir.unique_items and back.to_bytes() == ir.to_bytes()
    from dataclasses import replace

    with pytest.raises(InvalidIR, match="unique_items"):
        replace(ir, unique_items=UniqueItems(open_states=frozenset([ir.num_states]), item_rules=frozenset())).validate()
    with pytest.raises(InvalidIR, match="unique_items"):
        replace(ir, unique_items=UniqueItems(open_states=frozenset(), item_rules=frozenset([len(ir.rules)]))).validate()


def test_routing_by_engine():
    """Python asked: the Python unique-items engine; native asked: the core's (tests/test_native_unique.py)."""
    from guided.engine import native

    assert isinstance(guided.compile(guided.JsonSchema(SCHEMAS["integer"]), BYTES, engine="python"), UniqueGrammar)
    if native.available():
        g = guided.compile(guided.JsonSchema(SCHEMAS["integer"]), BYTES, engine="native")
        assert isinstance(g, native.NativeUniqueGrammar)


def test_matcher_copy_rollback_and_helpers():
    g = guided.compile(guided.JsonSchema(SCHEMAS["integer"]), BYTES, engine="python")
    m = g.matcher()
    for b in b"[1,2,":
        m.advance(b)
    c = m.copy()
    m.advance(ord("1"))
    assert not m.mask()[ord(",")] and m.mask()[ord("0")]
    assert c.mask()[ord("1")]
    m.rollback(1)
    assert m.mask()[ord("3")] and not m.mask()[ord("]")]
    for b in b"3]":
        m.advance(b)
    assert m.accepts_eos()
    c.advance(ord("1"))
    with pytest.raises(guided.ConstraintViolation):
        c.advance(ord("]"))
    assert m.closing_distance() == 0 and m.budget_mask(1)[EOS]
    assert g.matcher().closing_lower_bound() >= 1 and g.matcher().forced_bytes() in (b"", b"[")


def test_items_shared_with_an_alternative_without_unique_items_are_refused():
    schema = {"anyOf": [{"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
                        {"type": "array", "items": {"type": "integer"}, "minItems": 3}]}
    with pytest.raises(guided.UnsupportedSchema, match="uniqueItems"):
        guided.compiler.lower(guided.JsonSchema(schema))
    with pytest.warns(guided.RelaxedSchemaWarning, match="uniqueItems"):
        ir = guided.JsonSchema(schema, lenient=True).to_ir()
    assert accepts(ir, b"[1, 1, 1]") and not ir.unique_items.item_rules
    other = {"anyOf": [schema["anyOf"][0], {"type": "array", "items": {"type": "string"}}]}  # items differ: fine
    ir = guided.compiler.lower(guided.JsonSchema(other))
    assert accepts(ir, b'["a", "a"]') and accepts(ir, b"[1, 2]") and not accepts(ir, b"[1, 1]")


def test_counted_strings_inside_unique_items_keep_their_bounds():
    """Items holding long strings (counted terminals, `guided.ir.Count`): the unique-items engine
    starts each string's count like the CFG engine does, so the length bounds hold there too (a
    5,001-character string under maxLength 5,000 was once accepted)."""
    schema = {"type": "array", "uniqueItems": True,
              "items": {"type": "object", "properties": {"s": {"type": "string", "minLength": 300, "maxLength": 5000}}}}
    from guided.engine import native

    grammars = [guided.compile(guided.JsonSchema(schema), BYTES, engine="python")]
    if native.available():
        grammars.append(guided.compile(guided.JsonSchema(schema), BYTES, engine="native"))
    assert isinstance(grammars[0], UniqueGrammar)
    assert any(t.count is not None for t in grammars[0].ir.terminals)
    for value in ([{"s": "a" * 300}, {"s": "a" * 300 + "d"}], [{"s": "a" * 300}, {"s": "a" * 300}],
                  [{"s": "x" * 5001}], [{"s": "x" * 5000}], [{"s": "x" * 299}], [{"s": "é" * 5000}]):
        text = json.dumps(value, ensure_ascii=False).encode()
        for grammar in grammars:
            assert _engine_accepts(grammar, text) == jsonschema.Draft202012Validator(schema).is_valid(value)
        assert accepts(grammars[0].ir, text) == jsonschema.Draft202012Validator(schema).is_valid(value)
