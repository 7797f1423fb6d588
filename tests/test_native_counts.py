"""Item counts in the native core (`guided.engine.native.NativeCountsGrammar`, rule 12 of
`guided.ir.cfg`) against the Python engine (`guided.engine.counts`) and the reference recogniser.

Oracles: the Python engine's masks, bit for bit, along random walks over a real vocabulary
(SmolLM2's), with copies and rollbacks on the way; the reference recogniser's verdict on every
token of a small vocabulary whose tokens cross the bounds and `jsonschema` on whole documents
(both engines at once, in tests/test_item_counts.py).
"""

from __future__ import annotations

import json
import random

import jsonschema
import numpy as np
import pytest

import guided
from guided.compiler import engine_for
from guided.engine import native
from guided.engine.counts import CountsGrammar
from guided.ir import CfgIR
from tests.test_item_counts import SMALL, _ints, _ir

pytestmark = pytest.mark.skipif(not native.available(), reason="the native core is not built")

# Arrays past the front-end's own threshold (counted whatever the threshold), nested among others.
# Each with the count its walks must reach (a maximum, where they must meet one).
LARGE = [
    (_ints(0, 280), 280),
    (_ints(280, None), 285),
    (_ints(290, 300), 300),
    ({"type": "object", "properties": {"xs": _ints(260, 270), "ys": {"type": "array", "items": {"type": "string"},
                                                                        "maxItems": 300}}, "required": ["xs"]}, 270),
]


def _pair(ir: CfgIR, vocab):
    return native.NativeCountsGrammar(ir, vocab), CountsGrammar(ir, vocab)


def _differential_walks(ir: CfgIR, vocab, seed: str, walks: int, steps: int, lean_items: bool = False) -> int:
    """Random walks on the native masks; every mask, EOS verdict and forced bytes equal the Python
    engine's; a copy advanced elsewhere and rolled back leaves the matcher as it was.  Returns the
    number of masks compared and the largest count the Python engine's frames reached."""
    ng, pg = _pair(ir, vocab)
    rng = random.Random(seed)
    tb = vocab.token_bytes
    closes = [i for i, b in enumerate(tb) if b in (b"]", b"},", b"}", b"],")]
    items = [i for i, b in enumerate(tb) if b in (b"1", b"1,", b",", b", ", b"2", b'"a"', b'",')]
    compared = most = 0
    for _ in range(walks):
        a, b = ng.matcher(), pg.matcher()
        for step in range(steps):
            ma, mb = a.mask(), b.mask()
            compared += 1
            assert np.array_equal(ma, mb), (seed, step, np.flatnonzero(ma != mb)[:8].tolist(),
                                             [tb[t] for t in np.flatnonzero(ma != mb)[:8]])
            assert a.accepts_eos() == b.accepts_eos()
            assert a.forced_bytes() == b.forced_bytes()
            allowed = np.flatnonzero(ma)
            if allowed.size == 0:
                break
            ok_closes = [t for t in closes if ma[t]]
            ok_items = [t for t in items if ma[t]]
            r = rng.random()
            if lean_items:  # towards the bounds: an item with its separator nearly always
                ok_sep = [t for t in ok_items if b"," in tb[t]]
                t = int(rng.choice(ok_sep if ok_sep and r < 0.7 else ok_items if ok_items and r < 0.99 else allowed))
            elif ok_closes and r < 0.1:
                t = int(rng.choice(ok_closes))
            else:
                t = int(rng.choice(allowed))
            if rng.random() < 0.1 and t not in vocab.eos_token_ids:  # a copy wanders off and comes back
                c = a.copy()
                c.advance(t)
                c.rollback(1)
                assert np.array_equal(c.mask(), ma)
                a.advance(t)
                a.rollback(1)
                assert np.array_equal(a.mask(), ma)
            a.advance(t)
            b.advance(t)
            config = b._history[0]
            if config is not None and config.frames:
                most = max(most, max(n for _, n, _, _ in config.frames))
            if t in vocab.eos_token_ids:
                assert a.is_finished()
                break
    return compared, most


@pytest.mark.parametrize("schema", SMALL, ids=range(len(SMALL)))
def test_small_bounds_native_equal_python(schema, smollm2_vocab):
    """Every array counted: native masks equal the Python engine's along random walks."""
    ir = _ir(schema, len(schema.get("prefixItems", [])))
    assert ir.item_counts is not None
    assert _differential_walks(ir, smollm2_vocab, json.dumps(schema), walks=6, steps=50)[0] > 50


@pytest.mark.parametrize("schema,reach", LARGE, ids=range(len(LARGE)))
def test_large_bounds_native_equal_python(schema, reach, smollm2_vocab):
    """Long arrays (the front-end counts them by itself), walked mostly by item tokens so that the
    walks reach the bounds: native masks equal the Python engine's at every step."""
    ir = _ir(schema)
    assert ir.item_counts is not None
    _, most = _differential_walks(ir, smollm2_vocab, json.dumps(schema), walks=2, steps=1500, lean_items=True)
    assert most >= reach  # the walks met the bounds


def test_exact_bounds_on_a_long_array():
    """minItems 300, maxItems 302: "]" only from 300 items on, "," only below 302; a token past
    the bounds raises a guided error; rollback across the bound restores it."""
    vocab = guided.Vocabulary.from_token_bytes([b"[", b"]", b"1", b",", b"1,", b"<eos>"], eos_token_ids=[5])
    g = guided.compile(guided.JsonSchema(_ints(300, 302)), vocab, engine="native")
    assert isinstance(g, native.NativeCountsGrammar)
    m = g.matcher()
    m.advance(0)
    for k in range(299):
        assert not m.mask()[1]  # below the minimum: no "]"
        m.advance(4)  # "1,"
    m.advance(2)  # 300 items
    assert m.mask().tolist() == [False, True, True, True, True, False]
    m.advance(3)
    m.advance(2)  # 301
    m.advance(3)
    m.advance(2)  # 302
    assert m.mask().tolist() == [False, True, True, False, False, False]
    with pytest.raises(guided.ConstraintViolation):
        m.copy().advance(3)
    m.rollback(4)  # back to 300 items
    assert m.mask().tolist() == [False, True, True, True, True, False]
    m.advance(1)
    assert m.accepts_eos()
    m.advance(5)
    assert m.is_finished()
    ok = json.loads(b"[" + b"1," * 299 + b"1]")
    jsonschema.validate(ok, _ints(300, 302))


def test_routing_native_when_asked(smollm2_vocab):
    """guided.compile gives item counts the native core when native is asked (or the default),
    the Python engine when Python is asked."""
    spec = guided.JsonSchema(_ints(0, 1000))
    assert isinstance(guided.compile(spec, smollm2_vocab, engine="native"), native.NativeCountsGrammar)
    assert isinstance(guided.compile(spec, smollm2_vocab, engine="python"), CountsGrammar)
    assert guided.compile(spec, smollm2_vocab, engine="native").engine == "native"


def test_budget_and_closing_follow_the_counts(smollm2_vocab):
    """Budget masks and closing answers of a native matcher equal the Python engine's (the core's
    twin replays the tokens on `CountsGrammar`)."""
    ir = _ir(_ints(3, 400))
    ng, pg = _pair(ir, smollm2_vocab)
    a, b = ng.matcher(), pg.matcher()
    tid = {bs: i for i, bs in enumerate(smollm2_vocab.token_bytes)}
    for piece in [b"[", b"1", b",", b"2"]:
        for m in (a, b):
            m.advance(tid[piece])
        for remaining in (1, 3, 8, 40):
            assert np.array_equal(a.budget_mask(remaining), b.budget_mask(remaining)), (piece, remaining)
        assert a.closing_distance() == b.closing_distance()
        assert a.closing_lower_bound() == b.closing_lower_bound()
        assert np.array_equal(a.closing_tokens(), b.closing_tokens())


def test_malformed_item_counts_refused_by_the_core():
    """The core checks every index and bound it is handed (the IR's own validation aside)."""
    ir = _ir(_ints(0, 1000))
    vocab = guided.Vocabulary.from_token_bytes([b"[", b"]", b"1", b",", b"<eos>"], eos_token_ids=[4])
    core = native._require()
    cfg = native._core_cfg(ir, vocab, 1000)
    counts = ir.item_counts
    q = counts.bounds[0][0]
    good = dict(bounds=[(q, 0, 1000)], item_rules=sorted(counts.item_rules),
                separator_states=sorted(counts.separator_states), close_states=sorted(counts.close_states))
    core.counts_grammar(cfg, **good)
    sep = good["separator_states"][0]
    bad = {
        "state": dict(good, bounds=[(ir.num_states, 0, 5)]),
        "negative state": dict(good, bounds=[(-1, 0, 5)]),
        "bounds": dict(good, bounds=[(q, 5, 3)]),
        "bounds ": dict(good, bounds=[(q, -1, 3)]),
        "bounds  ": dict(good, bounds=[(q, 0, 2 ** 61)]),
        "twice": dict(good, bounds=[(q, 0, 5), (q, 1, 5)]),
        "item rule": dict(good, item_rules=[len(ir.rules)]),
        "disjoint": dict(good, close_states=[sep]),
        "separator state": dict(good, separator_states=[ir.num_states + 7]),
    }
    for what, args in bad.items():
        with pytest.raises(guided.SpecError, match="malformed IR"):
            core.counts_grammar(cfg, **args)
    from dataclasses import replace

    with pytest.raises(guided.SpecError, match="malformed IR"):
        native.NativeCountsGrammar(replace(ir, item_counts=replace(counts, bounds=((q, "x", None),))), vocab)
    with pytest.raises(guided.SpecError, match="item_counts"):
        native.NativeCountsGrammar(replace(ir, item_counts=None), vocab)


def test_threshold_unchanged_for_plain_grammars(smollm2_vocab):
    """An IR without item counts keeps the plain native CFG grammar (no counts on its path)."""
    ir = _ir(_ints(2, 4), 10 ** 9)
    assert isinstance(engine_for(ir, smollm2_vocab, engine="native"), native.NativeCfgGrammar)


def test_fill_bitmasks_in_native_threads(smollm2_vocab):
    """A batch of counts matchers at different counts, filled in native threads, row for row
    equal to each matcher's own mask (and the Python engine's)."""
    ir = _ir(_ints(2, 300))
    ng, pg = _pair(ir, smollm2_vocab)
    tid = {bs: i for i, bs in enumerate(smollm2_vocab.token_bytes)}
    matchers, twins = [], []
    for n in (0, 1, 2, 150, 299, 300):
        a, b = ng.matcher(), pg.matcher()
        pieces = [b"["] + [b"1", b","] * n
        for piece in pieces[:-1] if n else pieces:  # n items, the last without its ","
            a.advance(tid[piece])
            b.advance(tid[piece])
        matchers.append(a)
        twins.append(b)
    bitmask = np.zeros((len(matchers), (smollm2_vocab.size + 31) // 32), np.int32)
    native.fill_bitmasks(matchers, bitmask, threads=3)
    for row, (a, b) in enumerate(zip(matchers, twins)):
        assert np.array_equal(bitmask[row], a.words())
        assert np.array_equal(a.mask(), b.mask()), row
    assert not matchers[0].mask()[tid[b"]"]] and matchers[2].mask()[tid[b"]"]]
    assert matchers[-2].mask()[tid[b","]] and not matchers[-1].mask()[tid[b","]]
