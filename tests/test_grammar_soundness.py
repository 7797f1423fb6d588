"""Lark grammars whose masks could lead nowhere: non-productive rules, empty languages, empty lexemes.

The reference is Lark itself: its LALR parser with its contextual lexer decides which texts a
grammar accepts, and its lexer refuses terminals that match the empty string.  Random grammars
(derandomised) mix in rules that never finish and, now and then, a zero-width terminal.
"""

from __future__ import annotations

import random

import lark
import pytest

import guided
from guided.errors import GuidedError
from guided.ir.reference import accepts
from guided.frontends.lark import Grammar, GrammarError, lark_to_ir
from tests.random_specs import random_grammar


def vocab_of(*tokens: bytes) -> guided.Vocabulary:
    return guided.Vocabulary.from_token_bytes(list(tokens) + [b"<eos>"], eos_token_ids=[len(tokens)])


def test_non_productive_alternative_is_never_allowed():
    """``start: "a" | "b" r1`` with ``r1: "c" r1``: "b" leads nowhere, so no mask allows it."""
    vocab = vocab_of(b"a", b"b", b"c")
    m = guided.compile(Grammar('start: "a" | "b" r1\nr1: "c" r1'), vocab).matcher()
    assert m.mask().tolist() == [True, False, False, False]
    m.advance(0)
    assert m.mask().tolist() == [False, False, False, True]


def test_partly_productive_rules_keep_their_finishing_alternatives():
    ir = lark_to_ir(Grammar('start: "d" r2\nr2: "e" | r1\nr1: "c" r1'))
    assert accepts(ir, b"de") and not accepts(ir, b"d") and not accepts(ir, b"dc")


@pytest.mark.parametrize("source", ['start: r1\nr1: "c" r1', 'start: a\na: b "x"\nb: a "y"'])
def test_a_grammar_without_sentences_is_refused(source):
    with pytest.raises(GrammarError, match="accepts no sentence"):
        lark_to_ir(Grammar(source))


@pytest.mark.parametrize("source, name", [
    ('start: T0 T2\nT0: /a*/\nT2: /[a-z]+/\n%ignore " "', "T0"),
    ('start: "a"\n%ignore /\\s*/', "%ignore"),
    ('start: X "b"\nX: /(x|)/', "X"),
])
def test_zero_width_terminals_are_refused_as_lark_refuses_them(source, name):
    with pytest.raises(lark.exceptions.LexError, match="zero-width"):
        lark.Lark(source, parser="lalr").parse("b")
    with pytest.raises(GrammarError, match="empty string") as info:
        guided.compile(Grammar(source), vocab_of(b"a", b" hypothalamus", b"b"))
    assert name in str(info.value)


def lark_accepts(parser, text: str) -> bool:
    try:
        parser.parse(text)
    except lark.exceptions.LarkError:
        return False
    return True


def sentences(parser: lark.Lark, rng: random.Random, count: int) -> list[str]:
    """Random texts made of the grammar's own terminals (many valid, many not)."""
    pieces = []
    for t in parser.terminals:
        if isinstance(t.pattern, lark.lexer.PatternStr):
            pieces.append(t.pattern.value)
        else:
            pieces.extend(rng.choice(["ab", "e", "0", "12", "p", "uv", "w"]) for _ in range(2))
    pieces += [" ", "!", "?"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) for _ in range(count)]


def test_random_grammars_agree_with_lark():
    rng = random.Random(7)
    compared = 0
    for _ in range(60):
        source = random_grammar(rng)
        try:
            parser = lark.Lark(source, parser="lalr")
        except lark.exceptions.LarkError:
            parser = None
        try:
            ir = lark_to_ir(Grammar(source))
        except GuidedError as exc:
            assert parser is None or "accepts no sentence" in str(exc), (source, exc)
            continue
        assert parser is not None, f"guided compiled a grammar Lark refuses:\n{source}"
        compared += 1
        for text in sentences(parser, rng, 40):
            assert accepts(ir, text.encode()) == lark_accepts(parser, text), (source, text)
    assert compared >= 15
