"""The vocabulary laid out for vectorised automaton walks: token bytes as a column-major byte matrix.

Tokens are sorted by length, longest first, so that at byte position ``p`` the tokens still
being walked are always a prefix of the (compacted) index array.  Built once per vocabulary
and shared by every grammar compiled for it.

>>> from guided.vocab import Vocabulary
>>> table = TokenTable.of(Vocabulary.from_token_bytes([b"a", b"bc", b""], eos_token_ids=[2]))
>>> table.ids.tolist(), table.lengths.tolist()
([1, 0], [2, 1])
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

from guided.vocab import Vocabulary


@dataclass(frozen=True, eq=False)
class TokenTable:
    """Non-empty tokens of a vocabulary, sorted longest first, with their bytes by position."""

    vocab_size: int
    ids: np.ndarray  # int64 [n]: token id of each row, longest first
    lengths: np.ndarray  # int32 [n]
    columns: np.ndarray  # uint8 [max_len, n]: columns[p, r] = byte p of row r (0 past the end)
    active: np.ndarray  # int64 [max_len]: active[p] = number of rows longer than p
    eos_ids: np.ndarray  # int64 [k]

    @property
    def max_len(self) -> int:
        return int(self.columns.shape[0])

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
    excluded = set(vocab.special_token_ids) | set(vocab.eos_token_ids)
    rows = [(i, b) for i, b in enumerate(vocab.token_bytes) if b and i not in excluded]
    rows.sort(key=lambda r: -len(r[1]))
    n = len(rows)
    lengths = np.fromiter((len(b) for _, b in rows), dtype=np.int32, count=n)
    max_len = int(lengths[0]) if n else 0
    flat = np.zeros((n, max_len), np.uint8)
    for r, (_, b) in enumerate(rows):
        flat[r, : len(b)] = np.frombuffer(b, np.uint8)
    active = np.array([(lengths > p).sum() for p in range(max_len)], dtype=np.int64)
    return TokenTable(
        vocab_size=vocab.size,
        ids=np.fromiter((i for i, _ in rows), dtype=np.int64, count=n),
        lengths=lengths,
        columns=np.ascontiguousarray(flat.T),
        active=active,
        eos_ids=np.array(sorted(vocab.eos_token_ids), dtype=np.int64),
    )
