"""A token budget on a think block: the end marker is forced once the thought has used its tokens.

`ThoughtBudget` wraps the compiled grammar of a `guided.frontends.reasoning.Reasoning` spec
(its language: an optional start marker, free text without the end marker, the end marker, the
answer).  How many tokens the thought takes is not a property of that language, so the budget
lives here, on the matcher: after ``max_tokens`` tokens with the thought still open, only tokens
that continue the rest of the markers are allowed (and `forced_bytes` says that rest, so
jump-forward writes it), until the end marker is complete; then the answer's grammar applies
unchanged.  The wrapper follows the bytes of the tokens to know where the thought ends: the
first occurrence of the end marker after the start marker (a KMP automaton of the marker).

It implements the whole `guided.Matcher` protocol on top of the inner matcher, so sampling,
beam search and speculative decoding use it as they use any grammar.

>>> import guided
>>> from guided.frontends.reasoning import Reasoning
>>> vocab = guided.Vocabulary.from_token_bytes([b"<t>", b"</t>", b"a", b"b", b"<", b"<eos>"], eos_token_ids=[5])
>>> g = guided.compile(Reasoning(guided.Regex("b"), "<t>", "</t>", max_tokens=2), vocab)
>>> m = g.matcher(); m.advance(0); m.advance(2)          # "<t>a": two tokens, the budget is spent
>>> [vocab.token_text(t) for t in m.mask().nonzero()[0]], m.forced_bytes()
(['</t>', '<'], b'</t>')
"""

from __future__ import annotations

import numpy as np

from guided.engine.bitmask import pack
from guided.errors import ConstraintViolation
from guided.vocab import Vocabulary

__all__ = ["ThoughtBudget", "ThoughtBudgetMatcher"]


class ThoughtBudget:
    """A compiled grammar whose thought (``prefix``, text, ``end``) may take ``max_tokens`` tokens."""

    def __init__(self, inner, *, prefix: bytes, end: bytes, max_tokens: int):
        self.inner = inner
        self.vocab: Vocabulary = inner.vocab
        self.prefix = bytes(prefix)
        self.end = bytes(end)
        self.max_tokens = int(max_tokens)
        self._consistent: dict[bytes, np.ndarray] = {}
        n = len(self.end)
        self._fail = [0] * (n + 1)  # KMP failure function of the end marker
        k = 0
        for i in range(1, n):
            while k and self.end[i] != self.end[k]:
                k = self._fail[k]
            if self.end[i] == self.end[k]:
                k += 1
            self._fail[i + 1] = k

    def matcher(self) -> "ThoughtBudgetMatcher":
        return ThoughtBudgetMatcher(self, self.inner.matcher(), ((len(self.prefix), 0, 0), None))

    def step(self, state: tuple[int, int, int], data: bytes) -> tuple[int, int, int]:
        """The state ``(prefix bytes left, KMP state of the end marker, thought tokens)`` after a
        token with bytes ``data``; KMP state ``len(end)``: the thought is closed."""
        skip, k, count = state
        n = len(self.end)
        if k == n:
            return state
        for b in data:
            if skip:
                skip -= 1
                continue
            while k and self.end[k] != b:
                k = self._fail[k]
            if self.end[k] == b:
                k += 1
            if k == n:
                break
        return skip, k, count + 1

    def rest(self, state: tuple[int, int, int]) -> bytes:
        """The bytes that close the thought from ``state`` by the shortest way."""
        skip, k, _ = state
        return self.prefix[len(self.prefix) - skip:] + self.end[k:] if skip else self.end[k:]

    def consistent(self, rest: bytes) -> np.ndarray:
        """Bool ``[vocab.size]``: tokens whose bytes are a prefix of ``rest`` or start with it."""
        mask = self._consistent.get(rest)
        if mask is None:
            mask = np.fromiter(
                (bool(b) and (rest.startswith(b) or b.startswith(rest)) for b in self.vocab.token_bytes),
                dtype=bool, count=self.vocab.size,
            )
            self._consistent[rest] = mask
        return mask


class ThoughtBudgetMatcher:
    """The inner grammar's matcher, restricted to the end marker once the thought's budget is spent."""

    __slots__ = ("grammar", "inner", "_history")

    def __init__(self, grammar: ThoughtBudget, inner, history: tuple):
        self.grammar = grammar
        self.inner = inner
        self._history = history  # ((skip, kmp, count), older)

    @property
    def state(self) -> tuple[int, int, int]:
        return self._history[0]

    @property
    def num_tokens(self) -> int:
        return self.inner.num_tokens

    def thought_open(self) -> bool:
        return self.state[1] < len(self.grammar.end)

    def _forced_rest(self) -> bytes | None:
        g = self.grammar
        state = self.state
        if state[1] < len(g.end) and state[2] >= g.max_tokens:
            return g.rest(state)
        return None

    def _restriction(self) -> np.ndarray | None:
        rest = self._forced_rest()
        return None if rest is None else self.grammar.consistent(rest)

    def fill_bitmask(self, bitmask, row: int = 0) -> None:
        self.inner.fill_bitmask(bitmask, row)
        keep = self._restriction()
        if keep is not None:
            words = np.asarray(bitmask)
            packed = pack(keep)
            words[row, : packed.shape[0]] &= packed

    def mask(self) -> np.ndarray:
        out = self.inner.mask()
        keep = self._restriction()
        return out if keep is None else out & keep

    def budget_mask(self, remaining: int) -> np.ndarray:
        out = self.inner.budget_mask(remaining)
        keep = self._restriction()
        return out if keep is None else out & keep

    def closing_lower_bound(self) -> int:
        return self.inner.closing_lower_bound()

    def closing_distance(self) -> int:
        return self.inner.closing_distance()

    def closing_tokens(self) -> np.ndarray:
        ids = np.asarray(self.inner.closing_tokens(), dtype=np.int64)
        keep = self._restriction()
        return ids if keep is None else ids[keep[ids]]

    def forced_bytes(self) -> bytes:
        rest = self._forced_rest()
        return rest if rest is not None else self.inner.forced_bytes()

    def accepts_eos(self) -> bool:
        return self.inner.accepts_eos()

    def is_finished(self) -> bool:
        return self.inner.is_finished()

    def advance(self, token_id: int) -> None:
        keep = self._restriction()
        if keep is not None and not (0 <= token_id < keep.shape[0] and keep[token_id]) and \
                token_id not in self.grammar.vocab.eos_token_ids:
            raise ConstraintViolation(f"token {token_id} does not continue the end marker "
                                      f"{self.grammar.end!r}: the reasoning budget is spent")
        self.inner.advance(token_id)
        data = self.grammar.vocab.token_bytes[token_id] if 0 <= token_id < self.grammar.vocab.size else b""
        self._history = (self.grammar.step(self.state, data), self._history)

    def rollback(self, n: int = 1) -> None:
        self.inner.rollback(n)
        for _ in range(n):
            self._history = self._history[1]

    def copy(self) -> "ThoughtBudgetMatcher":
        return ThoughtBudgetMatcher(self.grammar, self.inner.copy(), self._history)
