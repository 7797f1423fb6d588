"""Counted terminals (`guided.ir.Count`, rule 11 of `guided.ir.cfg`) in the CFG engines: the Python
engine here, the native core (`src/guided_native/counting.h`) from the tables built here.

A counted terminal reads its DFA and counts the counted transitions it takes (a JSON string's
characters); its lexemes must take between ``min`` and ``max`` of them.  Unrolling the count into
the automaton costs a state per position (100,000 for ``maxLength: 100000``).  Here the count is
*capped* instead:

- A mask reads one token, at most ``L`` bytes (the vocabulary's longest token), so at most ``L``
  counted transitions.  Whether the lexeme can still end within the bounds after the token only
  depends on the distances to the bounds as long as they are below ``K = L + 1 + m`` (``m`` the
  largest finite count from a DFA state to acceptance, fewest or most);
  beyond, every distance behaves the same.  The engine's terminal DFA is therefore the *capped
  expansion* (`expand`): states ``(DFA state, need, room)`` with ``need = min(min - n, K)`` (0 once
  the minimum is met) and ``room = min(max - n, K)`` (``K`` when there is no maximum).  A counted
  transition lowers ``need`` (down to 0) and ``room`` (except at ``K``, which stands for "at least
  ``K``": it stays ``K``).  It has ``O(states * K)`` states whatever the bounds: the lexer table,
  the mask caches and the cross-grammar sharing see an ordinary DFA, and masks are cached per
  capped state, so every position far from both bounds shares one mask.
- The exact count ``n`` of the pending lexeme rides with the configuration: the lexer state of a
  configuration is a `CountedLex` (an ``int``, the row, carrying ``n``), and `Counting.after`
  puts each byte's successor back on the row of its exact capped distances (within a token's
  walk the expansion's own moves are exact enough; across tokens they are not, so each step is
  corrected).

Lexer states without a count (plain ints met outside a matcher's own steps, as in the closing
searches) keep the expansion's moves; there the bound at ``K`` reads "exactly ``K``" for
``need``, so a closing estimate from far below a large ``minLength`` is an underestimate (a true
lower bound still; see `docs/json-schema-coverage.md`, "Long strings").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from guided.errors import LimitExceeded
from guided.ir import DEAD, ByteDFA, CfgIR, Terminal
from guided.ir.cfg import UNBOUNDED
from guided.vocab import Vocabulary

if TYPE_CHECKING:
    from guided.engine.cfg.lexer import LexerTable


# The most states a counted terminal's capped expansion may have (a lexer row of 1 KiB each): a
# URL pattern's 761-state automaton expands to about 70,000 with SmolLM2's vocabulary; a pattern
# in every JSON spelling with thousands of states would take gigabytes.
MAX_EXPANDED_STATES = 300_000


class CountedLex(int):
    """A lexer state (the row, as an int: equal and hashing as the row) with the exact count
    ``n`` of the pending lexeme's counted transitions."""

    n: int

    def __new__(cls, row: int, n: int):
        self = super().__new__(cls, row)
        self.n = n
        return self

    def __repr__(self) -> str:
        return f"{int(self)}(n={self.n})"


class Expansion:
    """One counted terminal's capped expansion: its DFA, and the state of a DFA state at a count."""

    def __init__(self, term: Terminal, cap: int):
        count = term.count
        assert count is not None
        base, counted = term.dfa, count.counted
        lowest, highest = term.count_range
        self.min, self.max, self.cap = count.min, count.max, cap
        K = cap
        # The (need, room) pairs: the exact ones of every count, closed under the expansion's moves.
        ns = {0} | set(range(max(0, self.min - K), self.min + 1))
        if self.max is not None:
            ns |= set(range(max(0, self.max - K), self.max + 1))
        pairs = {p for p in map(self.capped, ns) if p[1] >= 0}
        todo = list(pairs)
        while todo:
            p = self._move(todo.pop())
            if p[1] >= 0 and p not in pairs:
                pairs.add(p)
                todo.append(p)
        pair_list = sorted(pairs)
        pair_index = {p: i for i, p in enumerate(pair_list)}
        n_base, n_pairs = base.num_states, len(pair_list)
        # Expanded state of (s, pair j): 1 + s * n_pairs + j where alive, renumbered below.
        need = np.array([p[0] for p in pair_list], np.int64)
        room = np.array([p[1] for p in pair_list], np.int64)
        # Alive: a count between the fewest and the most still to come meets both bounds
        # (`guided.ir.Count`'s interval invariant); room K stands for "at least K", enough.
        alive = ((lowest[:, None] >= 0) & ((room[None, :] == K) | (lowest[:, None] <= room[None, :]))
                 & (highest[:, None] >= need[None, :]))
        alive[DEAD, :] = False
        ids = np.zeros((n_base, n_pairs + 1), np.int64)
        ids[:, :n_pairs][alive] = np.arange(1, int(alive.sum()) + 1)
        self.ids = ids  # (DFA state, pair) -> expanded state (0: dead)
        self.pair_index = pair_index
        # A counted move from a pair whose room is 0 leads nowhere: column n_pairs, dead.
        moved = np.array([pair_index.get(self._move(p), n_pairs) for p in pair_list], np.int64)
        n_states = int(alive.sum()) + 1
        if n_states > MAX_EXPANDED_STATES:
            raise LimitExceeded(f"counted terminal {term.name}: its capped expansion would have {n_states} states "
                                f"({n_base} DFA states by {n_pairs} distances to the bounds, as many as this "
                                f"vocabulary's longest token needs), above {MAX_EXPANDED_STATES}")
        table = np.zeros((n_states, 256), np.int32)
        accepting = np.zeros(n_states, bool)
        self.base_of = np.zeros(n_states, np.int64)  # expanded state -> DFA state
        src_s, src_p = np.nonzero(alive)
        rows = ids[src_s, src_p]
        self.base_of[rows] = src_s
        nxt = base.transitions[src_s]  # [rows, 256]
        cnt = counted[src_s]
        pair_after = np.where(cnt, moved[src_p][:, None], src_p[:, None])
        table[rows] = ids[nxt, pair_after].astype(np.int32)
        accepting[rows] = base.accepting[src_s] & (need[src_p] == 0)
        initial = int(ids[base.initial, pair_index[self.capped(0)]])
        self.dfa = ByteDFA(transitions=table, accepting=accepting, initial=initial)
        self.counted = counted

    def capped(self, n: int) -> tuple[int, int]:
        """The (need, room) pair of a count of ``n``."""
        K = self.cap
        need = min(max(self.min - n, 0), K)
        room = K if self.max is None else min(self.max - n, K)
        return need, room

    def _move(self, p: tuple[int, int]) -> tuple[int, int]:
        need, room = p
        return max(need - 1, 0), room if room == self.cap else room - 1

    def at(self, state: int, n: int) -> int:
        """The expanded state of expanded ``state``'s DFA state at the exact count ``n`` (0: dead)."""
        p = self.pair_index.get(self.capped(n))
        if p is None:
            return DEAD
        return int(self.ids[self.base_of[state], p])


class Counting:
    """The counted terminals of a `CfgIR` against a vocabulary: the IR the rest of the engine
    compiles (counted terminals replaced by their capped expansions) and the per-byte correction."""

    def __init__(self, ir: CfgIR, vocab: Vocabulary):
        longest = max(map(len, vocab.token_bytes), default=1)
        counted = [i for i, t in enumerate(ir.terminals) if t.count is not None]
        finite = np.concatenate([np.concatenate([lo, hi[hi < UNBOUNDED]])
                                 for lo, hi in (ir.terminals[i].count_range for i in counted)])
        # A token's counted transitions (at most one a byte) never carry a distance past K down
        # to where a state's fewest or most (finite) decides.
        self.cap = longest + 1 + int(finite.max(initial=0))
        self.expansions: dict[int, Expansion] = {i: Expansion(ir.terminals[i], self.cap) for i in counted}
        terms = list(ir.terminals)
        for i, e in self.expansions.items():
            t = terms[i]
            terms[i] = Terminal(t.name, e.dfa, t.priority, t.is_string, t.order)
        fields = {name: getattr(ir, name) for name in ir.__dataclass_fields__}
        fields["terminals"] = tuple(terms)
        self.ir = CfgIR(**fields)
        self.lexers: LexerTable  # set by the grammar, once its lexer table exists

    def native_tables(self) -> list[tuple]:
        """The expansions as the native core's ``cfg_grammar(counted=...)`` takes them: per counted
        terminal (terminal, min, max or -1, cap, DFA states, pairs, expanded state -> DFA state,
        counted flags [DFA state * 256 + byte], pair of [need * (cap + 1) + room] (-1: none),
        expanded state of [DFA state * (pairs + 1) + pair])."""
        out = []
        for t, e in sorted(self.expansions.items()):
            side = e.cap + 1
            pair_of = np.full(side * side, -1, np.int32)
            for (need, room), i in e.pair_index.items():
                pair_of[need * side + room] = i
            out.append((t, e.min, -1 if e.max is None else e.max, e.cap, e.counted.shape[0], len(e.pair_index),
                        e.base_of.astype(np.int32), e.counted.astype(np.int32).reshape(-1), pair_of,
                        e.ids.astype(np.int32).reshape(-1)))
        return out

    def after(self, before: int, row: int, byte: int, fresh: bool) -> int:
        """``row``, the lexer state after ``byte`` from ``before`` (``fresh``: ``before`` is the
        start of a new lexeme), on the row of the exact count (a `CountedLex`) where a counted
        terminal is alive in it."""
        lexers = self.lexers
        comps = lexers.components(row)
        if not any(t in self.expansions for t, _ in comps):
            return row
        if fresh or before in lexers.start_states:
            n = 0
        elif isinstance(before, CountedLex):
            n = before.n
        else:
            return row  # no count to correct with (see the module docstring)
        before_comps = lexers.components(before)
        for t, e in before_comps:
            exp = self.expansions.get(t)
            if exp is not None:
                n += int(exp.counted[exp.base_of[e], byte])
                break
        fixed = []
        for t, e in comps:
            exp = self.expansions.get(t)
            if exp is not None:
                e = exp.at(e, n)
                if e == DEAD:
                    continue
            fixed.append((t, e))
        if not fixed:
            return DEAD
        return CountedLex(lexers.state_of(tuple(fixed)), n)
