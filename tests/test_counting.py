"""Counted terminals (`guided.ir.Count`, rule 11): a JSON string's minLength/maxLength kept as a
count of decoded characters instead of unrolled, in the IR, the reference recogniser and the
engines.

Oracles: `jsonschema` for what a bounded string accepts (lengths at the bounds, escapes,
multi-byte UTF-8, surrogate pairs), and the unrolled automaton (the front-end's own construction
below `COUNTED_FROM`) for masks, bit for bit over a real vocabulary, for the Python engine and
the native core alike.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import jsonschema
import numpy as np
import pytest

import guided
from guided.engine.cfg import CfgGrammar
from guided.engine import native
from guided.engine.cfg.counting import CountedLex
from guided.compiler import engine_for
from guided.errors import InvalidIR
from guided.frontends.jsonschema.errors import SchemaTooLarge
from guided.frontends.jsonschema import terminals as _terminals
from guided.ir import ByteDFA, CfgIR, Count, Terminal
from guided.ir.cfg import END
from guided.ir.reference import Reference, accepts, is_prefix
from tests.reference_walks import piece_vocabulary, walk_with_reference

# Characters spelt every way JSON allows: (decoded text, spelling in the JSON text).
SPELLINGS = [
    ("a", "a"), ("\n", "\\n"), ('"', '\\"'), ("\\", "\\\\"), ("/", "\\/"), ("é", "é"), ("é", "\\u00e9"),
    ("é", "\\u00E9"), ("中", "中"), ("😀", "😀"), ("😀", "\\ud83d\\ude00"), ("😀", "\\uD83D\\uDE00"),
    ("\x01", "\\u0001"), ("a", "\\u0061"),
]


def _text(rng: random.Random, n: int) -> tuple[str, str]:
    """A random string of ``n`` characters and one JSON spelling of it (quoted)."""
    chosen = [rng.choice(SPELLINGS) for _ in range(n)]
    return "".join(c for c, _ in chosen), '"' + "".join(s for _, s in chosen) + '"'


def _schema(lo: int, hi: int | None) -> dict:
    s = {"type": "string", "minLength": lo}
    if hi is not None:
        s["maxLength"] = hi
    return s


BOUNDS = [(0, 300), (300, None), (300, 305), (299, 300), (257, 257), (1000, 100_000)]


@pytest.mark.parametrize("lo,hi", BOUNDS)
def test_reference_counts_as_json_schema(lo, hi):
    ir = guided.JsonSchema(_schema(lo, hi)).to_ir()
    assert isinstance(ir, CfgIR) and ir.terminals[0].count is not None
    assert ir.terminals[0].dfa.num_states < 64  # no state per position
    rng = random.Random(lo)
    lengths = {lo - 1, lo, lo + 1, 0, 1} | ({hi - 1, hi, hi + 1} if hi is not None and hi < 2000 else {lo + 50})
    for n in sorted(x for x in lengths if x >= 0):
        for _ in range(3):
            value, text = _text(rng, n)
            assert json.loads(text) == value
            expected = jsonschema.Draft202012Validator(_schema(lo, hi)).is_valid(value)
            assert accepts(ir, text.encode()) == expected, (n, text[:40])
            # a prefix is viable iff some completion is valid: the text minus its closing quote
            # can always still reach the minimum, and stays viable while not past the maximum
            assert is_prefix(ir, text[:-1].encode()) == (hi is None or n <= hi)


def test_reference_refuses_early_past_the_maximum():
    ir = guided.JsonSchema(_schema(0, 300)).to_ir()
    ref = Reference(ir)
    pos = ref.walk(ref.start(), b'"' + b"a" * 300)
    assert pos is not None and ref.is_viable(pos)
    assert ref.step(pos, ord("a")) is None  # the 301st character
    assert ref.walk(pos, b"\\") is None  # an escape would be the 301st too
    assert ref.walk(pos, b"\xc3") is None  # so would a two-byte character's first byte
    assert ref.walk(pos, b'"') is not None
    # minimum: the closing quote only once the count is reached
    ir = guided.JsonSchema(_schema(300, None)).to_ir()
    assert not is_prefix(ir, b'"' + b"a" * 299 + b'"')
    assert is_prefix(ir, b'"' + b"a" * 299 + b"\\u00e9" + b'"')


def test_ir_round_trips_and_validates():
    ir = guided.JsonSchema({"type": "object", "properties": {"a": _schema(300, 100_000), "b": _schema(0, 500)}}).to_ir()
    counted = [t for t in ir.terminals if t.count is not None]
    assert sorted((t.count.min, t.count.max) for t in counted) == [(0, 500), (300, 100_000)]
    back = CfgIR.from_bytes(ir.to_bytes())
    assert [(t.count.min, t.count.max) if t.count else None for t in back.terminals] == \
        [(t.count.min, t.count.max) if t.count else None for t in ir.terminals]
    assert back.to_bytes() == ir.to_bytes()
    # two counting automata (a plain string and a class repeat) in one grammar, counting alike
    ir = guided.JsonSchema({"anyOf": [_schema(0, 300), {"type": "string", "pattern": "^[a-z]{2,40}$"}]}).to_ir()
    counted = [t for t in ir.terminals if t.count is not None]
    assert len({id(t.dfa) for t in counted}) == 2
    back = CfgIR.from_bytes(ir.to_bytes())
    assert all(np.array_equal(a.count.counted, b.count.counted) for a, b in zip(counted, (t for t in back.terminals if t.count)))


def _one_terminal_ir(term: Terminal) -> CfgIR:
    return CfgIR(terminals=(term,), ignore=frozenset(), actions=({0: 1}, {END: -1}, {}), gotos=({0: 2}, {}, {}),
                 rules=((0, 1),), nonterminals=("start",), start_state=0, end_state=2)


def _dfa(edges: dict[tuple[int, int], int], accepting: set[int], n: int) -> ByteDFA:
    rows = np.zeros((n, 256), np.int32)
    for (s, b), t in edges.items():
        rows[s, b] = t
    return ByteDFA(rows, np.array([s in accepting for s in range(n)]), 1)


def test_validation_refuses_terminals_counting_differently():
    ir = guided.JsonSchema({"anyOf": [_schema(0, 300), {"type": "string", "pattern": "^[a-z]{2,40}$"}]}).to_ir()
    i = next(i for i, t in enumerate(ir.terminals) if t.count is not None and t.dfa.num_states < 20)
    t = ir.terminals[i]
    wrong = t.count.counted.copy()
    wrong[t.dfa.transitions == 0] = False
    wrong[t.dfa.transitions != 0] = ~wrong[t.dfa.transitions != 0]  # counts the other transitions
    terms = list(ir.terminals)
    terms[i] = Terminal(t.name, t.dfa, t.priority, t.is_string, t.order, Count(wrong, t.count.min, t.count.max))
    fields = {name: getattr(ir, name) for name in ir.__dataclass_fields__}
    with pytest.raises(InvalidIR):
        CfgIR(**{**fields, "terminals": tuple(terms)}).validate()


def test_validation_refuses_malformed_counts():
    # x -> accept with no count; y c c -> accept with two: counts {0, 2}, not an interval
    dfa = _dfa({(1, ord("x")): 4, (1, ord("y")): 2, (2, ord("c")): 3, (3, ord("c")): 4}, {4}, 5)
    counted = np.zeros((5, 256), bool)
    counted[2, ord("c")] = counted[3, ord("c")] = True
    with pytest.raises(InvalidIR, match="not an interval"):
        _one_terminal_ir(Terminal("T", dfa, count=Count(counted, 0, 5))).validate()
    ok = counted.copy()
    ok[1, ord("x")] = True  # now x counts one: {1, 2}
    ok[1, ord("y")] = False
    _one_terminal_ir(Terminal("T", dfa, count=Count(ok, 0, 5))).validate()
    with pytest.raises(InvalidIR, match="0 <= min <= max"):
        _one_terminal_ir(Terminal("T", dfa, count=Count(ok, 3, 2))).validate()
    dead = ok.copy()
    dead[4, ord("z")] = True
    with pytest.raises(InvalidIR, match="dead transition"):
        _one_terminal_ir(Terminal("T", dfa, count=Count(dead, 0, 5))).validate()
    with pytest.raises(InvalidIR, match="bool array"):
        _one_terminal_ir(Terminal("T", dfa, count=Count(ok[:3], 0, 5))).validate()


def test_limits_and_refusals():
    with pytest.raises(SchemaTooLarge, match="max_string_length=1000"):
        guided.JsonSchema(_schema(0, 100_000), max_string_length=1000).to_ir()
    # a pattern whose lengths are not every number from the fewest up (2, 4, 6...) keeps the
    # unrolled construction
    with pytest.raises(SchemaTooLarge, match="unrolls"):
        guided.JsonSchema({"type": "string", "pattern": "^(?:ab)+$", "maxLength": 100_000}).to_ir()
    # one any character can lengthen is counted (`extends_by_one`)
    ir = guided.JsonSchema({"type": "string", "pattern": "^a", "maxLength": 100_000}).to_ir()
    assert any(t.count is not None for t in ir.terminals)
    assert accepts(ir, b'"a' + b"b" * 99_999 + b'"') and not accepts(ir, b'"a' + b"b" * 100_000 + b'"')
    assert not accepts(ir, b'"ba"')
    # a long plain string beside other types is a terminal of its own, counted
    ir = guided.JsonSchema({"type": ["string", "null"], "maxLength": 100_000}).to_ir()
    assert any(t.count is not None for t in ir.terminals)
    assert accepts(ir, b"null") and accepts(ir, b'"ab"') and not accepts(ir, b'"' + b"a" * 100_001 + b'"')


def test_compile_is_bounded_for_100k():
    """The issue's target, in a fresh process: compile (IR and engine) and the first mask."""
    code = """
import resource, time, tracemalloc, guided
vocab = guided.Vocabulary.from_token_bytes([bytes([b]) for b in range(256)] + [b"a" * 64, b"<eos>"], eos_token_ids=[257])
t = time.perf_counter(); tracemalloc.start()
g = guided.compile(guided.JsonSchema({"type": "string", "minLength": 1000, "maxLength": 100000}), vocab, cache=False)
m = g.matcher(); m.mask()
peak = tracemalloc.get_traced_memory()[1]
print(time.perf_counter() - t, peak)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    seconds, peak = float(out[0]), int(out[1])
    assert peak < 100 * 2 ** 20, peak
    assert seconds < 5, seconds  # typically well under 0.1 s; generous on a loaded machine


def _ir_counting_from(spec, plain: int, classes: int | None = None) -> CfgIR:
    """``spec``'s IR with string lengths counted past ``plain`` characters (`COUNTED_FROM`), and
    class repeats past ``classes`` (`COUNTED_CLASS_FROM`; default: the module's)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_terminals, "COUNTED_FROM", plain)
        if classes is not None:
            mp.setattr(_terminals, "COUNTED_CLASS_FROM", classes)
        return spec.to_ir()


def _unrolled(spec, vocab):
    ir = _ir_counting_from(spec, 10 ** 9, 10 ** 9)
    assert not any(t.count is not None for t in ir.terminals)
    return engine_for(ir, vocab)


SCHEMAS = [
    _schema(299, 300),
    _schema(300, None),
    _schema(0, 260),
    {"type": "object", "properties": {"s": _schema(270, 280), "n": {"type": "integer"}}, "required": ["s", "n"]},
    {"type": "array", "items": {"type": ["string", "null"], "minLength": 257, "maxLength": 262}},
    {"type": "string", "pattern": "^[0-9a-zA-Z_-]{1,255}$", "maxLength": 60},
    {"type": "array", "items": {"anyOf": [_schema(0, 300), {"type": "string", "pattern": "^[a-z]{40,45}$"}]}},
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_masks_equal_the_unrolled_automaton(schema, smollm2_vocab, smollm2_tokenizer):
    """Walks toward and past the bounds: every mask of the counted grammar (Python engine, as
    routed by `guided.compile`) equals the unrolled one's (native where built), bit for bit."""
    vocab = smollm2_vocab
    spec = guided.JsonSchema(schema)
    counted = guided.compile(spec, vocab, cache=False, engine="python")
    assert isinstance(counted, CfgGrammar) and counted.counting is not None
    plain = _unrolled(spec, vocab)
    engines = [counted, plain]
    if native.available():  # the native core's counted terminals, bit for bit too
        engines.append(guided.compile(spec, vocab, cache=False, engine="native"))
        assert isinstance(engines[-1], native.NativeCfgGrammar)
    rng = random.Random(json.dumps(schema))
    content = [t for t in range(vocab.size)
               if vocab.token_bytes[t] and b'"' not in vocab.token_bytes[t] and b"\\" not in vocab.token_bytes[t]
               and vocab.token_bytes[t].isascii() and vocab.token_bytes[t].isalpha()]
    top = 0  # the largest exact count seen: the walks must reach the bounds
    for walk in range(3):
        matchers = [g.matcher() for g in engines]
        a = matchers[0]
        for step in range(400):
            config = a._history[0]
            if config is not None and isinstance(config[1], CountedLex):
                top = max(top, config[1].n)
            ma = a.mask()
            for other in matchers[1:]:
                mb = other.mask()
                assert np.array_equal(ma, mb), (type(other).__name__, walk, step, np.flatnonzero(ma != mb)[:10])
                assert other.accepts_eos() == a.accepts_eos()
            allowed = np.flatnonzero(ma)
            if allowed.size == 0 or a.is_finished():
                break
            pick = [t for t in rng.sample(content, 200) if ma[t]]
            eos = [t for t in allowed.tolist() if t in vocab.eos_token_ids]
            if pick and rng.random() < 0.9:
                t = rng.choice(pick)
            else:
                others = [t for t in allowed.tolist() if t not in eos]
                t = rng.choice(others) if others else eos[0]
            for m in matchers:
                m.advance(t)
            if t in eos:
                break
    if schema.get("type") == "string":
        assert top == schema["maxLength"] if "maxLength" in schema else top > schema["minLength"], top
    # the configuration's lexer state carries the exact count mid-string
    if schema.get("type") == "string":
        m = counted.matcher()
        for t in smollm2_tokenizer.encode('"abc', add_special_tokens=False):
            m.advance(t)
        assert isinstance(m._history[0][1], CountedLex) and m._history[0][1].n == 3


@pytest.mark.skipif(not native.available(), reason="native core not built")
def test_native_refuses_malformed_count_tables():
    from guided.engine.cfg.counting import Counting
    from guided.engine.native import lower_cfg, native_trie
    from guided.errors import GuidedError

    vocab = guided.Vocabulary.from_token_bytes([b'"', b"a", b"<eos>"], eos_token_ids=[2])
    ir = guided.JsonSchema(_schema(0, 300)).to_ir()
    counting = Counting(ir, vocab)
    core = native._require()
    good = counting.native_tables()
    core.cfg_grammar(native_trie(vocab), None, max_lexer_states=10_000, **{**lower_cfg(counting.ir), "counted": good})
    t, lo, hi, cap, n_base, n_pairs, base_of, flags, pair_of, ids = good[0]
    bad = [
        (t, lo, hi, cap, n_base, n_pairs, base_of, flags, pair_of, ids + 10 ** 6),  # expanded state out of range
        (t, lo, hi, cap, n_base, n_pairs, base_of[:-1], flags, pair_of, ids),  # wrong size
        (t, lo, hi, cap, n_base, n_pairs, base_of, flags * 2, pair_of, ids),  # not 0/1
        (t, hi + 1, hi, cap, n_base, n_pairs, base_of, flags, pair_of, ids),  # min > max
        (99, lo, hi, cap, n_base, n_pairs, base_of, flags, pair_of, ids),  # no such terminal
    ]
    for entry in bad:
        with pytest.raises(GuidedError, match="counted terminal"):
            core.cfg_grammar(native_trie(vocab), None, max_lexer_states=10_000,
                             **{**lower_cfg(counting.ir), "counted": [entry]})


SMALL = [_schema(2, 5), _schema(0, 1), _schema(3, None), _schema(1, 1),
         {"type": "object", "properties": {"k": _schema(0, 3), "v": {"type": ["string", "integer"], "maxLength": 2}}}]


@pytest.mark.parametrize("schema", SMALL, ids=range(len(SMALL)))
def test_small_bounds_counted_equal_unrolled(schema, smollm2_vocab):
    """Bounds below the cap (every distance exact) count right too: every length is counted here
    (`COUNTED_FROM` 0), masks compared with the unrolled automaton's along random walks."""
    vocab = smollm2_vocab
    spec = guided.JsonSchema(schema)
    plain = _unrolled(spec, vocab)
    ir = _ir_counting_from(spec, 0)
    assert any(t.count is not None for t in ir.terminals)
    engines = [plain, CfgGrammar(ir, vocab)] + ([native.NativeCfgGrammar(ir, vocab)] if native.available() else [])
    rng = random.Random(json.dumps(schema))
    for walk in range(6):
        matchers = [g.matcher() for g in engines]
        for step in range(60):
            masks = [m.mask() for m in matchers]
            for m, other in zip(matchers[1:], masks[1:]):
                assert np.array_equal(masks[0], other), (type(m).__name__, walk, step)
            allowed = np.flatnonzero(masks[0])
            if allowed.size == 0:
                break
            t = int(rng.choice(allowed))
            for m in matchers:
                m.advance(t)
            if t in vocab.eos_token_ids:
                break


PIECES = [b'"', b"a", b"ab", b"abc", b"abcdefg", b'a"', b'"a', b'ab"', b"\\", b"n", b"\\n", b"u00", b"e9", b"\\u00e9",
          b"\\ud83d", b"\\ude00", "é".encode(), b"\xc3", b"\xa9", "😀".encode(), b"\xf0\x9f", b"\x98\x80", b'\\""',
          b" ", b'", "', b"null", b"1", b"{", b"}", b'{"k": "', b":", b",", b"[", b"]"]


@pytest.mark.parametrize("seed", range(12))
def test_capped_counts_agree_with_the_reference(seed):
    """Bounds around and past the cap (a vocabulary of tokens up to 7 bytes: the cap is 9), every
    length counted: each mask of the Python engine and the native core equals the reference
    recogniser's verdict on every token, along random walks."""
    rng = random.Random(seed)
    lo = rng.randint(0, 14)
    hi = rng.choice([None, lo + rng.randint(0, 6)])
    schema = rng.choice([_schema(lo, hi), {"type": "object", "properties": {"k": _schema(lo, hi)}},
                         {"type": "array", "items": {"type": ["string", "null"], "minLength": lo,
                                                     **({"maxLength": hi} if hi is not None else {})}}])
    vocab = piece_vocabulary(PIECES)
    ir = _ir_counting_from(guided.JsonSchema(schema), 0)
    if not any(t.count is not None for t in ir.terminals):
        return  # the normaliser made it something else (a constant)
    engines = [CfgGrammar(ir, vocab)] + ([native.NativeCfgGrammar(ir, vocab)] if native.available() else [])
    walk_with_reference(ir, PIECES, engines, rng, walks=4, steps=40, what=schema)


CLASS_PATTERNS = [
    {"type": "string", "pattern": "^[0-9a-zA-Z_-]{1,255}$", "maxLength": 1024},
    {"type": "string", "pattern": "^\\d+$", "minLength": 40},
    {"anyOf": [{"type": "string", "maxLength": 300}, {"type": "string", "pattern": "^[a-z]{2,40}$"}]},
    {"type": "string", "pattern": "^.{3,50}$"},
    {"type": "string", "pattern": "^\\S{40,}$", "maxLength": 60},
]


@pytest.mark.parametrize("schema", CLASS_PATTERNS, ids=range(len(CLASS_PATTERNS)))
def test_class_repeats_counted_as_unrolled(schema):
    """A pattern repeating one character class is a count over the class's string automaton:
    the reference accepts (and keeps viable) exactly what the unrolled automaton does, on
    random texts with escapes, multi-byte and astral characters, around the bounds.  (The
    oracle is guided's own ECMA-262 reading: Python's `re`, behind `jsonschema`, lets `$` match
    before a final newline.)"""
    ir = guided.JsonSchema(schema).to_ir()
    assert any(t.count is not None for t in ir.terminals)
    unrolled = _ir_counting_from(guided.JsonSchema(schema), 10 ** 9, 10 ** 9)
    assert not any(t.count is not None for t in unrolled.terminals)
    rng = random.Random(json.dumps(schema))
    alphabet = ["a", "b", "Z", "0", "9", "_", "-", "é", "😀", "\n", '"', "\\", " "]
    for _ in range(150):
        n = rng.choice([0, 1, 2, 3, 39, 40, 41, 49, 50, 51, 59, 60, 61, 254, 255, 256, 299, 300, 301])
        text = "".join(rng.choice(alphabet[:7] if rng.random() < 0.7 else alphabet) for _ in range(n))
        for spelt in (json.dumps(text), json.dumps(text, ensure_ascii=False)):
            data = spelt.encode()
            assert accepts(ir, data) == accepts(unrolled, data), (n, spelt[:40])
            for cut in (len(data) - 1, len(data) // 2):
                assert is_prefix(ir, data[:cut]) == is_prefix(unrolled, data[:cut]), (n, cut, spelt[:40])


def test_extends_by_one_proves_the_interval_property():
    """The cheap proof (`extends_by_one`) never vouches for a DFA the exhaustive check
    (`_check_interval`) refuses: random small DFAs with random counted moves."""
    from guided.ir.validate import _check_interval, extends_by_one

    rng = np.random.default_rng(7)
    proven = 0
    for _ in range(3000):
        n = int(rng.integers(2, 7))
        table = np.zeros((n, 256), np.int32)
        moves = rng.random((n, 3)) < 0.6
        table[1:, :3] = np.where(moves[1:], rng.integers(1, n, (n - 1, 3)), 0)
        accepting = np.zeros(n, bool)
        accepting[1:] = rng.random(n - 1) < 0.4
        counted = (table != 0) & (rng.random((n, 256)) < 0.5)
        dfa = ByteDFA(transitions=table, accepting=accepting, initial=1)
        if not accepting.any() or not extends_by_one(dfa, counted):
            continue
        proven += 1
        _check_interval(dfa, counted, "random")  # raises where the counts are no interval
    assert proven > 100


def test_a_counted_expansion_past_its_budget_is_refused(monkeypatch):
    """A counted terminal whose capped expansion would pass `MAX_EXPANDED_STATES` (a pattern of
    thousands of states with a long-token vocabulary) is refused when compiled, not built."""
    from guided.engine.cfg import counting

    spec = guided.JsonSchema({"type": "string", "pattern": "^a", "maxLength": 1000})
    vocab = guided.Vocabulary.from_token_bytes([bytes([b]) for b in range(256)] + [b"a" * 64, b"<eos>"],
                                               eos_token_ids=[257])
    monkeypatch.setattr(counting, "MAX_EXPANDED_STATES", 50)
    with pytest.raises(guided.LimitExceeded, match="capped expansion"):
        guided.compile(spec, vocab, cache=False)
