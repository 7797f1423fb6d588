"""Compile-path shortcuts (time to first mask) equal the constructions they replace, state for state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guided.errors import LimitExceeded
from guided.frontends.jsonschema import _strings, terminals
from guided.ir import END
from guided.ir.cfg import _csr

# Characters with one spelling, several (escapes, \u in either case), surrogate pairs, lone surrogates.
_TEXT = st.text(st.sampled_from('ab"\\/\né\U0001f600\x01\ud800_0'), max_size=6)


def _same(a, b) -> bool:
    return a.initial == b.initial and np.array_equal(a.transitions, b.transitions) and \
        np.array_equal(a.accepting, b.accepting)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.lists(_TEXT, min_size=1, max_size=8), st.booleans(), st.booleans())
def test_planned_trie_equals_the_step_by_step_walk(texts, canonical, quoted):
    """Characters read by their cached plan give the trie of the walk that reads each byte choice,
    the same states in the same numbers (so the serialised IR does not change)."""
    texts = tuple(texts)
    planned = _strings._literals_trie(texts, canonical, quoted)
    walked = _strings._literals_trie(texts, canonical, quoted, planned=False)
    assert _same(planned, walked)
    if not canonical:  # and it is the trie of these texts: json.dumps's spelling is one JSON allows
        for text in texts:
            spelled = json.dumps(text).encode()
            assert planned.fullmatch(spelled if quoted else spelled[1:-1])


def test_planned_trie_keeps_the_state_bound():
    texts = tuple(f"value{i}" for i in range(50))
    with pytest.raises(LimitExceeded, match="max_states=100"):
        _strings._literals_trie(texts, False, True, max_states=100)
    with pytest.raises(LimitExceeded, match="max_states=100"):
        _strings._literals_trie(texts, False, True, max_states=100, planned=False)
    for quoted in (False, True):  # one long text (the single-text path), quoted or not
        for planned in (False, True):
            with pytest.raises(LimitExceeded, match="max_states=30"):
                _strings._literals_trie(("abcdefgh",), False, quoted, max_states=30, planned=planned)


def test_key_automata_share_one_colon_tail_and_equal_the_concatenation():
    ws = 3
    colon = terminals._colon(ws)
    assert colon is terminals._colon(ws)
    key = _strings.concat_fast(_strings.quoted_literals(("name",)), colon)
    assert key.fullmatch(b'"name"  :') and key.fullmatch(b'"\\u006Eame":') and not key.fullmatch(b'"name"    :')


def _rows(draw_rows, n_terms):
    return [{(END if s == n_terms else s): v for s, v in row.items()} for row in draw_rows]


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(st.just(n), st.lists(
    st.dictionaries(st.integers(0, n), st.integers(-(2 ** 31), 2 ** 31 - 1), max_size=n + 1), max_size=10))))
def test_csr_rows_sorted_per_state_and_read_back(case):
    """The bulk CSR layout: each state's symbols ascending (END last, as ``len(terminals)``), values
    beside their symbols, and `FlatTables.rows`' reading gives the dicts back."""
    n_terms, raw = case
    rows = _rows(raw, n_terms)
    offsets, symbols, values = _csr(rows, n_terms)
    assert offsets.dtype == np.int64 and symbols.dtype == np.int32 and values.dtype == np.int32
    assert offsets[0] == 0 and offsets[-1] == len(symbols) == len(values)
    for q, row in enumerate(rows):
        lo, hi = offsets[q], offsets[q + 1]
        expected = sorted((n_terms if s == END else s, v) for s, v in row.items())
        assert list(zip(symbols[lo:hi].tolist(), values[lo:hi].tolist())) == expected


def test_csr_refuses_entries_past_32_bits():
    with pytest.raises(OverflowError):
        _csr([{0: 1 << 31}], None)
    with pytest.raises(OverflowError):
        _csr([{1 << 40: 0}], None)


def _fixpoint_productive(rules, is_term) -> list:
    """The textbook fixpoint: rounds over every rule until no nonterminal is added."""
    productive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for lhs, rhs in rules:
            if lhs not in productive and all(is_term(s) or s in productive for s in rhs):
                productive.add(lhs)
                changed = True
    return [(lhs, rhs) for lhs, rhs in rules if lhs in productive and all(is_term(s) or s in productive for s in rhs)]


_SYMBOL = st.sampled_from(["A", "B", "C", "D", "E", "T0", "T1"])


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C", "D", "E"]), st.lists(_SYMBOL, max_size=4).map(tuple)),
                max_size=12))
def test_productive_rules_equal_the_fixpoint(rules):
    """The counting pass keeps exactly the rules (in their order) of the round-by-round fixpoint,
    repeated symbols and self-references included."""
    from guided.frontends.jsonschema.rules import Grammar, productive_rules

    assert productive_rules(rules, Grammar.is_terminal) == _fixpoint_productive(rules, Grammar.is_terminal)


def _contents():
    from guided.ir import dfa_ops

    spelling = _strings.json_spelling(False)
    yield _strings.any_content(spelling)
    yield _strings.length_content(0, 3, spelling)
    yield _strings.length_content(2, 5, _strings.json_spelling(True))
    yield _strings.literals_content(("a", "bc", "é\U0001f600"))
    yield _strings.literals_content(("", "x"))  # the initial state accepts
    yield _strings.pattern_content("^[a-z]+@[a-z]+$", 10_000, spelling)
    yield dfa_ops.difference(_strings.any_content(spelling), _strings.literals_content(("id", "name")))
    yield dfa_ops.EMPTY
    yield dfa_ops.literal_dfa(b'a"b')  # holds a raw quote (not string content): the general way
    yield dfa_ops.union_dfas([dfa_ops.literal_dfa(b"a"), dfa_ops.literal_dfa(b'a"')])


@pytest.mark.parametrize("content", list(_contents()), ids=lambda d: f"{d.num_states}-states")
def test_quoted_equals_two_concatenations(content):
    """The one-step quoted automaton is the two concatenations', state for state."""
    fast, reference = _strings.quoted(content), _strings.quoted_by_concat(content)
    assert _same(fast, reference)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(st.lists(_TEXT, min_size=1, max_size=6), st.booleans())
def test_any_string_but_names_needs_no_trim(names, canonical):
    """Any string content minus a finite set of names: the untrimmed product is `difference`'s
    result state for state (every reachable pair is live), and it refuses exactly the names."""
    from guided.ir import dfa_ops

    anything = _strings.any_content(_strings.json_spelling(canonical))
    excluded = _strings.literals_content(tuple(sorted(set(names))))
    fast = dfa_ops.difference_unbounded_finite(anything, excluded)
    assert _same(fast, dfa_ops.difference(anything, excluded))
    for name in names:
        spelled = _strings.canonical_text(name) if canonical else json.dumps(name).encode()[1:-1]
        assert not fast.fullmatch(spelled)
        if not any(0xD800 <= ord(c) <= 0xDFFF for c in name):  # (no lone surrogate in JSON strings)
            assert fast.fullmatch(spelled + b"x")
