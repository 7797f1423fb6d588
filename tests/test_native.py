"""Differential tests: the native core's masks equal the Python engines' bit for bit.

Walks run both engines side by side over documents of the shipped grammars, the practical
regexes, a sample of the shared MaskBench schemas and hypothesis-generated schemas; at every
step they compare the packed masks, ``accepts_eos``, ``is_finished`` and ``forced_bytes``, take
random detours (an allowed token on a copy, a forbidden token that both must refuse) and check
``rollback`` and ``copy``.  The Python engines are themselves checked against Lark, ``re`` and
``jsonschema`` elsewhere; here only agreement is asserted.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import guided
from guided.engine import native
from guided.errors import ConstraintViolation, GuidedError
from guided.frontends.lark import Grammar
from guided.frontends.regex import regex_to_dfa
from tests.grammar_sampler import SentenceSampler, _distances, _random_walk
from tests.regexes import PRACTICAL

pytestmark = pytest.mark.skipif(not native.available(), reason="the native core is not built")

MASKBENCH = Path(__file__).resolve().parents[2] / "shared" / "data" / "maskbench"
SHIPPED = ["json", "xml", "sql", "arithmetic", "python_call", "tool_call"]


def words(matcher, width: int) -> np.ndarray:
    out = np.full((1, width), -1, np.int32)  # garbage first: fill_bitmask must write every word
    matcher.fill_bitmask(out, 0)
    return out[0]


def assert_agree(py, nat, width: int, where: str) -> np.ndarray:
    expected = words(py, width)
    got = words(nat, width)
    if not np.array_equal(expected, got):
        diff = np.flatnonzero(np.unpackbits((expected ^ got).view(np.uint8), bitorder="little"))
        raise AssertionError(f"{where}: masks differ on tokens {diff[:20].tolist()} "
                             f"(python allows {[bool(expected[t >> 5] >> (t & 31) & 1) for t in diff[:20]]})")
    assert py.accepts_eos() == nat.accepts_eos(), where
    assert py.is_finished() == nat.is_finished(), where
    assert py.forced_bytes() == nat.forced_bytes(), where
    assert py.num_tokens == nat.num_tokens, where
    if isinstance(nat.grammar, native.NativeRegexGrammar):  # grammars': replayed on the Python engine
        assert py.closing_distance() == nat.closing_distance(), where
    return expected


def advance_both(py, nat, token: int, where: str) -> bool:
    """Advance both; they must agree on whether the token is accepted."""
    outcomes = []
    for m in (py, nat):
        try:
            m.advance(token)
            outcomes.append(True)
        except ConstraintViolation:
            outcomes.append(False)
    assert outcomes[0] == outcomes[1], f"{where}: advance({token}) python={outcomes[0]} native={outcomes[1]}"
    return outcomes[0]


def differential_walk(py_grammar, nat_grammar, ids: list[int], rng: random.Random, label: str,
                      detours: float = 0.3) -> int:
    """Walk ``ids`` through both engines, comparing everything at each step; returns the steps walked."""
    vocab = py_grammar.vocab
    width = (vocab.size + 31) // 32 + 1  # one spare word: must be zeroed
    py, nat = py_grammar.matcher(), nat_grammar.matcher()
    history = []
    for k, token in enumerate(ids):
        where = f"{label} step {k}"
        mask = assert_agree(py, nat, width, where)
        if rng.random() < detours:
            allowed = np.flatnonzero(np.unpackbits(mask.view(np.uint8), bitorder="little")[:vocab.size])
            if allowed.size:
                pf, nf = py.copy(), nat.copy()
                detour = int(rng.choice(allowed.tolist()))
                assert advance_both(pf, nf, detour, where + f" detour {detour}")
                assert_agree(pf, nf, width, where + f" after detour {detour}")
                pf.rollback(1)
                nf.rollback(1)
                assert_agree(pf, nf, width, where + " after detour rollback")
            forbidden = rng.randrange(vocab.size + 8)
            if forbidden >= vocab.size or not (mask[forbidden >> 5] >> (forbidden & 31)) & 1:
                assert not advance_both(py.copy(), nat.copy(), forbidden, where + f" forbidden {forbidden}")
        if not advance_both(py, nat, token, where):
            return k
        history.append(token)
        if history and rng.random() < 0.1:  # roll back a few tokens and replay them
            n = rng.randint(1, len(history))
            py.rollback(n)
            nat.rollback(n)
            assert_agree(py, nat, width, where + f" rollback {n}")
            for t in history[len(history) - n:]:
                assert advance_both(py, nat, t, where + " replay")
    assert_agree(py, nat, width, f"{label} end")
    for eos in sorted(vocab.eos_token_ids)[:1]:
        if advance_both(py, nat, eos, f"{label} eos"):
            assert_agree(py, nat, width, f"{label} after eos")
    with pytest.raises(ValueError):
        nat.rollback(nat.num_tokens + 1)
    return len(ids)


def tokenize(tokenizer, vocab, text: str) -> list[int] | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if b"".join(vocab.token_bytes[i] for i in ids) != text.encode():
        return None
    return ids


def both(spec, vocab):
    return (guided.compile(spec, vocab, engine="python", cache=False),
            guided.compile(spec, vocab, engine="native", cache=False))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_grammars_agree(name, smollm2_tokenizer, smollm2_vocab):
    py, nat = both(Grammar(name), smollm2_vocab)
    sampler = SentenceSampler(Grammar(name))
    rng = random.Random(f"native-{name}")
    walked = 0
    for i in range(6):
        text = sampler.sample(rng)
        ids = tokenize(smollm2_tokenizer, smollm2_vocab, text)
        if ids is None:
            continue
        walked += differential_walk(py, nat, ids[:80], rng, f"{name} sentence {i} {text[:40]!r}")
        # and a mutated text, which usually leaves the language part-way
        pos = rng.randrange(len(text) + 1)
        bad = tokenize(smollm2_tokenizer, smollm2_vocab, text[:pos] + rng.choice("}])\"'<>&;,") + text[pos:])
        if bad:
            differential_walk(py, nat, bad[:80], rng, f"{name} mutated {i}")
    assert walked > 20


@pytest.mark.parametrize("name", sorted(PRACTICAL))
def test_regexes_agree(name, smollm2_tokenizer, smollm2_vocab):
    spec = guided.Regex(PRACTICAL[name])
    py, nat = both(spec, smollm2_vocab)
    dfa = regex_to_dfa(spec)
    dist = _distances(dfa)
    rng = random.Random(f"native-regex-{name}")
    for i in range(3):
        text = _random_walk(dfa, dist, rng).decode("utf-8", errors="replace")
        ids = tokenize(smollm2_tokenizer, smollm2_vocab, text)
        if ids:
            differential_walk(py, nat, ids, rng, f"regex {name} {text[:30]!r}", detours=0.5)
    # budget masks are native for regexes: they must agree too
    pm, nm = py.matcher(), nat.matcher()
    for remaining in (0, 1, 2, 5, 40):
        assert np.array_equal(pm.budget_mask(remaining), nm.budget_mask(remaining)), remaining


def test_wide_states_derived_from_their_usual_successor(smollm2_tokenizer, smollm2_vocab):
    """Declared property names beside free ones: the lexer states inside a name that still matches
    a declared one are unions, derived from the free name's state by walking only where they differ."""
    names = ["name", "nickname", "namespace", "number", "nonce", "note", "n", "node_id", "nested"]
    schema = {"type": "object", "properties": {n: {"type": "integer"} for n in names}}
    py, nat = both(guided.JsonSchema(schema), smollm2_vocab)
    rng = random.Random("derived")
    for doc in ({"name": 1, "nickname": 2, "extra": 3, "nonc": 4, "numbers": 5, "nodeid": 6},
                {"n": 1, "nested": 2, "nam": 3, "no": 4, "x\"y": 5}):
        ids = tokenize(smollm2_tokenizer, smollm2_vocab, json.dumps(doc))
        differential_walk(py, nat, ids, rng, f"derived {doc}", detours=0.5)
    stats = nat.walk_stats()
    assert stats["derived"] > 0, stats


@pytest.mark.parametrize("spec", [guided.Regex(r"(ab|b)+1?"), guided.JsonSchema({"type": "array", "items": {"enum": ["ab", "b"]}})],
                         ids=["regex", "grammar"])
def test_tokens_spelt_alike_are_decided_alike(spec):
    """Native walks mark only a spelling's first token: the others must still get its bit."""
    spellings = [b"a", b"b", b"ab", b"1", b"ab", b"[", b"]", b'"', b'"ab', b"b", b",", b'", "', b"<eos>", b'"]']
    vocab = guided.Vocabulary.from_token_bytes(spellings, eos_token_ids=[12])
    py, nat = both(spec, vocab)
    text = b'["ab", "b"]' if isinstance(spec, guided.JsonSchema) else b"abb1"
    ids, rest = [], text
    while rest:  # greedy longest-first tokenization over the first spelling of each text
        best = max((i for i, t in enumerate(spellings) if t != b"<eos>" and rest.startswith(t)),
                   key=lambda i: (len(spellings[i]), -i))
        ids.append(best)
        rest = rest[len(spellings[best]):]
    differential_walk(py, nat, ids, random.Random(0), f"duplicates {spec}", detours=1.0)
    m = nat.matcher()
    allowed = np.flatnonzero(m.mask())
    for a, b in ((2, 4), (1, 9)):  # every spelling of "ab" and of "b" is decided alike
        assert (a in allowed) == (b in allowed)


def test_subsequence_walk_equals_numpy_walk(smollm2_vocab):
    """The core's trie walk lent to budget-aware closing (`closing.lend_walk`) computes the token
    advances and best advances of the level-by-level numpy pass, integer for integer: on the real
    vocabulary, and on one with duplicate spellings and special tokens."""
    from guided.engine.closing import SubsequenceCover
    from guided.engine.token_table import TokenTable

    small = guided.Vocabulary.from_token_bytes([b"a", b"ab", b'"', b'"}', b"ab", b"", b"<s>", b"}"],
                                               eos_token_ids=[6])
    rng = random.Random(7)
    for vocab in (smollm2_vocab, small):
        table = TokenTable.of(vocab)
        reference, lent = SubsequenceCover(table), SubsequenceCover(table)
        lent.walk = native.native_trie(vocab).subsequence_advances
        for k in range(25):
            size = rng.choice([1, 1, 2, 5, 40, 200])
            seq = tuple(frozenset(rng.sample(range(256), size)) for _ in range(rng.randint(0, 9)))
            if k % 5 == 0:
                seq = tuple(frozenset([b]) for b in b'", "a": 1}')
            assert np.array_equal(reference.advances(seq), lent.advances(seq)), seq
            starts = list(range(len(seq) + 1))
            assert reference._max_advance(seq, starts) == lent._max_advance(seq, starts), seq
    out = np.empty(smollm2_vocab.size, np.int64)
    walk = native.native_trie(smollm2_vocab).subsequence_advances
    with pytest.raises(ValueError):
        walk(b"\0" * 31, 0, out)  # not whole positions
    with pytest.raises(ValueError):
        walk(b"\0" * 32, 2, out)  # start past the end
    with pytest.raises(ValueError):
        walk(b"\0" * 32, 0, out[:-1])  # one entry short
    with pytest.raises(TypeError):
        walk(b"\0" * 32, 0, out.astype(np.int32))  # never converted: the write would be lost


def _random_dense(rng: random.Random, states: int) -> tuple[np.ndarray, np.ndarray]:
    """A random dense table (state 0 dead), few distinct targets a row as regex automata have."""
    table = np.zeros((states, 256), np.int32)
    for s in range(1, states):
        cuts = sorted(rng.sample(range(1, 256), rng.randint(0, 4)))
        bounds = [0] + cuts + [256]
        for lo, hi in zip(bounds, bounds[1:]):
            table[s, lo:hi] = rng.choice([0, 0] + list(range(states)))
    accepting = np.array([False] + [rng.random() < 0.3 for _ in range(states - 1)])
    return table, accepting


def test_compiled_automaton_kernels_equal_numpy():
    """The core's trim and products (lent to guided.ir.dfa) give the numpy code's automata, state
    for state, on random tables; malformed tables are refused, never read out of bounds."""
    from guided.errors import LimitExceeded, SpecError
    from guided.ir import dfa as dfa_mod
    from guided.ir import dfa_ops

    core = native._require()
    rng = random.Random(11)
    for _ in range(200):
        table, accepting = _random_dense(rng, rng.randint(1, 12))
        initial = rng.randrange(table.shape[0])
        want = dfa_mod._numpy_trim(table, accepting, initial, None, "t")
        got = core.dfa_trim(table, accepting, initial)
        assert np.array_equal(want.transitions, got[0]) and np.array_equal(want.accepting, got[1])
        assert want.initial == got[2]
    saved = dfa_mod.CompiledKernels.lent()
    try:
        for _ in range(150):
            a = dfa_mod.trim(*_random_dense(rng, rng.randint(2, 9)), initial=1)
            b = dfa_mod.trim(*_random_dense(rng, rng.randint(2, 9)), initial=1)
            results = []
            for kernels in ((), saved):
                dfa_mod.lend_kernels(*kernels)
                results.append([op(a, b) for op in (dfa_ops.intersect, dfa_ops.difference)])
            for want, got in zip(*results):
                assert np.array_equal(want.transitions, got.transitions) and want.initial == got.initial
                assert np.array_equal(want.accepting, got.accepting)
    finally:
        dfa_mod.lend_kernels(*saved)
    with pytest.raises(LimitExceeded, match="x: more than 3 automaton states"):
        dfa_ops.intersect(regex_to_dfa("[a-z]{0,8}"), regex_to_dfa("[a-m]{0,8}"), max_states=3, what="x")
    bad = np.zeros((2, 256), np.int32)
    bad[1, 7] = 2  # a target past the table
    with pytest.raises(SpecError, match="out of range"):
        core.dfa_trim(bad, np.array([False, True]), 1)
    negative = np.zeros((2, 256), np.int32)
    negative[1, 200] = -7
    with pytest.raises(SpecError, match="state 1 on byte 200 out of range"):
        core.dfa_trim(negative, np.array([False, True]), 1)
    with pytest.raises(SpecError, match="initial"):
        core.dfa_trim(np.zeros((2, 256), np.int32), np.array([False, True]), 5)
    with pytest.raises(ValueError):
        core.dfa_trim(np.zeros((2, 255), np.int32), np.array([False, True]), 1)
    with pytest.raises(ValueError):
        core.dfa_product(bad, np.array([False, True]), 1, bad, np.array([False, True]), 1, 2, False, 10, "x")


def _random_nfa(rng: random.Random, states: int):
    """A random ByteNFA: byte-range moves (now and then an empty one, lo > hi), epsilon moves
    (cycles included), a few accepting states and a random start."""
    from guided.ir.dfa import ByteNFA

    nfa = ByteNFA()
    for _ in range(states - 1):
        nfa.add_state()
    for s in range(states):
        for _ in range(rng.randint(0, 4)):
            lo = rng.choice([rng.randrange(256), rng.randrange(0x61, 0x7B)])
            hi = min(255, lo + rng.choice([0, 0, 1, 5, 30, 200])) if rng.random() > 0.05 else lo - 1
            nfa.ranges[s].append((lo, hi, rng.randrange(states)))
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            nfa.add_epsilon(s, rng.randrange(states))
    nfa.accepting.update(rng.sample(range(states), rng.randint(0, min(3, states))))
    nfa.start = rng.randrange(states)
    return nfa


def _same_dfa(want, got) -> bool:
    return (np.array_equal(want.transitions, got.transitions) and np.array_equal(want.accepting, got.accepting)
            and want.initial == got.initial)


def test_compiled_determinize_and_minimize_equal_python():
    """The core's subset construction and minimisation (lent to guided.ir.dfa) give the Python
    code's automata state for state, on random NFAs and DFAs and on the practical regexes; the
    same limits hold; malformed NFAs and tables are refused with a guided error."""
    import time

    from guided.errors import LimitExceeded, SpecError
    from guided.ir import dfa as dfa_mod

    core = native._require()
    rng = random.Random(17)
    saved = dfa_mod.CompiledKernels.lent()
    assert saved[2] is core.nfa_determinize and saved[3] is core.dfa_minimize
    try:
        for _ in range(300):
            nfa = _random_nfa(rng, rng.randint(1, 14))
            far = time.monotonic() + 60
            want = dfa_mod._subsets(nfa, dfa_mod.Limits(), far, "t", "slow")
            got = core.nfa_determinize(nfa.ranges, nfa.epsilons, list(nfa.accepting), nfa.start, 100_000, 60.0,
                                       "t", "slow")
            assert np.array_equal(want[0], got[0]) and np.array_equal(want[1], got[1]) and got[2] == 1
            results = []
            for kernels in ((), saved):
                dfa_mod.lend_kernels(*kernels)
                results.append([dfa_mod.determinize(nfa, minimal=m) for m in (False, True)])
            assert all(_same_dfa(w, g) for w, g in zip(*results))
        changed = 0
        for _ in range(300):  # minimisation alone, on trimmed and untrimmed tables
            table, accepting = _random_dense(rng, rng.randint(1, 16))
            if rng.random() < 0.6:  # a twin of every live state, each edge to either: much to merge
                n = table.shape[0]
                twin = np.arange(n, dtype=np.int32) + n - 1
                twin[0] = 0
                table = np.concatenate([table, table[1:]])
                table = np.where(np.random.default_rng(rng.randrange(99)).random(table.shape) < 0.5, table,
                                 twin[table]).astype(np.int32)
                accepting = np.concatenate([accepting, accepting[1:]])
            dfa = dfa_mod.ByteDFA(table, accepting, rng.randrange(table.shape[0]))
            if rng.random() < 0.5:
                dfa = dfa_mod._numpy_trim(table, accepting, dfa.initial, None, "t")
            results = []
            for kernels in ((), saved):
                dfa_mod.lend_kernels(*kernels)
                results.append(dfa_mod.minimize(dfa))
            assert _same_dfa(*results)
            assert (results[0] is dfa) == (results[1] is dfa)
            changed += results[0] is not dfa
        assert changed > 50
        # Few rounds allowed: both give up on the same automata (a chain needs a round per state).
        limit = dfa_mod.MINIMIZE_ROUNDS
        try:
            dfa_mod.MINIMIZE_ROUNDS = 3
            for pattern in ["a{7}", "(ab|ac){2}", "[a-c]{0,4}x", "(a|b)*abb"]:
                nfa_dfa = regex_to_dfa(pattern)
                unminimal = dfa_mod.ByteDFA(np.concatenate([nfa_dfa.transitions, nfa_dfa.transitions[1:]]),
                                            np.concatenate([nfa_dfa.accepting, nfa_dfa.accepting[1:]]), 1)
                results = []
                for kernels in ((), saved):
                    dfa_mod.lend_kernels(*kernels)
                    results.append(dfa_mod.minimize(unminimal))
                assert _same_dfa(*results) and (results[0] is unminimal) == (results[1] is unminimal)
        finally:
            dfa_mod.MINIMIZE_ROUNDS = limit
        for pattern in PRACTICAL.values():
            results = []
            for kernels in ((), saved):
                dfa_mod.lend_kernels(*kernels)
                try:
                    results.append(regex_to_dfa(pattern))
                except GuidedError as exc:
                    results.append(str(exc))
            if isinstance(results[0], str):
                assert results[0] == results[1], pattern
            else:
                assert _same_dfa(*results), pattern
    finally:
        dfa_mod.lend_kernels(*saved)
    # Limits: too many states, and a deadline already passed (looked at every 256 subsets).
    chain = dfa_mod.ByteNFA()
    for _ in range(600):
        chain.add_sequence(chain.num_states - 1, [(0x61, 0x62)], chain.add_state())
    chain.accepting.add(chain.num_states - 1)
    for kernels in ((), saved):
        dfa_mod.lend_kernels(*kernels)
        try:
            with pytest.raises(LimitExceeded, match=r"^c: more than 100 automaton states \(raise the limit"):
                dfa_mod.determinize(chain, dfa_mod.Limits(max_states=100), what="c")
            with pytest.raises(LimitExceeded, match=r"^c: construction took longer than max_seconds=10.0 s$"):
                dfa_mod.determinize(chain, dfa_mod.Limits(deadline=time.monotonic() - 1), what="c")
            assert dfa_mod.determinize(chain, dfa_mod.Limits(max_states=602), what="c").num_states == 602
        finally:
            dfa_mod.lend_kernels(*saved)
    # Malformed input never reaches the construction.
    ok = ([[(97, 97, 1)], []], [[], []], [1], 0)
    assert core.nfa_determinize(*ok, 10, 1.0, "m", "slow")[0].shape == (3, 256)
    for ranges, epsilons, accepting, start, message in [
        ([[(97, 97, 2)], []], [[], []], [1], 0, "move of state 0"),
        ([[(97, 97, -1)], []], [[], []], [1], 0, "move of state 0"),
        ([[(97, 256, 1)], []], [[], []], [1], 0, "byte range of state 0 outside 0..255"),
        ([[(-1, 3, 1)], []], [[], []], [1], 0, "byte range of state 0 outside 0..255"),
        ([[], [(0, 0, 0)]], [[], [5]], [1], 0, "epsilon of state 1"),
        ([[], []], [[]], [1], 0, "one epsilon list per state"),
        ([[], []], [[], []], [2], 0, "accepting state"),
        ([[], []], [[], []], [1], 2, "start state"),
        ([], [], [], 0, "no states"),
    ]:
        with pytest.raises(SpecError, match=f"^m: malformed automaton: {message}"):
            core.nfa_determinize(ranges, epsilons, accepting, start, 10, 1.0, "m", "slow")
    with pytest.raises(TypeError):
        core.nfa_determinize([[(97, 97)]], [[]], [], 0, 10, 1.0, "m", "slow")  # a move without a target
    bad = np.zeros((2, 256), np.int32)
    bad[1, 7] = 2
    with pytest.raises(SpecError, match="out of range"):
        core.dfa_minimize(bad, np.array([False, True]), 1, 8, 1.0)
    with pytest.raises(SpecError, match="initial"):
        core.dfa_minimize(np.zeros((2, 256), np.int32), np.array([False, True]), -1, 8, 1.0)
    with pytest.raises(ValueError):
        core.dfa_minimize(np.zeros((2, 255), np.int32), np.array([False, True]), 1, 8, 1.0)
    with pytest.raises(ValueError):
        core.dfa_minimize(np.zeros((2, 256), np.int32), np.array([False]), 1, 8, 1.0)


def _tables_in_order(t) -> tuple:
    """Every field of LALR `Tables`, dicts as their item lists: the order is compared too (it is
    the serialised IR's)."""
    return (tuple(tuple(d.items()) for d in t.actions), tuple(tuple(d.items()) for d in t.gotos), t.rules,
            t.nonterminals, t.rule_names, t.start_state, t.end_state, t.kernels, t.conflicts, t.rhs, t.collisions)


def _random_cfg(rng: random.Random) -> tuple[list, dict[str, int], list[int]]:
    """A random grammar: empty rules, left/right recursion, duplicated rules (reduce/reduce
    conflicts), shift/reduce conflicts, priorities with ties, terminal ids spread past 64 bits."""
    n_nt = rng.randint(1, 9)
    terminal_ids = rng.sample(range(rng.choice([8, 70, 200])), rng.randint(1, 7))
    terminals = {f"T{i}": t for i, t in enumerate(terminal_ids)}
    symbols = list(terminals) + [f"n{i}" for i in range(n_nt)]
    rules = []
    for a in range(n_nt):
        for _ in range(rng.randint(1, 4)):
            rules.append((f"n{a}", tuple(rng.choice(symbols) for _ in range(rng.choice([0, 1, 1, 2, 2, 3, 4])))))
    for _ in range(rng.randint(0, 3)):  # the same right-hand side for two nonterminals, or twice
        lhs, rhs = rng.choice(rules)
        rules.insert(rng.randrange(len(rules) + 1), (rng.choice([lhs, f"n{rng.randrange(n_nt)}"]), rhs))
    return rules, terminals, [rng.choice([0, 0, 1, 2]) for _ in rules]


def test_compiled_lalr_tables_equal_python():
    """The compiled LALR(1) construction gives `lalr_tables`' very tables (states numbered alike,
    every dict in the same order, kernels, conflicts, collisions) on the shipped grammars and
    random grammars with conflicts, priorities and empty rules; ``check`` is called back and its
    exception stops the construction; malformed integer rules are refused with a guided error."""
    import lark

    from guided.errors import SpecError
    from guided.ir import dfa as dfa_mod
    from guided.ir.lalr import lalr_tables

    core = native._require()
    saved = dfa_mod.CompiledKernels.lent()
    assert saved[4] is core.lalr_build
    without = saved[:4]

    def both(*args, **kwargs) -> list:
        out = []
        for kernels in (without, saved):
            dfa_mod.lend_kernels(*kernels)
            out.append(_tables_in_order(lalr_tables(*args, **kwargs)))
        return out

    rng = random.Random(23)
    try:
        for name in SHIPPED:
            parser = lark.Lark.open(str(Path(__file__).resolve().parents[1] / "grammars" / f"{name}.lark"),
                                    parser="lalr", lexer="basic")
            names = sorted({s.name for r in parser.rules for s in r.expansion if s.is_term})
            rules = [(r.origin.name, tuple(s.name for s in r.expansion)) for r in parser.rules]
            want, got = both(rules, {t: i for i, t in enumerate(names)}, "start",
                             priority=[r.options.priority or 0 for r in parser.rules])
            assert want == got, name
        seen_conflicts = seen_collisions = 0
        for _ in range(400):
            rules, terminals, priority = _random_cfg(rng)
            want, got = both(rules, terminals, "n0", priority=priority if rng.random() < 0.5 else None)
            assert want == got, rules
            seen_conflicts += bool(want[8])
            seen_collisions += bool(want[10])
        assert seen_conflicts > 20 and seen_collisions > 100  # the conflict paths were exercised
        # Terminal ids past the twin's 2**20 take the Python code, to the same tables.
        want, got = both([("s", ("A", "s")), ("s", ())], {"A": 1 << 21}, "s")
        assert want == got and (1 << 21) in dict(want[0][0])

        # ``check`` is called back during a large construction, and what it raises stops it.
        rules = [(f"n{i}", (f"n{i + 1}", "A")) for i in range(3000)] + [("n3000", ("B",)), ("n0", ())]
        calls = []
        for kernels in (without, saved):
            dfa_mod.lend_kernels(*kernels)
            calls.append(0)

            def check() -> None:
                calls[-1] += 1
                if calls[-1] == 3:
                    raise KeyboardInterrupt("stop")

            with pytest.raises(KeyboardInterrupt, match="stop"):
                lalr_tables(rules, {"A": 0, "B": 1}, "n0", check=check)
        assert calls == [3, 3]
    finally:
        dfa_mod.lend_kernels(*saved)
    # Malformed integer rules never reach the construction (bias 3: terminals 0-1, end 2, nonterminals 3-4).
    good = dict(lhs=[0, 1], rhs=[[4, 0], [1]], n_nt=2, bias=3, start=0, priority=[], check=None)
    assert core.lalr_build(**good)[5] >= 0
    for bad in [dict(lhs=[0, 2]), dict(lhs=[-1, 1]), dict(rhs=[[4, 2], [1]]), dict(rhs=[[5], [1]]),
                dict(rhs=[[-1], [1]]), dict(rhs=[[1]]), dict(start=2), dict(priority=[1]), dict(n_nt=0),
                dict(bias=0), dict(bias=(1 << 20) + 1), dict(n_nt=4)]:
        with pytest.raises(SpecError, match="malformed rules"):
            core.lalr_build(**{**good, **bad})


@pytest.mark.filterwarnings("ignore::guided.UnknownFormatWarning")  # MaskBench schemas have some
@pytest.mark.skipif(not MASKBENCH.is_dir(), reason="shared MaskBench data not present")
@pytest.mark.parametrize("compiled", ["kernels", "lalr"])
def test_schema_ir_is_the_same_with_compiled_code(compiled):
    """Whole JSON Schema compilations give the same serialised IR with compiled code as with the
    numpy/Python code (a sample of the shared MaskBench schemas): ``kernels``, the automaton
    kernels (trim, products, subset construction, minimisation) against none lent; ``lalr``, the
    LALR(1) construction against `lalr_tables`' Python code (the automaton kernels lent in both)."""
    from guided.ir import dfa as dfa_mod
    from guided.ir.serialize import to_bytes

    saved = dfa_mod.CompiledKernels.lent()
    if compiled == "kernels":
        assert all(saved), "the core lends every automaton kernel"
        pair = ((), saved)
    else:
        assert saved[4] is not None
        pair = (saved[:4], saved)
    compared = 0
    try:
        for path in maskbench_sample(60):
            schema = json.loads(path.read_text())["schema"]
            out = []
            for kernels in pair:
                dfa_mod.lend_kernels(*kernels)
                try:
                    out.append(to_bytes(guided.JsonSchema(schema).to_ir(), compress=False))
                except GuidedError as exc:
                    out.append(type(exc).__name__)
            assert out[0] == out[1], path.name
            compared += isinstance(out[0], bytes)
    finally:
        dfa_mod.lend_kernels(*saved)
    assert compared >= 40


def _xml_doc(rng: random.Random, depth: int = 0) -> str:
    """A random XML element: nested names sharing prefixes, attributes (quotes of both kinds,
    sometimes a duplicate), text with references, comments and CDATA."""
    name = rng.choice(["a", "ab", "abc", "item", "items", "x_1", "get", "get_weather", "b.c", "d-e"])
    attrs = ""
    used = rng.sample(["id", "k", "key", "v", "i"], rng.randint(0, 3))
    if used and rng.random() < 0.15:
        used.append(used[0])  # a duplicate attribute: leaves the language where its name ends
    for attr in used:
        q = rng.choice(['"', "'"])
        value = rng.choice(["1", "a&lt;b", "x y", "", "q'", 'q"'])
        value = value.replace(q, "&quot;" if q == '"' else "&apos;")
        attrs += rng.choice([" ", "\n  ", "  "]) + attr + rng.choice(["=", " = "]) + q + value + q
    if depth >= 3 or rng.random() < 0.2:
        return f"<{name}{attrs}{rng.choice(['/>', ' />'])}"
    parts = []
    for _ in range(rng.randint(0, 3)):
        parts.append(rng.choice([
            lambda: _xml_doc(rng, depth + 1),
            lambda: rng.choice(["text", " a &amp; b &gt; c ", "\n  ", "&#65;&#x263A;", "ok]]no"]),
            lambda: "<!-- note -->",
            lambda: "<![CDATA[ <x> & ]]>",
        ])())
    close = name
    if rng.random() < 0.1:  # a wrong close tag: leaves the language at its first wrong byte
        close = rng.choice([name[:-1] or "z", name + "s", "other"])
    return f"<{name}{attrs}>{''.join(parts)}</{close}{rng.choice(['>', ' >'])}"


def test_xml_matched_names_agree(smollm2_tokenizer, smollm2_vocab):
    """guided.Xml(): the native XML engine (close-tag names, unique attributes) against the Python one."""
    py, nat = both(guided.Xml(), smollm2_vocab)
    assert isinstance(nat, native.NativeXmlGrammar)
    rng = random.Random("native-xml")
    walked = 0
    for i in range(24):
        doc = _xml_doc(rng)
        if rng.random() < 0.3:
            doc = '<?xml version="1.0"?>\n' + doc
        ids = tokenize(smollm2_tokenizer, smollm2_vocab, doc)
        if ids:
            walked += differential_walk(py, nat, ids[:150], rng, f"xml {i} {doc[:50]!r}", detours=0.4)
    assert walked > 300
    # budget masks and closing distances replay on the Python engine: they must agree too
    pm, nm = py.matcher(), nat.matcher()
    for t in tokenize(smollm2_tokenizer, smollm2_vocab, "<root><item k='1'>x</item><it"):
        pm.advance(t)
        nm.advance(t)
    for remaining in (0, 1, 3, 10):
        assert np.array_equal(pm.budget_mask(remaining), nm.budget_mask(remaining)), remaining
    assert pm.closing_distance() == nm.closing_distance()


def maskbench_sample(count: int) -> list[Path]:
    files = sorted(MASKBENCH.glob("*.json"))
    if not files:
        return []
    step = max(1, len(files) // count)
    return files[::step][:count]


def _both_engines(spec, vocab) -> tuple | None:
    """``spec`` compiled by the Python engine and by the native core; None where the Python
    engine refuses it, after checking that the native core refuses it with the same error."""
    try:
        py = guided.compile(spec, vocab, engine="python", cache=False)
    except GuidedError as e:
        with pytest.raises(type(e)):
            guided.compile(spec, vocab, engine="native", cache=False)
        return None
    return py, guided.compile(spec, vocab, engine="native", cache=False)


@pytest.mark.skipif(not MASKBENCH.is_dir(), reason="shared MaskBench data not present")
@pytest.mark.parametrize("path", maskbench_sample(40), ids=lambda p: p.stem)
def test_maskbench_schemas_agree(path, smollm2_tokenizer, smollm2_vocab):
    case = json.loads(path.read_text())
    both = _both_engines(guided.JsonSchema(case["schema"]), smollm2_vocab)
    if both is None:
        return
    py, nat = both
    rng = random.Random(path.stem)
    for i, test in enumerate(case["tests"][:4]):
        text = json.dumps(test["data"], ensure_ascii=False)
        ids = tokenize(smollm2_tokenizer, smollm2_vocab, text)
        if ids:
            differential_walk(py, nat, ids[:120], rng, f"{path.stem} test {i}", detours=0.15)


def _schemas():
    leaf = st.one_of(
        st.just({"type": "string"}),
        st.builds(lambda a, b: {"type": "string", "minLength": a, "maxLength": a + b},
                  st.integers(0, 3), st.integers(0, 6)),
        st.just({"type": "integer"}),
        st.builds(lambda a, b: {"type": "integer", "minimum": a, "maximum": a + b},
                  st.integers(-50, 50), st.integers(0, 200)),
        st.just({"type": "number"}),
        st.just({"type": "boolean"}),
        st.just({"type": "null"}),
        st.lists(st.sampled_from(["a", "bc", "x y", 1, 2.5, True, None]), min_size=1, max_size=4, unique=True)
          .map(lambda v: {"enum": v}),
        st.sampled_from(["date", "time", "email", "uuid"]).map(lambda f: {"type": "string", "format": f}),
    )

    def extend(inner):
        names = st.sampled_from(["a", "id", "name", "value", "items", "x_1"])
        return st.one_of(
            st.builds(lambda props, req: {"type": "object", "properties": props,
                                          "required": sorted(props)[:req], "additionalProperties": False},
                      st.dictionaries(names, inner, min_size=1, max_size=4), st.integers(0, 4)),
            st.builds(lambda it, a: {"type": "array", "items": it, "minItems": a, "maxItems": a + 3},
                      inner, st.integers(0, 2)),
            st.lists(inner, min_size=2, max_size=3).map(lambda xs: {"anyOf": xs}),
        )

    return st.recursive(leaf, extend, max_leaves=8)


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schema=_schemas(), data=st.data())
def test_generated_schemas_agree(schema, data, smollm2_tokenizer, smollm2_vocab):
    from hypothesis_jsonschema import from_schema

    both = _both_engines(guided.JsonSchema(schema), smollm2_vocab)
    if both is None:
        return
    py, nat = both
    instance = data.draw(from_schema(schema))
    text = json.dumps(instance, ensure_ascii=False)
    ids = tokenize(smollm2_tokenizer, smollm2_vocab, text)
    if ids:
        differential_walk(py, nat, ids[:100], random.Random(text), f"schema {json.dumps(schema)[:80]}")
