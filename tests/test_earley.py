"""Lark grammars beyond LALR(1), parsed by Earley (`guided.ir.cfg` rule 10), against Lark's Earley parser.

The oracle is independent of guided's parser and lexer: Lark's own Earley parser at the token
level (a custom lexer hands it the terminals; the terminals it expects next come from the
``UnexpectedEOF`` it raises on a start rule that needs one more, never produced, terminal), and
a greedy contextual lexer written here from the terminals' patterns (the ``regex`` package's
partial matches say whether a lexeme can still grow).  Lexing as rule 10 defines it: at a lexeme
boundary the candidates are the terminals Lark's Earley parser expects next plus the ignored
ones; a lexeme grows while a candidate can read the next character; it is an instance of the
candidate matching it with the highest priority, a string before a pattern.

For each grammar (every one has LALR(1) conflicts and compiles to an Earley IR): sentences drawn
from its rules and mutations of them; full acceptance of every text by the oracle, the
reference recogniser and the Python engine; and every mask along every text, token by token,
against the oracle's prefix check (a token is allowed iff the text after it stays a prefix of
a sentence); EOS iff the text is a sentence.
"""

from __future__ import annotations

import functools
import random

import lark
import numpy as np
import pytest
import regex
from lark.lexer import Lexer, Token

import guided
from guided.frontends.lark import Grammar, GrammarError
from guided.ir import CfgIR
from guided.ir.reference import Reference

_END = "ZZORACLEEND"

NON_LALR = {
    # more than one token of lookahead (reduce/reduce on "y")
    "lookahead2": ('start: a "y" "z" | b "y" "w"\na: "x"\nb: "x"', ["xyz", "xyw"]),
    "rr_names": ('start: p ";" | q ";" "!"\np: NAME\nq: NAME\nNAME: /[a-c]+/\n%ignore " "', ["ab;", "c ; !"]),
    # shift/reduce where shifting loses sentences
    "nullable_prefix": ('start: x "a" "b"\nx: "a" |', ["ab", "aab"]),
    "hidden_left": ('start: a start "b" | "c"\na: |', ["c", "cb", "cbbb"]),
    "nullables": ('start: a b c\na: "x" |\nb: "x" |\nc: "x" "y" | "x"', ["x", "xxy", "xxxy", "xx"]),
    # ambiguity
    "expr": ('start: e\ne: e "+" e | e "*" e | "(" e ")" | NUM\nNUM: /[0-9]+/\n%ignore " "',
             ["1+2*3", "(1 + 2) * 3"]),
    "dangling_else": ('start: s\ns: "if" c "then" s | "if" c "then" s "else" s | "x"\nc: "c"\n%ignore " "',
                      ["if c then if c then x else x"]),
    "palindromes": ('start: "a" start "a" | "b" start "b" | "a" | "b" |', ["", "aba", "abba"]),
    "two_lists": ('start: l l\nl: "a"*', ["", "aaa"]),
    "concat": ('start: s\ns: s s | "a" | "(" s ")"', ["aa(a)a"]),
    "balanced": ('start: s\ns: "(" s ")" s | s "(" s ")" |', ["", "(())()"]),
    "both_recursions": ('start: x "m" x\nx: "a" x | x "b" |', ["m", "abmab", "aabbmb"]),
    "dotted": ('start: n ("." n)*\nn: INT | INT "." INT\nINT: /[0-9]+/', ["1.2.3", "12"]),
    "words": ('start: w+\nw: WORD | WORD WORD\nWORD: /[a-z]+/\n%ignore " "', ["ab cd e"]),
    "xy_pairs": ('start: (a | b)+\na: "x" "y"?\nb: "y" "x"?', ["xyx", "yxy"]),
    "one_or_two": ('start: a b | a\na: "x" | "x" "x"\nb: "x"', ["x", "xx", "xxx"]),
    "assign": ('start: stmt+\nstmt: NAME "=" expr ";" | expr ";"\nexpr: NAME | NUM | expr "-" expr\n'
               'NAME: /[a-c]+/\nNUM: /[0-9]+/\n%ignore " "', ["a = b - 1 - c;", "1;"]),
    "value_commas": ('start: value\nvalue: "[" value "]" | NUM | value "," value\nNUM: /[0-9]/', ["[1,2],3"]),
    "keywords": ('start: s+\ns: "do" NAME | NAME "do" | NAME\nNAME: /[a-z]+/\n%ignore " "',
                 ["do x", "x do", "dox do"]),
    "star_then": ('start: x y\nx: "a"*\ny: "a" "b" | "a"', ["a", "aab"]),
    "items": ('start: "[" items "]"\nitems: items "," items | NUM |\nNUM: /[0-9]+/', ["[]", "[1,,23]"]),
    "right_start": ('start: b start | "a"\nb: "x" |', ["a", "xa", "xxa"]),
    "split": ('start: t t\nt: "a" | "a" "a" | "b" t', ["aa", "aaa", "baba"]),
}


class _Tokens(Lexer):
    """Hands Lark's parser the terminals named in the text (space-separated)."""

    __future_interface__ = 2

    def __init__(self, conf):
        pass

    def lex(self, state, parser_state):
        for name in state.text.text.split():
            yield Token(name, name)


class Oracle:
    """Lark's Earley parser behind the lexer of rule 10, written from the terminals' patterns."""

    def __init__(self, text: str):
        self.lark = lark.Lark(f'{text}\nzzoracle_top: start {_END}\n{_END}: "\\x01"', parser="earley",
                              lexer=_Tokens, start="zzoracle_top")
        self.terminals = {t.name: t for t in self.lark.terminals if t.name != _END}
        self.ignore = frozenset(self.lark.ignore_tokens)

    @functools.lru_cache(maxsize=None)
    def expected(self, tokens: tuple[str, ...]) -> frozenset[str] | None:
        """The terminals Lark's Earley parser expects after ``tokens`` (``_END`` if they are a
        sentence), None if they are no prefix of one."""
        try:
            self.lark.parse(" ".join(tokens))
        except lark.exceptions.UnexpectedEOF as exc:
            return frozenset(exc.expected)
        except lark.exceptions.UnexpectedInput:
            return None
        raise AssertionError("the oracle's start rule cannot be complete")

    def _live(self, name: str, s: str) -> bool:
        pattern = self.terminals[name].pattern
        if isinstance(pattern, lark.lexer.PatternStr):
            return pattern.value.startswith(s)
        return regex.fullmatch(pattern.value, s, partial=True) is not None

    def _full(self, name: str, s: str) -> bool:
        pattern = self.terminals[name].pattern
        if isinstance(pattern, lark.lexer.PatternStr):
            return pattern.value == s
        return regex.fullmatch(pattern.value, s) is not None

    def _choose(self, candidates, lexeme: str) -> str | None:
        matching = [c for c in candidates if self._full(c, lexeme)]
        if not matching:
            return None
        terms = self.terminals
        return min(matching, key=lambda c: (-terms[c].priority, not isinstance(terms[c].pattern, lark.lexer.PatternStr),
                                            c))

    @functools.lru_cache(maxsize=None)
    def run(self, text: str) -> tuple[bool, bool]:
        """(is ``text`` a prefix of a sentence, is it a sentence)."""
        tokens: tuple[str, ...] = ()
        pos = 0
        while True:
            expected = self.expected(tokens)
            if expected is None:
                return False, False
            if pos == len(text):
                return True, _END in expected
            candidates = sorted((expected - {_END}) | self.ignore)
            end = pos
            while end < len(text) and any(self._live(c, text[pos:end + 1]) for c in candidates):
                end += 1
            if end == pos:
                return False, False
            lexeme = text[pos:end]
            chosen = self._choose(candidates, lexeme)
            if end == len(text):  # the pending lexeme: alive, so a prefix; a sentence if it ends here
                if chosen is None:
                    return True, False
                after = tokens if chosen in self.ignore else tokens + (chosen,)
                final = self.expected(after)
                return True, final is not None and _END in final
            if chosen is None:
                return False, False
            if chosen not in self.ignore:
                tokens = tokens + (chosen,)
            pos = end


def _heights(oracle: Oracle) -> tuple[dict[str, list], dict[str, int]]:
    """The rules by left-hand side, and each nonterminal's least derivation height (10**9: none)."""
    rules: dict[str, list] = {}
    for rule in oracle.lark.rules:
        if rule.origin.name != "zzoracle_top":
            rules.setdefault(rule.origin.name, []).append(rule.expansion)
    height = {name: 10**9 for name in rules}
    changed = True
    while changed:
        changed = False
        for name, options in rules.items():
            for exp in options:
                h = 1 + max([0 if s.is_term else height[s.name] for s in exp], default=0)
                if h < height[name]:
                    height[name], changed = h, True
    return rules, height


def _sample(oracle: Oracle, rng: random.Random, depth: int = 6) -> str:
    """A random sentence drawn from the rules (terminals spelt from a few strings of their own);
    past ``depth``, the alternative of least height."""
    rules, height = _heights(oracle)
    spelled = {}
    singles = [chr(c) for c in range(33, 127)]
    for name, t in oracle.terminals.items():
        if isinstance(t.pattern, lark.lexer.PatternStr):
            spelled[name] = [t.pattern.value]
        else:
            ok = [c for c in singles if regex.fullmatch(t.pattern.value, c)]
            spelled[name] = ok[:3] + [a + b for a in ok[:3] for b in ok[-2:] if regex.fullmatch(t.pattern.value, a + b)]
    sep = " " if oracle.ignore else ""
    out: list[str] = []

    def expand(sym: str, d: int) -> None:
        if sym in oracle.terminals:
            out.append(rng.choice(spelled[sym]))
            return
        options = rules[sym]
        if d >= depth:
            best = min(1 + max([0 if s.is_term else height[s.name] for s in exp], default=0) for exp in options)
            options = [exp for exp in options
                       if 1 + max([0 if s.is_term else height[s.name] for s in exp], default=0) == best]
        for s in rng.choice(options):
            expand(s.name, d + 1)

    expand("start", 0)
    return sep.join(out)


def _mutations(text: str, alphabet: str, rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        s = list(text)
        kind = rng.randrange(4)
        i = rng.randrange(len(s) + 1)
        if kind == 0 and s:
            del s[min(i, len(s) - 1)]
        elif kind == 1:
            s.insert(i, rng.choice(alphabet))
        elif kind == 2 and len(s) > 1:
            j = min(i, len(s) - 2)
            s[j], s[j + 1] = s[j + 1], s[j]
        else:
            k = rng.randrange(len(s) + 1)
            s = s[:min(i, k)] + s[min(i, k):max(i, k)] * 2 + s[max(i, k):]
        out.append("".join(s))
    return out


def _vocab(texts: list[str], oracle: Oracle) -> tuple[guided.Vocabulary, list[str]]:
    chars = sorted({c for t in oracle.terminals.values() for c in t.pattern.value
                    if c.isalnum() or c in "()[]+*-=;,.! "} | set("ab1 ") | {c for t in texts for c in t})
    literals = [t.pattern.value for t in oracle.terminals.values()
                if isinstance(t.pattern, lark.lexer.PatternStr) and len(t.pattern.value) > 1]
    tokens = list(dict.fromkeys(chars + literals + [a + b for a in chars[:4] for b in chars[:4]]))
    vocab = guided.Vocabulary.from_token_bytes([t.encode() for t in tokens] + [b"<eos>"], eos_token_ids=[len(tokens)])
    return vocab, tokens


def _check(name: str, text: str, seeds: list[str], samples: int = 8, mutations: int = 3,
           parser: str = "auto", engine: str = "python") -> int:
    """Every text (seeds, sampled sentences, their mutations) and every mask along it (on
    ``engine``) agree with the oracle; returns the number of sentences among the texts."""
    ir = Grammar(text, parser=parser).to_ir()
    assert ir.earley, f"{name}: expected LALR(1) conflicts"
    assert CfgIR.from_bytes(ir.to_bytes()).rule_rhs == ir.rule_rhs
    oracle = Oracle(text)
    ref = Reference(ir)
    rng = random.Random(name)
    sentences = list(seeds) + [_sample(oracle, rng) for _ in range(samples)]
    alphabet = "".join(sorted({c for s in sentences for c in s} | set("ab1 ")))
    texts = list(dict.fromkeys(sentences + [m for s in sentences for m in _mutations(s, alphabet, rng, mutations)]))
    vocab, tokens = _vocab(texts, oracle)
    grammar = guided.compile(Grammar(text, parser=parser), vocab, engine=engine)
    assert grammar.engine == engine
    for s in seeds:
        assert oracle.run(s)[1], f"{name}: seed {s!r} is no sentence for the oracle"
    accepted = 0
    for t in texts:
        pos = ref.walk(ref.start(), t.encode())
        prefix, sentence = oracle.run(t)
        accepted += sentence
        assert (pos is not None and ref.is_viable(pos)) == prefix, (name, t)
        assert (pos is not None and ref.accepts_end(pos)) == sentence, (name, t)
        # masks along the text, one character token at a time
        m = grammar.matcher()
        for i in range(len(t) + 1):
            done = t[:i]
            if not oracle.run(done)[0]:
                break  # the mask before it refused this character
            mask = m.mask()
            want = [oracle.run(done + tok)[0] for tok in tokens] + [oracle.run(done)[1]]
            got = mask.tolist()
            assert got == want, (name, done, [tokens[k] if k < len(tokens) else "<eos>"
                                              for k in range(len(want)) if got[k] != want[k]])
            assert m.accepts_eos() == want[-1]
            if i < len(t) and oracle.run(t[:i + 1])[0]:
                m.advance(tokens.index(t[i]))
        else:
            assert m.accepts_eos() == sentence
    return accepted


@pytest.mark.parametrize("name", sorted(NON_LALR))
def test_earley_against_lark(name):
    text, seeds = NON_LALR[name]
    _check(name, text, seeds)


def test_random_grammars_by_earley_against_lark():
    """Random grammars (`tests.random_specs.random_grammar`, rules that never finish taken out:
    Lark's parser cannot tell them, so its expected terminals would include theirs), each parsed
    by Earley whether its tables have conflicts or not."""
    import re

    from tests.random_specs import random_grammar

    rng = random.Random(17)
    compared = sentences = 0
    for k in range(200):
        source = random_grammar(rng)
        dead = re.search(r"^(r\d+): \"!\" \1", source, re.MULTILINE)
        if "EMPTYISH" in source or dead is None:
            continue
        source = re.sub(rf"^{dead.group(1)}:.*\n", "", source, flags=re.MULTILINE)
        source = re.sub(rf" {dead.group(1)}\b", "", source)
        try:
            oracle = Oracle(source)
            oracle.expected(())
        except (lark.exceptions.LarkError, RecursionError):
            continue  # Lark refuses it, or its Earley parser recurses on a rule deriving itself
        if max(_heights(oracle)[1].values()) >= 10**9:
            continue  # another rule that never finishes
        try:
            Grammar(source, parser="earley").to_ir()
        except GrammarError as exc:
            assert "accepts no sentence" in str(exc), (source, exc)
            continue
        sentences += _check(f"random {k}", source, [], samples=6, mutations=2, parser="earley")
        compared += 1
        if compared == 40:
            break
    assert compared >= 40 and sentences >= 100, (compared, sentences)


@pytest.mark.parametrize("engine", ["python", "native"])
def test_protocol_on_earley(engine):
    """Rollback, copy, forced bytes, closing and budget masks on an Earley grammar."""
    from guided.engine import native

    if engine == "native" and not native.available():
        pytest.skip("the native core is not built")
    text = 'start: x "a" "b"\nx: "a" |'
    vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"aa", b"<eos>"], eos_token_ids=[4])
    g = guided.compile(Grammar(text), vocab, engine=engine)
    assert g.engine == engine
    m = g.matcher()
    m.advance(0)
    c = m.copy()
    c.advance(1)
    assert c.accepts_eos() and c.is_finished() and not m.accepts_eos()
    assert m.forced_bytes() == b""
    assert m.closing_distance() == 1 and m.closing_tokens().tolist() == [1]
    assert m.closing_lower_bound() == 1
    assert m.budget_mask(2).tolist() == [True, True, True, False, False]
    m.advance(0)
    assert m.forced_bytes() == b"b"
    m.rollback(1)
    assert m.mask().tolist() == [True, True, True, False, False]
    row = np.zeros((1, 1), np.int32)
    m.fill_bitmask(row, 0)
    assert int(row[0, 0]) == 0b00111


def test_long_right_recursion():
    """Leo's completion: the chain of a right recursion is completed in one step, and the start
    symbol completed from the root inside such a chain is still seen."""
    from guided.ir.reference import accepts
    text = 'start: "a" start | b\nb: "b" | "(" start ")" b'
    ir = Grammar(text, parser="earley").to_ir()
    vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"(", b")", b"<eos>"], eos_token_ids=[4])
    m = guided.compile(Grammar(text, parser="earley"), vocab).matcher()
    data = b"a" * 500 + b"(" + b"a" * 300 + b"b)"
    for i, byte in enumerate(data):
        m.advance(b"ab()".index(byte))
        if i % 97 == 0:
            assert m.accepts_eos() == accepts(ir, data[:i + 1])
    assert not m.accepts_eos() and m.mask().tolist() == [False, True, True, False, False]
    m.advance(1)
    assert m.accepts_eos() and accepts(ir, data + b"b")


def test_earley_ir_is_validated():
    import dataclasses

    from guided.errors import InvalidIR
    ir = Grammar('start: x "a" "b"\nx: "a" |').to_ir()
    with pytest.raises(InvalidIR, match="rule_rhs"):
        dataclasses.replace(ir, rule_rhs=((5, 0, 1),) + ir.rule_rhs[1:]).validate()
    with pytest.raises(InvalidIR, match="never finish"):  # start -> start "a" "b": no text
        dataclasses.replace(ir, rule_rhs=((~0, 0, 1),) + ir.rule_rhs[1:]).validate()
    with pytest.raises(InvalidIR, match="only for earley"):
        dataclasses.replace(ir, earley=False).validate()


def test_cyclic_grammar():
    """A rule deriving itself (endless parses; Lark's Earley parser recurses without end on it)."""
    from guided.ir.reference import accepts, is_prefix
    ir = Grammar('start: a\na: a | "x" | "(" a ")"').to_ir()
    assert ir.earley
    assert [accepts(ir, t) for t in (b"x", b"(x)", b"((x))", b"(x", b"")] == [True, True, True, False, False]
    assert is_prefix(ir, b"((") and not is_prefix(ir, b"x)")
    vocab = guided.Vocabulary.from_token_bytes([b"x", b"(", b")", b"<eos>"], eos_token_ids=[3])
    m = guided.compile(Grammar('start: a\na: a | "x" | "(" a ")"'), vocab).matcher()
    m.advance(1)
    assert m.mask().tolist() == [True, True, False, False]
    m.advance(0)
    assert m.mask().tolist() == [False, False, True, False]


def test_parser_option():
    text = 'start: a "y" "z" | b "y" "w"\na: "x"\nb: "x"'
    with pytest.raises(GrammarError, match="not LALR"):
        Grammar(text, parser="lalr").to_ir()
    assert not Grammar('start: "a"+').to_ir().earley
    assert Grammar('start: "a"+', parser="earley").to_ir().earley
    # shifts win in Lark's LALR: "ab" is refused there, accepted by Earley
    from guided.ir.reference import accepts
    nullable = 'start: x "a" "b"\nx: "a" |'
    assert not accepts(Grammar(nullable, parser="lalr").to_ir(), b"ab")
    assert accepts(Grammar(nullable).to_ir(), b"ab")
    with pytest.raises(guided.errors.UsageError):
        Grammar(nullable, parser="glr")


def test_reasoning_before_an_earley_grammar_is_refused():
    from guided.frontends.reasoning import Reasoning
    with pytest.raises(guided.errors.SpecError, match="parsed by Earley"):
        Reasoning(Grammar('start: x "a" "b"\nx: "a" |')).to_ir()
    assert not Reasoning(Grammar('start: x "a" "b"\nx: "a" |', parser="lalr")).to_ir().earley


def test_the_parser_option_is_part_of_the_ir_cache_key():
    from guided import irstore
    text = 'start: x "a" "b"\nx: "a" |'
    keys = {irstore.spec_key(Grammar(text, parser=p)) for p in ("auto", "lalr", "earley")}
    assert len(keys) == 3
