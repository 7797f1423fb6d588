"""Lark grammars whose masks could lead nowhere: non-productive rules, empty languages, empty lexemes.

The reference is Lark itself: its LALR parser with its contextual lexer decides which texts a
grammar accepts, and its lexer refuses terminals that match the empty string.  Random grammars
(derandomised) mix in rules that never finish and, now and then, a zero-width terminal.
"""

from __future__ import annotations

import collections
import copy
import random
import re

import lark
import pytest
from lark.utils import TextSlice

import guided
from guided.errors import GuidedError
from guided.ir.reference import accepts
from guided.frontends.lark import Grammar, GrammarError, LexerOrderConflict, lark_to_ir, shipped_grammars
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
        lark_to_ir(Grammar(source, parser="lalr"))


@pytest.mark.parametrize("source, name", [
    ('start: T0 T2\nT0: /a*/\nT2: /[a-z]+/\n%ignore " "', "T0"),
    ('start: "a"\n%ignore /\\s*/', "%ignore"),
    ('start: X "b"\nX: /(x|)/', "X"),
])
def test_zero_width_terminals_are_refused_as_lark_refuses_them(source, name):
    with pytest.raises(lark.exceptions.LexError, match="zero-width"):
        lark.Lark(source, parser="lalr").parse("b")
    with pytest.raises(GrammarError, match="empty string") as info:
        guided.compile(Grammar(source, parser="lalr"), vocab_of(b"a", b" hypothalamus", b"b"))
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


# Grammars Lark takes that guided refuses, saying why (see the tests below).
REFUSED_BY_DESIGN = ("accepts no sentence", "derives itself", "rules that never finish change how Lark parses")

DEAD_SHIFT = ('start: r0\nr0: r2 r1 r2 | r2 | r2 ";" T0 r3\nr1: ";" | "+" T0 r2 | T0 ";"\n'
              'r2: T0 "if" | "," "if" | T0\nr3: "!" r3\nT0: /[pq]/\n')


def test_rules_that_never_finish_and_change_lark_s_parse_are_refused():
    """After ``pif ;`` Lark shifts ``p`` into ``r0: r2 ";" T0 r3`` (``r3`` never finishes), where the
    tables without that alternative reduce ``r1: ";"``: Lark rejects ``pif;pif``, which the
    grammar without the rules that never finish accepts."""
    productive = DEAD_SHIFT.replace(' | r2 ";" T0 r3', "").replace('r3: "!" r3\n', "")
    assert not lark_accepts(lark.Lark(DEAD_SHIFT, parser="lalr"), "pif;pif")
    assert lark_accepts(lark.Lark(productive, parser="lalr"), "pif;pif")
    with pytest.raises(GrammarError, match="rules that never finish change how Lark parses: on T0, Lark shifts"):
        lark_to_ir(Grammar(DEAD_SHIFT, parser="lalr"))
    assert accepts(lark_to_ir(Grammar(productive)), b"pif;pif")
    # parser="auto" (the default) parses it by Earley instead: the grammar's own language
    auto = lark_to_ir(Grammar(DEAD_SHIFT))
    assert auto.earley and accepts(auto, b"pif;pif")


def test_terminals_of_rules_that_never_finish_still_take_part_in_lark_s_lexing():
    """``"=="`` is used only by an alternative that never finishes: guided drops it, Lark's lexer
    still tries it first and reads ``==`` where guided would read ``=`` ``=``."""
    source = 'start: r0\nr0: "==" "=" r4 | r1 "="\nr1: "=" "="\nr4: "!" r4\n'
    assert not lark_accepts(lark.Lark(source, parser="lalr"), "===")
    with pytest.raises(LexerOrderConflict, match="only rules that never finish use") as info:
        lark_to_ir(Grammar(source, parser="lalr"))
    assert info.value.text == "==" and info.value.lark_terminal != info.value.guided_terminal
    assert_real_conflict(lark.Lark(source, parser="lalr"), info.value)


def test_collisions_lark_refuses_are_refused_even_in_rules_that_never_finish():
    source = 'start: r0 | T1\nr0: r0\nT1: /[pq]/\n'
    with pytest.raises(lark.exceptions.GrammarError, match="Reduce/Reduce"):
        lark.Lark(source, parser="lalr")
    with pytest.raises(GrammarError, match="not LALR"):
        lark_to_ir(Grammar(source, parser="lalr"))
    assert lark_to_ir(Grammar(source)).earley  # the default parses it by Earley instead


def lark_lexes(parser: lark.Lark, candidates: tuple[str, ...], text: str) -> tuple[str, str] | None:
    """``(terminal, lexeme)``: what Lark's lexer, trying ``candidates``, reads first in ``text``."""
    conf = copy.copy(parser.lexer_conf)
    conf.terminals = [parser.get_terminal(name) for name in candidates]
    conf.skip_validation = True
    lexer = lark.lexer.BasicLexer(conf)
    found = lexer.match(TextSlice.cast_from(text), 0)
    if found is None:
        return None
    token = lark.Token(found[1], found[0])
    if token.type in lexer.callback:
        token = lexer.callback[token.type](token)
    return token.type, token.value


def assert_real_conflict(parser: lark.Lark, exc: LexerOrderConflict) -> None:
    """A lexer-order refusal is precise: in its parser state Lark reads the example otherwise."""
    assert lark_lexes(parser, exc.candidates, exc.text) != (exc.guided_terminal, exc.text), exc
    # Lark's own parser states: their terminals (the tables list rules too) and the ignored ones.
    terminals = {t.name for t in parser.terminals}
    ignore = set(parser.lexer_conf.ignore)
    contexts = [{t for t in state if t in terminals} | ignore
                for state in parser.parser.parser.parser.parse_table.states.values()]
    assert set(exc.candidates) in contexts, exc


def lark_backtracks(ir, parser: lark.Lark, text: str) -> bool:
    """Whether Lark's lexer, reading ``text``, ends a lexeme where some terminal could still read on.

    Guided's lexer does not go back to a shorter lexeme (`guided.ir.cfg`, rule 2): there it
    refuses a text that Lark may accept (the one way their languages may differ)."""
    try:
        tokens = list(parser.parse_interactive(text).iter_parse())
    except lark.exceptions.LarkError:
        return False
    ends = [t.end_pos for t in tokens] + [m.end() for m in re.finditer(" +", text)]
    return any(0 < end < len(text) and any(t.dfa.is_prefix(text[start:end + 1].encode()) for t in ir.terminals)
               for end in ends for start in range(end))


def assert_agrees(ir, parser: lark.Lark, text: str, source: str) -> bool:
    """Guided accepts ``text`` only if Lark does, and refuses it only where Lark's lexer backtracks;
    whether it refused such a text."""
    ours, theirs = accepts(ir, text.encode()), lark_accepts(parser, text)
    if ours == theirs:
        return False
    assert theirs and lark_backtracks(ir, parser, text), (source, text, ours)
    return True


def check_against_lark(source: str, rng: random.Random, texts: int) -> str:
    """``compared``, ``refused`` or ``lark refuses``: ``source`` compiled by guided agrees with Lark."""
    try:
        parser = lark.Lark(source, parser="lalr")
    except lark.exceptions.LarkError:
        parser = None
    try:
        ir = lark_to_ir(Grammar(source, parser="lalr"))
    except LexerOrderConflict as exc:
        assert parser is not None, (source, exc)
        assert_real_conflict(parser, exc)
        return "refused"
    except GuidedError as exc:
        assert parser is None or any(why in str(exc) for why in REFUSED_BY_DESIGN), (source, exc)
        return "lark refuses" if parser is None else "refused"
    assert parser is not None, f"guided compiled a grammar Lark refuses:\n{source}"
    for text in sentences(parser, rng, texts):
        assert_agrees(ir, parser, text, source)
    return "compared"


def test_random_grammars_agree_with_lark():
    rng = random.Random(7)
    outcomes = collections.Counter(check_against_lark(random_grammar(rng), rng, 40) for _ in range(60))
    assert outcomes["compared"] >= 15, outcomes


O_TERMINALS = ['/[a-e]+/', '/[a-z]+/', '"do"', '"do"i', '"d"', '/d[a-o]?/', '"dd"', '/[a-e]/', '"ab"', '"abc"',
               '/[b-d]{1,2}/', '/a(bc)?/']


def overlapping_grammar(rng: random.Random) -> str:
    """Terminals over the same letters, with random priorities, some in one parser state."""
    names = [f"T{i}" for i in range(rng.randint(2, 4))]
    lines = []
    for name in names:
        prio = rng.choice(["", "", ".2", ".-1"])
        lines.append(f"{name}{prio}: {rng.choice(O_TERMINALS)}")
    head = [f"start: {rng.choice(names)} | x", "x: " + " | ".join(
        " ".join(rng.choice(names + ['"o"', '"c"', '"e"']) for _ in range(rng.randint(1, 3)))
        for _ in range(rng.randint(1, 3)))]
    if rng.random() < 0.5:
        head[0] = f"start: ({' | '.join(rng.sample(names, 2))})+"
    return "\n".join(head + lines + (['%ignore " "'] if rng.random() < 0.5 else [])) + "\n"


def texts_over(rng: random.Random, count: int) -> list[str]:
    pieces = ["a", "b", "c", "d", "e", "o", "do", "DO", "dd", "ab", "abc", " ", "z"]
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 5))) for _ in range(count)]


def test_overlapping_terminals_are_lexed_as_lark_lexes_them_or_refused():
    """Terminals that overlap in one parser state: guided's language equals Lark's, or the grammar
    is refused with an example that Lark's lexer (the oracle) really reads otherwise."""
    rng = random.Random(11)
    outcomes: collections.Counter = collections.Counter()
    for _ in range(150):
        source = overlapping_grammar(rng)
        try:
            parser = lark.Lark(source, parser="lalr")
        except lark.exceptions.LarkError:
            outcomes["lark refuses"] += 1
            continue
        try:
            ir = lark_to_ir(Grammar(source, parser="lalr"))
        except LexerOrderConflict as exc:
            assert_real_conflict(parser, exc)
            outcomes["refused"] += 1
            continue
        except GuidedError as exc:
            assert any(why in str(exc) for why in REFUSED_BY_DESIGN), (source, exc)
            outcomes["other refusal"] += 1
            continue
        outcomes["compared"] += 1
        for text in texts_over(rng, 60):
            outcomes["texts"] += 1
            outcomes["refused, Lark backtracks"] += assert_agrees(ir, parser, text, source)
    assert outcomes["compared"] >= 30 and outcomes["refused"] >= 15, outcomes


@pytest.mark.parametrize("source", [
    'start: (NAME | "do")+\nNAME: /[a-z]+/\n%ignore " "',  # a keyword beside identifiers
    'start: (T | DO)+\nT: /[a-e]+/\nDO.2: "do"',  # the keyword first by priority
    'start: ("==" | "=" | NAME)+\nNAME: /[a-z]+/',  # longer strings first
    'start: (A | B)+\nA: /[a-e]+/\nB: /[p-q]+/',  # no overlap at all
])
def test_grammars_lark_and_guided_lex_alike_compile(source):
    ir = lark_to_ir(Grammar(source, parser="lalr"))
    parser = lark.Lark(source, parser="lalr")
    rng = random.Random(3)
    for text in texts_over(rng, 200) + ["do", "dodo", "d o", "==", "===", "a=b"]:
        assert accepts(ir, text.encode()) == lark_accepts(parser, text), (source, text)


@pytest.mark.parametrize("source, first, greedy, text", [
    ('start: (T | "do")+\nT: /[a-e]+/', "T", "DO", "do"),  # T matches "d": Lark never reads "do" here
    ('start: (A | B)+\nA.2: "a"\nB: /a+/', "A", "B", "aa"),  # priority before length
    ('start: (X | Y)+\nX: /ab{0,4}/\nY: /abc/', "X", "Y", "abc"),  # X (wider) is tried first: "ab"
])
def test_grammars_lark_lexes_otherwise_are_refused_naming_both_terminals(source, first, greedy, text):
    with pytest.raises(LexerOrderConflict) as info:
        lark_to_ir(Grammar(source, parser="lalr"))
    exc = info.value
    assert (exc.lark_terminal, exc.guided_terminal, exc.text) == (first, greedy, text)
    assert "line" in str(exc) and "priority" in str(exc)
    assert_real_conflict(lark.Lark(source, parser="lalr"), exc)


def test_shipped_grammars_pass_the_lexer_order_check():
    for name in shipped_grammars():
        lark_to_ir(Grammar(name))


@pytest.mark.parametrize("text, valid", [("SELECT DİSTINCT a FROM t", True), ("SELECT ıd FROM t", True),
                                         ("SELECT a FROM t ORDER BY a DESC", True), ("SELECT a FROM", False)])
def test_sql_names_take_the_letters_keywords_fold_to(text, valid):
    """``"DISTINCT"i`` matches ``DİSTINCT`` in Python's re; Lark tries NAME first, so NAME must too."""
    parser = lark.Lark(Grammar("sql").text_and_path()[0], parser="lalr")
    assert lark_accepts(parser, text) == valid
    assert accepts(lark_to_ir(Grammar("sql")), text.encode()) == valid
