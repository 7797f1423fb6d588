"""Counted repeats in regexes (`guided.frontends.regex_counted`): one large ``X{n,m}`` as a count.

Oracles: the unrolled automaton of the same pattern (small bounds, the counted construction
forced with a low threshold): masks equal bit for bit on both engines along random walks over a
vocabulary whose tokens cross the repeat's edges; `re.fullmatch` on random texts through the
reference recogniser; and the large patterns users write, walked to their bounds.
"""

from __future__ import annotations

import random
import re

import numpy as np
import pytest

import guided
from guided.compiler import engine_for
from guided.engine import native
from guided.frontends.regex import Regex, regex_to_dfa
from guided.frontends.regex_counted import counted_regex_ir, has_large_repeat
from guided.ir import ByteDFA, CfgIR
from guided.ir.reference import Reference, accepts
from guided.vocab import Vocabulary

# (pattern, alphabet its random texts are drawn from)
SMALL = [
    (r"x[0-9]{2,5}y", "xy0123a"),
    (r".{3}", "ab\né"),
    (r"[a-z]{1,4}@ex\.com", "ab@ex.comZ"),
    (r"é{2,}", "éeа"),
    (r"(?i)k[a-z]{3}", "kKKaZ1"),
    (r"ab{0,3}c", "abcx"),
    (r'"[^"\\]{2,4}"', 'a"\\b'),
    (r"(?:https?://)[a-z.]{1,6}/", "htps:/a.z"),
]

PIECES = ["x", "y", "0", "1", "12", "123", "0y", "9y", "a", "b", "c", "ab", "bc", "bbc", "é", "\n", "@", "@ex.com",
          ".", "e", "x", "com", "k", "K", "KA", "z", '"', '"a', 'a"', "\\", "https://", "http", "s://", "/", "a/",
          "z.z/", "\u0430", "\u212a"]


def _vocab() -> Vocabulary:
    pieces = list(dict.fromkeys(p.encode() for p in PIECES))
    pieces += [bytes([b]) for b in range(256) if bytes([b]) not in pieces]
    return Vocabulary.from_token_bytes(pieces + [b"<eos>"], eos_token_ids=[len(pieces)])


def _engines(ir, vocab):
    engines = [engine_for(ir, vocab, engine="python")]
    if native.available():
        engines.append(engine_for(ir, vocab, engine="native"))
    return engines


@pytest.mark.parametrize("pattern,alphabet", SMALL)
def test_counted_masks_equal_the_unrolled_automaton(pattern, alphabet):
    counted = counted_regex_ir(Regex(pattern), counted_from=1)
    assert isinstance(counted, CfgIR) and counted.terminals[0].count is not None
    unrolled = regex_to_dfa(Regex(pattern))
    vocab = _vocab()
    (want,) = _engines(unrolled, vocab)[:1]
    rng = random.Random(pattern)
    compared = 0
    for grammar in _engines(counted, vocab):
        for _ in range(25):
            a, b = grammar.matcher(), want.matcher()
            for _ in range(12):
                ma, mb = a.mask(), b.mask()
                assert np.array_equal(ma, mb), (pattern, a.tokens() if hasattr(a, "tokens") else None)
                assert a.accepts_eos() == b.accepts_eos()
                compared += 1
                allowed = [t for t in np.flatnonzero(ma) if t not in vocab.eos_token_ids]
                if not allowed:
                    break
                t = rng.choice(allowed)
                a.advance(t)
                b.advance(t)
    assert compared > 100


@pytest.mark.parametrize("pattern,alphabet", SMALL)
def test_counted_reference_agrees_with_re(pattern, alphabet):
    ir = counted_regex_ir(Regex(pattern), counted_from=1)
    rng = random.Random(pattern)
    compiled = re.compile(pattern)
    matched = 0
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) for _ in range(1500)]
    texts += [m for m in (_example(pattern, rng) for _ in range(200)) if m is not None]
    for text in texts:
        want = compiled.fullmatch(text) is not None
        assert accepts(ir, text.encode()) == want, (pattern, text)
        matched += want
    assert matched > 0


def _example(pattern: str, rng: random.Random) -> str | None:
    """A text that matches, from hypothesis-free sampling: random walks on the unrolled automaton."""
    dfa = regex_to_dfa(Regex(pattern))
    state, out = dfa.initial, bytearray()
    for _ in range(40):
        if dfa.accepting[state] and rng.random() < 0.3:
            break
        nxt = [b for b in range(256) if dfa.transitions[state, b]]
        if not nxt:
            break
        b = rng.choice(nxt)
        out.append(b)
        state = int(dfa.transitions[state, b])
    try:
        return out.decode() if dfa.accepting[state] else None
    except UnicodeDecodeError:
        return None


def test_large_repeats_compile_small_and_count_to_their_bounds():
    ir = Regex("x[0-9]{1,100000}y").to_ir()
    assert isinstance(ir, CfgIR) and ir.terminals[0].dfa.num_states < 10
    ref = Reference(ir)
    pos = ref.walk(ref.start(), b"x" + b"7" * 100000)
    assert pos is not None and ref.walk(pos, b"y") is not None and ref.walk(pos, b"7") is None
    assert accepts(ir, b"x5y") and not accepts(ir, b"xy") and not accepts(ir, b"x" + b"1" * 100001 + b"y")
    dots = Regex(".{4096}").to_ir()
    assert isinstance(dots, CfgIR)
    assert accepts(dots, "é".encode() * 4096) and not accepts(dots, b"a" * 4095) and not accepts(dots, b"\n" * 4096)


def test_generation_under_a_large_repeat_reaches_the_bound():
    """A matcher on a real-size vocabulary: the mask at the bound allows only the closing part."""
    vocab = _vocab()
    spec = Regex("x[0-9]{300,400}y")
    for grammar in _engines(spec.to_ir(), vocab):
        m = grammar.matcher()
        m.advance(vocab.token_bytes.index(b"x"))
        one23 = vocab.token_bytes.index(b"123")
        for _ in range(100):
            assert not m.mask()[vocab.token_bytes.index(b"y")]
            m.advance(one23)
        mask = m.mask()
        assert mask[vocab.token_bytes.index(b"y")] and mask[vocab.token_bytes.index(b"0y")]
        assert mask[one23]  # 303 digits, room for more
        for _ in range(33):
            m.advance(one23)
        mask = m.mask()  # 399 digits: one more, then y
        assert not mask[one23] and mask[vocab.token_bytes.index(b"0y")] and mask[vocab.token_bytes.index(b"0")]


@pytest.mark.parametrize("pattern", [r"[0-9]*[0-9]{1,1000}", r"(a[0-9]{1,1000})*", r"x|[0-9]{1000}",
                                     r"(ab){300}", r"a{300}b{300}", r"\ba{300}"])
def test_patterns_a_count_cannot_express_stay_unrolled(pattern):
    assert counted_regex_ir(Regex(pattern)) is None
    ir = Regex(pattern).to_ir()
    assert isinstance(ir, ByteDFA)


def test_the_text_scan_finds_every_quantifier_spelling():
    assert has_large_repeat("a{257}") and has_large_repeat("a{1,300}") and has_large_repeat("a{300,}")
    assert has_large_repeat("a{,300}")
    assert not has_large_repeat("a{256}") and not has_large_repeat(r"a\{300}") and not has_large_repeat("a{2,5}")


def test_a_refused_pattern_still_names_its_repeat():
    with pytest.raises(guided.LimitExceeded, match="counted repeat"):
        Regex("(ab){100000}").to_ir()
