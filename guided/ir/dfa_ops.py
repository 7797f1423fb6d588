"""Operations on `guided.ir.dfa.ByteDFA`s that the JSON Schema compiler needs: product, union, embedding.

A trimmed `ByteDFA` keeps state 0 as a dead sink, so its complement is implicit: a product
pair ``(a, 0)`` means "the second automaton has rejected".  All products are built by a
breadth-first walk over reachable pairs, one numpy row per pair, then trimmed.
"""

from __future__ import annotations

import time

import numpy as np

from guided.errors import LimitExceeded
from guided.ir.dfa import DEAD, ByteDFA, ByteNFA, CompiledKernels, trim

EMPTY = ByteDFA(transitions=np.zeros((1, 256), np.int32), accepting=np.zeros(1, bool), initial=DEAD)


def is_empty(dfa: ByteDFA) -> bool:
    return dfa.initial == DEAD


def _both(x: bool, y: bool) -> bool:
    return x and y


def _first_not_second(x: bool, y: bool) -> bool:
    return x and not y


_ACCEPT_MODES = (_both, _first_not_second)  # the compiled product's ``accept`` argument indexes this


def _product(a: ByteDFA, b: ByteDFA, accept, max_states: int, what: str, keep_dead_b: bool) -> ByteDFA:
    """The reachable pairs of ``a`` x ``b``, built breadth-first one whole level at a time
    (``accept``: one of `_ACCEPT_MODES`, on the two automata's acceptance)."""
    if a.initial == DEAD:
        return EMPTY
    kernel = CompiledKernels.product
    if kernel is not None:
        table, acc, _ = kernel(np.ascontiguousarray(a.transitions, dtype=np.int32), a.accepting, a.initial,
                               np.ascontiguousarray(b.transitions, dtype=np.int32), b.accepting, b.initial,
                               _ACCEPT_MODES.index(accept), keep_dead_b, max_states, what)
        return trim(table, acc, initial=1)
    nb = b.num_states
    ta, tb = a.transitions, b.transitions
    start = a.initial * nb + b.initial
    ids = {start: 1}
    pairs = [start]
    rows: list[np.ndarray] = [np.zeros((1, 256), np.int32)]
    deadline = time.monotonic() + 30.0
    frontier = np.array([start], np.int64)
    while frontier.size:
        if time.monotonic() > deadline:
            raise LimitExceeded(f"{what}: construction took too long")
        ra = ta[frontier // nb].astype(np.int64)
        rb = tb[frontier % nb].astype(np.int64)
        keys = ra * nb + rb
        valid = ra != DEAD
        if not keep_dead_b:
            valid &= rb != DEAD
        targets = np.unique(keys[valid])
        fresh = []
        for key in targets.tolist():
            if key not in ids:
                ids[key] = len(pairs) + 1
                pairs.append(key)
                fresh.append(key)
        if len(pairs) > max_states:
            raise LimitExceeded(f"{what}: more than {max_states} automaton states")
        target_ids = np.array([ids[k] for k in targets.tolist()], np.int32)
        row = np.zeros(keys.shape, np.int32)
        if targets.size:
            row[valid] = target_ids[np.searchsorted(targets, keys[valid])]
        rows.append(row)
        frontier = np.array(fresh, np.int64)
    keys = np.array(pairs, np.int64)
    acc_a = a.accepting[keys // nb]
    acc_b = b.accepting[keys % nb] & (keys % nb != DEAD)
    acc = np.zeros(len(pairs) + 1, bool)
    acc[1:] = [accept(x, y) for x, y in zip(acc_a.tolist(), acc_b.tolist())]
    return trim(np.concatenate(rows), acc, initial=1)


def intersect(a: ByteDFA, b: ByteDFA, max_states: int = 200_000, what: str = "intersection") -> ByteDFA:
    if b.initial == DEAD:
        return EMPTY
    return _product(a, b, _both, max_states, what, keep_dead_b=False)


def difference(a: ByteDFA, b: ByteDFA, max_states: int = 200_000, what: str = "difference") -> ByteDFA:
    if b.initial == DEAD:
        return a
    return _product(a, b, _first_not_second, max_states, what, keep_dead_b=True)


def difference_unbounded_finite(a: ByteDFA, b: ByteDFA, max_states: int = 200_000,
                                what: str = "difference") -> ByteDFA:
    """`difference` where every state of ``a`` reads on to words of every length (``a``'s strings of
    any length) and ``b`` is acyclic (finitely many words, a trie of excluded names): the same
    automaton, without the trim.

    Every reachable pair is live: past ``b``'s longest word the pair has left ``b`` (its dead
    state) and ``a`` still accepts, so the untrimmed product is the trimmed one state for state
    (trim keeps the reachable live states in order, the initial pair already first).  The caller
    vouches for both conditions; ``tests/test_compile_path.py`` checks the result against
    `difference`."""
    if b.initial == DEAD or CompiledKernels.product is None:
        return difference(a, b, max_states, what)
    if a.initial == DEAD:
        return EMPTY
    table, acc, _ = CompiledKernels.product(
        np.ascontiguousarray(a.transitions, dtype=np.int32), a.accepting, a.initial,
        np.ascontiguousarray(b.transitions, dtype=np.int32), b.accepting, b.initial,
        _ACCEPT_MODES.index(_first_not_second), True, max_states, what)
    return ByteDFA(transitions=table, accepting=acc, initial=1)


def disjoint(a: ByteDFA, b: ByteDFA, max_states: int = 200_000) -> bool:
    return is_empty(intersect(a, b, max_states))


def embed(nfa: ByteNFA, dfa: ByteDFA, start: int, end: int) -> None:
    """Copy ``dfa`` into ``nfa`` between ``start`` and ``end`` (epsilon from accepting states to end).

    Each state's moves become runs of equal targets over consecutive bytes, found for the whole
    table at once (a run starts where a byte's target differs from the byte before's, and ends
    where it differs from the next's): row by row it cost seconds on automata of 10^4 states."""
    if dfa.initial == DEAD:
        return
    n = dfa.num_states
    first = nfa.num_states  # dfa state s > 0 is nfa state first + s - 1
    for _ in range(1, n):
        nfa.add_state()
    nfa.add_epsilon(start, first + dfa.initial - 1)
    table = np.asarray(dfa.transitions[1:], dtype=np.int64)
    live = table != DEAD
    differs = np.ones((n - 1, 257), bool)
    differs[:, 1:256] = table[:, 1:] != table[:, :-1]
    run_start = live & differs[:, :256]
    run_end = live & differs[:, 1:]
    rows, lo = np.nonzero(run_start)  # row-major: by state, then byte, as the ends
    _, hi = np.nonzero(run_end)
    targets = table[rows, lo] + (first - 1)
    ranges = nfa.ranges
    for r, a, b, t in zip((rows + first).tolist(), lo.tolist(), hi.tolist(), targets.tolist()):
        ranges[r].append((a, b, t))
    for s in np.flatnonzero(dfa.accepting[1:]).tolist():
        nfa.add_epsilon(first + s, end)


def concat_dfas(parts: list[ByteDFA], max_states: int = 200_000, what: str = "terminal") -> ByteDFA:
    from guided.ir.dfa import Limits, determinize

    nfa = ByteNFA()
    state = nfa.start
    for p in parts:
        nxt = nfa.add_state()
        embed(nfa, p, state, nxt)
        state = nxt
    nfa.accepting.add(state)
    return determinize(nfa, Limits(max_states, 30.0), what=what)


def union_dfas(parts: list[ByteDFA], max_states: int = 200_000, what: str = "terminal") -> ByteDFA:
    from guided.ir.dfa import Limits, determinize

    parts = [p for p in parts if p.initial != DEAD]
    if not parts:
        return EMPTY
    if len(parts) == 1:
        return parts[0]
    firsts = np.stack([p.transitions[p.initial] != DEAD for p in parts])
    if (firsts.sum(axis=0) <= 1).all():
        return _disjoint_union(parts)
    nfa = ByteNFA()
    end = nfa.add_state()
    for p in parts:
        embed(nfa, p, nfa.start, end)
    nfa.accepting.add(end)
    return determinize(nfa, Limits(max_states, 30.0), what=what)


def _disjoint_union(parts: list[ByteDFA]) -> ByteDFA:
    """The union of automata whose first bytes differ: side by side under a new initial state.

    After the first byte only one part is alive, so no subset construction is needed.  The old
    initial states stay (unreachable unless re-entered).
    """
    total = 1 + sum(p.num_states - 1 for p in parts) + 1
    table = np.zeros((total, 256), np.int32)
    accepting = np.zeros(total, bool)
    initial = total - 1
    base = 0  # part state s > 0 goes to s + base
    for p in parts:
        n = p.num_states - 1
        rows = p.transitions[1:]
        table[base + 1:base + 1 + n] = np.where(rows != DEAD, rows + base, DEAD)
        accepting[base + 1:base + 1 + n] = p.accepting[1:]
        first = table[base + p.initial]
        live = first != DEAD
        table[initial, live] = first[live]
        accepting[initial] |= bool(p.accepting[p.initial])
        base += n
    return ByteDFA(transitions=table, accepting=accepting, initial=initial)


def literal_dfa(data: bytes) -> ByteDFA:
    n = len(data)
    table = np.zeros((n + 2, 256), np.int32)
    for i, b in enumerate(data):
        table[i + 1, b] = i + 2
    acc = np.zeros(n + 2, bool)
    acc[n + 1] = True
    return ByteDFA(transitions=table, accepting=acc, initial=1)


def prefix_dfa(prefix: ByteDFA, dfa: ByteDFA) -> ByteDFA:
    """``prefix`` followed by ``dfa`` where ``prefix`` is a bounded whitespace DFA (a chain)."""
    return concat_dfas([prefix, dfa])


def sample_strings(dfa: ByteDFA, limit: int = 3, max_len: int = 64) -> list[bytes]:
    """A few short accepted strings (breadth-first), for error messages and tests."""
    out: list[bytes] = []
    frontier = [(dfa.initial, b"")]
    seen = {dfa.initial}
    while frontier and len(out) < limit:
        nxt = []
        for s, text in frontier:
            if dfa.accepting[s]:
                out.append(text)
            for b in range(256):
                t = int(dfa.transitions[s, b])
                if t and t not in seen and len(text) < max_len:
                    seen.add(t)
                    nxt.append((t, text + bytes([b])))
        frontier = nxt
    return out
