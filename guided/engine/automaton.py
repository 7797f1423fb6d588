"""Token masks for byte-level automata: vectorised per-state masks, computed lazily and cached.

For a DFA state ``s`` the allowed tokens are those whose bytes, walked from ``s``, do not reach
the dead state (the DFA is trimmed, so every other state can still finish).  The walk runs over
the whole vocabulary at once, one numpy gather per byte position, dropping tokens as soon as
they die, on the `TokenTable` shared by every grammar of the vocabulary.  A state's mask is
computed the first time a matcher reaches it and kept on the compiled grammar, which is
immutable otherwise and safe to share between threads.

Closing (`guided.engine.closing`): for automata of up to `AUTOMATON_EXACT_STATES` states the
fewest tokens from each state to an accepting one are computed exactly (token walks from every
state, then Bellman-Ford over them), so the budget mask is exact; larger ones use the mandatory
subsequence of each state as the lower bound and single-byte paths as the upper one.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"1", b"12", b"x", b"</s>"], eos_token_ids=[3])
>>> g = guided.compile(guided.Regex(r"[0-9]+"), vocab)
>>> m = g.matcher(); m.advance(1); m.mask().tolist()
[True, True, False, True]
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from guided.engine.lru import LockedLru
from guided.engine.bitmask import pack, unpack, write_row
from guided.engine.closing import mandatory_bytes, subsequence_cover
from guided.engine.matcher import UNREACHABLE, HistoryMatcher, text_bytes, token_index
from guided.engine.token_table import TokenTable, walk_automaton
from guided.engine.tuning import AUTOMATON_EXACT_STATES, TOKEN_BOUNDS_MEMO
from guided.errors import ConstraintViolation
from guided.ir.dfa import DEAD, ByteDFA
from guided.vocab import Vocabulary

FINISHED = -1  # pseudo-state after EOS


@dataclass
class MaskStats:
    """How much mask work a compiled grammar has done (for benchmarks and diagnostics)."""

    states_computed: int = 0
    seconds: float = 0.0


class AutomatonGrammar:
    """A `ByteDFA` compiled against a vocabulary: the `CompiledGrammar` of regex constraints."""

    def __init__(self, dfa: ByteDFA, vocab: Vocabulary, source: str = ""):
        self.dfa = dfa
        self.vocab = vocab
        self.source = source
        self.table = TokenTable.of(vocab)
        self.stats = MaskStats()
        self._words: dict[int, np.ndarray] = {}
        self._bools: dict[int, np.ndarray] = {}
        self._forced: dict[int, bytes] = {}
        self._lower: dict[int, int] = {}
        self._bounds: LockedLru[int, tuple[np.ndarray, np.ndarray]] = LockedLru(TOKEN_BOUNDS_MEMO)
        eos = np.zeros(vocab.size, dtype=bool)
        eos[self.table.eos_ids] = True
        self._words[FINISHED] = pack(eos)

    def __repr__(self) -> str:
        return f"AutomatonGrammar({self.source!r}, states={self.dfa.num_states}, vocab={self.vocab.size})"

    def matcher(self) -> "AutomatonMatcher":
        return AutomatonMatcher(self)

    # -- per-state data, computed on first use --------------------------------------------

    def words(self, state: int) -> np.ndarray:
        """Packed allowed-token bitmask of ``state``."""
        words = self._words.get(state)
        if words is None:
            words = self._words[state] = pack(self._allowed(state))
        return words

    def bools(self, state: int) -> np.ndarray:
        """Allowed tokens of ``state`` as a read-only bool array ``[vocab.size]``."""
        mask = self._bools.get(state)
        if mask is None:
            mask = unpack(self.words(state), self.vocab.size)
            mask.flags.writeable = False
            self._bools[state] = mask
        return mask

    def _allowed(self, state: int) -> np.ndarray:
        start = time.perf_counter()
        allowed = np.zeros(self.vocab.size, dtype=bool)
        ids, _ = self._token_ends(state)
        allowed[ids] = True
        if self.dfa.accepting[state]:
            allowed[self.table.eos_ids] = True
        self.stats.states_computed += 1
        self.stats.seconds += time.perf_counter() - start
        return allowed

    def _token_ends(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """The text tokens alive from ``state`` and the state each one's bytes lead to."""
        ids, ends, _ = walk_automaton(self.table, self.dfa.transitions, state)
        return ids, ends

    @functools.cached_property
    def closing_distances(self) -> np.ndarray:
        """Per state, tokens enough to reach an accepting state, walking single-byte tokens only.

        An upper bound on the true token distance (multi-byte tokens can only shorten the way);
        ``UNREACHABLE`` where no single-byte path exists.
        """
        single = np.zeros(256, dtype=bool)
        for token_id in self.table.token_ids[self.table.token_nodes < self.table.level_bytes[0].size]:
            single[self.vocab.token_bytes[token_id][0]] = True
        n = self.dfa.num_states
        dist = np.full(n, UNREACHABLE, dtype=np.int64)
        # Breadth first from the accepting states over reversed single-byte edges, one frontier
        # at a time: linear in the edges (rounds of relaxation over every state would be
        # quadratic on a long chain such as [a-z]{50000}).
        row = np.sort(self.dfa.transitions[:, single], axis=1)
        distinct = row != DEAD
        distinct[:, 1:] &= row[:, 1:] != row[:, :-1]
        distinct[DEAD] = False
        src, col = np.nonzero(distinct)
        dst = row[src, col].astype(np.int64)
        by_target = np.argsort(dst, kind="stable")
        preds = src[by_target]
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(np.bincount(dst, minlength=n), out=offsets[1:])
        frontier = np.flatnonzero(self.dfa.accepting)
        frontier = frontier[frontier != DEAD]
        level = 0
        while frontier.size:
            dist[frontier] = level
            level += 1
            if frontier.size <= 32:  # a chain: one state per level, cheaper in Python than by array steps
                chain = [p for state in frontier.tolist() for p in preds[offsets[state]:offsets[state + 1]].tolist()
                         if dist[p] == UNREACHABLE]
                frontier = np.unique(np.array(chain, dtype=np.int64))
                continue
            first, count = offsets[frontier], offsets[frontier + 1] - offsets[frontier]
            total = int(count.sum())
            if not total:
                break
            idx = np.repeat(first - np.cumsum(count) + count, count) + np.arange(total)
            nxt = preds[idx]
            frontier = np.unique(nxt[dist[nxt] == UNREACHABLE])
        return dist

    @functools.cached_property
    def token_distances(self) -> np.ndarray | None:
        """Per state, the fewest tokens to an accepting state (exact; ``UNREACHABLE`` where none
        leads there), or None for automata over `AUTOMATON_EXACT_STATES` states."""
        n = self.dfa.num_states
        if n > AUTOMATON_EXACT_STATES:
            return None
        succ = [np.zeros(0, np.int64) if s == DEAD else np.unique(self._token_ends(s)[1]).astype(np.int64)
                for s in range(n)]
        sizes = np.array([x.size for x in succ])
        flat = np.concatenate(succ) if n else np.zeros(0, np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        has = sizes > 0
        dist = np.full(n, UNREACHABLE, dtype=np.int64)
        dist[self.dfa.accepting] = 0
        dist[DEAD] = UNREACHABLE
        while flat.size:  # Bellman-Ford rounds over the token moves, vectorised
            best = np.full(n, UNREACHABLE, dtype=np.int64)
            best[has] = np.minimum.reduceat(dist[flat], starts[has])
            new = np.minimum(dist, np.minimum(best + 1, UNREACHABLE))
            new[DEAD] = UNREACHABLE
            if (new == dist).all():
                break
            dist = new
        return dist

    def lower_bound(self, state: int) -> int:
        """A true lower bound on the tokens from ``state`` to an accepting state."""
        exact = self.token_distances
        if exact is not None:
            return int(exact[state])
        found = self._lower.get(state)
        if found is None:
            tr, acc = self.dfa.transitions, self.dfa.accepting
            seq = tuple(mandatory_bytes(tr.__getitem__, lambda s: bool(acc[s]), state))
            found = self._lower[state] = 0 if acc[state] else max(1, subsequence_cover(self.table).cover(seq))
        return found

    def budget_allowed(self, state: int, remaining: int) -> np.ndarray:
        """Allowed tokens after which no lower bound rules out an accepting state within
        ``remaining - 1`` tokens (exact for small automata)."""
        allowed = np.zeros(self.vocab.size, dtype=bool)
        if state == FINISHED or self.dfa.accepting[state]:
            allowed[self.table.eos_ids] = True
        if state == FINISHED or remaining < 1:
            return allowed
        ids, bounds = self._token_bounds(state)
        allowed[ids] = bounds <= remaining - 1
        return allowed

    def _token_bounds(self, state: int) -> tuple[np.ndarray, np.ndarray]:
        """The tokens alive from ``state`` and a lower bound on the tokens each one leaves to an
        accepting state; memoised (a budget mask is asked at every step near the end of the
        budget, and each would otherwise walk the vocabulary again)."""
        found = self._bounds.get(state)
        if found is not None:
            return found
        ids, ends = self._token_ends(state)
        exact = self.token_distances
        if exact is not None:
            bounds = exact[ends]
        else:
            uniq, inverse = np.unique(ends, return_inverse=True)
            bounds = np.array([self.lower_bound(int(e)) for e in uniq.tolist()], dtype=np.int64)[inverse]
        found = (ids, bounds)
        self._bounds.put(state, found)
        return found

    def closing_tokens(self, state: int) -> np.ndarray:
        """Tokens that start a shortest known way to an accepting state."""
        if state == FINISHED or self.dfa.accepting[state]:
            return np.zeros(0, np.int64)
        distances = self.token_distances if self.token_distances is not None else self.closing_distances
        ids, ends = self._token_ends(state)
        if not ids.size:
            return ids
        best = distances[ends].min()
        return ids[distances[ends] == best] if best < UNREACHABLE else np.zeros(0, np.int64)

    def upper_bound(self, state: int) -> int:
        """Tokens enough from ``state`` to an accepting state (``UNREACHABLE`` if none known)."""
        exact = self.token_distances
        return int(exact[state] if exact is not None else self.closing_distances[state])

    def forced_bytes(self, state: int) -> bytes:
        forced = self._forced.get(state)
        if forced is None:
            out = bytearray()
            s, seen = state, set()
            tr, acc = self.dfa.transitions, self.dfa.accepting
            while s != FINISHED and not acc[s] and s not in seen:
                seen.add(s)
                live = np.flatnonzero(tr[s])
                if live.size != 1:
                    break
                out.append(int(live[0]))
                s = int(tr[s, live[0]])
            forced = self._forced[state] = bytes(out)
        return forced


class AutomatonMatcher(HistoryMatcher):
    """Matcher over an `AutomatonGrammar`: its history holds DFA states."""

    __slots__ = ()

    def __init__(self, grammar: AutomatonGrammar):
        super().__init__(grammar, (grammar.dfa.initial, None))

    def __repr__(self) -> str:
        return f"AutomatonMatcher(state={self.state}, tokens={self._n})"

    @property
    def state(self) -> int:
        return self._history[0]

    def mask(self) -> np.ndarray:
        return self.grammar.bools(self.state).copy()

    def fill_bitmask(self, bitmask, row: int = 0) -> None:
        words = self.grammar.words(self.state)
        write_row(bitmask, row, words)

    def is_allowed(self, token_id: int) -> bool:
        words = self.grammar.words(self.state)
        if not 0 <= token_id < self.grammar.vocab.size:
            return False
        return bool((int(words[token_id >> 5]) >> (token_id & 31)) & 1)

    def advance(self, token_id: int) -> None:
        token_id = token_index(token_id)
        g = self.grammar
        state = self.state
        if state == FINISHED:
            if token_id in g.vocab.eos_token_ids:
                self._push(FINISHED)
                return
            raise ConstraintViolation(f"token {token_id} after end of sequence")
        if token_id in g.vocab.eos_token_ids:
            if not g.dfa.accepting[state]:
                raise ConstraintViolation(
                    f"end of sequence is not allowed here: the text is incomplete (after {self._n} tokens)"
                )
            self._push(FINISHED)
            return
        tr = g.dfa.transitions
        s = state
        for b in text_bytes(g.vocab, token_id, self._n):
            s = tr.item(s, b)
            if s == DEAD:
                raise ConstraintViolation(
                    f"token {token_id} ({g.vocab.token_text(token_id)!r}) leaves the language "
                    f"after {self._n} tokens"
                )
        self._push(s)

    def accepts_eos(self) -> bool:
        s = self.state
        return s != FINISHED and bool(self.grammar.dfa.accepting[s])

    def is_finished(self) -> bool:
        s = self.state
        if s == FINISHED:
            return True
        return bool(self.grammar.dfa.accepting[s]) and not self.grammar.dfa.transitions[s].any()

    def forced_bytes(self) -> bytes:
        s = self.state
        return b"" if s == FINISHED else self.grammar.forced_bytes(s)

    def budget_mask(self, remaining: int) -> np.ndarray:
        return self.grammar.budget_allowed(self.state, remaining)

    def closing_lower_bound(self) -> int:
        s = self.state
        return 0 if s == FINISHED else self.grammar.lower_bound(s)

    def closing_distance(self) -> int:
        s = self.state
        return 0 if s == FINISHED else self.grammar.upper_bound(s)

    def closing_tokens(self) -> np.ndarray:
        return self.grammar.closing_tokens(self.state)

