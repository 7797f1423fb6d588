"""Token counts of completions: how many tokens a document still needs, at least and at most.

Budget-aware decoding allows a token near the end of the token budget iff the document can still
be completed after it within the tokens left.  That needs, for the configuration after each
token, a **true lower bound** on the tokens of any completion (never more than the real minimum:
then a token that can finish in time is never refused, so output that fits the budget is never
changed), and it should be tight (so that a token that cannot finish in time is refused before
it is too late).  Bytes are not tokens: ``", "age": 0}`` is 12 bytes and 7 SmolLM2 tokens, and a
bound from the longest token (81 bytes) would say 1.

**Mandatory subsequences.**  An engine describes what every completion of its current state
must contain, in order: a sequence ``F`` of byte sets (the closing quote of a string, the required
keys, brackets, close tags...), each of which some byte of the completion must belong to, in
that order, with anything in between.  The fewest tokens whose concatenation contains ``F`` as
a subsequence is then a true lower bound; it is computed exactly (`SubsequenceCover`): from
position ``i`` of ``F`` the best single token reaches ``i + A(i)`` (its bytes matched greedily), and
since covering a suffix is never harder than covering a longer one, taking the best token each
time is optimal.  ``A`` is one vectorised pass over the vocabulary's trie per start position,
memoised by suffix (what is left of ``F`` after some tokens is a suffix of it).

For the token ``t`` itself: every completion after ``t`` is, after ``t``'s bytes, a completion of
the current state, so after matching ``t``'s bytes greedily into ``F`` (``a(t)`` positions) the rest,
``F[a(t):]``, is mandatory after ``t``: the bound for every token at once is ``g[a]``, with
``g[i]`` the cover of ``F[i:]`` (`SubsequenceCover.token_bounds`).

`mandatory_bytes` finds the mandatory part of one automaton (a lexeme, a terminal, a regex) from
a state: bytes where only one byte class leads on, and *cuts*: a byte without which no accepting
state can be reached (a string's closing quote), followed when it leads to one state; where a
few branches part with neither (a value quoted with ``"`` or ``'``), what each branch still
needs, united position by position.

**Upper bounds.**  `min_tokenization` counts the fewest tokens spelling a given byte string: a
verified completion's count is a number of tokens known to be enough.
"""

from __future__ import annotations

import bisect
import threading
import weakref
from typing import Callable

import numpy as np

from guided.engine.lru import LockedLru
from guided.engine.token_table import TokenTable, trie_lists
from guided.engine.tuning import ADVANCES_MEMO, MANDATORY_MAX_STATES, MANDATORY_MAX_SYMBOLS
from guided.ir import DEAD

__all__ = ["UNREACHABLE", "SubsequenceCover", "lend_walk", "mandatory_bytes", "min_tokenization", "prefix_tokens",
           "subsequence_cover", "suffix_tokenizations"]

UNREACHABLE = np.iinfo(np.int64).max // 2

Subsequence = tuple[frozenset, ...]
"""A mandatory subsequence: byte sets every completion meets in this order."""


def mandatory_bytes(row: Callable[[int], np.ndarray], accepting: Callable[[int], bool], state: int,
                    limit: int = MANDATORY_MAX_SYMBOLS, max_states: int = MANDATORY_MAX_STATES,
                    branches: int = 2) -> list[frozenset]:
    """A mandatory subsequence of the paths from ``state`` to an accepting state of a byte DFA.

    ``row(s)`` is state ``s``'s transition row (``DEAD`` = 0 where a byte is refused) and
    ``accepting(s)`` whether a path may stop there.  Sound whatever it leaves out: it stops where
    it cannot tell what comes next.

    >>> rows = {1: np.array([0] * 34 + [2] + [1] * 221), 2: np.zeros(256, int)}   # "...: any byte but '"', then '"'
    >>> [sorted(s) for s in mandatory_bytes(rows.__getitem__, lambda s: s == 2, 1)]
    [[34]]
    """
    out: list[frozenset] = []
    while len(out) < limit and not accepting(state):
        r = row(state)
        live = np.flatnonzero(r != DEAD)
        if not live.size:
            return out
        targets = np.unique(r[live])
        if targets.size == 1:
            out.append(frozenset(live.tolist()))
            state = int(targets[0])
            continue
        cut = _cut(row, accepting, state, max_states)
        if cut is None:
            out.append(frozenset(live.tolist()))  # the next byte is one of these, whatever follows
            if branches > 0 and targets.size <= 4:
                # A few branches (a value quoted with " or '): what each still needs, merged
                # position by position (each branch's sequence is covered by the union).
                rest = [mandatory_bytes(row, accepting, int(t), limit - len(out), max_states, branches - 1)
                        for t in targets.tolist()]
                out += [frozenset().union(*sets) for sets in zip(*rest)]
            return out
        out.append(frozenset((cut[0],)))
        state = cut[1]
    return out


def _cut(row, accepting, state: int, max_states: int) -> tuple[int, int] | None:
    """A byte every path from ``state`` to acceptance reads, and the one state it then leads to."""
    region = _reach(row, state, None, max_states)
    if region is None:
        return None
    # Candidates: bytes that enter an accepting state (a closing quote, a colon), tried first.
    into_accepting: set[int] = set()
    for s in region:
        r = row(s)
        for b in np.flatnonzero(r != DEAD).tolist():
            if accepting(int(r[b])):
                into_accepting.add(b)
    for b in sorted(into_accepting)[:8]:
        without = _reach(row, state, b, max_states)
        if without is None or any(accepting(s) for s in without):
            continue
        # Every accepting path reads b; after its last b it reaches acceptance without b: those
        # b-edges lead to the states from which that is possible.
        lasts = set()
        for s in region:
            t = int(row(s)[b])
            if t != DEAD and t not in lasts:
                after = _reach(row, t, b, max_states)
                if after is not None and any(accepting(x) for x in after):
                    lasts.add(t)
        if len(lasts) == 1:
            return b, lasts.pop()
    return None


def _reach(row, state: int, avoid: int | None, max_states: int) -> list[int] | None:
    seen = {state}
    order = [state]
    for s in order:
        r = row(s)
        for t in np.unique(r[r != DEAD]).tolist() if avoid is None else np.unique(
                np.delete(r, avoid)[np.delete(r, avoid) != DEAD]).tolist():
            if t not in seen:
                if len(seen) >= max_states:
                    return None
                seen.add(t)
                order.append(t)
    return order


class SubsequenceCover:
    """Fewest tokens of a vocabulary containing a mandatory subsequence (see the module docstring)."""

    def __init__(self, table: TokenTable):
        self.table = table
        self._lock = threading.Lock()
        self._reach: dict[Subsequence, int] = {}  # suffix -> A(0) of that suffix
        self._cover: dict[Subsequence, int] = {}  # suffix -> tokens needed
        self._advances: LockedLru[Subsequence, np.ndarray] = LockedLru(ADVANCES_MEMO)  # seq -> a(t)
        # The same walk over the native core's trie, lent by `guided.engine.native` once one of
        # its grammars asks for a budget mask (`lend_walk`): ~30x faster than the level-by-level
        # numpy pass, the same integers (tests/test_native.py compares them).
        self.walk: Callable[[bytes, int, np.ndarray], None] | None = None

    def _native_advances(self, seq: Subsequence, start: int) -> np.ndarray | None:
        walk = self.walk
        if walk is None:
            return None
        member = np.zeros((len(seq), 256), dtype=bool)
        for i, s in enumerate(seq):
            member[i, list(s)] = True
        out = np.empty(self.table.vocab_size, dtype=np.int64)
        walk(np.packbits(member, axis=1, bitorder="little").tobytes(), start, out)
        return out

    def _max_advance(self, seq: Subsequence, starts: list[int]) -> list[int]:
        """``A(i)`` for each start ``i``: the most positions one token's bytes match from ``i``."""
        if self.walk is not None:
            # Every trie node is a prefix of a token, so the best token is as far as the best node.
            return [int(self._native_advances(seq, i).max(initial=0)) for i in starts]  # type: ignore[union-attr]
        t = self.table
        n = len(seq)
        member = np.zeros((n + 1, 256), dtype=bool)
        for i, s in enumerate(seq):
            member[i, list(s)] = True
        start = np.array(starts, dtype=np.int64)
        best = start.copy()
        pointer = None
        for level in range(len(t.level_bytes)):
            byte = t.level_bytes[level].astype(np.int64)
            if pointer is None:
                before = np.broadcast_to(start, (byte.size, start.size))
            else:
                before = pointer[t.level_parents[level]]
            pointer = before + member[before, byte[:, None]]
            if pointer.size:
                best = np.maximum(best, pointer.max(axis=0))
            if (best >= n).all():
                break
        return (best - start).tolist()

    def cover(self, seq: Subsequence) -> int:
        """The fewest tokens whose concatenation contains ``seq`` as a subsequence."""
        return self.covers(seq)[0]

    def covers(self, seq: Subsequence) -> list[int]:
        """``[cover(seq[i:]) for i in range(len(seq) + 1)]``."""
        n = len(seq)
        with self._lock:
            missing = [i for i in range(n) if seq[i:] not in self._reach]
        if missing:
            found = self._max_advance(seq, missing)
            with self._lock:
                for i, a in zip(missing, found):
                    self._reach[seq[i:]] = a
        out = [0] * (n + 1)
        with self._lock:
            for i in range(n - 1, -1, -1):
                a = self._reach[seq[i:]]
                out[i] = UNREACHABLE if a == 0 else min(UNREACHABLE, 1 + out[min(n, i + a)])
            if len(self._reach) > 100_000:
                self._reach.clear()
        return out

    def advances(self, seq: Subsequence) -> np.ndarray:
        """``a(t)`` for every token id: positions of ``seq`` its bytes match greedily from the start
        (0 for special tokens); read-only, memoised (a configuration's mandatory subsequence is
        asked for at every step that stays in it: inside a string, the same closing quote)."""
        found = self._advances.get(seq)
        if found is not None:
            return found
        found = self._native_advances(seq, 0)
        if found is None:
            found = self._numpy_advances(seq)
        # Advances are at most len(seq) (cut at MANDATORY_MAX_SYMBOLS): 2 bytes per token.
        found = found.astype(np.uint16 if len(seq) < 2**16 else np.int64)
        found.setflags(write=False)
        self._advances.put(seq, found)
        return found

    def _numpy_advances(self, seq: Subsequence) -> np.ndarray:
        t = self.table
        member = np.zeros((len(seq) + 1, 256), dtype=bool)
        for i, s in enumerate(seq):
            member[i, list(s)] = True
        per_level = []
        pointer = None
        for level in range(len(t.level_bytes)):
            byte = t.level_bytes[level].astype(np.int64)
            before = np.zeros(byte.size, np.int64) if pointer is None else pointer[t.level_parents[level]]
            pointer = before + member[before, byte]
            per_level.append(pointer)
        node_advance = np.concatenate(per_level) if per_level else np.zeros(0, np.int64)
        out = np.zeros(t.vocab_size, dtype=np.int64)
        out[t.token_ids] = node_advance[t.token_nodes]
        return out

    def token_bounds(self, seq: Subsequence) -> np.ndarray:
        """For every token id, a true lower bound on the tokens a completion needs after it."""
        g = np.array(self.covers(seq), dtype=np.int64)
        return g[self.advances(seq)]


_covers: "weakref.WeakKeyDictionary[TokenTable, SubsequenceCover]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def subsequence_cover(table: TokenTable) -> SubsequenceCover:
    """The `SubsequenceCover` of a vocabulary (one per token table, shared by its grammars)."""
    with _lock:
        cover = _covers.get(table)
        if cover is None:
            cover = _covers[table] = SubsequenceCover(table)
        return cover


def lend_walk(table: TokenTable, walk: Callable[[bytes, int, np.ndarray], None]) -> None:
    """Let ``table``'s `SubsequenceCover` use ``walk(member, start, out)``, a native trie walk of the
    same vocabulary computing what `SubsequenceCover.advances` does (``member``: 32 bytes of bits
    per position, little-endian; ``out``: int64 per token id)."""
    subsequence_cover(table).walk = walk


def min_tokenization(table: TokenTable, data: bytes) -> int:
    """The fewest tokens whose bytes are exactly ``data`` (``UNREACHABLE`` if none spell it).

    >>> from guided.vocab import Vocabulary
    >>> t = TokenTable.of(Vocabulary.from_token_bytes([b'"', b"}", b'"}', b"<eos>"], eos_token_ids=[3]))
    >>> min_tokenization(t, b'""}'), min_tokenization(t, b"x") == UNREACHABLE
    (2, True)
    """
    return suffix_tokenizations(table, data)[0]


def suffix_tokenizations(table: TokenTable, data: bytes) -> list[int]:
    """``[min_tokenization(data[i:]) for i in range(len(data) + 1)]``, in one pass."""
    n = len(data)
    best = [UNREACHABLE] * n + [0]
    for i in range(n - 1, -1, -1):
        for j in _token_ends(table, data, i):
            if best[j] + 1 < best[i]:
                best[i] = best[j] + 1
    return best


def prefix_tokens(table: TokenTable, data: bytes) -> list[tuple[int, int]]:
    """``(token id, length)`` of every token that is a prefix of ``data``."""
    node_token = trie_lists(table)[3]
    offsets = table.level_offsets.tolist()
    out = []
    for level, node in _trie_path(table, data, 0):
        token = node_token[offsets[level] + node]
        if token >= 0:
            out.append((token, level + 1))
    return out


def _token_ends(table: TokenTable, data: bytes, i: int) -> list[int]:
    node_token = trie_lists(table)[3]
    offsets = table.level_offsets.tolist()
    return [i + level + 1 for level, node in _trie_path(table, data, i) if node_token[offsets[level] + node] >= 0]


def _trie_path(table: TokenTable, data: bytes, i: int):
    """The trie nodes ``(level, node)`` spelling ``data[i:]`` as far as the trie goes."""
    level_bytes, level_children, _, _ = trie_lists(table)
    node = None
    for level in range(min(len(data) - i, len(level_bytes))):
        if node is None:
            lo, hi = 0, len(level_bytes[0])
        else:
            lo, hi = level_children[level - 1][node], level_children[level - 1][node + 1]
        k = _find(level_bytes[level], lo, hi, data[i + level])
        if k < 0:
            return
        node = k
        yield level, node


def _find(values: list[int], lo: int, hi: int, x: int) -> int:
    """The index of ``x`` in the sorted slice ``values[lo:hi]``, or -1."""
    k = bisect.bisect_left(values, x, lo, hi)
    return k if k < hi and values[k] == x else -1
