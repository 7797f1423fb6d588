"""Token masks for context-free grammars: a greedy contextual lexer over an LALR(1) parser.

A matcher's configuration is a pair (parser stack, lexer state).  The parser stack is a
persistent, interned linked list of LR states, so copies and rollbacks are free and equal
stacks are the same object (their per-stack caches are shared by every matcher of the
grammar).  The lexer state lives in the union DFA of the terminals the parser accepts in the
stack's top state (Lark's contextual lexer); all these DFAs are packed into one transition
table so that the whole vocabulary can be walked in a single vectorised pass.

Masks walk the vocabulary's byte trie level by level (see `guided.engine.token_table`).  Within
a lexeme a step is one table lookup; where a byte cannot extend the current lexeme the lexeme
ends (greedy lexing), its terminal is fed to the parser (reductions, then a shift, memoised per
stack) and the byte starts the next lexeme.  Boundary crossings are handled per distinct
(stack, terminal) pair, never per token, and finished masks are cached per configuration.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"[", b"]", b"1", b",", b"1,", b"],", b"<eos>"], eos_token_ids=[6])
>>> g = guided.compile(guided.Grammar('start: "[" NUMBER ("," NUMBER)* "]"\\n%import common.NUMBER'), vocab)
>>> m = g.matcher(); m.advance(0); m.advance(2)
>>> m.mask().tolist()  # "1" may grow, "," and "1," continue, "]" closes; "]," cannot follow
[False, True, True, True, True, False, False]
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import mmap
import threading
import time
import weakref
from collections import OrderedDict

import numpy as np
import torch

from guided.engine.automaton import MaskStats
from guided.engine.bitmask import clear_bits, pack, set_bits, unpack, write_row
from guided.engine.matcher import HistoryMatcher, text_bytes, token_index
from guided.engine.token_table import (SCALAR_WORK, TokenTable, children_of, subtree_tokens, trie_lists, trie_nodes,
                                       trie_order, walk_automaton, walk_divergence, with_duplicate_ids)
from guided.errors import ConstraintViolation, LimitExceeded, SpecError
from guided.ir import END, CfgIR
from guided.vocab import Vocabulary

DEAD = 0
MASK_CACHE_SIZE = 4096
INTERN_LIMIT = 200_000


class _Stack:
    """An interned node of a persistent LR stack."""

    __slots__ = ("state", "parent", "uid", "depth", "feeds", "viable", "__weakref__")

    def __init__(self, state: int, parent: "_Stack | None", uid: int, depth: int):
        self.state = state
        self.parent = parent
        self.uid = uid
        self.depth = depth  # nodes of `CfgIR.nesting_states` in the stack
        self.feeds: dict[int, _Stack | None | bool] = {}
        self.viable: np.ndarray | None | bool = False  # False: not computed yet


class _Lexers:
    """Union DFAs of the contextual terminal sets, packed into one global transition table.

    A set's states are built the first time a parser state that uses it is reached (`start`),
    so compiling a grammar costs nothing per context and a request pays only for the contexts
    it visits.  Within a context, rows beyond the first `EAGER_ROWS` (and the rows of large
    terminal DFAs) are filled when a walk first reads them (`ready`): a context of many long
    property names spelt every way JSON allows has tens of thousands of states, of which a
    document visits a few dozen.  Rows are only ever appended and a filled row never changes,
    so arrays read before a later `start` or `ready` stay valid for every row they held filled.
    """

    EAGER_ROWS = 16  # union rows filled when a context is first built
    EAGER_BLOCK = 16  # terminal DFAs up to this size are copied whole when first reached
    WHOLE_BLOCK = 256  # and up to this size when one of their rows is first read
    BLOCK_CHUNK = 32  # larger ones by aligned chunks of this many rows

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
        self._starts: list[int | None] = [None] * len(self.sets)
        self.start_states: set[int] = set()  # lexeme boundaries
        # A union state is the tuple of its live components, (terminal, state of its DFA); its
        # transitions depend on nothing else, so every terminal set shares the states it reaches.
        # Only the start states are per set, and never a transition target: "at a lexeme
        # boundary" must stay distinct from "mid-lexeme" even where the components agree.
        self._ids: dict[tuple, int] = {}
        # Per terminal: its DFA's `_DfaMemo` (shared by every grammar built from the DFA).
        self._memos: list[_DfaMemo | None] = [None] * self.num_terminals
        self._successors: dict[int, tuple] = {}  # filled row -> its distinct targets, in byte order
        self.pending: dict[int, tuple] = {}  # union states whose row is not filled yet
        # A single live terminal stays single: its states are its own DFA's, laid out as one
        # block of rows (DFA state s at base + s - 1) the first time one of them is reached.
        self._block: dict[int, int] = {}
        self._bases: list[int] = []  # every block, by base
        self._base_terms: list[int] = []
        self.size = 1  # rows in use; row 0 is the dead state
        # Room for every terminal's block and a margin of union states from the start, since
        # growing copies the table (tens of milliseconds for a large grammar, inside one mask).
        capacity = min(max_states, 1 + 2 * sum(t.dfa.num_states for t in self.terminals) + 4096)
        # Zero is DEAD and False, and fresh pages cost nothing until written: a reserved row needs
        # no writing, and rows never filled never cost.
        self.table = _fresh_zeros((capacity, 256), np.int32)
        self.chosen = np.empty(capacity, np.int64)
        self.alive = _fresh_zeros((capacity, self.num_terminals), bool)
        self.filled = np.zeros(capacity, bool)
        self.chosen[0], self.filled[0] = -1, True
        self._lock = threading.RLock()

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
            by_block: dict[tuple[int, int], list[int]] = {}
            for index in todo:
                if index in self.pending:
                    self._fill(index)
                elif not self.filled[index]:
                    by_block.setdefault(self.block_at(index), []).append(index)
            for (term, base), rows in by_block.items():
                dfa = self.terminals[term].dfa
                # A block of moderate size is filled whole: one copy instead of one per visit;
                # a large one by aligned chunks, since a walk reads states numbered close together.
                if dfa.num_states <= self.WHOLE_BLOCK:
                    local = np.arange(1, dfa.num_states)
                else:
                    chunks = np.unique((np.array(rows, np.int64) - base) // self.BLOCK_CHUNK) * self.BLOCK_CHUNK
                    local = (chunks[:, None] + np.arange(self.BLOCK_CHUNK)).reshape(-1)
                    local = local[(local >= 1) & (local < dfa.num_states)]
                index = local + base
                part = dfa.transitions[local]
                self.table[index] = _into_block(part, base)
                self.filled[index] = True
        return self.table

    def block_at(self, lex: int) -> tuple[int, int] | None:
        """``(terminal, base)`` when ``lex`` is a state of a terminal's block, else None."""
        # A block's rows are base + 1 ... base + n: row ``base`` itself belongs to what came before.
        j = bisect.bisect_left(self._bases, lex) - 1
        if j < 0:
            return None
        term, base = self._base_terms[j], self._bases[j]
        return (term, base) if lex - base < self.terminals[term].dfa.num_states else None

    def sub_automaton(self, lex: int):
        """`_sub_automaton` of a start state, filling the block rows the search reaches.

        Union rows not built with the context mean a large context: not worth a key.
        """
        def successors(state: int):
            if not self.filled[state]:
                if state in self.pending:
                    return None
                self.ready(state)
            found = self._successors.get(state)
            if found is None:
                row = self.table[state]
                found = self._successors[state] = tuple(dict.fromkeys(row[row != DEAD].tolist()))
            return found
        return _sub_automaton(lex, successors, lambda: (self.table, self.chosen))

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
            if n <= self.EAGER_BLOCK:
                self.table[base + 1:base + 1 + n] = _into_block(dfa.transitions[1:], base)
                self.filled[base + 1:base + 1 + n] = True
        return base + dfa_state

    def _state(self, tup: tuple) -> int:
        """The index of a non-start union state (its row pending when new)."""
        if len(tup) == 1:
            return self._single(*tup[0])
        target = self._ids.get(tup)
        if target is None:
            target = self._ids[tup] = self._new(tup)
        return target

    def _new(self, tup: tuple) -> int:
        terms = self.terminals
        index = self._reserve(1)
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

    def _memo(self, term: int) -> "_DfaMemo":
        memo = self._memos[term]
        if memo is None:
            memo = self._memos[term] = _memo(self.terminals[term].dfa)
        return memo

    def _build(self, members: frozenset[int]) -> int:
        terms = self.terminals
        start = self._new(tuple((i, terms[i].dfa.initial) for i in sorted(members)))
        queue, budget = [start], self.EAGER_ROWS
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

    def _fill_sparse(self, index: int, tup: tuple, sparse: list[tuple[tuple, tuple]], wide: int = -1) -> list[int]:
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


SPARSE_FILL = 48  # unions whose components live on at most this many bytes in all are built in Python


def _into_block(rows: np.ndarray, base: int) -> np.ndarray:
    """A terminal DFA's rows as lexer rows of its block: state s is row base + s, dead stays dead."""
    return np.where(rows != DEAD, rows + base, DEAD)


def _fresh_zeros(shape: tuple[int, int], dtype) -> np.ndarray:
    """A zeroed array on fresh pages: the OS zeroes a page when it is first written.

    ``np.zeros`` may instead reuse memory a freed grammar left and clear all of it at once:
    tens of megabytes for a lexer sized for large terminal automata, most of it never used.
    """
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size < 1 << 20:
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


class _LexemeInfo:
    """What a lexer state alone decides about every token (shared by all stacks).

    ``inside``: tokens whose bytes all extend the current lexeme (allowed whatever the stack);
    ``after_end``: tokens whose first byte ends the lexeme (then allowed as the start of the next
    lexeme, which depends on the stack); ``seeds``: trie nodes below the first byte where the
    lexeme ends (level, node, lexer state before the node's byte), resolved per stack.
    """

    __slots__ = ("inside", "after_end", "seed_level", "seed_node", "seed_lex")

    def __init__(self, inside, after_end, seed_level, seed_node, seed_lex):
        self.inside = inside
        self.after_end = after_end
        self.seed_level = seed_level
        self.seed_node = seed_node
        self.seed_lex = seed_lex


_first_byte_cache: "weakref.WeakKeyDictionary[TokenTable, np.ndarray]" = weakref.WeakKeyDictionary()


def _first_byte_words(vocab: Vocabulary, table: TokenTable) -> np.ndarray:
    """``[256, words]``: packed masks of the text tokens starting with each byte (cached per vocabulary)."""
    words = _first_byte_cache.get(table)
    if words is None:
        first = np.full(vocab.size, -1, dtype=np.int64)
        first[table.token_ids] = [vocab.token_bytes[i][0] for i in table.token_ids.tolist()]
        words = _first_byte_cache[table] = np.stack([pack(first == b) for b in range(256)])
    return words


SHARE_LIMIT = 64  # lexer sub-automata up to this many states are shared between grammars
SHARED_LIMIT = 100_000  # entries in the per-vocabulary cache of lexer-state data
# A state moving to one other state on at least this many bytes is derived from that state's
# data (`CfgGrammar._from_reference`), if at most DIVERGENCE_BUDGET trie nodes tell them apart.
REFERENCE_MIN_BYTES = 32
DIVERGENCE_BUDGET = 4000

_shared_lexemes: "weakref.WeakKeyDictionary[TokenTable, dict]" = weakref.WeakKeyDictionary()


class _DfaMemo:
    """What the lexer reads often of one terminal DFA, per state, computed once per DFA object.

    Held in tuples, not lists: the collector stops tracking tuples of ints, and these caches
    grow to hundreds of thousands of entries that it would otherwise walk at every full pass.
    """

    __slots__ = ("transitions", "live", "successors", "subs", "accepting", "accepting_flags")

    def __init__(self, dfa):
        self.transitions = dfa.transitions  # not the DFA: the memo is its weak dictionary's value
        self.live: dict[int, tuple[tuple, tuple]] = {}  # state -> its live bytes and their targets
        self.successors: dict[int, tuple] = {}  # state -> its distinct targets, in byte order
        self.subs: dict[int, tuple | None] = {}  # state -> `_block_sub_automaton`
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


_memos: "weakref.WeakKeyDictionary[object, _DfaMemo]" = weakref.WeakKeyDictionary()


def _memo(dfa) -> _DfaMemo:
    memo = _memos.get(dfa)
    if memo is None:
        memo = _memos[dfa] = _DfaMemo(dfa)
    return memo


def _sub_automaton(lex: int, successors, arrays, limit: int = SHARE_LIMIT):
    """A canonical key for the automaton reachable from ``lex``, and its states in discovery order.

    States are numbered by a breadth-first search that visits successors in byte order, so two
    grammars with the same sub-automaton get the same key whatever their global numbering.
    ``successors(state)`` lists a state's distinct targets in byte order, or is None to give up;
    ``arrays()`` returns the transition table and the accepted terminals (read after the search,
    which may fill rows).  None when more than ``limit`` states are reachable.
    """
    order = [lex]
    index = {lex: 0}
    for state in order:
        targets = successors(state)
        if targets is None:
            return None
        for target in targets:
            if target not in index:
                if len(order) >= limit:
                    return None
                index[target] = len(order)
                order.append(target)
    table, chosen = arrays()
    states = np.array(order, dtype=np.int64)
    lookup = np.zeros(int(states.max()) + 1, dtype=np.int32)
    lookup[states] = np.arange(1, states.size + 1, dtype=np.int32)
    local = lookup[table[states]]  # dead stays 0, and the states reach none beyond themselves
    key = hashlib.blake2b(local.tobytes() + (chosen[states] >= 0).tobytes(), digest_size=16).digest()
    return key, states


def _to_local(global_states: np.ndarray, states: np.ndarray) -> np.ndarray:
    if not global_states.size:
        return global_states.astype(np.int32)
    lookup = np.full(int(max(states.max(), global_states.max())) + 1, -1, np.int32)
    lookup[states] = np.arange(states.size, dtype=np.int32)
    return lookup[global_states]


def _to_global(local, states: np.ndarray):
    """Translate shared per-lexer-state data back to this grammar's state numbers."""
    if isinstance(local, _LexemeInfo):
        return _LexemeInfo(local.inside, local.after_end, local.seed_level, local.seed_node,
                           states[local.seed_lex].astype(np.int32) if local.seed_lex.size else local.seed_lex)
    return {int(states[end]): words for end, words in local.items()}


def _block_sub_automaton(dfa, state: int):
    """`_sub_automaton` of a terminal DFA's state, in the DFA's numbering (memoised per DFA).

    A block of lexer rows is its DFA shifted by a base, so the key is the one a search of the
    lexer table finds, and every grammar using the DFA object reuses it.
    """
    memo = _memo(dfa)
    if state not in memo.subs:
        memo.subs[state] = _sub_automaton(state, memo.successors_of, lambda: (memo.transitions, memo.accepting))
    return memo.subs[state]


def _shortest_path(transitions: np.ndarray, start: int, accepting: np.ndarray, usable: np.ndarray) -> bytes | None:
    """Shortest byte string from ``start`` to an accepting state over ``usable`` bytes (BFS)."""
    paths = {start: b""}
    queue = [start]
    for state in queue:
        if accepting[state]:
            return paths[state]
        for b in np.flatnonzero(usable & (transitions[state] != DEAD)).tolist():
            nxt = int(transitions[state, b])
            if nxt not in paths:
                paths[nxt] = paths[state] + bytes([b])
                queue.append(nxt)
    return None


class _Reductions:
    """Catches a run of reductions that comes back to a stack it has been on: tables of a grammar
    where a symbol derives itself (``a: a | "x"``, with priorities deciding the collisions) can
    reduce forever.  Such a run shifts nothing, so it is a dead end.  Counting alone costs
    nothing; stacks are remembered only past the first few reductions of a run."""

    __slots__ = ("count", "seen")

    def __init__(self):
        self.count = 0
        self.seen: set[int] | None = None

    def cycle(self, node: _Stack) -> bool:
        self.count += 1
        if self.count < 32:
            return False
        if self.seen is None:
            self.seen = set()
        if node.uid in self.seen:
            return True
        self.seen.add(node.uid)
        return False


class CfgGrammar:
    """A `CfgIR` compiled against a vocabulary: the `CompiledGrammar` of Lark grammars."""

    def __init__(self, ir: CfgIR, vocab: Vocabulary, *, max_lexer_states: int = 200_000):
        for t in ir.terminals:
            # A lexeme must hold a byte: an empty one could end and start again forever.
            if t.dfa.initial != DEAD and t.dfa.accepting[t.dfa.initial]:
                raise SpecError(f"terminal {t.name} matches the empty string; every terminal must match at least "
                                f"one byte")
        self.ir = ir
        self.vocab = vocab
        self.table = TokenTable.of(vocab)
        self.lexers = _Lexers(ir, max_lexer_states)
        self.stats = MaskStats()
        self._lock = threading.Lock()
        # Strong references keep equal stacks the same object (and their caches warm) across
        # requests; past INTERN_LIMIT nodes the table restarts, which costs only cache misses.
        self._interned: dict[tuple[int, int], _Stack] = {}
        self._uids = itertools.count(1)
        self.root = self._node(ir.start_state, None)
        self._masks: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._lexemes: dict[int, _LexemeInfo] = {}
        self._by_end: dict[int, dict[int, np.ndarray]] = {}
        self._completions: dict[tuple[int, int], bytes | None] = {}
        self._shortest_cache: dict[int, bytes | None] = {}
        self._index: dict[bytes, list[int]] | None = None
        self._single = self._single_bytes()
        self._first_byte = _first_byte_words(vocab, self.table)
        self._forced: dict[tuple[int, int], bytes] = {}
        eos = np.zeros(vocab.size, dtype=bool)
        eos[self.table.eos_ids] = True
        self.eos_words = pack(eos)

    def __repr__(self) -> str:
        return (f"CfgGrammar({self.ir.source!r}, lr_states={self.ir.num_states}, "
                f"lexer_states={self.lexers.size} built, vocab={self.vocab.size})")

    def matcher(self) -> "CfgMatcher":
        return CfgMatcher(self)

    # -- the parser --------------------------------------------------------------------------

    def _node(self, state: int, parent: _Stack | None) -> _Stack:
        key = (state, parent.uid if parent is not None else 0)
        with self._lock:
            node = self._interned.get(key)
            if node is None:
                if len(self._interned) >= INTERN_LIMIT:
                    self._interned = {}
                depth = (parent.depth if parent is not None else 0) + (state in self.ir.nesting_states)
                node = _Stack(state, parent, next(self._uids), depth)
                self._interned[key] = node
        return node

    def feed(self, stack: _Stack, terminal: int) -> _Stack | None:
        """The stack after shifting ``terminal`` (reductions first), or None if it is a syntax error."""
        if terminal in stack.feeds:
            return stack.feeds[terminal]  # type: ignore[return-value]
        ir = self.ir
        node: _Stack | None = stack
        result = None
        reductions = _Reductions()
        while node is not None:
            action = ir.actions[node.state].get(terminal)
            if action is None:
                break
            if action >= 0:
                result = self._node(action, node)
                if self.ir.max_nesting and result.depth > self.ir.max_nesting:
                    result = None
                break
            node = self._reduce(node, action)
            if reductions.cycle(node):
                break
        stack.feeds[terminal] = result
        return result

    def can_end(self, stack: _Stack) -> bool:
        """Does the input accepted so far form a complete sentence?"""
        cached = stack.feeds.get(END)
        if cached is not None:
            return bool(cached)
        ir = self.ir
        node: _Stack | None = stack
        ok = False
        reductions = _Reductions()
        while node is not None:
            if node.state == ir.end_state:
                ok = True
                break
            action = ir.actions[node.state].get(END)
            if action is None or action >= 0:
                break
            node = self._reduce(node, action)
            if reductions.cycle(node):
                break
        stack.feeds[END] = ok
        return ok

    def _reduce(self, node: _Stack, action: int) -> _Stack:
        """Pop a rule's right-hand side and push the state its left-hand side leads to."""
        lhs, length = self.ir.rules[-action - 1]
        for _ in range(length):
            node = node.parent
        return self._node(self.ir.gotos[node.state][lhs], node)

    def viable_terminals(self, stack: _Stack) -> np.ndarray | None:
        """The terminals of the stack's lexer that the parser really accepts here.

        None when that is all of them (the usual case); LALR(1) lookaheads merged from other
        contexts make the exceptions.  A lexer state is viable while one of them is alive in it.
        """
        if stack.viable is not False:
            return stack.viable  # type: ignore[return-value]
        # Both of the stack's terminal sets must exist before their viability is read.
        self.lexers.start(stack.state)
        self.lexers.start(stack.state, after_ignore=True)
        members = self.lexers.sets[self.lexers.set_of_state[stack.state]]
        accepted = [t for t in members if t in self.ir.ignore or self.feed(stack, t) is not None]
        stack.viable = None if len(accepted) == len(members) else np.array(accepted, np.int64)
        return stack.viable  # type: ignore[return-value]

    def viable(self, stack: _Stack, lexes: np.ndarray) -> np.ndarray:
        """Which of the lexer states ``lexes`` can still complete a lexeme ``stack`` accepts."""
        accepted = self.viable_terminals(stack)
        if accepted is None:
            return lexes != DEAD
        return self.lexers.alive[lexes][:, accepted].any(axis=1) & (lexes != DEAD)

    def step(self, stack: _Stack, lex: int, byte: int) -> tuple[_Stack, int] | None:
        """One byte of input: extend the lexeme, or end it and start the next one."""
        lexers = self.lexers
        nxt = int((lexers.table if lexers.filled[lex] else lexers.ready(lex))[lex, byte])
        if nxt:
            return stack, nxt
        terminal = int(self.lexers.chosen[lex])
        if terminal < 0:
            return None
        ignored = terminal in self.ir.ignore
        if not ignored:
            stack = self.feed(stack, terminal)
            if stack is None:
                return None
        start = self.lexers.start(stack.state, ignored)
        nxt = int(self.lexers.table[start, byte])  # re-read: `start` may have grown the table
        return (stack, nxt) if nxt else None

    def is_viable(self, stack: _Stack, lex: int) -> bool:
        accepted = self.viable_terminals(stack)
        return lex != DEAD and (accepted is None or bool(self.lexers.alive[lex, accepted].any()))

    def accepts_end(self, stack: _Stack, lex: int) -> bool:
        if lex in self.lexers.start_states:
            return self.can_end(stack)
        terminal = int(self.lexers.chosen[lex])
        if terminal < 0:
            return False
        if terminal not in self.ir.ignore:
            stack = self.feed(stack, terminal)
            if stack is None:
                return False
        return self.can_end(stack)

    # -- masks -------------------------------------------------------------------------------

    def words(self, stack: _Stack, lex: int) -> np.ndarray:
        key = (stack.uid, lex)
        with self._lock:
            words = self._masks.get(key)
            if words is not None:
                self._masks.move_to_end(key)
                return words
        start = time.perf_counter()
        words = self._split_words(stack, lex)
        self.stats.states_computed += 1
        self.stats.seconds += time.perf_counter() - start
        with self._lock:
            self._masks[key] = words
            while len(self._masks) > MASK_CACHE_SIZE:
                self._masks.popitem(last=False)
        return words

    def _split_words(self, stack: _Stack, lex: int) -> np.ndarray:
        """The mask from the per-lexer-state parts, resolving only what depends on the stack."""
        info = self.lexeme_info(lex)
        if self.viable_terminals(stack) is None:
            words = info.inside.copy()
        else:  # LALR(1) lookaheads this stack cannot take: keep lexemes it can still finish
            words = np.zeros_like(info.inside)
            for end, group in self.inside_by_end(lex).items():
                if self.is_viable(stack, end):
                    words |= group
        terminal = int(self.lexers.chosen[lex])
        if terminal >= 0 and info.after_end is not None:
            following = stack if terminal in self.ir.ignore else self.feed(stack, terminal)
            if following is not None:
                start = self.lexers.start(following.state, terminal in self.ir.ignore)
                words |= info.after_end & self.words(following, start)
        if info.seed_node.size:
            # Each seed ends the lexeme at its byte; that byte starts the next lexeme on the
            # stack the finished terminal leads to.
            terms = self.lexers.chosen[info.seed_lex]
            stacks: list[_Stack] = []
            where: dict[int, int] = {}
            stk = np.full(terms.size, -1, dtype=np.int64)
            starts = np.zeros(terms.size, dtype=np.int32)
            for term in np.unique(terms).tolist():
                following = stack if term in self.ir.ignore else self.feed(stack, term)
                if following is None:
                    continue
                if following.uid not in where:
                    where[following.uid] = len(stacks)
                    stacks.append(following)
                sel = terms == term
                stk[sel] = where[following.uid]
                starts[sel] = self.lexers.start(following.state, term in self.ir.ignore)
            keep = stk >= 0
            if keep.any():
                set_bits(words, self._walk(stacks, (info.seed_level[keep], info.seed_node[keep], starts[keep],
                                                    stk[keep])))
        if self.accepts_end(stack, lex):
            words |= self.eos_words
        return words

    def _walk(self, stacks: list[_Stack], seeds) -> np.ndarray:
        """Tokens readable from the seeds, as a frontier walk down the trie with boundary handling.

        ``seeds`` = (level, node, lexer state before the node's byte, index into ``stacks``);
        only live nodes are expanded, so the cost follows the part of the trie that survives.
        """
        t, lx = self.table, self.lexers
        table, chosen, ignore = lx.table, lx.chosen, self.ir.ignore
        seed_level, seed_node, seed_lex, seed_stk = seeds
        if seed_node.size <= SCALAR_WORK and int(
                (t.node_descendants[t.level_offsets[seed_level] + seed_node] + 1).sum()) <= SCALAR_WORK:
            return self._seeds_scalar(stacks, seeds)
        where = {s.uid: i for i, s in enumerate(stacks)}
        restricted = [self.viable_terminals(s) is not None for s in stacks]
        width = lx.num_terminals + 1
        # (stack index, finished terminal) -> (stack index after it << 32 | lexer start), -1 if
        # the parser refuses the terminal, -2 not resolved yet: a gather instead of a sort.
        resolved = np.full(len(stacks) * width, -2, dtype=np.int64)
        # Nodes by global number, so that seeds of every depth take their first step together:
        # most die there, and the few that live are finished in Python.
        trie = trie_nodes(t)
        nodes = t.level_offsets[seed_level] + seed_node
        plex, stk = seed_lex, seed_stk
        found: list[np.ndarray] = []
        while nodes.size:
            last = trie.byte[nodes]
            table = lx.ready(plex)
            chosen = lx.chosen
            nlex = table[plex, last]
            boundary = np.flatnonzero((nlex == DEAD) & (chosen[plex] >= 0))
            if boundary.size:
                keys = stk[boundary] * width + chosen[plex[boundary]]
                if int(keys.max()) >= resolved.size:
                    resolved = np.concatenate([resolved, np.full(resolved.size + int(keys.max()) + 1, -2, np.int64)])
                values = resolved[keys]
                if (values == -2).any():
                    for key in np.unique(keys[values == -2]).tolist():
                        s_idx, term = divmod(key, width)
                        node = stacks[s_idx] if term in ignore else self.feed(stacks[s_idx], term)
                        if node is None:
                            resolved[key] = -1
                            continue
                        if node.uid not in where:
                            where[node.uid] = len(stacks)
                            stacks.append(node)
                            restricted.append(self.viable_terminals(node) is not None)
                        resolved[key] = (where[node.uid] << 32) | lx.start(node.state, term in ignore)
                    values = resolved[keys]
                ok = values >= 0
                boundary, values = boundary[ok], values[ok]
                starts = (values & 0xFFFFFFFF).astype(np.int64)
                nlex[boundary] = lx.ready(starts)[starts, last[boundary]]
                stk = stk.copy()
                stk[boundary] = values >> 32
            alive = nlex != DEAD
            nodes, nlex, stk = nodes[alive], nlex[alive], stk[alive]
            tokens = t.node_token[nodes]
            ends = tokens >= 0
            if ends.any():
                ok = ends.copy()
                if any(restricted):
                    for s_idx in np.unique(stk[ends]).tolist():
                        if restricted[s_idx]:
                            sel = ends & (stk == s_idx)
                            ok[sel] = self.viable(stacks[s_idx], nlex[sel])
                found.append(tokens[ok])
            if nodes.size <= SCALAR_WORK and int(t.node_descendants[nodes].sum()) <= SCALAR_WORK:
                levels = np.searchsorted(t.level_offsets, nodes, side="right") - 1
                found.append(np.array(self._walk_scalar(
                    [(level, n - t.level_offsets[level], lx_, stacks[s_])
                     for level, n, lx_, s_ in zip(levels.tolist(), nodes.tolist(), nlex.tolist(), stk.tolist())]),
                    dtype=np.int64))
                break
            parent, nodes = children_of(trie.first_child[nodes], trie.end_child[nodes])
            plex, stk = nlex[parent], stk[parent]
        return with_duplicate_ids(t, np.concatenate(found) if found else np.zeros(0, np.int64))

    def _seeds_scalar(self, stacks: list[_Stack], seeds) -> np.ndarray:
        """`_walk` for a few seeds, entirely in Python."""
        level_bytes, _, offsets, node_token = trie_lists(self.table)
        out: list[int] = []
        items = []
        for level, node, lex, s_idx in zip(*(a.tolist() for a in seeds)):
            config = self.step(stacks[s_idx], lex, level_bytes[level][node])
            if config is None:
                continue
            token = node_token[offsets[level] + node]
            if token >= 0 and self.is_viable(*config):
                out.append(token)
            items.append((level, node, config[1], config[0]))
        out.extend(self._walk_scalar(items))
        return with_duplicate_ids(self.table, np.array(out, dtype=np.int64))

    def _walk_scalar(self, items: list[tuple[int, int, int, _Stack]]) -> list[int]:
        """Finish a small frontier in Python: (level, node, lexer state after it, stack) items."""
        level_bytes, level_children, offsets, node_token = trie_lists(self.table)
        last_level = len(level_bytes) - 1
        step, is_viable = self.step, self.is_viable
        out: list[int] = []
        todo = items
        while todo:
            level, node, lex, stack = todo.pop()
            if level >= last_level:
                continue
            children = level_children[level]
            nxt_bytes = level_bytes[level + 1]
            for child in range(children[node], children[node + 1]):
                config = step(stack, lex, nxt_bytes[child])
                if config is None:
                    continue
                token = node_token[offsets[level + 1] + child]
                if token >= 0 and is_viable(*config):
                    out.append(token)
                todo.append((level + 1, child, config[1], config[0]))
        return out

    def lexeme_info(self, lex: int) -> _LexemeInfo:
        info = self._lexemes.get(lex)
        if info is None:
            info = self._lexemes[lex] = self._shared(lex, "info", self._lexeme_info)
        return info

    def inside_by_end(self, lex: int) -> dict[int, np.ndarray]:
        """The lexeme's inside tokens grouped by the lexer state they end in (for LALR-restricted stacks)."""
        groups = self._by_end.get(lex)
        if groups is None:
            groups = self._by_end[lex] = self._shared(lex, "by_end", self._inside_by_end)
        return groups

    def _shared(self, lex: int, kind: str, compute):
        """Per-lexer-state data, shared between grammars whose lexers agree from ``lex`` on.

        What a lexer state decides about tokens depends only on the part of the automaton it can
        reach and on where lexemes may end there; grammars built from the same terminals (every
        JSON grammar's strings and numbers, say) share it through a cache per vocabulary, with
        states renumbered from ``lex`` so that the stored data is grammar-independent.
        """
        block = self.lexers.block_at(lex)
        if block is not None:  # within one terminal's DFA: its search is done once per DFA state
            term, base = block
            sub = _block_sub_automaton(self.ir.terminals[term].dfa, lex - base)
            if sub is not None:
                sub = (sub[0], sub[1] + base)
        elif lex in self.lexers.start_states:
            sub = self.lexers.sub_automaton(lex)
        else:  # inside a union of terminals: measured, these are practically never shared
            sub = None
        if sub is None:
            return compute(lex, None)
        key, states = sub
        cache = _shared_lexemes.setdefault(self.table, {})
        local = cache.get((kind, key))
        if local is None:
            if len(cache) >= SHARED_LIMIT:
                cache.clear()
            local = cache[(kind, key)] = compute(lex, states)
        return _to_global(local, states)

    def _lexeme_info(self, lex: int, states: np.ndarray | None) -> _LexemeInfo:
        """Walk the trie inside one lexeme: tokens that stay in it, and where others leave it."""
        found = self._from_reference(lex)
        table, chosen = self.lexers.ready(lex), self.lexers.chosen
        if found is None:
            ids, _, seeds = walk_automaton(self.table, table, lex, chosen, self._prepare)
            table, chosen = self.lexers.table, self.lexers.chosen
            inside = np.zeros(self.vocab.size, dtype=bool)
            inside[ids] = True
            inside = pack(inside)
        else:
            inside, seeds = found
        dead_first = table[lex] == DEAD
        after_end = None
        if chosen[lex] >= 0 and dead_first.any():
            after_end = np.bitwise_or.reduce(self._first_byte[dead_first], axis=0)
        seed_level, seed_node, seed_lex = seeds
        if states is not None:
            seed_lex = _to_local(seed_lex, states)
        return _LexemeInfo(inside, after_end, seed_level, seed_node, seed_lex)

    def _from_reference(self, lex: int):
        """``lex``'s inside tokens and seeds derived from a similar state's, or None.

        A wide state usually moves on most bytes to one state (a free property name that has left
        every declared name behind, say); from there on the two agree, so only the trie paths
        where they still differ are walked (`walk_divergence`).
        """
        reference = self._usual_successor(lex)
        # Only a reference already known, or one that is its own usual successor (a loop such as
        # "any character of a string", whose walk is shared by most states that lead to it): a
        # chain of distinct states (counting characters for maxLength) would walk each anyway.
        if reference is None or reference == lex or (
                reference not in self._lexemes and self._usual_successor(reference) != reference):
            return None
        ref = self.lexeme_info(reference)
        walk = walk_divergence(self.table, self.lexers.table, lex, reference, self.lexers.chosen,
                               DIVERGENCE_BUDGET, self._prepare)
        if walk is None:
            return None
        alive, cut, expanded, (seed_level, seed_node, seed_lex) = walk
        words = ref.inside.copy()
        clear_bits(words, subtree_tokens(self.table, cut))
        set_bits(words, with_duplicate_ids(self.table, alive))
        # The reference's seeds stand where the walks had met above them; the others are redone.
        if ref.seed_node.size:
            order = trie_order(self.table)
            parents = order.parent[self.table.level_offsets[ref.seed_level] + ref.seed_node]
            keep = ~np.isin(parents, expanded, kind="table") if expanded.size else np.ones(parents.size, bool)
            if cut.size:
                starts = np.sort(order.pre[cut])
                ends = starts + self.table.node_descendants[cut][np.argsort(order.pre[cut])]
                rank = order.pre[parents]
                j = np.searchsorted(starts, rank, side="right") - 1
                keep &= ~((j >= 0) & (rank <= ends[np.maximum(j, 0)]))
            seed_level = np.concatenate([ref.seed_level[keep], seed_level])
            seed_node = np.concatenate([ref.seed_node[keep], seed_node])
            seed_lex = np.concatenate([ref.seed_lex[keep].astype(seed_lex.dtype), seed_lex])
        return words, (seed_level, seed_node, seed_lex)

    def _prepare(self, states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For the trie walks: fill the rows they are about to read; the arrays to read them from."""
        return self.lexers.ready(states), self.lexers.chosen

    def _usual_successor(self, lex: int) -> int | None:
        """The state ``lex`` moves to on most bytes, if at least `REFERENCE_MIN_BYTES` of them."""
        row = self.lexers.ready(lex)[lex]
        if np.count_nonzero(row) < REFERENCE_MIN_BYTES:
            return None
        targets, counts = np.unique(row[row != DEAD], return_counts=True)
        if not counts.size or counts.max() < REFERENCE_MIN_BYTES:
            return None
        return int(targets[counts.argmax()])

    def _inside_by_end(self, lex: int, states: np.ndarray | None) -> dict[int, np.ndarray]:
        ids, ends, _ = walk_automaton(self.table, self.lexers.ready(lex), lex, self.lexers.chosen, self._prepare)
        groups = {}
        for end in np.unique(ends).tolist():
            allowed = np.zeros(self.vocab.size, dtype=bool)
            allowed[ids[ends == end]] = True
            groups[end] = pack(allowed)
        if states is not None:
            groups = dict(zip(_to_local(np.array(list(groups), np.int64), states).tolist(), groups.values()))
        return groups

    # -- closing within a token budget --------------------------------------------------------

    def closing_tokens(self, stack: _Stack, lex: int, spare: int) -> list[int]:
        """Tokens that start a verified shortest completion and leave it at most ``spare`` bytes long.

        The completion only uses bytes that exist as single-byte tokens, so ``spare`` more
        tokens are always enough to finish it.
        """
        completion = self.completion(stack, lex)
        if completion is None:
            return []
        index = self._token_index()
        out = []
        for k in range(1, len(completion) + 1):
            if len(completion) - k <= spare:
                out.extend(index.get(completion[:k], ()))
        words = self.words(stack, lex)
        return [t for t in out if words[t >> 5] >> (t & 31) & 1]

    def completion(self, stack: _Stack, lex: int) -> bytes | None:
        """A short byte string that completes the document from here (verified), or None."""
        key = (stack.uid, lex)
        if key in self._completions:
            return self._completions[key]
        best = None
        if lex in self.lexers.start_states:
            options = [(b"", stack)]
        else:
            options = []
            for term, pending in self._lexeme_endings(lex).items():
                following = stack if term in self.ir.ignore else self.feed(stack, term)
                if following is not None:
                    options.append((pending, following))
        separator = self._separator()
        for pending, following in options:
            terms = self._closing_terminals(following)
            if terms is None:
                continue
            pieces = [self._shortest(t) for t in terms]
            for sep in (b"", separator):
                if sep is None:
                    continue
                candidate = pending + sep.join([b""] + pieces) if pieces else pending
                if (best is None or len(candidate) < len(best)) and self._completes(stack, lex, candidate):
                    best = candidate
                    break
        self._completions[key] = best
        return best

    def _completes(self, stack: _Stack, lex: int, data: bytes) -> bool:
        config: tuple[_Stack, int] | None = (stack, lex)
        for b in data:
            config = self.step(config[0], config[1], b)
            if config is None:
                return False
        return self.accepts_end(*config)

    def _closing_terminals(self, stack: _Stack, max_pops: int = 20_000) -> list[int] | None:
        """The cheapest terminal sequence (in bytes) that lets the parser accept, by Dijkstra over stacks."""
        import heapq

        counter = itertools.count()
        frontier = [(0, next(counter), stack, ())]
        seen: set[int] = set()
        while frontier and max_pops:
            max_pops -= 1
            cost, _, node, terms = heapq.heappop(frontier)
            if node.uid in seen:
                continue
            seen.add(node.uid)
            if self.can_end(node):
                return list(terms)
            for term in self.lexers.sets[self.lexers.set_of_state[node.state]]:
                if term in self.ir.ignore:
                    continue
                shortest = self._shortest(term)
                nxt = self.feed(node, term) if shortest is not None else None
                if nxt is not None and nxt.uid not in seen:
                    heapq.heappush(frontier, (cost + len(shortest), next(counter), nxt, terms + (term,)))
        return None

    def _single_bytes(self) -> np.ndarray:
        """Which bytes are tokens by themselves (the trie's first level nodes that end a token)."""
        t = self.table
        single = np.zeros(256, dtype=bool)
        if t.level_bytes:
            first = t.level_bytes[0]
            single[first[t.node_token[: first.size] >= 0]] = True
        return single

    def _shortest(self, term: int) -> bytes | None:
        """A shortest string of a terminal, using only bytes that are tokens by themselves."""
        if term not in self._shortest_cache:
            dfa = self.ir.terminals[term].dfa
            self._shortest_cache[term] = _shortest_path(dfa.transitions, dfa.initial, dfa.accepting, self._single)
        return self._shortest_cache[term]

    def _lexeme_endings(self, lex: int) -> dict[int, bytes]:
        """For each terminal the pending lexeme can end as, the shortest bytes that end it so."""
        out: dict[int, bytes] = {}
        paths = {lex: b""}
        queue = [lex]
        for state in queue:
            table, chosen = self.lexers.ready(state), self.lexers.chosen
            term = int(chosen[state])
            if term >= 0 and term not in out:
                out[term] = paths[state]
            for b in np.flatnonzero(self._single & (table[state] != DEAD)).tolist():
                nxt = int(table[state, b])
                if nxt not in paths:
                    paths[nxt] = paths[state] + bytes([b])
                    queue.append(nxt)
        return out

    def _separator(self) -> bytes | None:
        options = [self._shortest(t) for t in self.ir.ignore]
        options = [o for o in options if o]
        return min(options, key=len) if options else None

    def _token_index(self) -> dict[bytes, list[int]]:
        if self._index is None:
            index: dict[bytes, list[int]] = {}
            for token_id in self.table.token_ids.tolist():
                index.setdefault(self.vocab.token_bytes[token_id], []).append(token_id)
            self._index = index
        return self._index

    def forced_bytes(self, stack: _Stack, lex: int) -> bytes:
        key = (stack.uid, lex)
        forced = self._forced.get(key)
        if forced is None:
            out = bytearray()
            config: tuple[_Stack, int] | None = (stack, lex)
            while config is not None and len(out) < 4096 and not self.accepts_end(*config):
                options = [(b, nxt) for b in range(256)
                           if (nxt := self.step(config[0], config[1], b)) is not None and self.is_viable(*nxt)]
                if len(options) != 1:
                    break
                out.append(options[0][0])
                config = options[0][1]
            forced = self._forced[key] = bytes(out)
        return forced


class CfgMatcher(HistoryMatcher):
    """Matcher over a `CfgGrammar`: its history holds (parser stack, lexer state) pairs."""

    __slots__ = ()

    def __init__(self, grammar: CfgGrammar):
        root = grammar.root
        super().__init__(grammar, ((root, grammar.lexers.start(root.state)), None))

    def __repr__(self) -> str:
        config = self._history[0]
        state = "finished" if config is None else f"lr={config[0].state}, lex={config[1]}"
        return f"CfgMatcher({state}, tokens={self._n})"

    def _words(self) -> np.ndarray:
        config = self._history[0]
        if config is None:
            return self.grammar.eos_words
        return self.grammar.words(*config)

    def mask(self) -> torch.Tensor:
        return torch.from_numpy(unpack(self._words(), self.grammar.vocab.size))

    def fill_bitmask(self, bitmask, row: int = 0) -> None:
        words = self._words()
        write_row(bitmask, row, words)

    def advance(self, token_id: int) -> None:
        token_id = token_index(token_id)
        g = self.grammar
        config = self._history[0]
        if token_id in g.vocab.eos_token_ids:
            if config is not None and not g.accepts_end(*config):
                raise ConstraintViolation(f"end of sequence is not allowed here: the text is incomplete "
                                          f"(after {self._n} tokens)")
            self._push(None)
            return
        if config is None:
            raise ConstraintViolation(f"token {token_id} after end of sequence")
        stack, lex = config
        for b in text_bytes(g.vocab, token_id, self._n):
            nxt = g.step(stack, lex, b)
            if nxt is None:
                break
            stack, lex = nxt
        else:
            if g.is_viable(stack, lex):
                self._push((stack, lex))
                return
        raise ConstraintViolation(f"token {token_id} ({g.vocab.token_text(token_id)!r}) leaves the grammar "
                                  f"after {self._n} tokens")

    def accepts_eos(self) -> bool:
        config = self._history[0]
        return config is not None and self.grammar.accepts_end(*config)

    def is_finished(self) -> bool:
        config = self._history[0]
        if config is None:
            return True
        words = self._words()
        return self.accepts_eos() and not np.any(words & ~self.grammar.eos_words)

    def forced_bytes(self) -> bytes:
        config = self._history[0]
        return b"" if config is None else self.grammar.forced_bytes(*config)

    def budget_mask(self, remaining: int) -> torch.Tensor:
        allowed = np.zeros(self.grammar.vocab.size, dtype=bool)
        config = self._history[0]
        if config is None or self.grammar.accepts_end(*config):
            allowed[self.grammar.table.eos_ids] = True
        if config is not None and remaining >= 1:
            ids = self.grammar.closing_tokens(*config, remaining - 1)
            allowed[ids] = True
        return torch.from_numpy(allowed)
