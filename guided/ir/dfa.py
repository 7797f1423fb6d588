"""Byte-level finite automata: the intermediate form regexes compile to and grammar terminals are made of.

Front-ends build a small NFA over byte ranges (`ByteNFA`), which `determinize` turns into a
`ByteDFA`: a dense ``[n_states, 256]`` transition table where state 0 is the dead state and
every other state can still reach an accepting state.  That last property is what makes token
masks exact: a token is allowed in state ``s`` exactly when walking its bytes from ``s`` does
not end in state 0.

Unicode enters only through `utf8_ranges`, which turns a set of code points into the byte-range
sequences of their UTF-8 encodings, so that tokens holding half a character are handled like
any other byte string.

>>> nfa = ByteNFA()
>>> end = nfa.add_state()
>>> nfa.add_sequence(nfa.start, [(ord("a"), ord("z"))], end)
>>> nfa.accepting.add(end)
>>> dfa = determinize(nfa)
>>> dfa.fullmatch(b"q"), dfa.fullmatch(b"qq")
(True, False)
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from guided.errors import LimitExceeded

DEAD = 0
MAX_UNICODE = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)

ByteRange = tuple[int, int]  # inclusive


@dataclass(frozen=True, eq=False)
class ByteDFA:
    """A trimmed deterministic automaton over bytes; state 0 is dead, every other state is live.

    ``transitions[s, b]`` is the state after byte ``b`` in state ``s``; ``accepting[s]`` says whether
    the bytes read so far form a complete match.
    """

    transitions: np.ndarray  # int32 [n_states, 256]
    accepting: np.ndarray  # bool [n_states]
    initial: int

    @property
    def num_states(self) -> int:
        return int(self.transitions.shape[0])

    def walk(self, data: bytes, state: int | None = None) -> int:
        """The state after reading ``data`` (0 once it has left the language)."""
        s = self.initial if state is None else state
        rows = self.transitions
        for b in data:
            s = int(rows[s, b])
            if s == DEAD:
                return DEAD
        return s

    def fullmatch(self, data: bytes) -> bool:
        return bool(self.accepting[self.walk(data)])

    def is_prefix(self, data: bytes) -> bool:
        """True when ``data`` can still be extended to a match (the DFA is trimmed)."""
        return self.walk(data) != DEAD

    def validate(self) -> "ByteDFA":
        """``self`` if it meets the invariants engines rely on, else `guided.errors.InvalidIR`
        naming the first one it breaks (`guided.ir.validate`)."""
        from guided.ir.validate import validate_dfa

        validate_dfa(self)
        return self

    def to_bytes(self, *, compress: bool = True) -> bytes:
        """The versioned binary form (`guided.ir.serialize`); `ByteDFA.from_bytes` reads it back."""
        from guided.ir.serialize import to_bytes

        return to_bytes(self, compress=compress)

    @staticmethod
    def from_bytes(data: bytes) -> "ByteDFA":
        """The DFA serialised in ``data``, validated; `guided.errors.InvalidIR` if it is anything else."""
        from guided.ir.serialize import from_bytes

        return from_bytes(data, expect=ByteDFA)


@dataclass
class ByteNFA:
    """An NFA over byte ranges with epsilon moves; a scratch structure for building a `ByteDFA`."""

    ranges: list[list[tuple[int, int, int]]] = field(default_factory=list)  # state -> [(lo, hi, target)]
    epsilons: list[list[int]] = field(default_factory=list)
    accepting: set[int] = field(default_factory=set)
    start: int = 0

    def __post_init__(self) -> None:
        if not self.ranges:
            self.add_state()

    @property
    def num_states(self) -> int:
        return len(self.ranges)

    def add_state(self) -> int:
        self.ranges.append([])
        self.epsilons.append([])
        return len(self.ranges) - 1

    def add_epsilon(self, source: int, target: int) -> None:
        self.epsilons[source].append(target)

    def add_sequence(self, source: int, seq: Sequence[ByteRange], target: int) -> None:
        """Connect ``source`` to ``target`` through one byte range per step."""
        state = source
        for i, (lo, hi) in enumerate(seq):
            nxt = target if i == len(seq) - 1 else self.add_state()
            self.ranges[state].append((lo, hi, nxt))
            state = nxt

    def add_codepoints(self, source: int, codepoints: Sequence[tuple[int, int]], target: int) -> None:
        """Connect ``source`` to ``target`` through the UTF-8 encoding of any code point in the ranges.

        Sequences sharing a tail (``[80-BF][80-BF]`` and so on) share its states, which keeps
        large classes such as ``[^"]`` down to a dozen NFA states.
        """
        tails: dict[tuple[ByteRange, ...], int] = {(): target}

        def tail_state(rest: tuple[ByteRange, ...]) -> int:
            if rest not in tails:
                state = self.add_state()
                lo, hi = rest[0]
                self.ranges[state].append((lo, hi, tail_state(rest[1:])))
                tails[rest] = state
            return tails[rest]

        for lo_cp, hi_cp in codepoints:
            if hi_cp < 0x80:  # ASCII: one byte range, the common case
                self.ranges[source].append((lo_cp, hi_cp, target))
                continue
            for seq in _utf8_sequences(lo_cp, hi_cp):
                lo, hi = seq[0]
                self.ranges[source].append((lo, hi, tail_state(seq[1:])))


@functools.lru_cache(maxsize=4096)
def _utf8_sequences(lo: int, hi: int) -> tuple[tuple[ByteRange, ...], ...]:
    """`utf8_ranges` as tuples, memoised: a counted repeat of a class adds the same ranges many times."""
    return tuple(tuple(seq) for seq in utf8_ranges(lo, hi))


def utf8_ranges(lo: int, hi: int) -> list[list[ByteRange]]:
    """The UTF-8 encodings of code points ``lo..hi`` as sequences of byte ranges (surrogates excluded).

    Each returned sequence is a cartesian product of byte ranges, the form an automaton needs.

    >>> utf8_ranges(0x61, 0x7A)
    [[(97, 122)]]
    >>> utf8_ranges(0x80, 0x7FF)
    [[(194, 223), (128, 191)]]
    """
    out: list[list[ByteRange]] = []
    stack = [(lo, hi)]
    while stack:
        a, b = stack.pop()
        if a > b:
            continue
        if a <= SURROGATES[1] and b >= SURROGATES[0]:  # no UTF-8 text contains a surrogate
            stack.append((SURROGATES[1] + 1, b))
            stack.append((a, SURROGATES[0] - 1))
            continue
        split = False
        for limit in (0x7F, 0x7FF, 0xFFFF):  # the boundaries between encoded lengths
            if a <= limit < b:
                stack.append((limit + 1, b))
                stack.append((a, limit))
                split = True
                break
        if split:
            continue
        if b <= 0x7F:
            out.append([(a, b)])
            continue
        n = _utf8_len(a)
        for i in range(1, n):
            m = (1 << (6 * i)) - 1
            if a & ~m != b & ~m:
                if a & m != 0:
                    stack.append(((a | m) + 1, b))
                    stack.append((a, a | m))
                    split = True
                    break
                if b & m != m:
                    stack.append((b & ~m, b))
                    stack.append((a, (b & ~m) - 1))
                    split = True
                    break
        if split:
            continue
        ea, eb = chr(a).encode("utf-8"), chr(b).encode("utf-8")
        out.append(list(zip(ea, eb)))
    out.sort()
    return out


def _utf8_len(cp: int) -> int:
    return 1 if cp <= 0x7F else 2 if cp <= 0x7FF else 3 if cp <= 0xFFFF else 4


def complement_codepoints(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """All code points not in ``ranges`` (which must be sorted and disjoint)."""
    out, nxt = [], 0
    for lo, hi in ranges:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = max(nxt, hi + 1)
    if nxt <= MAX_UNICODE:
        out.append((nxt, MAX_UNICODE))
    return out


def codepoint_ranges(codepoints: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, merged inclusive ranges covering ``codepoints``."""
    out: list[list[int]] = []
    for cp in sorted(set(codepoints)):
        if out and cp == out[-1][1] + 1:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return [(a, b) for a, b in out]


@dataclass(frozen=True)
class Limits:
    """Bounds on automaton construction; exceeding one raises `guided.errors.LimitExceeded`.

    ``deadline`` (a `time.monotonic` instant) is shared by every phase of one compilation
    (parsing, building, determinising, minimising); without one, ``max_seconds`` from the start
    of `determinize`.
    """

    max_states: int = 100_000
    max_seconds: float = 10.0
    deadline: float | None = None

    def until(self) -> float:
        """The instant construction must be done by."""
        return self.deadline if self.deadline is not None else time.monotonic() + self.max_seconds


def determinize(nfa: ByteNFA, limits: Limits = Limits(), what: str = "automaton", minimal: bool = True) -> ByteDFA:
    """Subset construction to a trimmed `ByteDFA`, bounded by ``limits`` (the construction runs in
    the compiled twin where one is lent, `CompiledKernels`, with the same numbering and limits).

    >>> n = ByteNFA(); e = n.add_state(); n.add_sequence(n.start, [(48, 57)], e); n.accepting.add(e)
    >>> determinize(n).num_states  # dead state, start, after-a-digit
    3
    """
    deadline = limits.until()
    too_slow = f"{what}: construction took longer than max_seconds={limits.max_seconds} s"
    kernel = CompiledKernels.determinize
    if kernel is not None:
        transitions, accepting, _ = kernel(nfa.ranges, nfa.epsilons, list(nfa.accepting), nfa.start,
                                           limits.max_states, deadline - time.monotonic(), what, too_slow)
    else:
        transitions, accepting = _subsets(nfa, limits, deadline, what, too_slow)
    dfa = trim(transitions, accepting, initial=1, deadline=deadline, what=what)
    return minimize(dfa, deadline) if minimal else dfa


def _subsets(nfa: ByteNFA, limits: Limits, deadline: float, what: str, too_slow: str) -> tuple[np.ndarray, np.ndarray]:
    """The subset construction, untrimmed: subset 0 is the empty (dead) set, 1 the start state's
    closure, the others numbered as they are met (subsets in order, each one's byte intervals in
    increasing order), which the compiled twin reproduces."""
    closure_cache: dict[int, frozenset[int]] = {}

    def closure(states: Iterable[int]) -> frozenset[int]:
        seen: set[int] = set()
        stack = list(states)
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            stack.extend(nfa.epsilons[s])
        return frozenset(seen)

    start = closure([nfa.start])
    index: dict[frozenset[int], int] = {frozenset(): DEAD, start: 1}
    order: list[frozenset[int]] = [frozenset(), start]
    rows: list[np.ndarray] = [np.zeros(256, np.int32)]
    pending = 1
    while pending < len(order):
        subset = order[pending]
        pending += 1
        if len(order) > limits.max_states:
            raise LimitExceeded(
                f"{what}: more than {limits.max_states} automaton states "
                f"(raise the limit with max_states=, or simplify the pattern)"
            )
        if pending % 256 == 0 and time.monotonic() > deadline:
            raise LimitExceeded(too_slow)
        # Split the byte space at every range boundary of every member state, then map each
        # elementary interval to the closure of its targets.
        moves: list[tuple[int, int, int]] = [r for s in subset for r in nfa.ranges[s]]
        row = np.zeros(256, np.int32)
        if moves:
            points = sorted({lo for lo, _, _ in moves} | {hi + 1 for _, hi, _ in moves})
            for a, b in zip(points, points[1:]):
                targets = [t for lo, hi, t in moves if lo <= a and b - 1 <= hi]
                if not targets:
                    continue
                key = closure_cache.get(targets[0]) if len(targets) == 1 else None
                if key is None:
                    key = closure(targets)
                    if len(targets) == 1:
                        closure_cache[targets[0]] = key
                state = index.get(key)
                if state is None:
                    state = index[key] = len(order)
                    order.append(key)
                row[a:b] = state
        rows.append(row)
    transitions = np.stack(rows).astype(np.int32)
    accepting = np.array([bool(subset & nfa.accepting) for subset in order])
    return transitions, accepting


MINIMIZE_ROUNDS = 256  # refinement rounds before settling for the unminimised (equally exact) DFA
# ... and at most this many state-rounds: a long chain (``.{4096}``) needs a round per state,
# each over every state, and an unminimised DFA is just as exact.
MINIMIZE_WORK = 1_000_000


def minimize(dfa: ByteDFA, deadline: float | None = None) -> ByteDFA:
    """The minimal equivalent DFA (Moore's partition refinement, vectorised over byte classes).

    Fewer states means fewer distinct masks to compute.  Each round hashes every state's
    signature (its block and its successors' blocks) to one integer and checks the grouping
    exactly; a DFA that needs more rounds than `MINIMIZE_ROUNDS` and `MINIMIZE_WORK` allow for
    its size (long chains), or that is still refining at ``deadline``, is returned as it is,
    which is just as exact.  The compiled twin (`CompiledKernels`) runs the same rounds and
    numbers blocks the same way.

    >>> n = ByteNFA(); a = n.add_state(); b = n.add_state()
    >>> n.add_sequence(n.start, [(97, 97)], a); n.add_sequence(n.start, [(98, 98)], b)
    >>> n.accepting.update({a, b})
    >>> determinize(n).num_states  # dead, start, one accepting state for both "a" and "b"
    3
    """
    table = dfa.transitions
    if deadline is not None and time.monotonic() > deadline:
        return dfa
    rounds = min(MINIMIZE_ROUNDS, max(8, MINIMIZE_WORK // dfa.num_states))
    kernel = CompiledKernels.minimize
    if kernel is not None:
        out = kernel(np.ascontiguousarray(table, dtype=np.int32), np.ascontiguousarray(dfa.accepting, dtype=bool),
                     int(dfa.initial), rounds, math.inf if deadline is None else deadline - time.monotonic())
        return dfa if out is None else ByteDFA(transitions=out[0], accepting=out[1], initial=out[2])
    # Bytes that every state treats alike form one class; refinement only needs one column each.
    # Columns are grouped by a random linear hash, checked exactly (np.unique over whole columns
    # takes seconds for tens of thousands of states).
    weights = np.random.default_rng(1).integers(1, 2**62, size=table.shape[0], dtype=np.int64) | 1
    _, first, inverse = np.unique(weights @ table.astype(np.int64), return_index=True, return_inverse=True)
    if not (table == table[:, first[inverse.reshape(-1)]]).all():  # a hash collision: group exactly
        _, first = np.unique(table.T, axis=0, return_index=True)
    columns = table[:, np.sort(first)]
    weights = np.random.default_rng(0).integers(1, 2**62, size=columns.shape[1] + 1, dtype=np.int64) | 1
    block = dfa.accepting.astype(np.int64) + 1
    block[DEAD] = 0
    count = len(np.unique(block))
    for _ in range(rounds):
        if deadline is not None and time.monotonic() > deadline:
            return dfa
        signature = np.concatenate([block[:, None], block[columns]], axis=1)
        _, first_of, new_block = np.unique(signature @ weights, return_index=True, return_inverse=True)
        new_block = new_block.reshape(-1)
        if not (signature == signature[first_of[new_block]]).all():  # a hash collision: exact way
            _, new_block = np.unique(signature, axis=0, return_inverse=True)
            new_block = new_block.reshape(-1)
        new_count = int(new_block.max()) + 1
        block = new_block
        if new_count == count:
            break
        count = new_count
    else:
        return dfa
    if count == dfa.num_states or block[DEAD] == block[dfa.initial]:  # minimal, or untrimmed: as it is
        return dfa
    # Renumber blocks: the dead state's block stays 0, the initial state's becomes 1.
    order = [int(block[DEAD]), int(block[dfa.initial])]
    order += [b for b in dict.fromkeys(block.tolist()) if b not in order]
    rank = np.empty(count, np.int32)
    rank[order] = np.arange(count, dtype=np.int32)
    representative = np.zeros(count, np.int64)
    representative[block[::-1]] = np.arange(dfa.num_states)[::-1]
    reps = representative[order]
    new_table = rank[block[table[reps]]]
    return ByteDFA(transitions=new_table.astype(np.int32), accepting=dfa.accepting[reps].copy(), initial=1)


def _edges(transitions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct-enough (source, target) edges: one per run of equal targets along the byte axis."""
    runs = transitions != DEAD
    runs[:, 1:] &= transitions[:, 1:] != transitions[:, :-1]
    runs[DEAD] = False
    src, col = np.nonzero(runs)
    return src, transitions[src, col].astype(np.int64)


NARROW = 32  # frontiers up to this size are searched in Python


def _search(src: np.ndarray, dst: np.ndarray, n: int, seeds: np.ndarray, check=None) -> np.ndarray:
    """States reachable from ``seeds`` along the edges (``src`` sorted), one frontier at a time
    (``check()`` between frontiers: it raises to stop)."""
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=offsets[1:])
    seen = np.zeros(n, bool)
    seen[seeds] = True
    frontier = np.unique(seeds)
    steps = 0
    while frontier.size:
        steps += 1
        if check is not None and steps % 64 == 0:
            check()
        if frontier.size <= NARROW:
            # A narrow frontier (a long chain, such as a{50000}) is followed in Python: a whole-array
            # step per state would cost more than the states themselves.
            pending = frontier.tolist()
            while pending and len(pending) <= 8 * NARROW:
                state = pending.pop()
                for target in dst[offsets[state]:offsets[state + 1]].tolist():
                    if not seen[target]:
                        seen[target] = True
                        pending.append(target)
            frontier = np.array(pending, dtype=np.int64)
            continue
        first, count = offsets[frontier], offsets[frontier + 1] - offsets[frontier]
        total = int(count.sum())
        if not total:
            break
        idx = np.repeat(first - np.cumsum(count) + count, count) + np.arange(total)
        nxt = dst[idx]
        nxt = np.unique(nxt[~seen[nxt]])
        seen[nxt] = True
        frontier = nxt
    return seen


class CompiledKernels:
    """Compiled twins of this package's heaviest operations, lent by the engine layer when the
    native core is built (`guided.engine.native` calls `lend_kernels`): the IR imports nothing
    above it, so the core comes to it.  Each twin returns what the numpy code returns, state for
    state (tests/test_native.py compares them on random automata); unset, the numpy code runs."""

    trim: Callable | None = None  # (transitions int32, accepting bool, initial) -> (table, accepting, initial)
    product: Callable | None = None  # see guided.ir.dfa_ops._product
    # (ranges, epsilons, accepting list, start, max_states, seconds left, what, too-slow message)
    # -> `_subsets`' (table, accepting) and the initial state 1
    determinize: Callable | None = None
    # (transitions, accepting, initial, rounds, seconds left or inf) -> (table, accepting, 1), or None: unchanged
    minimize: Callable | None = None
    # (lhs, rhs, nonterminal count, bias, start, priorities or [], check or None)
    # -> (actions, gotos, kernels, conflicts, collisions, end state): see guided.ir.lalr.lalr_tables
    lalr: Callable | None = None

    @classmethod
    def lent(cls) -> tuple[Callable | None, ...]:
        """The twins in use, in `lend_kernels`' order (to lend them again after a comparison)."""
        return cls.trim, cls.product, cls.determinize, cls.minimize, cls.lalr


def lend_kernels(trim: Callable | None = None, product: Callable | None = None, determinize: Callable | None = None,
                 minimize: Callable | None = None, lalr: Callable | None = None) -> None:
    """Use compiled twins for `trim`, the products of `guided.ir.dfa_ops`, the subset construction
    of `determinize`, `minimize` and the LALR(1) construction of `guided.ir.lalr.lalr_tables`
    (None: the numpy/Python code)."""
    CompiledKernels.trim = trim
    CompiledKernels.product = product
    CompiledKernels.determinize = determinize
    CompiledKernels.minimize = minimize
    CompiledKernels.lalr = lalr


def trim(transitions: np.ndarray, accepting: np.ndarray, initial: int, deadline: float | None = None,
         what: str = "automaton") -> ByteDFA:
    """Drop the states that cannot reach an accepting state or cannot be reached, and renumber.

    Two graph searches over the distinct edges, one frontier at a time: a dense fixpoint would
    take one pass over the whole table per step of the longest chain.  Past ``deadline``,
    `LimitExceeded` (the compiled twin, linear in the table, does not look at the clock).
    """
    kernel = CompiledKernels.trim
    if kernel is not None:
        table, acc, start = kernel(np.ascontiguousarray(transitions, dtype=np.int32),
                                   np.ascontiguousarray(accepting, dtype=bool), int(initial))
        return ByteDFA(transitions=table, accepting=acc, initial=start)
    return _numpy_trim(transitions, accepting, initial, deadline, what)


def _numpy_trim(transitions: np.ndarray, accepting: np.ndarray, initial: int, deadline: float | None,
                what: str) -> ByteDFA:
    def check() -> None:
        if deadline is not None and time.monotonic() > deadline:
            raise LimitExceeded(f"{what}: construction took longer than its max_seconds")

    n = transitions.shape[0]
    if initial == DEAD:
        return ByteDFA(transitions=np.zeros((1, 256), np.int32), accepting=np.zeros(1, bool), initial=DEAD)
    src, dst = _edges(transitions)
    reach = _search(src, dst, n, np.array([initial]), check)
    finals = np.flatnonzero(accepting & reach)
    finals = finals[finals != DEAD]
    if not finals.size:
        return ByteDFA(transitions=np.zeros((1, 256), np.int32), accepting=np.zeros(1, bool), initial=DEAD)
    keep = reach[src]
    back = np.argsort(dst[keep], kind="stable")
    live = _search(dst[keep][back], src[keep][back], n, finals, check)
    keep_states = reach & live
    keep_states[DEAD] = False
    order = np.flatnonzero(keep_states)
    order = np.concatenate([[initial], order[order != initial]])
    new_id = np.zeros(n, np.int32)
    new_id[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    table = np.zeros((len(order) + 1, 256), np.int32)
    table[1:] = new_id[transitions[order]]
    acc = np.zeros(len(order) + 1, bool)
    acc[1:] = accepting[order]
    return ByteDFA(transitions=table, accepting=acc, initial=1)
