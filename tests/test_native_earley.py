"""The native core's Earley parser (src/guided_native/earley.h, `guided.ir.cfg` rule 10) against
the Python engine (`guided.engine.cfg.earley`) and the reference recogniser.

Over random walks on grammars whose LALR(1) tables have conflicts (those of `tests.test_earley`:
more lookahead, reduce/reduce, nullable prefixes, ambiguity, cycles; and those of
`benchmarks/earley_masks.py`): at every step the native mask equals the Python engine's bit for
bit, every bit agrees with the reference recogniser on the text so far plus the token (EOS: the
text is a sentence), and ``accepts_eos``, ``is_finished``, ``forced_bytes`` agree; walks advance,
roll back and copy both matchers alike, and a refused token is refused by both.  Also: the
routing (``engine="native"``, the default, serves Earley IRs), Leo's completion on long right
recursion, ignored lexemes that may not repeat, batches filled in threads, and malformed Earley IR
refused with a guided error.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

import guided
from guided.compiler import engine_for
from guided.engine import native
from guided.errors import ConstraintViolation, GuidedError
from guided.frontends.lark import Grammar
from guided.ir.reference import Reference
from tests.test_earley import NON_LALR, Oracle, _check, _sample, _vocab

pytestmark = pytest.mark.skipif(not native.available(), reason="the native core is not built")

GRAMMARS = dict(NON_LALR)
GRAMMARS.update({
    # benchmarks/earley_masks.py
    "bench_statements": ('start: stmt+\nstmt: NAME "=" expr ";" | expr ";"\nexpr: NAME | NUM | expr "-" expr\n'
                         'NAME: /[a-c]+/\nNUM: /[0-9]+/\n%ignore " "', ["a = b - 1 - c; b = 2;"]),
    "bench_expressions": ('start: e\ne: e "+" e | e "*" e | "(" e ")" | NUM\nNUM: /[0-9]+/\n%ignore " "',
                          ["(12 + 3) * 45 + (6 * (7 + 8)) * 9"]),
    # Leo's completion: right recursion, with the start symbol completed inside the chain
    "right_recursion": ('start: "a" start | b\nb: "b" | "(" start ")" b', ["ab", "a(ab)b"]),
    # a rule deriving itself (endless parses)
    "cyclic": ('start: a\na: a | "x" | "(" a ")"', ["x", "((x))"]),
})


class Ref:
    """The reference recogniser with its steps memoised (positions are hashable)."""

    def __init__(self, ir):
        self.ref = Reference(ir)
        self.steps: dict = {}

    def walk(self, pos, data: bytes):
        for b in data:
            if pos is None:
                return None
            key = (pos, b)
            if key not in self.steps:
                self.steps[key] = self.ref.step(pos, b)
            pos = self.steps[key]
        return pos


def _setup(name: str):
    text, seeds = GRAMMARS[name]
    spec = Grammar(text, parser="earley")
    oracle = Oracle(text)
    rng = random.Random(f"native {name}")
    sentences = list(seeds) + [_sample(oracle, rng) for _ in range(4)]
    vocab, tokens = _vocab(sentences, oracle)
    # tokens spanning lexemes (the mask's walks below the seeds cross boundaries)
    extra = {s[i:i + k] for s in sentences for k in (2, 3, 5) for i in range(0, max(1, len(s) - k + 1), 2)}
    tokens = list(dict.fromkeys(tokens + sorted(t for t in extra if t)))
    vocab = guided.Vocabulary.from_token_bytes([t.encode() for t in tokens] + [b"<eos>"], eos_token_ids=[len(tokens)])
    return spec, vocab, tokens, rng


def _words(m) -> list[int]:
    row = np.zeros((1, (m.grammar.vocab.size + 31) // 32), np.int32)
    m.fill_bitmask(row, 0)
    return row[0].tolist()


def _check_step(py, nat, ref: Ref | None, pos, tokens: list[str], where: str) -> list[int]:
    """The two engines agree here (and with the reference where given); the allowed tokens."""
    w = _words(py)
    assert _words(nat) == w, where
    assert nat.accepts_eos() == py.accepts_eos(), where
    assert nat.is_finished() == py.is_finished(), where
    assert nat.forced_bytes() == py.forced_bytes(), where
    bits = [(w[k >> 5] >> (k & 31)) & 1 for k in range(len(tokens) + 1)]
    if ref is not None:
        want = []
        for tok in tokens:
            after = ref.walk(pos, tok.encode())
            want.append(int(after is not None and ref.ref.is_viable(after)))
        want.append(int(ref.ref.accepts_end(pos)))
        assert bits == want, (where, [(tokens + ["<eos>"])[k] for k in range(len(want)) if bits[k] != want[k]])
        assert py.accepts_eos() == bool(want[-1]), where
    return [k for k in range(len(tokens)) if bits[k]]


@pytest.mark.parametrize("name", sorted(GRAMMARS))
def test_native_earley_walks(name):
    spec, vocab, tokens, rng = _setup(name)
    py_g = guided.compile(spec, vocab, engine="python", cache=False)
    nat_g = guided.compile(spec, vocab, engine="native", cache=False)
    assert py_g.engine == "python" and nat_g.engine == "native" and nat_g.ir.earley
    ref = Ref(nat_g.ir)
    steps = 0
    for walk in range(40):
        if walk >= 5 and steps >= 60:  # finite languages end soon: more walks there
            break
        py, nat = py_g.matcher(), nat_g.matcher()
        text = b""
        history = [b""]  # text after each token
        checked_ref = walk < 3  # the reference is slow: on the first walks only
        for step in range(24):
            where = f"{name} walk {walk} step {step} after {text!r}"
            pos = ref.walk(ref.ref.start(), text) if checked_ref else None
            allowed = _check_step(py, nat, ref if checked_ref else None, pos, tokens, where)
            steps += 1
            roll = rng.random()
            if roll < 0.1 and py.num_tokens:  # rollback both
                n = rng.randint(1, py.num_tokens)
                py.rollback(n)
                nat.rollback(n)
                del history[len(history) - n:]
                text = history[-1]
                continue
            if roll < 0.2:  # a copy goes on; the original must stay where it was
                before = _words(nat)
                py_c, nat_c = py.copy(), nat.copy()
                if allowed:
                    t = rng.choice(allowed)
                    py_c.advance(t)
                    nat_c.advance(t)
                    assert _words(nat_c) == _words(py_c), where
                assert _words(nat) == before, where
                py, nat = (py_c, nat_c) if allowed and rng.random() < 0.5 else (py, nat)
                if nat.num_tokens > len(history) - 1:
                    text += tokens[t].encode()
                    history.append(text)
                continue
            refused = [k for k in range(len(tokens)) if k not in allowed]
            if refused and roll < 0.3:  # a refused token is refused by both, and changes nothing
                t = rng.choice(refused)
                for m in (py, nat):
                    with pytest.raises(ConstraintViolation):
                        m.advance(t)
                assert py.num_tokens == nat.num_tokens == len(history) - 1
                continue
            if not allowed:
                break
            t = rng.choice(allowed)
            py.advance(t)
            nat.advance(t)
            text += tokens[t].encode()
            history.append(text)
        if py.accepts_eos():  # end of sequence: both finished, nothing allowed after it but EOS
            py.advance(vocab.size - 1)
            nat.advance(vocab.size - 1)
            assert nat.is_finished() and py.is_finished()
            assert _words(nat) == _words(py)
    assert steps >= 60


def test_random_grammars_native_equals_python():
    """Random grammars (`tests.random_specs.random_grammar`: rules that never finish, recursion,
    overlapping terminals, ``%ignore``), each parsed by Earley: along random walks the native
    masks equal the Python engine's; a grammar one engine refuses, the other refuses too."""
    from tests.random_specs import random_grammar

    rng = random.Random(2026)
    chars = [bytes([c]) for c in b"abcxyz019 !?.,;:()[]{}+-*=<>\"'_"]
    token_bytes = chars + [a + b for a in chars[:12] for b in chars[:12]] + [b"do", b"if"]
    vocab = guided.Vocabulary.from_token_bytes(token_bytes + [b"<eos>"], eos_token_ids=[len(token_bytes)])
    compared = 0
    for k in range(80):
        source = random_grammar(rng)
        spec = Grammar(source, parser="earley")
        outcomes = []
        for engine in ("python", "native"):
            try:
                outcomes.append(guided.compile(spec, vocab, engine=engine, cache=False))
            except GuidedError as e:
                outcomes.append(type(e))
        py_g, nat_g = outcomes
        if not isinstance(py_g, type) or not isinstance(nat_g, type):
            assert not isinstance(py_g, type) and not isinstance(nat_g, type), (k, outcomes)
        else:
            continue
        compared += 1
        for _ in range(3):
            py, nat = py_g.matcher(), nat_g.matcher()
            for step in range(15):
                w = _words(py)
                assert _words(nat) == w, (k, step, source)
                assert nat.accepts_eos() == py.accepts_eos() and nat.forced_bytes() == py.forced_bytes()
                allowed = [t for t in range(vocab.size - 1) if (w[t >> 5] >> (t & 31)) & 1]
                if not allowed:
                    break
                t = rng.choice(allowed)
                py.advance(t)
                nat.advance(t)
    assert compared >= 40, compared


@pytest.mark.parametrize("name", ["lookahead2", "rr_names", "nullables", "palindromes", "dangling_else", "words"])
def test_native_against_lark(name):
    """Lark's Earley parser as the oracle of the native masks (`tests.test_earley`'s check, on
    sentences sampled from the grammar and their mutations, every mask token by token)."""
    text, seeds = NON_LALR[name]
    _check(name, text, seeds, samples=4, mutations=2, engine="native")


def test_earley_goes_native_by_default():
    vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"<eos>"], eos_token_ids=[3])
    g = guided.compile(Grammar('start: x "a" "b"\nx: "a" |'), vocab, cache=False)
    assert g.ir.earley and g.engine == "native" and isinstance(g, native.NativeCfgGrammar)
    assert "earley" in repr(g)
    assert guided.compile(Grammar('start: x "a" "b"\nx: "a" |'), vocab, engine="python", cache=False).engine == "python"


def test_long_right_recursion_native():
    """Leo's completion keeps right recursion at a constant cost per token; the masks along 800
    tokens equal the Python engine's."""
    spec = Grammar('start: "a" start | b\nb: "b" | "(" start ")" b', parser="earley")
    vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"(", b")", b"aa", b"<eos>"], eos_token_ids=[5])
    py, nat = (guided.compile(spec, vocab, engine=e, cache=False).matcher() for e in ("python", "native"))
    data = b"a" * 400 + b"(" + b"a" * 400 + b"b)"
    for i, byte in enumerate(data):
        t = b"ab()".index(byte)
        py.advance(t)
        nat.advance(t)
        if i % 50 == 0 or i > len(data) - 4:
            assert _words(nat) == _words(py) and nat.accepts_eos() == py.accepts_eos()
    nat.advance(1)
    assert nat.accepts_eos() and nat.mask().tolist() == [False, False, False, False, False, True]


def test_ignored_lexemes_that_may_not_repeat():
    """``ignore_repeats=False`` (a JSON Schema front-end's whitespace runs): after an ignored
    lexeme the ignored terminals are not candidates, in the Earley contexts too."""
    text, _ = GRAMMARS["bench_expressions"]
    ir = dataclasses.replace(Grammar(text).to_ir(), ignore_repeats=False)
    vocab = guided.Vocabulary.from_token_bytes([b"1", b" ", b"+", b"(", b")", b" 1", b"  ", b"+ ", b"<eos>"],
                                               eos_token_ids=[8])
    py, nat = engine_for(ir, vocab, engine="python"), engine_for(ir, vocab, engine="native")
    assert nat.engine == "native"
    rng = random.Random(3)
    for _ in range(4):
        a, b = py.matcher(), nat.matcher()
        for _ in range(20):
            w = _words(a)
            assert _words(b) == w and a.accepts_eos() == b.accepts_eos()
            allowed = [k for k in range(8) if (w[0] >> k) & 1]
            if not allowed:
                break
            t = rng.choice(allowed)
            a.advance(t)
            b.advance(t)


def test_batches_in_threads():
    """Matchers of one fresh Earley grammar at many positions, filled by two native threads
    (columns and lexer contexts built concurrently): the Python engine's masks, row by row."""
    name = "bench_statements"
    spec, vocab, tokens, rng = _setup(name)
    py_g = guided.compile(spec, vocab, engine="python", cache=False)
    nat_g = guided.compile(spec, vocab, engine="native", cache=False)
    pys, nats = [], []
    for _ in range(24):
        a, b = py_g.matcher(), nat_g.matcher()
        for _ in range(rng.randint(0, 12)):
            w = _words(a)
            allowed = [k for k in range(len(tokens)) if (w[k >> 5] >> (k & 31)) & 1]
            if not allowed:
                break
            t = rng.choice(allowed)
            a.advance(t)
            b.advance(t)
        pys.append(a)
        nats.append(b)
    batch = np.zeros((len(nats), (vocab.size + 31) // 32), np.int32)
    guided.fill_bitmasks(nats, batch, threads=2)
    for i, a in enumerate(pys):
        assert batch[i].tolist() == _words(a), i


def test_budget_and_closing_on_native_earley():
    """Budget masks and closing of native Earley grammars come from the Python twin (as for the
    other grammar kinds): the same answers as the Python engine."""
    spec = Grammar('start: x "a" "b"\nx: "a" |')
    vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"aa", b"<eos>"], eos_token_ids=[4])
    py, nat = (guided.compile(spec, vocab, engine=e, cache=False).matcher() for e in ("python", "native"))
    for m in (py, nat):
        m.advance(0)
    for remaining in (1, 2, 3):
        assert nat.budget_mask(remaining).tolist() == py.budget_mask(remaining).tolist()
    assert nat.closing_distance() == py.closing_distance() == 1
    assert nat.closing_lower_bound() == py.closing_lower_bound()
    assert nat.closing_tokens().tolist() == py.closing_tokens().tolist()


def test_columns_restart_past_the_intern_limit(monkeypatch):
    """Past INTERN_LIMIT columns a new matcher gets a fresh core grammar (the old columns are freed
    with their last matcher); matchers on either keep the Python engine's masks."""
    from guided.engine import tuning

    spec, vocab, tokens, rng = _setup("bench_expressions")
    py_g = guided.compile(spec, vocab, engine="python", cache=False)
    nat_g = guided.compile(spec, vocab, engine="native", cache=False)
    monkeypatch.setattr(tuning, "INTERN_LIMIT", 6)
    pairs, cores = [], []
    for _ in range(6):
        pairs.append((py_g.matcher(), nat_g.matcher()))
        cores.append(nat_g._native)  # held: distinct ids are distinct core grammars
        assert nat_g._native.stack_nodes < 6  # restarted when the last walks took it to the limit
        for py, nat in pairs:  # old matchers go on, on the core grammar they started with
            w = _words(py)
            assert _words(nat) == w
            allowed = [k for k in range(len(tokens)) if (w[k >> 5] >> (k & 31)) & 1]
            for _ in range(rng.randint(1, 6)):
                if not allowed:
                    break
                t = rng.choice(allowed)
                py.advance(t)
                nat.advance(t)
                w = _words(py)
                assert _words(nat) == w
                allowed = [k for k in range(len(tokens)) if (w[k >> 5] >> (k & 31)) & 1]
    assert len({id(c) for c in cores}) > 1


def _bad(ir, **changes):
    return dataclasses.replace(ir, **changes)


def test_malformed_earley_ir_is_refused():
    ir = Grammar('start: x "a" "b"\nx: "a" |').to_ir()
    vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"<eos>"], eos_token_ids=[2])
    n_terms, n_nt = len(ir.terminals), len(ir.nonterminals)
    rhs = list(ir.rule_rhs)
    cases = [
        ("out of range", [(n_terms + 3,) + rhs[0][1:]] + rhs[1:]),  # a terminal
        ("out of range", [(~(n_nt + 2),) + rhs[0][1:]] + rhs[1:]),  # a nonterminal
        ("length", [rhs[0] + (0,)] + rhs[1:]),
        ("never finish", [(~0,) + rhs[0][1:]] + rhs[1:]),
    ]
    for what, bad in cases:
        with pytest.raises(GuidedError, match=what):
            native.NativeCfgGrammar(_bad(ir, rule_rhs=tuple(bad)), vocab)
    with pytest.raises(GuidedError, match="start symbol"):
        no_start = tuple((lhs if lhs != 0 else 1, n) for lhs, n in ir.rules)
        native.NativeCfgGrammar(_bad(ir, rules=no_start), vocab)
    with pytest.raises(GuidedError, match="do not match"):
        native.NativeCfgGrammar(_bad(ir, rule_rhs=tuple(rhs[:-1])), vocab)
    with pytest.raises(GuidedError, match="nesting"):
        native.NativeCfgGrammar(_bad(ir, max_nesting=3, nesting_states=frozenset({0})), vocab)
    with pytest.raises(GuidedError, match="rule_rhs"):
        native.NativeCfgGrammar(_bad(ir, rule_rhs=((2 ** 40,),) + ir.rule_rhs[1:]), vocab)
    with pytest.raises(GuidedError, match="rule_rhs"):
        native.NativeCfgGrammar(_bad(ir, rule_rhs=(("x",),) + ir.rule_rhs[1:]), vocab)
    # offsets that do not match the symbols, straight into the core
    args = native.lower_cfg(ir)
    args["rhs_offsets"] = np.array([0, 5, 2, 3], np.int64)[: len(ir.rules) + 1]
    core = native._require()
    with pytest.raises(GuidedError, match="malformed IR"):
        core.earley_grammar(native.native_trie(vocab), None, max_lexer_states=1000, **args)
