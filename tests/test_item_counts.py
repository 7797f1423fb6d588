"""Item counts (`guided.ir.ItemCounts`, rule 12): JSON Schema's minItems/maxItems past what the
front-end unrolls, kept as a count per open array in the IR, the reference recogniser and the
Python engine (`guided.engine.counts`).

Oracles: the unrolled grammar (the front-end's own construction below `COUNTED_ITEMS_FROM`) for
masks, bit for bit; the reference recogniser for every token of a small vocabulary along random
walks; `jsonschema` for which arrays of random length around the bounds are valid.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guided
from guided.compiler import engine_for
from guided.engine import native
from guided.engine.counts import CountsGrammar
from guided.engine.matcher import UNREACHABLE
from guided.errors import InvalidIR
from guided.frontends.jsonschema import rules as _rules
from guided.frontends.jsonschema.errors import SchemaTooLarge, UnsupportedSchema
from guided.ir import CfgIR, ItemCounts, UniqueItems
from guided.ir import serialize
from guided.ir.reference import accepts, is_prefix
from tests import fuzzing as F
from tests.reference_walks import piece_vocabulary, walk_with_reference
from tests.test_ir import _body, _rewrite


def _ir(schema: dict, counted_from: int | None = None) -> CfgIR:
    """The schema's IR, with arrays counted past ``counted_from`` items (default: the module's)."""
    if counted_from is None:
        return guided.JsonSchema(schema).to_ir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_rules, "COUNTED_ITEMS_FROM", counted_from)
        return guided.JsonSchema(schema).to_ir()


def _ints(lo: int, hi: int | None, **more) -> dict:
    s = {"type": "array", "items": {"type": "integer"}, "minItems": lo, **more}
    if hi is not None:
        s["maxItems"] = hi
    return s


SMALL = [
    _ints(2, 4),
    _ints(0, 1),
    _ints(3, None),
    _ints(1, 1),
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": {"type": "integer"},
     "minItems": 1, "maxItems": 4},
    {"type": "array", "items": _ints(1, 2), "minItems": 2, "maxItems": 3},  # nested, different bounds
    {"type": "object", "properties": {"a": _ints(0, 2), "b": {"type": "array", "items": {"type": "string"},
                                                              "minItems": 2}}, "required": ["a"]},
    {"type": "array", "items": {"anyOf": [{"type": "null"}, _ints(0, 2)]}, "maxItems": 3},
    {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 2},  # "," and "]" in strings
    {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}, "b": _ints(0, 1)},
                                "required": ["a"]}, "minItems": 1, "maxItems": 2},
    {"type": "array", "items": {}, "maxItems": 2},  # open values inside: arrays of their own, uncounted
    {"type": "array", "items": {"type": "integer"}, "contains": {"minimum": 5}, "minContains": 1, "maxContains": 2,
     "minItems": 2},
    {"type": "array", "items": {"type": ["integer", "string"]}, "contains": {"type": "string"}, "minContains": 0,
     "maxContains": 1, "maxItems": 3},
]


@pytest.mark.parametrize("schema", SMALL, ids=range(len(SMALL)))
def test_small_bounds_counted_equal_unrolled(schema, smollm2_vocab):
    """Every array counted (`COUNTED_ITEMS_FROM` 0): masks over a real vocabulary equal the unrolled
    grammar's, bit for bit, along random walks that reach and pass the bounds."""
    vocab = smollm2_vocab
    counted_ir = _ir(schema, len(schema.get("prefixItems", [])))  # (a longer prefix stays unrolled)
    plain_ir = _ir(schema, 10 ** 9)
    assert counted_ir.item_counts is not None and plain_ir.item_counts is None
    counted = engine_for(counted_ir, vocab, engine="native" if native.available() else "python")
    assert isinstance(counted, native.NativeCountsGrammar if native.available() else CountsGrammar)
    plain = engine_for(plain_ir, vocab)
    rng = random.Random(json.dumps(schema))
    closes = [i for i, b in enumerate(vocab.token_bytes) if b in (b"]", b"},", b"}", b"],")]
    for walk in range(8):
        a, b = counted.matcher(), plain.matcher()
        for step in range(50):
            ma, mb = a.mask(), b.mask()
            assert np.array_equal(ma, mb), (walk, step, np.flatnonzero(ma != mb)[:5].tolist())
            assert a.accepts_eos() == b.accepts_eos()
            allowed = np.flatnonzero(ma)
            if allowed.size == 0:
                break
            # lean towards closing brackets now and then, so that short walks also close arrays
            ok_closes = [t for t in closes if ma[t]]
            t = int(rng.choice(ok_closes if ok_closes and rng.random() < 0.25 else allowed))
            a.advance(t)
            b.advance(t)
            if t in vocab.eos_token_ids:
                break


PIECES = [b"[", b"]", b",", b"1", b"12", b"1,", b",1", b"1]", b"],", b"[1", b"[]", b"]]", b", ", b" ", b"[1,2",
          b"1,2,", b",[", b"[[", b"]]]", b'"a"', b'"', b"a", b"null", b"true"]


@pytest.mark.parametrize("seed", range(12))
def test_engines_agree_with_the_reference(seed):
    """Every mask of the Python engine and of the native core (where built) equals the reference
    recogniser's verdict on every token (tokens of several items and brackets, so that one token
    crosses the bounds), along random walks, for random small bounds, nested arrays included."""
    rng = random.Random(seed)
    lo = rng.randint(0, 4)
    hi = rng.choice([None, lo + rng.randint(0, 3)])
    inner = rng.choice([{"type": "integer"}, {"type": ["integer", "string"]},
                        _ints(rng.randint(0, 2), rng.choice([None, 2, 3])), {}])
    schema = {"type": "array", "items": inner, "minItems": lo, **({"maxItems": hi} if hi is not None else {})}
    ir = _ir(schema, 0)
    if ir.item_counts is None:
        return  # maxItems 0: unrolled
    vocab = piece_vocabulary(PIECES)
    engines = [CountsGrammar(ir, vocab)] + ([native.NativeCountsGrammar(ir, vocab)] if native.available() else [])
    walk_with_reference(ir, PIECES, engines, rng, walks=5, steps=30, what=schema)


BOUNDS = [(0, 260), (260, None), (259, 265), (300, 300), (1, 400)]


@pytest.mark.parametrize("lo,hi", BOUNDS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_arrays_around_the_bounds_as_json_schema(lo, hi, data):
    """Past the default threshold (counted): an array is accepted iff `jsonschema` says it is
    valid, for lengths around both bounds, items of two kinds, spelt with and without spaces;
    the text before its closing bracket stays a prefix iff it can still be completed."""
    schema = {"type": "array", "items": {"type": ["integer", "array"], "items": {"type": "integer"}, "maxItems": 2},
              "minItems": lo, **({"maxItems": hi} if hi is not None else {})}
    ir = _ir(schema)
    assert ir.item_counts is not None and ir.num_states < 64  # no state per position
    near = [lo - 2, lo - 1, lo, lo + 1] + ([hi - 1, hi, hi + 1, hi + 2] if hi is not None else [lo + 40])
    n = data.draw(st.sampled_from([x for x in near if x >= 0]))
    item = st.one_of(st.integers(-10, 10 ** 6), st.lists(st.integers(0, 9), max_size=3))
    value = data.draw(st.lists(item, min_size=n, max_size=n))
    spaced = data.draw(st.booleans())
    text = json.dumps(value, separators=(", ", ": ") if spaced else (",", ":")).encode()
    valid = jsonschema.Draft202012Validator(schema).is_valid(value)
    assert accepts(ir, text) == valid, (n, text[:60])
    if all(not isinstance(v, list) or len(v) <= 2 for v in value):
        # every item fits: only the count decides whether "]" or another item can follow
        assert is_prefix(ir, text[:-1]) == (hi is None or n <= hi)


@pytest.mark.parametrize("engine", ["python", pytest.param("native", marks=pytest.mark.skipif(
    not native.available(), reason="the native core is not built"))])
def test_whole_documents_as_json_schema(engine):
    """Each engine accepts (token by token, a byte a token) exactly the documents `jsonschema`
    validates, at and around both bounds, and refuses the one byte that breaks a bound."""
    vocab = guided.Vocabulary.from_token_bytes([bytes([b]) for b in range(128)] + [b"<eos>"], eos_token_ids=[128])
    schema = _ints(300, 310)
    g = engine_for(_ir(schema), vocab, engine=engine)
    assert isinstance(g, CountsGrammar if engine == "python" else native.NativeCountsGrammar)
    for n in (0, 299, 300, 305, 310, 311):
        m = g.matcher()
        text = json.dumps(list(range(n))).encode()
        refused = None  # where the first byte the mask refuses is
        for i, b in enumerate(text):
            if not m.mask()[b]:
                refused = i
                break
            m.advance(b)
        valid = jsonschema.Draft202012Validator(schema).is_valid(list(range(n)))
        assert (refused is None and m.accepts_eos()) == valid, n
        if n < 300:
            assert refused == len(text) - 1  # at the "]"
        if n == 311:
            assert refused == len(json.dumps(list(range(310)))) - 1  # at the 310th item's ","


def test_large_bounds_compile_without_unrolling():
    """maxItems 100,000 (and minItems as large): a few parser states, compiled in well under a
    second (a subprocess measurement is in the CHANGELOG, not asserted here), the bounds in the
    IR, round-tripped through the serialised form."""
    for schema in (_ints(0, 100_000), _ints(100_000, None), _ints(99_999, 100_000),
                   {"type": "array", "items": _ints(5_000, 100_000), "maxItems": 100_000}):
        ir = _ir(schema)
        assert ir.num_states < 40
        bounds = sorted((lo, hi) for _, lo, hi in ir.item_counts.bounds)
        assert (schema.get("minItems", 0), schema.get("maxItems")) in bounds
        back = CfgIR.from_bytes(ir.to_bytes())
        assert back.item_counts == ir.item_counts and back.to_bytes() == ir.to_bytes()
    ir = _ir(_ints(0, 100_000))
    assert accepts(ir, json.dumps(list(range(3000))).encode())
    ir = _ir(_ints(2000, 100_000))
    assert not accepts(ir, json.dumps(list(range(1999))).encode())
    assert accepts(ir, json.dumps(list(range(2000))).encode())


def test_closing_never_proposes_a_wrong_completion():
    vocab = guided.Vocabulary.from_token_bytes([b"[", b"]", b"1", b",", b"<eos>"], eos_token_ids=[4])
    g = engine_for(_ir(_ints(300, 400)), vocab)
    m = g.matcher()
    m.advance(0)
    m.advance(2)
    assert m.closing_distance() == UNREACHABLE and m.closing_tokens().size == 0  # "]" would close too early
    assert m.closing_lower_bound() >= 1
    for _ in range(299):
        m.advance(3)
        m.advance(2)
    assert m.closing_distance() == 1 and m.closing_tokens().tolist() == [1]


def test_unique_items_beside_counts_is_refused_clearly():
    big_unique = {"type": "array", "items": {"type": "integer"}, "uniqueItems": True, "maxItems": 1000}
    with pytest.raises(SchemaTooLarge, match="max_repeat"):
        _ir(big_unique)
    both = {"type": "object", "properties": {"a": _ints(0, 1000), "b": {"type": "array", "uniqueItems": True}}}
    with pytest.raises(SchemaTooLarge, match="uniqueItems"):
        _ir(both)


def test_alternative_arrays_in_the_same_states_are_refused():
    """Two arrays read by the same parser states (the counts could not tell them apart) are
    refused, naming the array; when they are not, each keeps its own bounds."""
    schema = {"anyOf": [_ints(0, 1000), {"type": "array", "items": {"type": "integer"}, "minItems": 2000}]}
    try:
        ir = _ir(schema)
    except UnsupportedSchema as exc:
        assert "maxItems" in str(exc)
    else:  # the normaliser merged the alternatives: whatever it made must be what jsonschema says
        for n in (0, 1000, 1001, 2000):
            doc = list(range(n))
            assert accepts(ir, json.dumps(doc).encode()) == jsonschema.Draft202012Validator(schema).is_valid(doc), n
    # lenient: the bounds are dropped (a superset) and reported
    with pytest.warns(guided.RelaxedSchemaWarning, match="maxItems"):
        ir = guided.JsonSchema(schema, lenient=True).to_ir()
    assert ir.item_counts is None
    assert all(accepts(ir, json.dumps(list(range(n))).encode()) for n in (0, 1500, 2000))


def test_malformed_item_counts_are_refused():
    ir = _ir(_ints(0, 1000))
    counts = ir.item_counts
    q = counts.bounds[0][0]
    bad = [
        replace(counts, bounds=((ir.num_states, 0, 5),)),  # no such state
        replace(counts, bounds=((q, 5, 3),)),  # min above max
        replace(counts, bounds=((q, -1, None),)),  # negative min
        replace(counts, bounds=((q, 0, 0),)),  # max 0: the first item has no separator to refuse
        replace(counts, bounds=((q, 0, 5), (q, 1, 5))),  # a state twice
        replace(counts, bounds=[(q, 0, 5)]),  # not a tuple
        replace(counts, item_rules=frozenset([len(ir.rules)])),
        replace(counts, separator_states=frozenset([q])),  # open and separator at once
        replace(counts, close_states=counts.separator_states),
        replace(counts, close_states={1, 2}),  # not a frozenset
    ]
    for wrong in bad:
        with pytest.raises(InvalidIR, match="item_counts"):
            replace(ir, item_counts=wrong).validate()
    with pytest.raises(InvalidIR, match="item_counts"):
        replace(ir, unique_items=UniqueItems(open_states=frozenset(), item_rules=frozenset())).validate()
    with pytest.raises(InvalidIR, match="item_counts"):
        replace(ir, item_counts=object()).validate()
    assert isinstance(replace(ir, item_counts=ItemCounts((), frozenset(), frozenset(), frozenset())).validate(), CfgIR)


def test_malformed_serialised_item_counts_are_refused():
    """The four ``items_*`` fields come together, as rows of the right shape, and what they
    decode to is validated like any IR."""
    ir = _ir(_ints(3, 1000))
    data = ir.to_bytes(compress=False)
    body = _body(data)
    q, lo, hi = ir.item_counts.bounds[0]
    field = serialize._encode("items_bounds", np.array([(q, lo, hi)], np.int64))
    assert field in body
    cases = {
        "state out of range": np.array([(ir.num_states, lo, hi)], np.int64),
        "max below -1": np.array([(q, lo, -2)], np.int64),
        "min above max": np.array([(q, 5, 4)], np.int64),
        "rows of two": np.array([(q, lo)], np.int64),
    }
    for what, rows in cases.items():
        with pytest.raises(InvalidIR):
            serialize.from_bytes(_rewrite(data, body.replace(field, serialize._encode("items_bounds", rows))))
    with pytest.raises(InvalidIR, match="come together"):
        serialize.from_bytes(_rewrite(data, body.replace(field, b"")))
    assert serialize.from_bytes(_rewrite(data, body)).item_counts == ir.item_counts


def test_threshold_keeps_small_bounds_unrolled():
    """Bounds up to `COUNTED_ITEMS_FROM` (or `max_repeat` if lower) unroll as before (native,
    exact); past it they are counted, also past a lowered `max_repeat` that used to refuse them."""
    edge = _rules.COUNTED_ITEMS_FROM
    assert _ir(_ints(0, edge)).item_counts is None
    assert _ir(_ints(edge + 1, None)).item_counts is not None
    ir = guided.JsonSchema(_ints(0, 20), max_repeat=10).to_ir()
    assert ir.item_counts is not None and ir.item_counts.bounds[0][1:] == (0, 20)
    assert accepts(ir, json.dumps(list(range(20))).encode()) and not accepts(ir, json.dumps(list(range(21))).encode())


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_nested_small_bounds_as_json_schema(data):
    """Every array counted (`COUNTED_ITEMS_FROM` 0), nested with bounds of their own: the
    reference accepts exactly what `jsonschema` validates."""
    lo, lo_in = data.draw(st.integers(0, 3)), data.draw(st.integers(0, 2))
    hi = data.draw(st.one_of(st.none(), st.integers(max(lo, 1), 4)))
    hi_in = data.draw(st.one_of(st.none(), st.integers(max(lo_in, 1), 3)))
    inner = {"type": "array", "items": {"type": "integer"}, "minItems": lo_in,
             **({"maxItems": hi_in} if hi_in is not None else {})}
    schema = {"type": "array", "items": {"anyOf": [{"type": "integer"}, inner]}, "minItems": lo,
              **({"maxItems": hi} if hi is not None else {})}
    ir = _ir(schema, 0)
    assert len(ir.item_counts.bounds) == 2  # a frame for each array
    value = data.draw(st.lists(st.one_of(st.integers(0, 99), st.lists(st.integers(0, 9), max_size=5)), max_size=6))
    text = json.dumps(value, separators=data.draw(st.sampled_from([(",", ":"), (", ", ": ")]))).encode()
    assert accepts(ir, text) == jsonschema.Draft202012Validator(schema).is_valid(value), (schema, text)


@settings(max_examples=120, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
@given(F.schemas(), st.integers(0, 1000))
def test_fuzzed_schemas_with_every_array_counted(schema, seed):
    """The schema fuzzer's random schemas (`tests.fuzzing`) with every bounded array counted
    (`COUNTED_ITEMS_FROM` 0): each compiles or gets a guided error, and random walks of the
    masks end in documents `jsonschema` calls valid (one long run: 1,500 schemas, 494 of them
    counted, no failure)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_rules, "COUNTED_ITEMS_FROM", 0)
        mp.setenv("GUIDED_IR_CACHE", "off")  # IR stored on disk under the default threshold
        F.check("schema", schema, lambda: F.run_schema(schema, seed))


def test_native_core_refuses_item_counts_it_cannot_check():
    if not native.available():
        pytest.skip("the native core is not built")
    vocab = guided.Vocabulary.from_token_bytes([b"[", b"]", b"1", b",", b"<eos>"], eos_token_ids=[4])
    with pytest.raises(guided.SpecError, match="item counts"):
        native.NativeCfgGrammar(_ir(_ints(0, 1000)), vocab)


CONTAINS = [(0, None, 0, 1), (1, None, 0, None), (2, 3, 0, None), (0, 2, 0, None), (1, None, 0, 5), (2, None, 3, None),
            (0, 1, 2, 4), (1, 2, 1, None)]


@pytest.mark.parametrize("min_c,max_c,lo,hi", CONTAINS)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_contains_with_counted_items_as_json_schema(min_c, max_c, lo, hi, data):
    """`contains` beside counted item bounds (`COUNTED_ITEMS_FROM` 0): the reference accepts
    exactly what `jsonschema` validates, and every prefix of a valid array stays viable; where
    the two counts would need each other (maxItems with minContains) the array stays unrolled."""
    schema = {"type": "array", "items": {"type": "integer"}, "contains": {"minimum": 5}, "minContains": min_c,
              "minItems": lo, **({"maxContains": max_c} if max_c is not None else {}),
              **({"maxItems": hi} if hi is not None else {})}
    ir = _ir(schema, 0)
    assert (ir.item_counts is not None) == (hi is None or min_c == 0)
    value = data.draw(st.lists(st.integers(0, 9), max_size=7))
    text = json.dumps(value).encode()
    valid = jsonschema.Draft202012Validator(schema).is_valid(value)
    assert accepts(ir, text) == valid, (schema, text)
    if valid:
        assert all(is_prefix(ir, text[:k]) for k in range(len(text)))
