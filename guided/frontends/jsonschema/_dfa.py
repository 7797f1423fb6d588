"""Operations on `guided.fsm.ByteDFA`s that the JSON Schema compiler needs: product, union, embedding.

A trimmed `ByteDFA` keeps state 0 as a dead sink, so its complement is implicit: a product
pair ``(a, 0)`` means "the second automaton has rejected".  All products are built by a
breadth-first walk over reachable pairs, one numpy row per pair, then trimmed.
"""

from __future__ import annotations

import time

import numpy as np

from guided.errors import LimitExceeded
from guided.fsm import DEAD, ByteDFA, ByteNFA

EMPTY = ByteDFA(transitions=np.zeros((1, 256), np.int32), accepting=np.zeros(1, bool), initial=DEAD)


def is_empty(dfa: ByteDFA) -> bool:
    return dfa.initial == DEAD


def _product(a: ByteDFA, b: ByteDFA, accept, max_states: int, what: str, keep_dead_b: bool) -> ByteDFA:
    if a.initial == DEAD:
        return EMPTY
    nb = b.num_states
    ta, tb = a.transitions, b.transitions
    start = (a.initial, b.initial)
    index = {start: 1}
    order = [start]
    rows = [np.zeros(256, np.int32)]
    deadline = time.monotonic() + 30.0
    i = 0
    while i < len(order):
        sa, sb = order[i]
        i += 1
        if len(order) > max_states:
            raise LimitExceeded(f"{what}: more than {max_states} automaton states")
        if i % 512 == 0 and time.monotonic() > deadline:
            raise LimitExceeded(f"{what}: construction took too long")
        ra = ta[sa].astype(np.int64)
        rb = tb[sb].astype(np.int64)
        keys = ra * nb + rb
        valid = ra != DEAD
        if not keep_dead_b:
            valid &= rb != DEAD
        row = np.zeros(256, np.int32)
        if valid.any():
            uniq, inverse = np.unique(keys[valid], return_inverse=True)
            targets = np.empty(len(uniq), np.int32)
            for j, k in enumerate(uniq.tolist()):
                pair = (k // nb, k % nb)
                t = index.get(pair)
                if t is None:
                    t = index[pair] = len(order) + 1
                    order.append(pair)
                targets[j] = t
            row[valid] = targets[inverse]
        rows.append(row)
    acc = np.zeros(len(order) + 1, bool)
    acc[1:] = [accept(bool(a.accepting[x]), bool(b.accepting[y]) if y else False) for x, y in order]
    return fast_trim(np.stack(rows), acc, initial=1)


def intersect(a: ByteDFA, b: ByteDFA, max_states: int = 200_000, what: str = "intersection") -> ByteDFA:
    if b.initial == DEAD:
        return EMPTY
    return _product(a, b, lambda x, y: x and y, max_states, what, keep_dead_b=False)


def difference(a: ByteDFA, b: ByteDFA, max_states: int = 200_000, what: str = "difference") -> ByteDFA:
    if b.initial == DEAD:
        return a
    return _product(a, b, lambda x, y: x and not y, max_states, what, keep_dead_b=True)


def disjoint(a: ByteDFA, b: ByteDFA, max_states: int = 200_000) -> bool:
    return is_empty(intersect(a, b, max_states))


def embed(nfa: ByteNFA, dfa: ByteDFA, start: int, end: int) -> None:
    """Copy ``dfa`` into ``nfa`` between ``start`` and ``end`` (epsilon from accepting states to end)."""
    if dfa.initial == DEAD:
        return
    n = dfa.num_states
    ids = [0] * n
    for s in range(1, n):
        ids[s] = nfa.add_state()
    nfa.add_epsilon(start, ids[dfa.initial])
    table = dfa.transitions
    for s in range(1, n):
        row = table[s]
        nz = np.flatnonzero(row)
        if nz.size:
            # runs of equal targets over consecutive bytes
            vals = row[nz]
            breaks = np.flatnonzero((np.diff(nz) != 1) | (np.diff(vals) != 0)) + 1
            starts = np.concatenate([[0], breaks])
            stops = np.concatenate([breaks, [nz.size]])
            out = nfa.ranges[ids[s]]
            for b0, b1 in zip(starts.tolist(), stops.tolist()):
                out.append((int(nz[b0]), int(nz[b1 - 1]), ids[int(vals[b0])]))
        if dfa.accepting[s]:
            nfa.add_epsilon(ids[s], end)


def concat_dfas(parts: list[ByteDFA], max_states: int = 200_000, what: str = "terminal") -> ByteDFA:
    from guided.fsm import Limits, determinize

    nfa = ByteNFA()
    state = nfa.start
    for p in parts:
        nxt = nfa.add_state()
        embed(nfa, p, state, nxt)
        state = nxt
    nfa.accepting.add(state)
    return determinize(nfa, Limits(max_states, 30.0), what=what)


def union_dfas(parts: list[ByteDFA], max_states: int = 200_000, what: str = "terminal") -> ByteDFA:
    from guided.fsm import Limits, determinize

    parts = [p for p in parts if p.initial != DEAD]
    if not parts:
        return EMPTY
    if len(parts) == 1:
        return parts[0]
    nfa = ByteNFA()
    end = nfa.add_state()
    for p in parts:
        embed(nfa, p, nfa.start, end)
    nfa.accepting.add(end)
    return determinize(nfa, Limits(max_states, 30.0), what=what)


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


def fast_trim(transitions: np.ndarray, accepting: np.ndarray, initial: int) -> ByteDFA:
    """`guided.fsm.trim` by graph search instead of a dense fixpoint (fast on long chains)."""
    n = transitions.shape[0]
    src = np.repeat(np.arange(n), 256)
    dst = transitions.reshape(-1).astype(np.int64)
    keep = (dst != DEAD) & (src != DEAD)
    pairs = np.unique(src[keep] * n + dst[keep])
    s_arr, d_arr = pairs // n, pairs % n
    preds: dict[int, list[int]] = {}
    for s, d in zip(s_arr.tolist(), d_arr.tolist()):
        preds.setdefault(d, []).append(s)
    live = np.zeros(n, bool)
    stack = [int(s) for s in np.flatnonzero(accepting) if s != DEAD]
    for s in stack:
        live[s] = True
    while stack:
        d = stack.pop()
        for s in preds.get(d, ()):
            if not live[s]:
                live[s] = True
                stack.append(s)
    succs: dict[int, list[int]] = {}
    for s, d in zip(s_arr.tolist(), d_arr.tolist()):
        succs.setdefault(s, []).append(d)
    reach = np.zeros(n, bool)
    if initial != DEAD and live[initial]:
        reach[initial] = True
        stack = [initial]
        while stack:
            s = stack.pop()
            for d in succs.get(s, ()):
                if live[d] and not reach[d]:
                    reach[d] = True
                    stack.append(d)
    if not reach.any():
        return EMPTY
    order = np.flatnonzero(reach)
    order = np.concatenate([[initial], order[order != initial]])
    new_id = np.zeros(n, np.int32)
    new_id[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    table = np.zeros((len(order) + 1, 256), np.int32)
    table[1:] = new_id[transitions[order]]
    acc = np.zeros(len(order) + 1, bool)
    acc[1:] = accepting[order]
    return ByteDFA(transitions=table, accepting=acc, initial=1)
