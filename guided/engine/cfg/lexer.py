"""The lexer table: union DFAs of the contextual terminal sets, packed into one lazily filled table.

Contextual lexing (`guided.ir.cfg`, rules 1 to 3) reads, at each byte, every candidate terminal
of the parser's context at once: a *union state* is the tuple of its live components
(``(terminal, state of that terminal's DFA)``), and all union states of a grammar are rows of one
``[rows, 256]`` int32 transition table, so that the whole vocabulary can be walked in one
vectorised pass.  ``chosen[row]`` is the terminal a lexeme ending there is an instance of (the
tie-break of rule 3, -1: none accepts it) and ``alive[row]`` the terminals still alive.  A
single live terminal is laid out as a *block*: its own DFA's rows shifted by a base.

Rows are built lazily (`LexerTable.start`, `LexerTable.ready`), only ever appended, and never
change once filled.
"""

from __future__ import annotations

import bisect
import math
import mmap
import threading
import weakref
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from guided.engine.tuning import (BLOCK_CHUNK, EAGER_BLOCK, EAGER_ROWS, FRESH_PAGES_BYTES, SPARSE_FILL,
                                  UNION_ROWS_MARGIN, WHOLE_BLOCK)
from guided.errors import LimitExceeded
from guided.ir import DEAD, END, CfgIR

if TYPE_CHECKING:
    from guided.engine.cfg.sharing import SubAutomaton

Components = tuple[tuple[int, int], ...]
"""A union state: its live ``(terminal, DFA state)`` pairs, by terminal.  Kept a plain tuple: it
is a dict key, and the collector stops tracking tuples of ints."""


class Block(NamedTuple):
    """Where a terminal's DFA lies in the lexer table: DFA state ``s`` is row ``base + s``."""

    terminal: int
    base: int


class LexerTable:
    """Union DFAs of the contextual terminal sets, packed into one global transition table.

    A set's states are built the first time a parser state that uses it is reached (`start`),
    so compiling a grammar costs nothing per context and a request pays only for the contexts
    it visits.  Within a context, rows beyond the first `EAGER_ROWS` (and the rows of large
    terminal DFAs) are filled when a walk first reads them (`ready`): a context of many long
    property names spelt every way JSON allows has tens of thousands of states, of which a
    document visits a few dozen.  Rows are only ever appended and a filled row never changes,
    so arrays read before a later `start` or `ready` stay valid for every row they held filled.
    """

    def __init__(self, ir: CfgIR, max_states: int):
        self.terminals = ir.terminals
        self.num_terminals = len(self.terminals)
        self.max_states = max_states
        sets: dict[frozenset[int], int] = {}
        self.set_of_state: list[int] = []
        self.set_after_ignore: list[int] = []  # the same without the ignored terminals
        for state, acts in enumerate(ir.actions):
            key = frozenset(t for t in acts if t != END)
            if state not in ir.no_ignore_states:
                key |= ir.ignore
            self.set_of_state.append(sets.setdefault(key, len(sets)))
            if not ir.ignore_repeats:
                key -= ir.ignore
            self.set_after_ignore.append(sets.setdefault(key, len(sets)))
        self.sets = list(sets)
        self._set_index = sets
        self._ignore, self._ignore_repeats = ir.ignore, ir.ignore_repeats
        self._contexts: dict[frozenset[int], int] = {}
        self._starts: list[int | None] = [None] * len(self.sets)
        self.start_states: set[int] = set()  # lexeme boundaries
        # A union state is the tuple of its live components, (terminal, state of its DFA); its
        # transitions depend on nothing else, so every terminal set shares the states it reaches.
        # Only the start states are per set, and never a transition target: "at a lexeme
        # boundary" must stay distinct from "mid-lexeme" even where the components agree.
        self._ids: dict[Components, int] = {}
        # Per terminal: its DFA's `DfaMemo` (shared by every grammar built from the DFA).
        self._memos: list[DfaMemo | None] = [None] * self.num_terminals
        self._successors: dict[int, tuple] = {}  # filled row -> its distinct targets, in byte order
        self.pending: dict[int, Components] = {}  # union states whose row is not filled yet
        self._comps: dict[int, Components] = {}  # union and start states -> their components
        # A single live terminal stays single: its states are its own DFA's, laid out as one
        # block of rows (DFA state s at base + s - 1) the first time one of them is reached.
        self._block: dict[int, int] = {}
        self._bases: list[int] = []  # every block, by base
        self._base_terms: list[int] = []
        self.size = 1  # rows in use; row 0 is the dead state
        # Room for every terminal's block and a margin of union states from the start, since
        # growing copies the table (tens of milliseconds for a large grammar, inside one mask).
        capacity = min(max_states, 1 + 2 * sum(t.dfa.num_states for t in self.terminals) + UNION_ROWS_MARGIN)
        # Zero is DEAD and False, and fresh pages cost nothing until written: a reserved row needs
        # no writing, and rows never filled never cost.
        self.table = _fresh_zeros((capacity, 256), np.int32)
        self.chosen = np.empty(capacity, np.int64)
        self.alive = _fresh_zeros((capacity, self.num_terminals), bool)
        self.filled = np.zeros(capacity, bool)
        self.chosen[0], self.filled[0] = -1, True
        self._lock = threading.RLock()

    def context(self, terminals: frozenset[int]) -> int:
        """A parser context beyond the tables' states (an Earley item set, `guided.ir.cfg` rule 10)
        whose candidates are ``terminals`` and the ignored ones: its number, for `start`."""
        found = self._contexts.get(terminals)
        if found is not None:
            return found
        with self._lock:
            found = self._contexts.get(terminals)
            if found is None:
                keys = (terminals | self._ignore, terminals if not self._ignore_repeats else terminals | self._ignore)
                ids = []
                for key in keys:
                    if key not in self._set_index:
                        self._set_index[key] = len(self.sets)
                        self.sets.append(key)
                        self._starts.append(None)
                    ids.append(self._set_index[key])
                found = len(self.set_of_state)
                self.set_of_state.append(ids[0])
                self.set_after_ignore.append(ids[1])
                self._contexts[terminals] = found
        return found

    def start(self, lr_state: int, after_ignore: bool = False) -> int:
        """The lexer state at a lexeme boundary in ``lr_state`` (its terminal set built on first use).

        ``after_ignore``: the lexeme just ended was an ignored one (see `CfgIR.ignore_repeats`).
        """
        members = (self.set_after_ignore if after_ignore else self.set_of_state)[lr_state]
        start = self._starts[members]
        if start is None:
            with self._lock:
                start = self._starts[members]
                if start is None:
                    start = self._build(self.sets[members])
                    self.start_states.add(start)
                    self._starts[members] = start
        return start

    def ready(self, states) -> np.ndarray:
        """Fill the rows of ``states`` (an int or an array) if need be; the table to read them from."""
        filled = self.filled[states]
        if filled.all() if isinstance(filled, np.ndarray) else filled:
            return self.table
        with self._lock:
            if isinstance(states, (int, np.integer)):
                todo = [int(states)]
            else:
                todo = np.unique(states[~self.filled[states]]).tolist()
            by_block: dict[Block, list[int]] = {}
            for index in todo:
                if index in self.pending:
                    self._fill(index)
                elif not self.filled[index]:
                    block = self.block_at(index)
                    assert block is not None, f"lexer row {index} is neither pending nor in a block"
                    by_block.setdefault(block, []).append(index)
            for (term, base), rows in by_block.items():
                dfa = self.terminals[term].dfa
                # A block of moderate size is filled whole: one copy instead of one per visit;
                # a large one by aligned chunks, since a walk reads states numbered close together.
                if dfa.num_states <= WHOLE_BLOCK:
                    local = np.arange(1, dfa.num_states)
                else:
                    chunks = np.unique((np.array(rows, np.int64) - base) // BLOCK_CHUNK) * BLOCK_CHUNK
                    local = (chunks[:, None] + np.arange(BLOCK_CHUNK)).reshape(-1)
                    local = local[(local >= 1) & (local < dfa.num_states)]
                block_rows = local + base
                part = dfa.transitions[local]
                self.table[block_rows] = _into_block(part, base)
                self.filled[block_rows] = True
        return self.table

    def block_at(self, lex: int) -> Block | None:
        """The terminal block ``lex`` lies in, if any."""
        # A block's rows are base + 1 ... base + n: row ``base`` itself belongs to what came before.
        j = bisect.bisect_left(self._bases, lex) - 1
        if j < 0:
            return None
        term, base = self._base_terms[j], self._bases[j]
        return Block(term, base) if lex - base < self.terminals[term].dfa.num_states else None

    def successors(self, state: int) -> tuple | None:
        """The distinct targets of ``state``'s row, in byte order, filling a block row if need be.

        None for a union row not built yet: those belong to large contexts, where a search of
        the reachable states (`guided.engine.cfg.sharing`) is not worth it.
        """
        if not self.filled[state]:
            if state in self.pending:
                return None
            self.ready(state)
        found = self._successors.get(state)
        if found is None:
            row = self.table[state]
            found = self._successors[state] = tuple(dict.fromkeys(row[row != DEAD].tolist()))
        return found

    def build_all(self) -> None:
        """Build and fill every context's states now (for callers that keep the arrays)."""
        for lr_state in range(len(self.set_of_state)):
            self.start(lr_state)
            self.start(lr_state, after_ignore=True)
        while not self.filled[:self.size].all():
            self.ready(np.arange(self.size))

    def _reserve(self, rows: int) -> int:
        """Room for ``rows`` more states; their first index."""
        first = self.size
        need = first + rows
        if need > self.max_states:
            raise LimitExceeded(f"grammar lexer: more than {self.max_states} states")
        if need > self.table.shape[0]:
            capacity = min(self.max_states, max(need, 2 * self.table.shape[0]))
            table = _fresh_zeros((capacity, 256), np.int32)
            table[:first] = self.table[:first]
            chosen = np.empty(capacity, np.int64)
            chosen[:first] = self.chosen[:first]
            alive = _fresh_zeros((capacity, self.num_terminals), bool)
            alive[:first] = self.alive[:first]
            filled = np.zeros(capacity, bool)
            filled[:first] = self.filled[:first]
            # Publish the copies before the references: readers may hold either.
            self.table, self.chosen, self.alive, self.filled = table, chosen, alive, filled
        # A row read before it is filled would be a bug; it reads as dead (still zero), which can
        # only refuse.
        self.chosen[first:need] = -1
        self.size = need
        return first

    def _single(self, term: int, dfa_state: int) -> int:
        base = self._block.get(term)
        if base is None:
            dfa = self.terminals[term].dfa
            n = dfa.num_states - 1
            base = self._block[term] = self._reserve(n) - 1
            self._bases.append(base)
            self._base_terms.append(term)
            self.chosen[base + 1:base + 1 + n] = np.where(dfa.accepting[1:], term, -1)
            self.alive[base + 1:base + 1 + n, term] = True
            if n <= EAGER_BLOCK:
                self.table[base + 1:base + 1 + n] = _into_block(dfa.transitions[1:], base)
                self.filled[base + 1:base + 1 + n] = True
        return base + dfa_state

    def _state(self, tup: Components) -> int:
        """The index of a non-start union state (its row pending when new)."""
        if len(tup) == 1:
            return self._single(*tup[0])
        target = self._ids.get(tup)
        if target is None:
            target = self._ids[tup] = self._new(tup)
        return target

    def components(self, lex: int) -> Components:
        """The live ``(terminal, DFA state)`` pairs of lexer state ``lex``."""
        found = self._comps.get(lex)
        if found is not None:
            return found
        block = self.block_at(lex) if lex != DEAD else None
        return () if block is None else ((block.terminal, lex - block.base),)

    def state_of(self, tup: Components) -> int:
        """The (non-start) lexer state of the live pairs ``tup``, made if need be."""
        with self._lock:
            return self._state(tup)

    def _new(self, tup: Components) -> int:
        terms = self.terminals
        index = self._reserve(1)
        self._comps[index] = tup
        accepting = [i for i, st in tup if self._memo(i).accepting_flags[st]]
        if accepting:
            self.chosen[index] = min(accepting, key=lambda i: (-terms[i].priority, not terms[i].is_string,
                                                                terms[i].order))
        self.alive[index, [i for i, _ in tup]] = True
        if tup:
            self.pending[index] = tup
        else:
            self.table[index] = DEAD
            self.filled[index] = True
        return index

    def _memo(self, term: int) -> "DfaMemo":
        memo = self._memos[term]
        if memo is None:
            memo = self._memos[term] = dfa_memo(self.terminals[term].dfa)
        return memo

    def _build(self, members: frozenset[int]) -> int:
        terms = self.terminals
        start = self._new(tuple((i, terms[i].dfa.initial) for i in sorted(members)))
        queue, budget = [start], EAGER_ROWS
        for index in queue:  # breadth first, so that the rows a walk reads first are filled
            if index in self.pending and budget:
                budget -= 1
                queue.extend(self._fill(index))
        return start

    def _fill(self, index: int) -> list[int]:
        """Fill a union state's row; the union states it leads to."""
        tup = self.pending.pop(index)
        terms = self.terminals
        dfas = [terms[i].dfa for i, _ in tup]
        if len(tup) == 1:  # a single-terminal start state: its block's initial row
            base = self._single(tup[0][0], 1) - 1
            self.table[index] = _into_block(dfas[0].transitions[tup[0][1]], base)
            self.filled[index] = True
            return []
        sparse = [self._memo(term).live_bytes(st) for term, st in tup]
        sizes = [len(b) for b, _ in sparse]
        narrow = sum(sizes)
        if narrow <= SPARSE_FILL:
            return self._fill_sparse(index, tup, sparse)
        widest = max(range(len(tup)), key=sizes.__getitem__)
        if narrow - sizes[widest] <= SPARSE_FILL:
            return self._fill_sparse(index, tup, sparse, widest)
        nxt = np.empty((len(tup), 256), np.int32)
        for r, (d, (_, st)) in enumerate(zip(dfas, tup)):
            nxt[r] = d.transitions[st]
        live = nxt != DEAD
        count = live.sum(axis=0)
        row = np.zeros(256, np.int32)
        # Bytes one component alone survives lead into that terminal's block: no tuple needed.
        single = np.flatnonzero(count == 1)
        if single.size:
            which = live[:, single].argmax(axis=0)
            bases = np.zeros(len(tup), np.int64)
            for i in np.unique(which).tolist():
                bases[i] = self._single(tup[i][0], 0)  # DFA state s is row base + s
            row[single] = bases[which] + nxt[which, single]
        # The others are groups of equal columns: one int64 code each, mixed radix (exact) when
        # the component sizes allow it, else random weights (a hash) with the grouping checked.
        multi = np.flatnonzero(count > 1)
        targets = np.zeros(0, np.int32)
        if multi.size:
            sub = nxt[:, multi]
            sizes = [d.num_states for d in dfas]
            exact = math.prod(sizes) < 2 ** 62
            weights = np.cumprod([1] + sizes[:-1], dtype=np.int64) if exact else _column_weights(len(tup))
            group_of: dict[int, int] = {}
            inverse = np.fromiter((group_of.setdefault(c, len(group_of)) for c in (weights @ sub).tolist()),
                                  np.int64, count=multi.size)
            first = np.zeros(len(group_of), np.int64)
            first[inverse[::-1]] = np.arange(multi.size - 1, -1, -1)
            columns = sub[:, first]
            if not exact and not np.array_equal(columns[:, inverse], sub):  # a hash collision: group exactly
                columns, inverse = np.unique(sub.T, axis=0, return_inverse=True)
                columns, inverse = columns.T, inverse.reshape(-1)
            targets = np.zeros(columns.shape[1], np.int32)
            for j, col in enumerate(columns.T.tolist()):
                targets[j] = self._state(tuple((tup[i][0], st) for i, st in enumerate(col) if st))
            row[multi] = targets[inverse]
        self.table[index] = row
        self.filled[index] = True
        return [t for t in targets.tolist() if t in self.pending]

    def _fill_sparse(self, index: int, tup: Components, sparse: list[tuple[tuple, tuple]], wide: int = -1) -> list[int]:
        """`_fill` in Python, for components that few bytes let live (property names, say).

        ``wide``: one component that may live on many bytes (a free property name beside
        declared ones): its bytes lead into its own block, except where another component lives.
        """
        by_byte: dict[int, list] = {}
        for j, ((term, _), (live, targets)) in enumerate(zip(tup, sparse)):
            if j == wide:
                continue
            for byte, target in zip(live, targets):
                parts = by_byte.get(byte)
                if parts is None:
                    by_byte[byte] = [(j, term, target)]
                else:
                    parts.append((j, term, target))
        if wide >= 0:
            term, state = tup[wide]
            row = self.terminals[term].dfa.transitions[state]
            self.table[index] = _into_block(row, self._single(term, 0))
            for byte, parts in by_byte.items():
                target = int(row[byte])
                if target:
                    parts.append((wide, term, target))
                    if wide < parts[-2][0]:  # keep the components in the union's order
                        parts.sort()
        successors, unions = [], []
        for parts in by_byte.values():
            if len(parts) == 1:
                _, term, target = parts[0]
                base = self._block.get(term)
                successors.append(self._single(term, target) if base is None else base + target)
            else:
                successors.append(self._state(tuple((term, target) for _, term, target in parts)))
                unions.append(successors[-1])
        if by_byte:
            self.table[index, list(by_byte)] = successors
        self.filled[index] = True
        return [t for t in unions if t in self.pending]


def _into_block(rows: np.ndarray, base: int) -> np.ndarray:
    """A terminal DFA's rows as lexer rows of its block: state s is row base + s, dead stays dead."""
    return np.where(rows != DEAD, rows + base, DEAD)


def _fresh_zeros(shape: tuple[int, int], dtype) -> np.ndarray:
    """A zeroed array on fresh pages: the OS zeroes a page when it is first written.

    ``np.zeros`` may instead reuse memory a freed grammar left and clear all of it at once:
    tens of megabytes for a lexer sized for large terminal automata, most of it never used.
    """
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size < FRESH_PAGES_BYTES:
        return np.zeros(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, size), dtype).reshape(shape)


_weights = np.zeros(0, np.int64)


def _column_weights(n: int) -> np.ndarray:
    """``n`` fixed odd random int64 weights (products wrap around, as a hash may)."""
    global _weights
    if _weights.size < n:
        rng = np.random.default_rng(0x9E3779B9)
        _weights = rng.integers(1, 2 ** 62, size=max(n, 2 * _weights.size, 64), dtype=np.int64) | 1
    return _weights[:n]


class DfaMemo:
    """What the lexer reads often of one terminal DFA, per state, computed once per DFA object.

    Held in tuples, not lists: the collector stops tracking tuples of ints, and these caches
    grow to hundreds of thousands of entries that it would otherwise walk at every full pass.
    """

    __slots__ = ("transitions", "live", "successors", "subs", "accepting", "accepting_flags")

    def __init__(self, dfa):
        self.transitions = dfa.transitions  # not the DFA: the memo is its weak dictionary's value
        self.live: dict[int, tuple[tuple, tuple]] = {}  # state -> its live bytes and their targets
        self.successors: dict[int, tuple] = {}  # state -> its distinct targets, in byte order
        self.subs: dict[int, SubAutomaton | None] = {}  # state -> `block_sub_automaton`
        self.accepting = dfa.accepting.astype(np.int64) - 1  # `chosen`-like: >= 0 where accepting
        self.accepting_flags: list[bool] = dfa.accepting.tolist()

    def live_bytes(self, state: int) -> tuple[tuple, tuple]:
        found = self.live.get(state)
        if found is None:
            row = self.transitions[state]
            live = np.flatnonzero(row)
            found = self.live[state] = (tuple(live.tolist()), tuple(row[live].tolist()))
        return found

    def successors_of(self, state: int) -> tuple:
        found = self.successors.get(state)
        if found is None:
            found = self.successors[state] = tuple(dict.fromkeys(self.live_bytes(state)[1]))
        return found


_memos: "weakref.WeakKeyDictionary[object, DfaMemo]" = weakref.WeakKeyDictionary()


def dfa_memo(dfa) -> DfaMemo:
    """The memo of ``dfa``, shared by every grammar that uses the DFA object."""
    memo = _memos.get(dfa)
    if memo is None:
        memo = _memos[dfa] = DfaMemo(dfa)
    return memo
