"""The Matcher protocol: the one interface between every constraint engine and every decoder.

A *compiled grammar* (`CompiledGrammar`) is immutable and shareable between threads and
requests; it hands out *matchers*, one per sequence being generated.  A matcher tracks how
far the sequence has got and answers, for the next step, which token ids may follow.

The protocol knows numpy and bytes only (no torch): masks are written into caller-owned packed
int32 bitmasks, ``[batch, ceil(vocab_size / 32)]``, bit ``i`` of word ``w`` standing for token
``32 * w + i`` (the layout vLLM, XGrammar and llguidance use; `guided.engine.bitmask`).  Turning
them into tensors and applying them to logits happens at the decoding edge
(`guided.decoding.torch_masks`).

Contract, for every engine (regex automata, CFGs from Lark, JSON Schema, tools; XML):

- ``fill_bitmask(bitmask, row)`` is exact: token ``t`` is allowed iff the text so far plus
  ``t``'s bytes is still a prefix of some document of the language; EOS ids are allowed iff the
  text so far is a complete document.  Special/added tokens other than EOS are never allowed;
  ids past the tokenizer's size (padded logits) are never allowed.  ``mask()`` is the same set
  as a bool array, for convenience.
- ``advance(t)`` raises `guided.errors.ConstraintViolation` for a token the mask forbids and
  leaves the matcher unchanged.  After EOS the matcher is finished and only EOS is allowed.
- ``rollback(n)`` undoes the last ``n`` advances exactly; ``copy()`` is cheap (persistent
  history, no deep copies) and independent of the original.
- budget-aware closing (`guided.engine.closing`): ``closing_lower_bound()`` is a true lower
  bound on the tokens any completion needs (never more than the real minimum);
  ``budget_mask(n)`` keeps the allowed tokens whose lower bound after them is at most ``n - 1``
  (so it never refuses a token after which the document can be finished in time);
  ``closing_distance()`` is a number of tokens known to be enough, and ``closing_tokens()`` the
  tokens that start such a completion (what a decoder falls back on when nothing else fits).
- ``forced_bytes()`` is the longest byte string every continuation must start with (empty when
  the next byte is open or EOS is allowed): what jump-forward may append without sampling.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"<eos>"], eos_token_ids=[3])
>>> m = guided.compile(guided.Regex("ab"), vocab).matcher()
>>> m.mask().tolist()
[True, False, True, False]
>>> m.advance(0); m.mask().tolist()
[False, True, False, False]
>>> m.advance(1); m.accepts_eos(), m.mask().tolist()
(True, [False, False, False, True])
>>> import numpy as np
>>> bitmask = np.zeros((1, 1), np.int32); m.fill_bitmask(bitmask, 0); bitmask.tolist()
[[8]]
"""

from __future__ import annotations

import operator
from typing import Protocol, runtime_checkable

import numpy as np

from guided.engine.bitmask import unpack, write_row
from guided.errors import ConstraintViolation, UsageError
from guided.vocab import Vocabulary

UNREACHABLE = np.iinfo(np.int64).max // 2
"""What `Matcher.closing_distance` answers where no way to complete the document is known."""


@runtime_checkable
class Matcher(Protocol):
    """Per-sequence state of a constraint; see the module docstring for the contract."""

    def fill_bitmask(self, bitmask: np.ndarray, row: int = 0) -> None:
        """Write the allowed set into row ``row`` of a packed int32 ``[batch, words]`` bitmask.

        ``bitmask`` is a numpy array, or any array ``np.asarray`` views without copying (a CPU
        torch tensor); words past the vocabulary's are zeroed.
        """
        ...

    def mask(self) -> np.ndarray:
        """Bool array ``[vocab.size]``, True where the token is allowed next (a fresh copy)."""
        ...

    def advance(self, token_id: int) -> None:
        """Consume one token; raise `ConstraintViolation` if it is not allowed."""
        ...

    def accepts_eos(self) -> bool:
        """True when the text so far is a complete document."""
        ...

    def is_finished(self) -> bool:
        """True after EOS was consumed, or when EOS is the only thing that may follow."""
        ...

    def rollback(self, n: int = 1) -> None:
        """Undo the last ``n`` tokens."""
        ...

    def copy(self) -> "Matcher":
        """An independent matcher in the same state."""
        ...

    def forced_bytes(self) -> bytes:
        """Bytes every valid continuation starts with."""
        ...

    def budget_mask(self, remaining: int) -> np.ndarray:
        """The allowed tokens (bool array ``[vocab.size]``) after which no lower bound rules out
        completing the document within ``remaining - 1`` more tokens (EOS only where the text is
        complete).

        It never refuses a token after which the document can be finished in time; it may keep
        one after which it cannot (the bound is a lower bound: decoders check the token they
        pick against `closing_distance`).  It may be empty; a decoder then follows
        `closing_tokens`.
        """
        ...

    def closing_lower_bound(self) -> int:
        """A true lower bound on the tokens any completion of the document needs from here (0
        when it may end now)."""
        ...

    def closing_distance(self) -> int:
        """Tokens enough to complete the document from here, by the shortest way known (0 when it
        may end now; `UNREACHABLE` when none is known)."""
        ...

    def closing_tokens(self) -> np.ndarray:
        """Token ids that start the shortest known completion (empty when none is known)."""
        ...

    @property
    def num_tokens(self) -> int:
        """Number of tokens consumed (EOS included)."""
        ...


def closing_mask(matcher: Matcher, remaining: int) -> np.ndarray:
    """What budget-aware decoding allows with ``remaining`` tokens left (bool ``[vocab.size]``):
    `Matcher.budget_mask`, or where it is empty the allowed tokens that start the shortest known
    completion (`Matcher.closing_tokens`); empty where neither is known (the caller keeps the
    plain mask, and the budget decides)."""
    allowed = np.asarray(matcher.budget_mask(remaining))
    if not allowed.any():
        allowed = np.zeros_like(allowed)
        allowed[np.asarray(matcher.closing_tokens(), dtype=np.int64)] = True
        allowed &= matcher.mask()
    return allowed


class HistoryMatcher:
    """What every engine's matcher shares: a persistent ``(state, rest)`` history of its states.

    One entry per consumed token, so ``rollback`` pops entries and ``copy`` shares the history
    (O(1)).  A subclass passes its grammar and start state and implements the masks.
    """

    __slots__ = ("grammar", "_history", "_n")

    def __init__(self, grammar, history: tuple, n: int = 0):
        self.grammar = grammar
        self._history = history
        self._n = n

    @property
    def num_tokens(self) -> int:
        return self._n

    def _push(self, state) -> None:
        self._history = (state, self._history)
        self._n += 1

    def rollback(self, n: int = 1) -> None:
        n = count_of(n, "rollback(n)")
        if n < 0 or n > self._n:
            raise UsageError(f"cannot roll back {n} tokens: only {self._n} consumed")
        history = self._history
        for _ in range(n):
            history = history[1]
        self._history = history
        self._n -= n

    def copy(self):
        clone = object.__new__(type(self))
        HistoryMatcher.__init__(clone, self.grammar, self._history, self._n)
        return clone


class CheckedCfgMatcher(HistoryMatcher):
    """What the matchers of grammars that run checks beside a CFG parser share (XML's matched
    names, unique items): their history holds configurations (None once finished), and the
    grammar answers ``words(config)``, ``walk(config, data)``, ``accepts_end(config)`` and holds
    the CFG engine it extends as ``cfg``.  Subclasses add forced bytes and closing."""

    __slots__ = ()
    language = "the grammar"  # what an error message says a refused token leaves

    def __init__(self, grammar):
        super().__init__(grammar, (grammar.start, None))

    def _words(self) -> np.ndarray:
        config = self._history[0]
        if config is None:
            return self.grammar.cfg.eos_words
        return self.grammar.words(config)

    def mask(self) -> np.ndarray:
        return unpack(self._words(), self.grammar.vocab.size)

    def fill_bitmask(self, bitmask, row: int = 0) -> None:
        write_row(bitmask, row, self._words())

    def advance(self, token_id: int) -> None:
        token_id = token_index(token_id)
        g = self.grammar
        config = self._history[0]
        if token_id in g.vocab.eos_token_ids:
            if config is not None and not g.accepts_end(config):
                raise ConstraintViolation(f"end of sequence is not allowed here: the text is incomplete "
                                          f"(after {self._n} tokens)")
            self._push(None)
            return
        if config is None:
            raise ConstraintViolation(f"token {token_id} after end of sequence")
        nxt = g.walk(config, text_bytes(g.vocab, token_id, self._n))
        if nxt is None:
            raise ConstraintViolation(f"token {token_id} ({g.vocab.token_text(token_id)!r}) leaves {self.language} "
                                      f"after {self._n} tokens")
        self._push(nxt)

    def accepts_eos(self) -> bool:
        config = self._history[0]
        return config is not None and self.grammar.accepts_end(config)

    def is_finished(self) -> bool:
        config = self._history[0]
        if config is None:
            return True
        return self.accepts_eos() and not np.any(self._words() & ~self.grammar.cfg.eos_words)


def token_index(token_id) -> int:
    """``token_id`` as an int (Python, numpy or 0-d torch integers); `UsageError` for anything else.

    A float, a string or a bool is a caller's mistake, not a token the grammar refuses.
    """
    if isinstance(token_id, bool):
        raise UsageError(f"advance() takes a token id (an int), got {token_id!r}")
    try:
        return operator.index(token_id)
    except TypeError:
        raise UsageError(f"advance() takes a token id (an int), got {type(token_id).__name__} {token_id!r}") from None


def count_of(n, what: str) -> int:
    """``n`` as an int, or `UsageError` naming ``what`` takes one."""
    if isinstance(n, bool):
        raise UsageError(f"{what} takes an int, got {n!r}")
    try:
        return operator.index(n)
    except TypeError:
        raise UsageError(f"{what} takes an int, got {type(n).__name__} {n!r}") from None


def text_bytes(vocab: Vocabulary, token_id: int, consumed: int) -> bytes:
    """The bytes of a text token, for ``advance``; `ConstraintViolation` for any other id."""
    data = vocab.token_bytes[token_id] if 0 <= token_id < vocab.size else b""
    if not data:
        raise ConstraintViolation(f"token {token_id} is not a text token of this vocabulary "
                                  f"(after {consumed} tokens)")
    return data


@runtime_checkable
class CompiledGrammar(Protocol):
    """An immutable, thread-safe compiled constraint for one vocabulary."""

    vocab: Vocabulary

    def matcher(self) -> Matcher:
        """A fresh matcher at the start of the document."""
        ...
