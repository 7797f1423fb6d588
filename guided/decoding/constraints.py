"""Per-row hard constraints: a grammar, a ban list and must-include phrases, intersected.

`Constraints` is compiled once per call and shared by every row; `RowConstraints` holds one
row's matchers and writes that row's allowed tokens into a packed bitmask, budget-aware:

- **budget-aware closing**: when ``remaining`` (tokens left, the current one included) is
  within ``budget_window`` the grammar's `budget_mask` replaces its mask, so only tokens that
  can still finish the document in time are allowed and ``max_new_tokens`` never cuts a
  document short (falls back to the plain mask only where no short completion is certain);
- **must-include**: EOS is blocked until every phrase has appeared; a token after which the
  grammar could only end (`is_finished`) is vetoed while a phrase is missing; when the budget
  gets short the must-include automaton's own budget mask steers towards the missing phrases;
- **ban lists** are one more mask in the intersection.

Only the `guided.Matcher` protocol is used on the grammar, so any engine plugs in.

>>> import guided, numpy as np
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"<eos>"], eos_token_ids=[2])
>>> cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex("a+b?"), vocab))
>>> row = cons.start()
>>> words = np.zeros(1, np.int32); row.fill(words, remaining=1); words.tolist()  # only 1 token left
[1]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from guided.engine.bitmask import pack, words_for
from guided.engine.matcher import CompiledGrammar, Matcher
from guided.errors import GuidedError
from guided.sampling.phrases import PhraseOptions, ban_grammar, must_include_grammar
from guided.vocab import Vocabulary

__all__ = ["Constraints", "NoAllowedToken", "RowConstraints", "DEFAULT_BUDGET_WINDOW"]

DEFAULT_BUDGET_WINDOW = 48
"""Tokens before the budget ends from which the grammar's budget mask is consulted."""


class NoAllowedToken(GuidedError):
    """No token satisfies every constraint at once (e.g. a ban list against a grammar that needs
    the banned word, or must-include phrases that do not fit in the budget)."""


@dataclass(eq=False)
class Constraints:
    """Everything a row must obey, compiled for one vocabulary; `start` gives a row's state."""

    vocab: Vocabulary
    grammar: CompiledGrammar | None = None
    ban: CompiledGrammar | None = None
    must: CompiledGrammar | None = None
    must_phrases: tuple[str, ...] = ()
    budget_window: int = DEFAULT_BUDGET_WINDOW
    base_words: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        allowed = np.array([bool(b) for b in self.vocab.token_bytes], dtype=bool)
        allowed[list(self.vocab.eos_token_ids)] = True
        self.base_words = pack(allowed)

    @classmethod
    def build(
        cls,
        vocab: Vocabulary,
        *,
        grammar: CompiledGrammar | None = None,
        ban: Sequence[str] = (),
        ban_options: PhraseOptions = PhraseOptions(),
        must_include: Sequence[str] = (),
        must_options: PhraseOptions = PhraseOptions(whole_word=False),
        budget_window: int = DEFAULT_BUDGET_WINDOW,
    ) -> "Constraints":
        return cls(
            vocab=vocab,
            grammar=grammar,
            ban=ban_grammar(list(ban), vocab, ban_options) if ban else None,
            must=must_include_grammar(list(must_include), vocab, must_options) if must_include else None,
            must_phrases=tuple(must_include),
            budget_window=budget_window,
        )

    @property
    def words(self) -> int:
        return words_for(self.vocab.size)

    @property
    def any(self) -> bool:
        """True when some row constraint exists (else every text token and EOS are allowed)."""
        return self.grammar is not None or self.ban is not None or self.must is not None

    def start(self) -> "RowConstraints":
        return RowConstraints(
            self,
            self.grammar.matcher() if self.grammar is not None else None,
            self.ban.matcher() if self.ban is not None else None,
            self.must.matcher() if self.must is not None else None,
        )


class RowConstraints:
    """One row's matchers (grammar, ban list, must-include); copy is O(1) for automata.

    ``closed_early`` becomes True once budget-aware closing refused the token the plain masks
    ranked first (`note_closing`): the document was then shortened to fit the budget.
    """

    __slots__ = ("cons", "grammar", "ban", "must", "narrowed", "closed_early")

    def __init__(self, cons: Constraints, grammar: Matcher | None, ban, must):
        self.cons = cons
        self.grammar = grammar
        self.ban = ban
        self.must = must
        self.narrowed: tuple[np.ndarray, np.ndarray] | None = None  # (plain, budget) words of the last fill
        self.closed_early = False

    def copy(self) -> "RowConstraints":
        out = RowConstraints(
            self.cons,
            self.grammar.copy() if self.grammar is not None else None,
            self.ban.copy() if self.ban is not None else None,
            self.must.copy() if self.must is not None else None,
        )
        out.closed_early = self.closed_early
        return out

    def note_closing(self, logits: Sequence[float] | np.ndarray) -> None:
        """After a fill, with the row's next-token ``logits``: mark `closed_early` when the budget
        mask refused the most likely token the plain masks allowed."""
        if self.narrowed is None:
            return
        plain, budget = self.narrowed
        size = self.cons.vocab.size
        allowed = np.unpackbits(plain.view(np.uint8), count=size, bitorder="little").astype(bool)
        scores = np.asarray(logits, dtype=np.float64)[:size]
        top = int(np.argmax(np.where(allowed, scores, -np.inf)))
        if not (int(budget.view(np.uint32)[top >> 5]) >> (top & 31)) & 1:
            self.closed_early = True

    def matchers(self) -> list[Matcher]:
        """The row's matchers (grammar, ban list, must-include: those it has)."""
        return [m for m in (self.grammar, self.ban, self.must) if m is not None]

    def advance(self, token: int) -> None:
        for m in self.matchers():
            m.advance(token)

    def rollback(self, n: int = 1) -> None:
        for m in self.matchers():
            m.rollback(n)

    def accepts_eos(self) -> bool:
        """The text so far may end here (complete document, no pending ban, phrases present)."""
        return all(m.accepts_eos() for m in self.matchers())

    def is_finished(self) -> bool:
        """The grammar has ended (EOS consumed, or EOS is all that may follow)."""
        return self.grammar is not None and self.grammar.is_finished()

    def missing_phrases(self) -> list[str]:
        """The must-include phrases not present yet (all of them until the text has them all)."""
        if self.must is None or self.must.accepts_eos() or self.must.is_finished():
            return []
        return list(self.cons.must_phrases)

    # -- masks ----------------------------------------------------------------------------

    def _fill_from(self, matcher: Matcher, out: np.ndarray) -> None:
        matcher.fill_bitmask(out[None], 0)  # a one-row view of ``out``

    def fill(self, out: np.ndarray, remaining: int | None = None) -> None:
        """Write the allowed tokens (packed int32, ``out`` has `Constraints.words` entries).

        ``remaining``: tokens left including this one (``None``: unbounded).  Raises
        `NoAllowedToken` when the constraints leave nothing.
        """
        cons = self.cons
        words = out
        self.narrowed = None
        if self.grammar is None:
            words[:] = cons.base_words
            plain = None
        else:
            self._fill_from(self.grammar, words)
            plain = words.copy()
            if remaining is not None and remaining <= cons.budget_window:
                budget = self.grammar.budget_mask(remaining)
                if bool(budget.any()):
                    words[:] = pack(budget)
                    if (plain & ~words).any():
                        self.narrowed = (plain, words)  # the same arrays: ban / must-include narrow both
        extra = np.empty_like(words)
        if self.ban is not None:
            if remaining is not None and remaining <= 1:
                # the text ends after this token: no match may be left pending on its end
                extra[:] = pack(self.ban.budget_mask(remaining))
            else:
                self._fill_from(self.ban, extra)
            words &= extra
            if plain is not None:
                plain &= extra
        if self.must is not None:
            self._fill_from(self.must, extra)
            words &= extra
            if plain is not None:
                plain &= extra
            if remaining is not None and not self.must.accepts_eos():
                self._steer_to_phrases(words, remaining)
        if not words.any() and plain is not None and plain.any():
            words[:] = plain  # no certain short completion: keep going on the plain mask
            self.narrowed = None
        if not words.any():
            missing = self.missing_phrases()
            if missing and remaining is not None and remaining <= 1:
                raise NoAllowedToken(
                    f"the must-include phrases {missing!r} could not all be written within the token budget "
                    "(raise max_new_tokens)"
                )
            raise NoAllowedToken(
                "no token satisfies every constraint here: the ban list or the must-include phrases "
                "conflict with the grammar" + (f" (missing phrases: {missing!r})" if missing else "")
            )

    def _steer_to_phrases(self, words: np.ndarray, remaining: int) -> None:
        must = self.must
        distance = must.closing_distance()
        if remaining > distance + 1 + self.cons.budget_window:
            return
        reserve = self._grammar_reserve(remaining) if self.grammar is not None else 0
        if remaining - reserve > distance + 1:
            return
        steer = pack(must.budget_mask(max(remaining - reserve, 1)))
        if (words & steer).any():
            words &= steer

    def _grammar_reserve(self, remaining: int) -> int:
        """Tokens the grammar needs to close from here (doubling probe of `budget_mask`)."""
        n = 1
        while n < remaining:
            if bool(self.grammar.budget_mask(n).any()):
                return n
            n *= 2
        return remaining

    def closing_budget(self, remaining: int) -> int:
        """Tokens enough to end the text from here by the shortest known way (0: it may end
        now); used when a timeout asks rows to finish early."""
        if self.accepts_eos() or self.is_finished():
            return 0
        need = self._grammar_reserve(remaining) if self.grammar is not None else 0
        if self.must is not None and not self.must.accepts_eos():
            need += self.must.closing_distance()
        if self.ban is not None:
            need += 1
        return max(1, min(need, remaining))

    def vetoes(self, token: int, remaining: int | None = None) -> bool:
        """True when ``token`` passes every mask but leads nowhere: the grammar would end while
        a must-include phrase is missing or a banned word is pending, or (one token of
        look-ahead) no token at all could follow.  Only grammar + ban / must-include can
        disagree this way; deeper dead ends (a grammar that forces a banned word over several
        tokens) surface as `NoAllowedToken`."""
        if self.grammar is None or (self.must is None and self.ban is None):
            return False
        if token in self.cons.vocab.eos_token_ids:
            return False
        after = self.copy()
        after.advance(token)
        if after.grammar.is_finished():
            return not all(m.accepts_eos() for m in (after.must, after.ban) if m is not None)
        if remaining is not None and remaining <= 1:
            return False
        words = np.zeros(self.cons.words, dtype=np.int32)
        try:
            after.fill(words, None)  # plain masks: cheap, and enough to see a dead end
        except NoAllowedToken:
            return True
        return False
