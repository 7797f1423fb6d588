"""Counted repeats in a regex: one large ``X{n,m}`` read as a run-time count, not n..m copies.

A regex such as ``x[0-9]{1,100000}y`` unrolls to 100,000 automaton states, past any sensible
``max_states`` (and ``.{4096}``, within it, to a second and 74 MB of construction).  When the pattern has exactly one repeat past `COUNTED_FROM`, whose body is one
character (a class, ``.`` or a literal) and which every match goes through once (not inside an
alternation or another repeat), the repeat is built as ``X*`` and its count becomes a
`guided.ir.Count` on the transitions that start an ``X``: the constraint lowers to a
one-terminal `guided.ir.CfgIR` (rule 11), which both engines run with a counter in the lexer
state.

Exactness: every transition of the subset automaton is counted only if *all* its moves that can
still reach a match read an ``X`` of the repeat, and uncounted only if none does; a transition
with both is refused (the count would depend on the path: ``[0-9]*[0-9]{1,1000}``).  Then
every match's count is the number of ``X`` it read, and `guided.ir.validate.extends_by_one`
proves the interval property rule 11 asks for.  Anything else returns None, and the caller
unrolls the pattern as usual (within its limits, or `guided.errors.LimitExceeded`).

>>> ir = counted_regex_ir(Regex("x[0-9]{1,100000}y"))
>>> ir.terminals[0].count.min, ir.terminals[0].count.max, ir.terminals[0].dfa.num_states < 10
(1, 100000, True)
"""

from __future__ import annotations

import re
import time

import numpy as np

from interegular import patterns as _ip

from guided.errors import GuidedError
from guided.frontends.regex import (
    _ATOMIC_MARKS, _MARKS, Regex, _Builder, _check_and_normalise, _check_python_syntax, parse_tree,
)
from guided.ir import ByteDFA, ByteNFA, CfgIR, Count, Terminal
from guided.ir.dfa import Limits
from guided.ir.lalr import lalr_tables
from guided.ir.validate import extends_by_one

COUNTED_FROM = 256  # a repeat bound above this is counted rather than unrolled (as string lengths)
MAX_COUNT = 10**9  # bounds past this are not counted (the unrolled path refuses them, naming the repeat)


_QUANTIFIER = re.compile(r"(?<!\\)\{(\d*)(?:,(\d*))?\}")


def has_large_repeat(pattern: str) -> bool:
    """Whether ``pattern`` spells a quantifier with a bound past `COUNTED_FROM` (a cheap text scan
    that decides whether `counted_regex_ir` is worth trying)."""
    return any(int(m.group(1) or 0) > COUNTED_FROM or int(m.group(2) or 0) > COUNTED_FROM
               for m in _QUANTIFIER.finditer(pattern))


def counted_regex_ir(spec: Regex, counted_from: int = COUNTED_FROM) -> CfgIR | None:
    """``spec`` as a one-terminal grammar whose large repeat (a bound past ``counted_from``) is a
    `guided.ir.Count`, or None when the pattern is not of that shape (see the module docstring)."""
    limits = Limits(spec.max_states, spec.max_seconds, time.monotonic() + spec.max_seconds)
    try:
        body = _check_and_normalise(spec.pattern, spec.max_nesting)
        _check_python_syntax(spec.pattern)
        if any(c in _MARKS or c in _ATOMIC_MARKS for c in body):
            return None  # assertions lay down guarded moves this construction does not track
        # Parsed without the size check: that check is what refused the unrolled repeat.
        tree = parse_tree(body, spec.pattern, Limits(1 << 60, spec.max_seconds), spec.max_nesting)
        repeat = _the_counted_repeat(tree, counted_from)
        if repeat is None:
            return None
        nfa = ByteNFA()
        end = nfa.add_state()
        builder = _CountingBuilder(nfa, spec.pattern, limits, repeat)
        builder.build(tree, nfa.start, end, _ip.REFlags(0))
        nfa.accepting.add(end)
        built = _determinize_counting(nfa, builder.loop, limits)
    except GuidedError:
        return None
    if built is None:
        return None
    dfa, counted = built
    lo, hi = repeat.min, repeat.max
    if dfa.initial == 0 or not extends_by_one(dfa, counted):
        return None
    rules: list[tuple[str, tuple[str, ...]]] = [("start", ("REGEX",))]
    if dfa.accepting[dfa.initial]:
        # A lexeme holds at least one byte: the terminal starts from a copy of the initial state
        # that does not accept, and the empty text is the grammar's own empty alternative (when
        # a count of 0 is allowed).
        dfa, counted = _initial_not_accepting(dfa, counted)
        if lo == 0:
            rules.append(("start", ()))
    tables = lalr_tables(rules, {"REGEX": 0}, "start")
    ir = CfgIR(terminals=(Terminal("REGEX", dfa, count=Count(counted, lo, hi)),), ignore=frozenset(),
               source=f"regex {spec.pattern[:200]}", **tables.ir_fields())
    return ir.validate()


def _the_counted_repeat(tree, counted_from: int):
    """The one repeat past ``counted_from``, if every match reads it once and its body is one
    character; None otherwise (none, several, or one under an alternation or another repeat)."""
    found = []
    stack = [(tree, True)]  # (node, on every path exactly once)
    while stack:
        node, once = stack.pop()
        if isinstance(node, _ip.Pattern):
            stack.extend((option, once and len(node.options) == 1) for option in node.options)
        elif isinstance(node, _ip._Concatenation):
            stack.extend((part, once) for part in node.parts)
        elif isinstance(node, _ip._Repeated):
            big = max(node.min, node.max or 0) > counted_from
            if big:
                found.append((node, once))
            stack.append((node.base, False))
    if len(found) != 1:
        return None
    node, once = found[0]
    if not once or not _one_character(node.base):
        return None
    if (node.max is not None and node.max < node.min) or max(node.min, node.max or 0) > MAX_COUNT:
        return None  # the unrolled path says why
    return node


def _one_character(node) -> bool:
    while isinstance(node, _ip.Pattern) and len(node.options) == 1:
        inner = node.options[0]
        if not isinstance(inner, _ip._Concatenation) or len(inner.parts) != 1:
            return False
        node = inner.parts[0]
    if isinstance(node, _ip._Concatenation) and len(node.parts) == 1:
        return _one_character(node.parts[0])
    return node is _ip._DOT or isinstance(node, _ip._CharGroup)


class _CountingBuilder(_Builder):
    """The regex builder with the counted repeat built once as a loop through ``loop``: the
    moves out of ``loop`` are exactly those that start a repetition of its character."""

    def __init__(self, nfa: ByteNFA, pattern: str, limits: Limits, repeat):
        super().__init__(nfa, pattern, limits)
        self.repeat = repeat
        self.loop = -1

    def _repeat(self, node, start: int, end: int, flags) -> None:
        if node is not self.repeat:
            super()._repeat(node, start, end, flags)
            return
        nfa = self.nfa
        self.loop = loop = nfa.add_state()
        nfa.add_epsilon(start, loop)
        body_end = nfa.add_state()
        self.build(node.base, loop, body_end, flags)
        nfa.add_epsilon(body_end, loop)
        nfa.add_epsilon(loop, end)


def _initial_not_accepting(dfa: ByteDFA, counted: np.ndarray) -> tuple[ByteDFA, np.ndarray]:
    """``dfa`` less the empty text: a new initial state with the old one's moves, not accepting."""
    transitions = np.vstack([dfa.transitions, dfa.transitions[dfa.initial]])
    table = np.vstack([counted, counted[dfa.initial]])
    accepting = np.append(dfa.accepting, False)
    return ByteDFA(transitions, accepting, len(accepting) - 1), table


def _determinize_counting(nfa: ByteNFA, loop: int, limits: Limits) -> tuple[ByteDFA, np.ndarray] | None:
    """The subset automaton of ``nfa`` (trimmed: state 0 dead) and, per transition, whether it
    is counted (its live moves all leave ``loop``); None where a transition mixes both."""
    n = nfa.num_states
    # Live NFA states: those that reach acceptance (back over byte moves and epsilons).
    back: list[list[int]] = [[] for _ in range(n)]
    for s in range(n):
        for _, _, t in nfa.ranges[s]:
            back[t].append(s)
        for t in nfa.epsilons[s]:
            back[t].append(s)
    live = [False] * n
    todo = list(nfa.accepting)
    for s in todo:
        live[s] = True
    while todo:
        s = todo.pop()
        for p in back[s]:
            if not live[p]:
                live[p] = True
                todo.append(p)

    def closure(states) -> frozenset[int]:
        seen = set(states)
        work = list(states)
        while work:
            s = work.pop()
            for t in nfa.epsilons[s]:
                if t not in seen:
                    seen.add(t)
                    work.append(t)
        return frozenset(s for s in seen if live[s])

    start = closure([nfa.start])
    if not start:
        return None
    index: dict[frozenset[int], int] = {start: 1}
    order = [start]
    rows: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    deadline = limits.until()
    i = 0
    while i < len(order):
        if len(order) > limits.max_states or time.monotonic() > deadline:
            return None
        subset = order[i]
        i += 1
        targets: list[set[int]] = [set() for _ in range(256)]
        counted = np.zeros(256, np.int8)  # bit 1: a counted move, bit 2: an uncounted one
        for s in subset:
            bit = 1 if s == loop else 2
            for lo, hi, t in nfa.ranges[s]:
                if not live[t]:
                    continue
                for b in range(lo, hi + 1):
                    targets[b].add(t)
                    counted[b] |= bit
        if np.any(counted == 3):
            return None
        row = np.zeros(256, np.int32)
        for b in range(256):
            if targets[b]:
                nxt = closure(targets[b])
                if nxt not in index:
                    index[nxt] = len(order) + 1
                    order.append(nxt)
                row[b] = index[nxt]
        rows.append(row)
        counts.append(counted == 1)
    transitions = np.zeros((len(order) + 1, 256), np.int32)
    transitions[1:] = np.stack(rows)
    counted_table = np.zeros((len(order) + 1, 256), bool)
    counted_table[1:] = np.stack(counts)
    accepting = np.zeros(len(order) + 1, bool)
    for subset, k in index.items():
        accepting[k] = any(s in nfa.accepting for s in subset)
    return ByteDFA(transitions, accepting, 1), counted_table
