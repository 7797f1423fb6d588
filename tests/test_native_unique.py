"""Unique items in the native core (`guided.engine.native.NativeUniqueGrammar`, rule 9 of
`guided.ir.cfg`) against the Python engine (`guided.engine.unique`) and the reference recogniser.

Oracles: the Python engine's masks, bit for bit, along random walks that lean towards repeating an
earlier item in another spelling (``1`` and ``1.0``, members reordered, escapes), with copies and
rollbacks on the way; the reference recogniser's verdict on every token of a small vocabulary;
`guided.ir.canonical_json` for the core's canonical values of hypothesis-built JSON texts.
"""

from __future__ import annotations

import json
import pathlib
import random
import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import guided
from guided.engine import native
from guided.engine.unique import UniqueGrammar
from guided.ir import canonical_json
from guided.ir.reference import Reference
from tests.test_unique_items import SCHEMAS, VALUES, _spell

pytestmark = pytest.mark.skipif(not native.available(), reason="the native core is not built")

# Besides test_unique_items' schemas: finite domains with small maxItems, numbers spelt many ways,
# objects whose members may come in any order, strings with escapes, arrays of arrays.
EXTRA = {
    "booleans": {"type": "array", "items": {"anyOf": [{"type": "boolean"}, {"enum": ["x", "y", "z", "w", "v", "u", "t"]}]},
                 "uniqueItems": True, "maxItems": 4},  # nine values: checked at run time
    "small enum": {"type": "array", "items": {"enum": [1, "a", None, True, 2.5, "b", 3, "c", "d"]},
                   "uniqueItems": True, "maxItems": 4},
    "numbers": {"type": "array", "items": {"type": "number"}, "uniqueItems": True},
    "objects": {"type": "array", "uniqueItems": True, "items": {
        "type": "object", "additionalProperties": {"type": "integer"}}},
    "arrays": {"type": "array", "uniqueItems": True, "items": {"type": "array", "items": {"type": "number"}}},
}
ALL = {**SCHEMAS, **EXTRA}

# Tokens that spell items, separators and brackets, several values each, so that one token may
# complete a duplicate and begin the next item.
PIECES = [b"[", b"]", b",", b", ", b"1", b"1.0", b"1,", b",1", b"10", b"0", b"-0", b"2", b"e0", b".5", b"true",
          b"false", b"tr", b"ue", b"null", b'"', b'"a"', b'"a', b'a"', b'"b"', b'"\\u0061"', b'",', b'{"a":', b'{"b":',
          b'"a":', b'"b":', b"}", b"},", b"{}", b"[1]", b"[1.0]", b"[]", b"3", b"2.5", b'"c"', b'"d"', b"],", b"{",
          b'"x"', b'"rows":', b'{"rows":']


CLOSERS = {b"]", b"}", b"[1]", b"[1.0]", b"[]", b"{}"}


def _pieces_vocab():
    return guided.Vocabulary.from_token_bytes(PIECES + [b"<eos>"], eos_token_ids=[len(PIECES)])


def _ir(schema):
    ir = guided.compiler.lower(guided.JsonSchema(schema))
    assert ir.unique_items is not None
    return ir


def _differential_walks(ir, vocab, seed: str, walks: int, steps: int, prefix: bytes = b""):
    """Random walks on the native masks (after ``prefix``, a byte a token), leaning towards
    spelling an earlier item again; every mask, EOS verdict, finished verdict and forced bytes
    equal the Python engine's; a copy advanced elsewhere and rolled back leaves the matcher as it
    was.  Returns the number of masks compared and of those where rule 9 refused a token the CFG
    allows."""
    ng, pg = native.NativeUniqueGrammar(ir, vocab), UniqueGrammar(ir, vocab)
    rng = random.Random(seed)
    tb = vocab.token_bytes
    byte_token = {bs[0]: i for i, bs in enumerate(tb) if len(bs) == 1}
    compared = refused = 0
    for _ in range(walks):
        a, b = ng.matcher(), pg.matcher()
        written = [byte_token[c] for c in prefix]
        for t in written:
            a.advance(t)
            b.advance(t)
        replay = None  # where in `written` an earlier item is being spelt again
        for step in range(steps):
            ma, mb = a.mask(), b.mask()  # a walk of "e0", "10", "1"... spells exponents past 10**18
            compared += 1
            diff = np.flatnonzero(ma != mb)
            assert diff.size == 0, (seed, step, b"".join(tb[t] for t in written), [tb[t] for t in diff[:8]])
            assert a.accepts_eos() == b.accepts_eos()
            assert a.is_finished() == b.is_finished()
            assert a.forced_bytes() == b.forced_bytes()
            config = b._history[0]
            if config is not None and config.frames:  # did rule 9 take a token the CFG allows?
                refused += bool(np.any(pg.cfg.words(config.stack, config.lex) & ~pg.words(config)))
            allowed = np.flatnonzero(ma)
            if allowed.size == 0:
                break
            if replay is None and written and tb[written[-1]].rstrip().endswith(b",") and rng.random() < 0.7:
                starts = [i for i in range(1, len(written)) if tb[written[i - 1]].rstrip().endswith((b"[", b","))]
                replay = rng.choice(starts) if starts else None
            if replay is not None and replay < len(written) and ma[written[replay]] and rng.random() < 0.95:
                t = written[replay]  # the earlier item's next token
                replay += 1
            else:  # one that closes nothing, and now and then any (so that walks are long, yet end)
                replay = None
                open_ = [t for t in allowed.tolist() if tb[t] not in CLOSERS and t not in vocab.eos_token_ids]
                t = int(rng.choice(open_ if open_ and rng.random() < 0.95 else allowed))
            if rng.random() < 0.1 and t not in vocab.eos_token_ids:  # a copy wanders off and comes back
                c = a.copy()
                c.advance(t)
                c.rollback(1)
                assert np.array_equal(c.mask(), ma)
            a.advance(t)
            b.advance(t)
            written.append(t)
            if t in vocab.eos_token_ids:
                assert a.is_finished()
                break
    return compared, refused


@pytest.mark.parametrize("name", sorted(ALL))
def test_native_equals_python_on_pieces(name):
    """Every schema, a vocabulary of item pieces: native masks equal the Python engine's."""
    compared, refused = _differential_walks(_ir(ALL[name]), _pieces_vocab(), name, walks=8, steps=40)
    assert compared > 16 and refused > 0


@pytest.mark.parametrize("name,prefix", [("integer", b"[1, 22,"), ("numbers", b"[1.5, -0, 2e1,"),
                                         ("object", b'[{"a": 1, "b": "x"},'), ("small enum", b'[true, "a", null,'),
                                         ("nested", b'{"rows": [[1, 2], [2, 1], [1, 2')])
def test_native_equals_python_on_a_real_vocabulary(name, prefix, smollm2_vocab):
    """SmolLM2's vocabulary (tokens that end an item and begin the next, long runs of digits):
    native masks equal the Python engine's."""
    compared, refused = _differential_walks(_ir(ALL[name]), smollm2_vocab, name, walks=2, steps=25, prefix=prefix)
    assert compared > 10 and refused > 0


@pytest.mark.parametrize("name", sorted(ALL))
def test_native_agrees_with_the_reference(name):
    """Every native mask equals the reference recogniser's verdict on every token, along random
    walks under the masks."""
    ir = _ir(ALL[name])
    vocab = _pieces_vocab()
    g = native.NativeUniqueGrammar(ir, vocab)
    ref = Reference(ir)
    rng = random.Random(name)
    for walk in range(4):
        m = g.matcher()
        pos = ref.start()
        for step in range(25):
            expected = np.zeros(vocab.size, bool)
            for t, piece in enumerate(PIECES):
                after = ref.walk(pos, piece)
                expected[t] = after is not None and ref.is_viable(after)
            expected[len(PIECES)] = ref.accepts_end(pos)
            assert np.array_equal(m.mask(), expected), (name, walk, step)
            allowed = np.flatnonzero(expected)
            if allowed.size == 0:
                break
            t = int(rng.choice(allowed))
            if t == len(PIECES):
                break
            m.advance(t)
            pos = ref.walk(pos, PIECES[t])


def test_duplicates_and_dead_ends():
    """The cases rule 9 is about, on the native engine: a token that completes a duplicate in
    another spelling is masked; a separator with only used values of a finite domain left is too."""
    vocab = _pieces_vocab()
    tid = {p: i for i, p in enumerate(PIECES)}

    def matcher(schema, pieces):
        m = native.NativeUniqueGrammar(_ir(schema), vocab).matcher()
        for p in pieces:
            m.advance(tid[p])
        return m

    m = matcher(ALL["numbers"], [b"[", b"1", b",", b"1"])
    mask = m.mask()
    assert mask[tid[b"0"]] and mask[tid[b".5"]] and not mask[tid[b"]"]] and not mask[tid[b","]]
    m.advance(tid[b".5"])
    assert m.mask()[tid[b"]"]]
    m = matcher(ALL["numbers"], [b"[", b"1", b",", b"1.0"])  # 1.0 equals 1: it may not end here
    assert not m.mask()[tid[b"]"]] and not m.mask()[tid[b","]] and m.mask()[tid[b"e0"]]  # 1.0e0 may grow
    m = matcher(ALL["objects"], [b"[", b'{"a":', b"1", b",", b'"b":', b"2", b"},", b'{"b":', b"2", b",", b'"a":',
                                 b"1"])
    assert not m.mask()[tid[b"}"]] and m.mask()[tid[b"0"]]  # {"b":2,"a":1} repeats {"a":1,"b":2}
    m = matcher(ALL["string"], [b"[", b'"a"', b","])
    assert not m.mask()[tid[b'"\\u0061"']] and m.mask()[tid[b'"b"']]
    m = matcher(ALL["booleans"], [b"[", b"true", b","])
    assert m.mask()[tid[b"false"]] and not m.mask()[tid[b"true"]] and not m.mask()[tid[b"tr"]]
    m = matcher(ALL["small enum"], [b"[", b"true", b",", b"1", b",", b"null"])
    assert m.mask()[tid[b","]]  # four values are left
    vocab_bools = guided.Vocabulary.from_token_bytes([b"[", b"]", b",", b"true", b"false", b'"x"', b'"y"', b'"z"', b'"w"',
                                                      b'"v"', b'"u"', b'"t"', b"<eos>"], eos_token_ids=[12])
    schema = dict(ALL["booleans"])
    del schema["maxItems"]
    m = native.NativeUniqueGrammar(_ir(schema), vocab_bools).matcher()
    for t in (0, 3, 2, 4, 2, 5, 2, 6, 2, 7, 2, 8, 2, 9, 2, 10, 2):
        m.advance(t)
    assert m.mask().tolist() == [False] * 11 + [True, False]  # only "t" is left
    m.advance(11)
    assert m.mask().tolist() == [False, True] + [False] * 11  # every value used: no ","
    with pytest.raises(guided.ConstraintViolation):
        m.copy().advance(2)
    m.advance(1)
    assert m.accepts_eos()


def test_budget_and_closing_follow_the_python_engine(smollm2_vocab):
    """Budget masks and closing answers of a native matcher equal the Python engine's (the core's
    twin replays the tokens on `UniqueGrammar`)."""
    ir = _ir(ALL["integer"])
    ng, pg = native.NativeUniqueGrammar(ir, smollm2_vocab), UniqueGrammar(ir, smollm2_vocab)
    a, b = ng.matcher(), pg.matcher()
    tid = {bs: i for i, bs in enumerate(smollm2_vocab.token_bytes)}
    for piece in [b"[", b"1", b",", b"2", b",", b"1"]:
        for m in (a, b):
            m.advance(tid[piece])
        for remaining in (1, 3, 8):
            assert np.array_equal(a.budget_mask(remaining), b.budget_mask(remaining)), (piece, remaining)
        assert a.closing_distance() == b.closing_distance()
        assert a.closing_lower_bound() == b.closing_lower_bound()
        assert np.array_equal(a.closing_tokens(), b.closing_tokens())


def test_routing(smollm2_vocab):
    spec = guided.JsonSchema(ALL["integer"])
    g = guided.compile(spec, smollm2_vocab, engine="native")
    assert isinstance(g, native.NativeUniqueGrammar) and g.engine == "native"
    assert isinstance(guided.compile(spec, smollm2_vocab, engine="python"), UniqueGrammar)


def test_fill_bitmasks_in_native_threads(smollm2_vocab):
    """A batch of unique-items matchers filled in native threads, row for row equal to each
    matcher's own mask and the Python engine's."""
    ir = _ir(ALL["integer"])
    ng, pg = native.NativeUniqueGrammar(ir, smollm2_vocab), UniqueGrammar(ir, smollm2_vocab)
    tid = {bs: i for i, bs in enumerate(smollm2_vocab.token_bytes)}
    matchers, twins = [], []
    for pieces in ([], [b"["], [b"[", b"1"], [b"[", b"1", b",", b"1"], [b"[", b"1", b",", b"2", b",", b"1"]):
        a, b = ng.matcher(), pg.matcher()
        for p in pieces:
            a.advance(tid[p])
            b.advance(tid[p])
        matchers.append(a)
        twins.append(b)
    bitmask = np.zeros((len(matchers), (smollm2_vocab.size + 31) // 32), np.int32)
    native.fill_bitmasks(matchers, bitmask, threads=3)
    for row, (a, b) in enumerate(zip(matchers, twins)):
        assert np.array_equal(bitmask[row], a.words())
        assert np.array_equal(a.mask(), b.mask()), row
    assert not matchers[3].mask()[tid[b","]] and matchers[2].mask()[tid[b","]]


def test_malformed_unique_items_refused_by_the_core():
    """The core checks every state and rule it is handed (the IR's own validation aside)."""
    ir = _ir(ALL["integer"])
    vocab = _pieces_vocab()
    core = native._require()
    cfg = native._core_cfg(ir, vocab, 1000)
    unique = ir.unique_items
    good = dict(open_states=sorted(unique.open_states), item_rules=sorted(unique.item_rules), completions=256)
    core.unique_grammar(cfg, **good)
    bad = {
        "open state": dict(good, open_states=[ir.num_states]),
        "negative open state": dict(good, open_states=[-1]),
        "item rule": dict(good, item_rules=[len(ir.rules)]),
        "negative item rule": dict(good, item_rules=[-3]),
        "completions": dict(good, completions=-1),
    }
    for what, args in bad.items():
        with pytest.raises(guided.SpecError, match="malformed IR: unique items"):
            core.unique_grammar(cfg, **args)
    with pytest.raises(guided.SpecError, match="malformed IR"):
        native.NativeUniqueGrammar(replace(ir, unique_items=replace(unique, open_states=frozenset(["x"]))), vocab)
    with pytest.raises(guided.SpecError, match="unique_items"):
        native.NativeUniqueGrammar(replace(ir, unique_items=None), vocab)


# -- canonical values ---------------------------------------------------------------------------------


def _same(a: bytes, b: bytes) -> bool:
    core = native._require()
    return core.canonical_value(a) == core.canonical_value(b)


@settings(max_examples=80, deadline=None)
@given(values=st.lists(VALUES, min_size=2, max_size=2), seed=st.integers(0, 1 << 30), dup=st.booleans())
def test_canonical_values_as_python_compares_them(values, seed, dup):
    """Two JSON texts (often one value in two spellings): the core's canonical values are equal
    exactly where `canonical_json`'s are."""
    rng = random.Random(seed)
    if dup:
        values[1] = values[0]
    a, b = (_spell(v, rng).encode() for v in values)
    assert _same(a, b) == (canonical_json(a) == canonical_json(b)), (a, b)


EDGES = [
    b"1", b"1.0", b"1e0", b"10e-1", b"0.1E+1", b"-0", b"0", b"0.0e9", b"-0.0", b"100", b"1e2", b"1E+2", b"1.5",
    b"15e-1", b"-1", b"-1.00", b"12345678901234567890123", b"12345678901234567890123.0", b"1e999999999999999999",
    b"0.1e1000000000000000000", b"1e-1999999999999999997", b"true", b"false", b"null", b"NaN", b"Infinity",
    b"-Infinity", b'"A"', b'"\\u0041"', b'"\\u0061"', b'"a"', b'"\\ud83d\\ude00"', '"\U0001F600"'.encode(),
    b'"\\ud83d"', b'"\xed\xa0\xbd"', b'"\\ud83d\\u0041"', b'"\\ud83dA"', b'"\xc3\xa9"', b'"\\u00e9"', b'"\\/"', b'"/"',
    b'"\\n"', b'"\n"', b'"\xff"', b'"\xc0\xaf"', b'{"a": 1, "b": 2}', b'{"b": 2.0, "a": 1}', b'{"a": 1, "a": 2}',
    b'{"a": 2}', b'{"a": 2, "a": 1}', b"[1, 2]", b"[2, 1]", b"[1.0,2]", b" [ 1 ] ", b"[1,]", b"01", b"1.", b"-",
    b"", b" ", b"[", b'{"a" 1}', b"[1]x", b"\xef\xbb\xbf1", b"1\x00", b"\x001", b"1\x00\x00\x00",
    b"\xff\xfe1\x00", b"\xfe\xff\x001", b"\xff\xfe\x00\x001\x00\x00\x00", b"1\x002\x00", b'"\\x"', b'"\\u12"',
    b"[[[[1]]]]", b"[[[[1.0]]]]", b"{}", b"[]", b'""', b"[{}]", b"[[]]",
]


def test_canonical_value_edges():
    """Spellings at the edges of `json.loads` (numbers, escapes, surrogates, repeated keys, the
    encodings it detects, texts it refuses): equal to each other exactly as in Python."""
    python = [canonical_json(a) for a in EDGES]
    core = [native._require().canonical_value(a) for a in EDGES]
    for i, a in enumerate(EDGES):
        for j, b in enumerate(EDGES):
            assert (core[i] == core[j]) == (python[i] == python[j]), (a, b)
    assert sum(core[i] == core[j] for i in range(len(EDGES)) for j in range(i)) >= 20  # many spellings alike


def test_canonical_value_deep_nesting_as_bytes():
    """Nesting beyond the reader's depth compares as bytes (Python hits its recursion limit the
    same way); nesting the front-ends allow (128 levels) compares by value."""
    deep = 128
    assert _same(b"[" * deep + b"1" + b"]" * deep, b"[" * deep + b"1.0" + b"]" * deep)
    deeper = 5000
    assert not _same(b"[" * deeper + b"1" + b"]" * deeper, b"[" * deeper + b"1.0" + b"]" * deeper)
    assert json.loads(b"[" * deep + b"1" + b"]" * deep)


def _by_value(text: bytes):
    """An oracle for numbers of any exponent: (sign, significant digits, exponent) of the value
    0.digits x 10^exponent, with Python's unbounded ints (Decimal stops near 10^18)."""
    sign, whole, frac, exp = re.fullmatch(rb"(-?)(0|[1-9][0-9]*)(?:\.([0-9]+))?(?:[eE]([-+]?[0-9]+))?", text).groups()
    digits = (whole + (frac or b"")).decode()
    if not digits.strip("0"):
        return 0
    first = len(digits) - len(digits.lstrip("0"))
    return sign, digits.strip("0"), int(exp or 0) + len(whole) - first


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10 ** 30), st.integers(0, 6), st.integers(-(10 ** 25), 10 ** 25),
                          st.booleans()), min_size=2, max_size=2), st.booleans())
def test_numbers_of_any_exponent_compare_by_value(numbers, same_value):
    """Numbers with exponents past Decimal's range compare by value in the core and in
    `canonical_json` (``1e99...9`` equals ``10e99...8``), as the digits-and-exponent oracle says."""
    texts = []
    for coefficient, point, exponent, negative in numbers:
        digits = str(coefficient)
        point = min(point, len(digits) - 1)
        whole, frac = digits[:len(digits) - point], digits[len(digits) - point:]
        texts.append(("-" if negative else "") + whole + ("." + frac if frac else "") + f"e{exponent}")
    if same_value:  # the first value spelt again: a zero more, the exponent one less
        coefficient, point, exponent, negative = numbers[0]
        texts[1] = ("-" if negative else "") + f"{coefficient}0e{exponent - 1 - point}"
        texts[0] = ("-" if negative else "") + f"{coefficient}e{exponent - point}"
    a, b = (t.encode() for t in texts)
    assert _same(a, b) == (_by_value(a) == _by_value(b)) == (canonical_json(a) == canonical_json(b)), (a, b)


MASKBENCH = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data" / "maskbench"


@pytest.mark.slow
@pytest.mark.skipif(not MASKBENCH.exists(), reason="../shared/data/maskbench is not beside the repo")
@pytest.mark.filterwarnings("ignore")  # unknown formats, reported by the front-end
def test_maskbench_unique_cases_native_equals_python(smollm2_tokenizer, smollm2_vocab):
    """Every MaskBench case whose schema compiles with unique items checked at run time: native
    masks equal the Python engine's along the case's own test documents (valid and invalid, up
    to where a mask refuses).  (43 cases, about 16,000 masks, 40 s.)"""
    cases = masks = 0
    for path in sorted(MASKBENCH.glob("*.json")):
        text = path.read_text()
        if '"uniqueItems"' not in text:
            continue
        case = json.loads(text)
        try:
            ir = guided.compiler.lower(guided.JsonSchema(case["schema"]))
        except guided.GuidedError:
            continue
        if ir.unique_items is None:
            continue
        ng, pg = native.NativeUniqueGrammar(ir, smollm2_vocab), UniqueGrammar(ir, smollm2_vocab)
        cases += 1
        for test in case["tests"][:4]:
            ids = smollm2_tokenizer.encode(json.dumps(test["data"]), add_special_tokens=False)
            a, b = ng.matcher(), pg.matcher()
            for i, t in enumerate(ids[:400]):
                mb, ma = b.mask(), a.mask()
                masks += 1
                assert np.array_equal(ma, mb), (path.stem, smollm2_tokenizer.decode(ids[:i])[-60:])
                if not ma[t]:
                    break
                a.advance(t)
                b.advance(t)
    assert cases >= 30 and masks >= 5000
