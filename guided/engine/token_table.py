"""The vocabulary as a byte trie laid out level by level, for vectorised automaton walks.

Every distinct token prefix is a trie node; the nodes of depth ``d`` form level ``d``, stored
as two arrays: each node's parent index in the previous level and its last byte.  Walking an
automaton over the whole vocabulary is then one numpy gather per level, over ~100k prefixes
instead of ~330k token bytes for SmolLM2.  Built once per vocabulary and shared by every
grammar compiled for it.

>>> from guided.vocab import Vocabulary
>>> table = TokenTable.of(Vocabulary.from_token_bytes([b"a", b"ab", b"b", b"<eos>"], eos_token_ids=[3]))
>>> [level.tolist() for level in table.level_bytes]
[[97, 98], [98]]
>>> table.token_ids.tolist(), table.token_nodes.tolist()  # nodes numbered across levels
([0, 1, 2], [0, 2, 1])
"""

from __future__ import annotations

import bisect
import threading
import weakref
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from guided.engine.tuning import (NARROW_BUDGET, NARROW_BYTES, SCALAR_DIVERGENCE, SCALAR_DIVERGENCE_WORK,
                                  SCALAR_WORK)
from guided.vocab import Vocabulary


@dataclass(frozen=True, eq=False)
class TokenTable:
    """The text tokens of a vocabulary as a level-ordered byte trie."""

    vocab_size: int
    level_parents: tuple[np.ndarray, ...]  # level d: index of each node's parent in level d-1 (level 0: 0)
    level_bytes: tuple[np.ndarray, ...]  # level d: each node's last byte
    token_ids: np.ndarray  # int64 [n]: the text tokens
    token_nodes: np.ndarray  # int64 [n]: each token's node, numbered level by level
    eos_ids: np.ndarray  # int64 [k]
    level_offsets: np.ndarray  # int64 [levels + 1]: global number of each level's first node
    level_children: tuple[np.ndarray, ...]  # level d: node i's children are [c[i], c[i+1]) in level d+1
    node_token: np.ndarray  # int64 [num_nodes]: a token ending at the node, or -1
    node_descendants: np.ndarray  # int64 [num_nodes]: how many nodes lie below each node
    duplicates: tuple[np.ndarray, np.ndarray]  # (token, token with the same bytes listed in node_token)

    @property
    def num_nodes(self) -> int:
        return sum(level.size for level in self.level_bytes)

    @staticmethod
    def of(vocab: Vocabulary) -> "TokenTable":
        """The table for ``vocab``, built on first use and cached for the vocabulary's lifetime."""
        with _lock:
            table = _tables.get(vocab)
            if table is None:
                table = _tables[vocab] = _build(vocab)
                trie_nodes(table)  # the walks' other per-vocabulary arrays, so no mask pays for them
                trie_order(table)
            return table


_tables: "weakref.WeakKeyDictionary[Vocabulary, TokenTable]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _build(vocab: Vocabulary) -> TokenTable:
    excluded = vocab.special_token_ids | vocab.eos_token_ids
    tokens = [(i, b) for i, b in enumerate(vocab.token_bytes) if b and i not in excluded]
    by_depth: dict[int, set[bytes]] = {}
    for _, b in tokens:
        for k in range(1, len(b) + 1):
            by_depth.setdefault(k, set()).add(b[:k])
    index: dict[bytes, int] = {b"": 0}
    parents, last_bytes, offsets = [], [], {}
    total = 0
    for depth in range(1, max(by_depth, default=0) + 1):
        level = sorted(by_depth.get(depth, ()))
        parents.append(np.fromiter((index[p[:-1]] for p in level), dtype=np.int64, count=len(level)))
        last_bytes.append(np.fromiter((p[-1] for p in level), dtype=np.uint8, count=len(level)))
        offsets[depth] = total
        for j, p in enumerate(level):
            index[p] = j
        total += len(level)
    token_ids = np.fromiter((i for i, _ in tokens), dtype=np.int64, count=len(tokens))
    token_nodes = np.fromiter((offsets[len(b)] + index[b] for _, b in tokens), dtype=np.int64, count=len(tokens))
    node_token = np.full(total, -1, dtype=np.int64)
    node_token[token_nodes[::-1]] = token_ids[::-1]  # the first of duplicate tokens wins
    dup = node_token[token_nodes] != token_ids
    descendants = [np.zeros(p.size, np.int64) for p in parents]
    for d in range(len(parents) - 1, 0, -1):
        descendants[d - 1] = np.bincount(parents[d], weights=descendants[d] + 1,
                                         minlength=parents[d - 1].size).astype(np.int64)
    children = []
    for d in range(len(parents)):
        nxt = parents[d + 1] if d + 1 < len(parents) else np.zeros(0, np.int64)
        children.append(np.searchsorted(nxt, np.arange(parents[d].size + 1)))
    return TokenTable(
        vocab_size=vocab.size,
        level_offsets=np.array([offsets[d] for d in sorted(offsets)] + [total], dtype=np.int64),
        level_children=tuple(children),
        node_token=node_token,
        node_descendants=np.concatenate(descendants) if descendants else np.zeros(0, np.int64),
        duplicates=(token_ids[dup], node_token[token_nodes[dup]]),
        level_parents=tuple(parents),
        level_bytes=tuple(last_bytes),
        token_ids=token_ids,
        token_nodes=token_nodes,
        eos_ids=np.array(sorted(vocab.eos_token_ids), dtype=np.int64),
    )


class Seeds(NamedTuple):
    """Trie nodes where a walk could end a lexeme: node ``node[i]`` of level ``level[i]``, reached
    with the automaton in state ``state[i]`` before the node's byte."""

    level: np.ndarray  # int64
    node: np.ndarray  # int64, numbered within its level
    state: np.ndarray  # the automaton's dtype


class Divergence(NamedTuple):
    """What `walk_divergence` found: see there."""

    alive: np.ndarray
    cut: np.ndarray
    expanded: np.ndarray
    seeds: Seeds


def concat_ranges(start: np.ndarray, count: np.ndarray) -> np.ndarray:
    """``[start[0], start[0] + count[0]) + [start[1], ...) + ...`` as one array, without a loop."""
    return np.repeat(start - np.cumsum(count) + count, count) + np.arange(int(count.sum()))


def children_of(first: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For nodes whose children are ``[first, end)``: each child's parent position, and the children."""
    count = end - first
    return np.repeat(np.arange(first.size), count), concat_ranges(first, count)


def _cat(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)


def _seed_arrays(seeds: list[tuple[int, int, int]], dtype) -> Seeds:
    """``(level, node, state)`` tuples as the `Seeds` walks return."""
    return Seeds(np.array([x[0] for x in seeds], np.int64), np.array([x[1] for x in seeds], np.int64),
                 np.array([x[2] for x in seeds], dtype))


def small_subtrees(table: "TokenTable", level: int, nodes: np.ndarray) -> bool:
    """Do the subtrees below ``nodes`` (of ``level``) hold at most `SCALAR_WORK` nodes in all?"""
    if nodes.size > SCALAR_WORK:
        return False
    below = table.node_descendants[table.level_offsets[level] + nodes]
    return int(below.sum()) <= SCALAR_WORK

_lists: "weakref.WeakKeyDictionary[TokenTable, tuple]" = weakref.WeakKeyDictionary()


def trie_lists(table: TokenTable) -> tuple[list, list, list, list]:
    """The trie as Python lists (level bytes, level children, level offsets, node tokens) for scalar walks."""
    lists = _lists.get(table)
    if lists is None:
        lists = _lists[table] = (
            [b.tolist() for b in table.level_bytes],
            [c.tolist() for c in table.level_children],
            table.level_offsets.tolist(),
            table.node_token.tolist(),
        )
    return lists


def walk_automaton(table: TokenTable, transitions: np.ndarray, state: int, boundary: np.ndarray | None = None,
                   prepare=None):
    """Walk every token's bytes from ``state`` through a DFA (state 0 dead).

    Returns ``(ids, ends, seeds)``: the tokens that stay alive and the state each ends in, and,
    when ``boundary`` is given (``boundary[s] >= 0`` where a lexeme may end in state ``s``), the
    trie nodes below the first byte where a dying walk could have ended a lexeme (`Seeds`).

    Dense levels are stepped whole (one gather per level); once few nodes survive, only their
    children are expanded, and the last few nodes finish in Python.  ``prepare(states)``, if
    given, is called before rows of ``states`` are read and returns ``(transitions, boundary)``
    to read them from (for automata whose rows are filled on demand).
    """
    found_ids, found_ends = [], []
    seed_level, seed_node, seed_state = [], [], []
    levels = len(table.level_bytes)
    dense: list[np.ndarray] = []  # the states of whole levels, while walking densely
    if prepare is not None:
        transitions, boundary = prepare(state)
    if not levels or not transitions[state].any():
        return np.zeros(0, np.int64), np.zeros(0, transitions.dtype), Seeds(
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, transitions.dtype))
    narrow = _walk_narrow(table, transitions, state, boundary, prepare)
    if narrow is not None:
        return narrow
    nodes = None  # None: dense mode, `before` covers the whole level
    before = np.full(table.level_bytes[0].size, state, dtype=transitions.dtype)
    for level in range(levels):
        last = table.level_bytes[level] if nodes is None else table.level_bytes[level][nodes]
        if prepare is not None:
            transitions, boundary = prepare(before)
        after = transitions[before, last]
        if level and boundary is not None:
            ends = (after == 0) & (before != 0) & (boundary[before] >= 0)
            if ends.any():
                where = np.flatnonzero(ends) if nodes is None else nodes[ends]
                seed_level.append(np.full(where.size, level))
                seed_node.append(where)
                seed_state.append(before[ends])
        if nodes is None:
            dense.append(after)
            live = after != 0
            if level + 1 >= levels or not live.any():
                break
            # Stay dense while the live subtrees hold a good share of what lies below this level.
            lo, hi = table.level_offsets[level], table.level_offsets[level + 1]
            covered = int(table.node_descendants[lo:hi] @ live)
            if covered * 4 > int(table.level_offsets[-1] - hi):
                before = after[table.level_parents[level + 1]]
                continue
            live_nodes = np.flatnonzero(live)
            live_state = after[live_nodes]
        else:
            alive = np.flatnonzero(after)
            live_nodes, live_state = nodes[alive], after[alive]
            tokens = table.node_token[table.level_offsets[level] + live_nodes]
            has = tokens >= 0
            found_ids.append(tokens[has])
            found_ends.append(live_state[has])
            if not live_nodes.size or level + 1 >= levels:
                break
        if small_subtrees(table, level, live_nodes):
            ids, ends_, seeds = _walk_scalar(table, transitions, level, live_nodes.tolist(), live_state.tolist(),
                                             boundary, prepare)
            found_ids.append(np.array(ids, dtype=np.int64))
            found_ends.append(np.array(ends_, dtype=transitions.dtype))
            if seeds:
                for part, array in zip((seed_level, seed_node, seed_state), _seed_arrays(seeds, transitions.dtype)):
                    part.append(array)
            break
        children = table.level_children[level]
        parent, nodes = children_of(children[live_nodes], children[live_nodes + 1])
        before = live_state[parent]
    if dense:
        node_state = np.concatenate(dense)
        by_node, ids_by_node = _tokens_by_node(table)
        k = int(np.searchsorted(by_node, node_state.size))
        ids, ends = ids_by_node[:k], node_state[by_node[:k]]
        alive = ends != 0
        found_ids.insert(0, ids[alive])
        found_ends.insert(0, ends[alive])
    ids = np.concatenate(found_ids) if found_ids else np.zeros(0, np.int64)
    ends = np.concatenate(found_ends) if found_ends else np.zeros(0, transitions.dtype)
    ids, ends = _with_duplicates(table, ids, ends)
    return ids, ends, Seeds(_cat(seed_level, np.int64), _cat(seed_node, np.int64), _cat(seed_state, transitions.dtype))


def with_duplicate_ids(table: TokenTable, ids: np.ndarray) -> np.ndarray:
    """``ids`` and the tokens that spell the same bytes as one of them (the trie holds one per node)."""
    dup_ids, dup_primary = table.duplicates
    if dup_ids.size and ids.size:
        ids = np.concatenate([ids, dup_ids[np.isin(dup_primary, ids)]])
    return ids


def _with_duplicates(table: TokenTable, ids: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add the tokens that spell the same bytes as found ones (the trie holds one per node)."""
    dup_ids, dup_primary = table.duplicates
    if dup_ids.size and ids.size:
        has = np.isin(dup_primary, ids)
        if has.any():
            end_of = dict(zip(ids.tolist(), ends.tolist()))
            ids = np.concatenate([ids, dup_ids[has]])
            ends = np.concatenate([ends, np.array([end_of[p] for p in dup_primary[has].tolist()], ends.dtype)])
    return ids, ends


_by_node: "weakref.WeakKeyDictionary[TokenTable, tuple[np.ndarray, np.ndarray]]" = weakref.WeakKeyDictionary()


def _tokens_by_node(table: TokenTable) -> tuple[np.ndarray, np.ndarray]:
    """Token nodes in increasing order and the matching token ids: a level prefix is a slice."""
    pair = _by_node.get(table)
    if pair is None:
        order = np.argsort(table.token_nodes, kind="stable")
        pair = _by_node[table] = (table.token_nodes[order], table.token_ids[order])
    return pair


def _walk_narrow(table, transitions, state, boundary, prepare):
    """`walk_automaton` entirely in Python for a state few bytes leave, or None past the budget.

    Numpy costs a few microseconds per call whatever the size, which is most of the walk of a
    state inside a property name; a scalar walk of its few live paths costs less.
    """
    row = transitions[state]
    live = np.flatnonzero(row)
    if live.size > NARROW_BYTES:
        return None
    level_bytes, level_children, _, node_token = trie_lists(table)
    first_level, children = level_bytes[0], level_children[0]
    items, tokens, ends = [], [], []
    work = 0
    for byte, nxt in zip(live.tolist(), row[live].tolist()):
        node = bisect.bisect_left(first_level, byte)
        if node < len(first_level) and first_level[node] == byte:
            items.append((0, node, nxt))
            work += children[node + 1] - children[node]
            if node_token[node] >= 0:
                tokens.append(node_token[node])
                ends.append(nxt)
    if work > NARROW_BUDGET:  # the next level alone would exceed the budget
        return None
    walked = _walk_scalar(table, transitions, 0, [n for _, n, _ in items], [s for _, _, s in items], boundary,
                          prepare, budget=NARROW_BUDGET)
    if walked is None:
        return None
    more, more_ends, seeds = walked
    ids = np.array(tokens + more, np.int64)
    ends_ = np.array(ends + more_ends, transitions.dtype)
    ids, ends_ = _with_duplicates(table, ids, ends_)
    return ids, ends_, _seed_arrays(seeds, transitions.dtype)


def _walk_scalar(table, transitions, level, nodes, states, boundary, prepare=None, budget=None):
    """`walk_automaton` finished in Python for a small frontier (None if ``budget`` nodes do not suffice)."""
    level_bytes, level_children, offsets, node_token = trie_lists(table)
    last_level = len(level_bytes) - 1
    tokens, ends, seeds = [], [], []
    # Per state: its row, and its live (byte, target) pairs.  Where a node has many
    # more children than the state has live bytes (a name spelt one byte at a time, say), the
    # children are found by binary search on their sorted bytes instead of all being tried.
    rows: dict[int, np.ndarray] = {}
    lives: dict[int, list] = {}
    todo = [(level, n, s) for n, s in zip(nodes, states)]
    while todo:
        lvl, node, st = todo.pop()
        if lvl >= last_level:
            continue
        first, end = level_children[lvl][node], level_children[lvl][node + 1]
        if first == end:
            continue
        nxt_bytes = level_bytes[lvl + 1]
        row = rows.get(st)
        if row is None:
            if prepare is not None:
                transitions, boundary = prepare(st)
            row = rows[st] = transitions[st]
        ending = boundary is not None and boundary[st] >= 0
        live = None
        if not ending and end - first > 16:
            live = lives.get(st)
            if live is None:
                nz = np.flatnonzero(row)
                live = lives[st] = list(zip(nz.tolist(), row[nz].tolist()))
        sparse = live is not None and 4 * len(live) < end - first
        if budget is not None:  # the children this node will look at
            budget -= len(live) if live is not None and sparse else end - first
            if budget < 0:
                return None
        if sparse:
            assert live is not None
            for byte, nxt in live:
                child = bisect.bisect_left(nxt_bytes, byte, first, end)
                if child < end and nxt_bytes[child] == byte:
                    token = node_token[offsets[lvl + 1] + child]
                    if token >= 0:
                        tokens.append(token)
                        ends.append(nxt)
                    todo.append((lvl + 1, child, nxt))
            continue
        for child in range(first, end):
            nxt = int(row[nxt_bytes[child]])
            if nxt == 0:
                if ending:
                    seeds.append((lvl + 1, child, st))
                continue
            token = node_token[offsets[lvl + 1] + child]
            if token >= 0:
                tokens.append(token)
                ends.append(nxt)
            todo.append((lvl + 1, child, nxt))
    return tokens, ends, seeds


@dataclass(frozen=True, eq=False)
class TrieNodes:
    """Per-node arrays over global node numbers, for walks whose frontier mixes levels."""

    byte: np.ndarray  # uint8 [num_nodes]: each node's last byte
    first_child: np.ndarray  # int64 [num_nodes]: global number of its first child
    end_child: np.ndarray  # int64 [num_nodes]: one past its last child


_globals: "weakref.WeakKeyDictionary[TokenTable, TrieNodes]" = weakref.WeakKeyDictionary()


def trie_nodes(table: TokenTable) -> TrieNodes:
    """The table's `TrieNodes` (built once per vocabulary)."""
    nodes = _globals.get(table)
    if nodes is None:
        offsets = table.level_offsets
        first, end = [], []
        for level, children in enumerate(table.level_children):
            below = offsets[level + 1] if level + 1 < len(table.level_bytes) else 0
            first.append(below + children[:-1])
            end.append(below + children[1:])
        nodes = _globals[table] = TrieNodes(_cat(list(table.level_bytes), np.uint8), _cat(first, np.int64),
                                            _cat(end, np.int64))
    return nodes


@dataclass(frozen=True, eq=False)
class TrieOrder:
    """The trie's nodes in depth-first (lexicographic) order, for subtree queries.

    The subtree of global node ``n`` is the pre-order interval ``[pre[n], pre[n] + descendants[n]]``.
    """

    pre: np.ndarray  # int64 [num_nodes]: each node's rank in pre-order
    parent: np.ndarray  # int64 [num_nodes]: global index of each node's parent, -1 at level 0
    token_pre: np.ndarray  # int64 [n]: pre-order ranks of the token nodes, sorted
    token_ids: np.ndarray  # int64 [n]: the token at each of those nodes, duplicates included


_orders: "weakref.WeakKeyDictionary[TokenTable, TrieOrder]" = weakref.WeakKeyDictionary()


def trie_order(table: TokenTable) -> TrieOrder:
    """The table's `TrieOrder` (built once per vocabulary)."""
    order = _orders.get(table)
    if order is None:
        sizes = table.node_descendants + 1
        pre = np.zeros(sizes.size, np.int64)
        parent = np.full(sizes.size, -1, np.int64)
        offsets = table.level_offsets
        if table.level_bytes:
            pre[:offsets[1]] = np.cumsum(sizes[:offsets[1]]) - sizes[:offsets[1]]
        for level in range(1, len(table.level_bytes)):
            lo, hi = offsets[level], offsets[level + 1]
            parents = table.level_parents[level] + offsets[level - 1]
            # Siblings are contiguous: a child's rank is its parent's plus one plus the sizes of
            # the siblings before it.
            before = np.cumsum(sizes[lo:hi]) - sizes[lo:hi]
            first = np.r_[True, parents[1:] != parents[:-1]]
            group_start = np.maximum.accumulate(np.where(first, np.arange(hi - lo), 0))
            pre[lo:hi] = pre[parents] + 1 + before - before[group_start]
            parent[lo:hi] = parents
        token_pre = pre[table.token_nodes]
        by = np.argsort(token_pre, kind="stable")
        order = _orders[table] = TrieOrder(pre, parent, token_pre[by], table.token_ids[by])
    return order


def subtree_tokens(table: TokenTable, nodes: np.ndarray) -> np.ndarray:
    """Every token (duplicates included) at or below the given global nodes, which must not nest."""
    if not nodes.size:
        return np.zeros(0, np.int64)
    order = trie_order(table)
    lo = np.searchsorted(order.token_pre, order.pre[nodes])
    hi = np.searchsorted(order.token_pre, order.pre[nodes] + table.node_descendants[nodes], side="right")
    return order.token_ids[concat_ranges(lo, hi - lo)]


def _diverge_scalar(table, transitions, boundary, prepare, level, nodes, states, ref_states, budget):
    """`walk_divergence` finished in Python from diverging ``nodes`` of ``level``, or None past its limits."""
    level_bytes, level_children, offsets, node_token = trie_lists(table)
    # Per (state, reference) pair: the bytes where anything is decided, with both targets.
    # Mostly a handful (the next letters of declared names), so a node with hundreds of
    # children finds those few by binary search instead of trying every child.
    pairs: dict[tuple[int, int], list] = {}
    alive, cut, expanded, seeds = [], [], [], []
    todo = [(level, n, a, b) for n, a, b in zip(nodes, states, ref_states)]
    work = 0
    while todo:
        lvl, node, st, ref = todo.pop()
        if lvl + 1 >= len(level_bytes):
            continue
        first, end = level_children[lvl][node], level_children[lvl][node + 1]
        if first == end:
            continue
        decided = pairs.get((st, ref))
        if decided is None:
            if prepare is not None:
                prepare(ref)
                transitions, boundary = prepare(st)
            row, row_ref = transitions[st], transitions[ref]
            interesting = row != row_ref
            if boundary[st] >= 0:
                interesting |= row == 0
            nz = np.flatnonzero(interesting)
            decided = pairs[(st, ref)] = list(zip(nz.tolist(), row[nz].tolist(), row_ref[nz].tolist()))
        next_bytes, offset = level_bytes[lvl + 1], offsets[lvl + 1]
        if 4 * len(decided) < end - first:
            work += len(decided)
            found = []
            for byte, a, b in decided:
                child = bisect.bisect_left(next_bytes, byte, first, end)
                if child < end and next_bytes[child] == byte:
                    found.append((child, a, b))
        else:
            work += end - first
            targets = {byte: (a, b) for byte, a, b in decided}
            found = [(child, *targets[next_bytes[child]]) for child in range(first, end)
                     if next_bytes[child] in targets]
        if work > SCALAR_DIVERGENCE_WORK:
            return None
        for child, a, b in found:
            if a == 0:
                if boundary[st] >= 0:
                    seeds.append((lvl + 1, child, st))
                if b != 0:
                    cut.append(offset + child)
            else:  # a != b here
                expanded.append(offset + child)
                if len(expanded) > budget:
                    return None
                token = node_token[offset + child]
                if token >= 0:
                    alive.append(token)
                todo.append((lvl + 1, child, a, b))
    return alive, cut, expanded, seeds


def walk_divergence(table: TokenTable, transitions: np.ndarray, state: int, reference: int,
                    boundary: np.ndarray, budget: int, prepare=None):
    """Walk the trie from ``state`` only where it behaves differently from ``reference``.

    Where the two walks reach the same automaton state, every token below is decided as it is
    from ``reference``; so a state that differs from a wide reference in a few byte paths (a free
    property name that must avoid a handful of declared names, say) costs a walk of those paths
    rather than of the whole vocabulary.  Returns None when more than ``budget`` nodes diverge,
    else a `Divergence`: tokens alive from ``state`` among those decided on
    diverging paths; global nodes below which every token dies from ``state`` although it lives
    from ``reference``; the global nodes expanded; and ``state``'s lexeme-ending seeds on them
    (as `walk_automaton`'s).  Duplicated tokens are not included in ``alive``.  ``prepare`` is
    `walk_automaton`'s.
    """
    offsets = table.level_offsets
    nodes = np.arange(table.level_bytes[0].size if table.level_bytes else 0, dtype=np.int64)
    before = np.full(nodes.size, state, dtype=transitions.dtype)
    before_ref = np.full(nodes.size, reference, dtype=transitions.dtype)
    alive, cut, expanded = [], [], []
    seed_level, seed_node, seed_state = [], [], []
    spent = 0
    for level in range(len(table.level_bytes)):
        last = table.level_bytes[level][nodes]
        if prepare is not None:
            transitions, boundary = prepare(np.concatenate([before, before_ref]))
        after = transitions[before, last]
        after_ref = transitions[before_ref, last]
        if level:
            ends = (after == 0) & (boundary[before] >= 0)
            if ends.any():
                seed_level.append(np.full(int(ends.sum()), level))
                seed_node.append(nodes[ends])
                seed_state.append(before[ends])
        differ = after != after_ref
        dies = differ & (after == 0)
        if dies.any():
            cut.append(offsets[level] + nodes[dies])
        grow = np.flatnonzero(differ & (after != 0))
        if not grow.size:
            break
        spent += grow.size
        if spent > budget:
            return None
        live = nodes[grow]
        expanded.append(offsets[level] + live)
        tokens = table.node_token[offsets[level] + live]
        alive.append(tokens[tokens >= 0])
        if level + 1 >= len(table.level_bytes):
            break
        if live.size <= SCALAR_DIVERGENCE:
            done = _diverge_scalar(table, transitions, boundary, prepare, level, live.tolist(),
                                   after[grow].tolist(), after_ref[grow].tolist(), budget - spent)
            if done is not None:
                for part, found in zip((alive, cut, expanded), done[:3]):
                    part.append(np.array(found, np.int64))
                if done[3]:
                    arrays = _seed_arrays(done[3], transitions.dtype)
                    for part, array in zip((seed_level, seed_node, seed_state), arrays):
                        part.append(array)
                break
        children = table.level_children[level]
        parent, nodes = children_of(children[live], children[live + 1])
        before, before_ref = after[grow][parent], after_ref[grow][parent]
    seeds = Seeds(_cat(seed_level, np.int64), _cat(seed_node, np.int64), _cat(seed_state, transitions.dtype))
    return Divergence(_cat(alive, np.int64), _cat(cut, np.int64), _cat(expanded, np.int64), seeds)
