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

import threading
import weakref
from dataclasses import dataclass

import numpy as np

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
    children = []
    for d in range(len(parents)):
        nxt = parents[d + 1] if d + 1 < len(parents) else np.zeros(0, np.int64)
        children.append(np.searchsorted(nxt, np.arange(parents[d].size + 1)))
    return TokenTable(
        vocab_size=vocab.size,
        level_offsets=np.array([offsets[d] for d in sorted(offsets)] + [total], dtype=np.int64),
        level_children=tuple(children),
        node_token=node_token,
        duplicates=(token_ids[dup], node_token[token_nodes[dup]]),
        level_parents=tuple(parents),
        level_bytes=tuple(last_bytes),
        token_ids=token_ids,
        token_nodes=token_nodes,
        eos_ids=np.array(sorted(vocab.eos_token_ids), dtype=np.int64),
    )
