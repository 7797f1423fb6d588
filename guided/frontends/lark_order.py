"""Lark's lexer order: refuse grammars where Lark's first-match lexer and guided's greedy lexer part ways.

Lark's contextual lexer tries the terminals a parser state accepts (plus the ``%ignore`` ones)
in one fixed order (`lark_order`: priority, then the longest text a terminal can match, then
the length of its pattern, then its name) and takes the *first* that matches any text at the
current position, with its own longest match; a regex whose match equals a string terminal of
the same priority is then renamed to that string terminal (Lark's "unless" rule), and such
embedded strings are not tried on their own.  Guided lexes greedily (`guided.ir.cfg`, rules 2
and 3): the lexeme grows while any candidate can still read on, and the tie-break picks among
the candidates that accept it.  With ``T: /[a-e]+/`` and ``"do"`` in one state, Lark reads
``do`` as ``T`` (``d``) and then fails at ``o``; guided would read ``"do"``.

`check_lexer_order` explores, for every parser state's candidates, the product of their
automata while simulating both lexers on the first lexeme, and stops (`LexerOrderError`; the
front-end raises `guided.frontends.lark.LexerOrderConflict`, naming both terminals and their
grammar lines) at the first text where guided would produce a lexeme (or terminal) that Lark
would not.  Lark's candidates may include terminals of rules that never finish, which guided
drops: they count on Lark's side only.  It refuses only what can happen in some parser state:
the classic keyword beside an identifier (``NAME: /[a-z]+/`` and ``"do"``) lexes alike in
both and passes.  One direction is not refused: where guided's
greedy lexeme is accepted by no candidate, guided refuses the text while Lark may backtrack
to a shorter lexeme (a language guided under-approximates, never over-approximates).

>>> import lark
>>> from guided.frontends.lark import Grammar, lark_to_ir
>>> lark_to_ir(Grammar('start: (T | "do")+\\nT: /[a-e]+/'))  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
guided.frontends.lark.LexerOrderConflict: terminals T (line 2) and "do" (line 1) can both start a lexeme in one parser state, and Lark's lexer takes T (line 2) for a shorter text where guided's greedy lexer would read 'do' as "do" (line 1): ...
"""

from __future__ import annotations

import re
import time
from collections import deque
from typing import Iterable, Sequence

import lark
import numpy as np

from guided.errors import LimitExceeded
from guided.ir.dfa import DEAD, ByteDFA

MAX_PRODUCT_STATES = 200_000  # per grammar, over all candidate sets


def lark_order(terminals: Sequence) -> list[int]:
    """Each terminal's rank in Lark's lexer order (``BasicLexer``'s sort key), 0 first."""
    def key(i: int):
        t = terminals[i]
        return (-t.priority, -_max_width(t), -len(t.pattern.value), t.name)
    order = sorted(range(len(terminals)), key=key)
    rank = [0] * len(terminals)
    for r, i in enumerate(order):
        rank[i] = r
    return rank


def _max_width(terminal) -> int:
    """Lark's longest-match width of a terminal (Lark reads it with ``re``; huge when unbounded)."""
    try:
        return terminal.pattern.max_width
    except Exception:  # noqa: BLE001 - a pattern re cannot read but guided's front-end did
        return 0


def _regex_matches_whole(regex_terminal, text: str) -> bool:
    """Lark's ``_get_match`` test: ``re.match`` of the regex terminal on ``text`` is all of it."""
    try:
        m = re.match(regex_terminal.pattern.to_regexp(), text)
    except re.error:
        return False
    return m is not None and m.group(0) == text


class LexerOrderError(Exception):
    """A first lexeme that Lark's lexer and guided's read differently, in a set of candidates.

    ``guided_term`` is what guided's greedy lexer reads ``text`` as, and Lark's lexer reads it as
    ``lark_term`` (``how`` is "same"); or Lark reads a shorter text as ``lark_term`` ("shorter");
    or ``text`` is what Lark reads as ``lark_term``, a terminal only Lark tries there, where guided
    stops at a shorter lexeme of ``guided_term`` ("longer").  ``candidates``: Lark's candidates.
    """

    def __init__(self, lark_term: int, guided_term: int, text: bytes, how: str = "same", candidates=()):
        super().__init__(text)
        self.lark_term, self.guided_term, self.text, self.how = lark_term, guided_term, text, how
        self.candidates = tuple(candidates)


def check_lexer_order(terminals: Sequence, dfas: Sequence[ByteDFA],
                      contexts: Iterable[tuple[frozenset[int], frozenset[int]]], deadline: float) -> None:
    """Raise `LexerOrderError` if some parser state's candidates would be lexed differently by Lark and by guided.

    ``terminals`` are Lark's ``TerminalDef`` objects, ``dfas`` their automata (same indices);
    ``contexts``: per parser state, ``(the terminals guided's lexer tries, those Lark's tries)``,
    ignored ones included (Lark's may hold more: terminals of rules that never finish, which
    guided drops).  `LimitExceeded` past ``deadline`` or `MAX_PRODUCT_STATES`.
    """
    rank = lark_order(terminals)
    is_string = [isinstance(t.pattern, lark.lexer.PatternStr) for t in terminals]
    embeds: dict[tuple[int, int], bool] = {}  # (regex, string) -> Lark renames the regex's match

    def embedded(r: int, s: int) -> bool:
        found = embeds.get((r, s))
        if found is None:
            found = embeds[(r, s)] = (terminals[r].priority == terminals[s].priority
                                      and _regex_matches_whole(terminals[r], terminals[s].pattern.value))
        return found

    budget = [MAX_PRODUCT_STATES]
    for ours, members in dict.fromkeys(contexts):
        if len(members) < 2:
            continue  # one terminal: both lexers take its longest match (or guided refuses)
        ordered = sorted(members, key=rank.__getitem__)
        try:
            _explore(ordered, ours, terminals, dfas, rank, is_string, embedded, deadline, budget)
        except LexerOrderError as err:
            err.candidates = tuple(ordered)
            raise


def _explore(members: list[int], ours: frozenset[int], terminals, dfas, rank, is_string, embedded, deadline: float,
             budget: list[int]):
    """Breadth-first over the candidates' product automaton, both lexers simulated on the first lexeme.

    ``members``: Lark's candidates in Lark's order; ``ours``: guided's (a subset).  A state is
    ``(components, first)``: the live ``(terminal, DFA state)`` pairs, and the terminal Lark's
    lexer has chosen so far (the first in Lark's order that accepted some prefix; -1: none).
    """
    regexes = [t for t in members if not is_string[t]]
    # A regex's match that is the whole text of a string terminal of the same priority is renamed
    # to it (the first such string in Lark's order); the strings among those whose flags the
    # regex has too are not tried on their own.
    renames = {r: [s for s in members if is_string[s] and embedded(r, s)] for r in regexes}
    scan = {t for t in members
            if not (is_string[t] and any(t in renames[r] and set(terminals[t].pattern.flags)
                                         <= set(terminals[r].pattern.flags) for r in regexes))}
    tiebreak = {t: (-terminals[t].priority, not is_string[t], rank[t]) for t in members}

    def check_end(comps: tuple, first: int, text: bytes) -> None:
        """The lexeme ends after ``text`` (at the end of input, or before a byte no candidate reads)."""
        accepting = [t for t, s in comps if dfas[t].accepting[s]]
        greedy_accepting = [t for t in accepting if t in ours]
        if not greedy_accepting:
            return  # guided refuses the text here: never more than Lark accepts
        greedy = min(greedy_accepting, key=tiebreak.__getitem__)
        for t, _ in comps:  # Lark's alone: it may still match a longer text, and come first
            if t not in ours and t in scan and (first < 0 or rank[t] < rank[first]):
                raise LexerOrderError(t, greedy, text + _to_acceptance(dfas[t], dict(comps)[t]), "longer")
        if first < 0:
            raise LexerOrderError(greedy, greedy, text)
        if first not in accepting:
            raise LexerOrderError(first, greedy, text, "shorter")
        chosen = first
        for s in renames.get(first, ()):
            if s in accepting:
                chosen = s
                break
        if chosen != greedy:
            raise LexerOrderError(chosen, greedy, text)

    start = (tuple((t, dfas[t].initial) for t in members), -1)
    seen = {start}
    queue = deque([(start, b"")])
    steps = 0
    while queue:
        (comps, first), text = queue.popleft()
        if not any(t in ours for t, _ in comps):
            continue  # guided's lexeme has ended
        if len(comps) == 1:
            # One candidate left: guided reads on with it alone; Lark agrees iff it is (or will be)
            # Lark's choice, or its acceptance is at most renamed, which needs a second candidate.
            t, _ = comps[0]
            takes_over = t in scan and (first < 0 or rank[t] < rank[first])
            if first >= 0 and not takes_over and first != t:
                # It accepts somewhere ahead (automata are trimmed): guided reads it there.
                raise LexerOrderError(first, t, text + _to_acceptance(dfas[t], comps[0][1]), "shorter")
            if first < 0 and t not in scan:
                raise LexerOrderError(t, t, text + _to_acceptance(dfas[t], comps[0][1]))
            continue
        steps += 1
        budget[0] -= 1
        if budget[0] < 0:
            raise LimitExceeded(f"checking that Lark's lexer order agrees with guided's lexer took more than "
                                f"{MAX_PRODUCT_STATES} product states (terminals "
                                f"{', '.join(terminals[t].name for t in members[:6])}...)")
        if steps % 256 == 0 and time.monotonic() > deadline:
            raise LimitExceeded("checking that Lark's lexer order agrees with guided's lexer took longer than "
                                "max_seconds")
        rows = np.stack([dfas[t].transitions[s] for t, s in comps])
        live = np.flatnonzero(rows.any(axis=0))
        if not live.size:
            continue
        columns = rows[:, live].T
        _, firsts = np.unique(columns, axis=0, return_index=True)
        for j in firsts.tolist():
            byte = int(live[j])
            nxt = tuple((t, int(s)) for (t, _), s in zip(comps, columns[j].tolist()) if s != DEAD)
            new_first = first
            for t, s in nxt:
                if t in scan and dfas[t].accepting[s] and (new_first < 0 or rank[t] < rank[new_first]):
                    new_first = t
            state = (nxt, new_first)
            if state in seen:
                continue
            seen.add(state)
            extended = text + bytes([byte])
            check_end(nxt, new_first, extended)
            queue.append((state, extended))


def _to_acceptance(dfa: ByteDFA, state: int) -> bytes:
    """The shortest bytes leading from ``state`` to acceptance (an example for a message)."""
    if dfa.accepting[state]:
        return b""
    parents = {state: None}
    queue = deque([state])
    while queue:
        s = queue.popleft()
        for b in range(256):
            t = int(dfa.transitions[s, b])
            if t != DEAD and t not in parents:
                parents[t] = (s, b)
                if dfa.accepting[t]:
                    out = []
                    while parents[t] is not None:
                        t, b2 = parents[t]
                        out.append(b2)
                    return bytes(reversed(out))
                queue.append(t)
    return b""
