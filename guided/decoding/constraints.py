"""Per-row hard constraints: a grammar, a ban list and must-include phrases, intersected.

`Constraints` is compiled once per call and shared by every row; `RowConstraints` holds one
row's matchers and writes that row's allowed tokens into a packed bitmask, budget-aware:

- **budget-aware closing** (`guided.engine.closing`): with ``remaining`` tokens left (the current
  one included), a token is allowed iff a true lower bound on the tokens the document needs
  after it is at most ``remaining - 1`` (`Matcher.budget_mask`); so a token after which the
  document can be finished in time is never refused by the mask.  The token a decoder picks is
  then checked against a known completion (`RowConstraints.overruns_budget`: an upper bound
  must fit too, so the document is always finished in time); when no token is left either way,
  the tokens that start the shortest known completion (`Matcher.closing_tokens`).  The masks are only consulted once
  ``remaining - 1`` is within ``budget_window`` tokens of the current lower bound; a step where
  they removed a token is recorded (`RowConstraints.restricted`) so decoders can report
  ``finish_reason="closed_early"`` when that changed the output;
- **must-include**: EOS is blocked until every phrase has appeared; a token after which the
  grammar could only end (`is_finished`) is vetoed while a phrase is missing; when the budget
  gets short the must-include automaton's own budget mask steers towards the missing phrases;
- **ban lists** are one more mask in the intersection.
- **planning**: where the grammar is an automaton (a regex) or absent, the ban list and the
  must-include phrases are multiplied into one automaton with it (`guided.sampling.phrases.plan_dfa`):
  its masks are exact (no dead end, no veto, no backtracking) and its budget mask places the
  phrases where they still fit; when no text can hold them, `build` raises `NoAllowedToken` at
  once.  The must-include matcher then only reports which phrases are missing.

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

from guided.engine.automaton import AutomatonGrammar
from guided.engine.native import NativeRegexGrammar
from guided.engine.bitmask import pack, set_bits, words_for
from guided.engine.matcher import CompiledGrammar, Matcher
from guided.errors import GuidedError, LimitExceeded
from guided.sampling.phrases import (
    PhraseOptions,
    PhrasesCannotFit,
    ban_grammar,
    must_include_grammar,
    plan_grammar,
)
from guided.vocab import Vocabulary

__all__ = ["Constraints", "NoAllowedToken", "RowConstraints", "DEFAULT_BUDGET_WINDOW"]

CLOSING_CHECK_TOKENS = 16
"""In the last tokens of a budget, at most this many allowed tokens are stepped to check that the
known completion still fits after them (`RowConstraints._drop_unsafe`).  A guess."""

DEFAULT_BUDGET_WINDOW = 48
"""How close (in tokens) ``remaining - 1`` must come to the grammar's lower bound for its budget
mask to be consulted: a margin for the tokens one token can add to what the document needs."""


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
    planned: bool = False  # ban / must-include are multiplied into the grammar (or into ``must``)
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
        ban, must_include = list(ban), list(must_include)
        ban_g = ban_grammar(ban, vocab, ban_options) if ban else None
        must_g = must_include_grammar(must_include, vocab, must_options) if must_include else None
        planned = False
        if isinstance(grammar, NativeRegexGrammar) and (must_include or ban):
            grammar = grammar.reference()  # the product is planned on the Python automaton of the same DFA
        automaton = grammar is None or isinstance(grammar, AutomatonGrammar)
        if automaton and (must_include or (ban and grammar is not None)):
            try:
                plan = plan_grammar(grammar, vocab, ban, must_include, ban_options, must_options)
            except PhrasesCannotFit as exc:
                raise NoAllowedToken(f"{exc}: nothing to generate") from None
            except LimitExceeded:
                plan = None  # too large a product: the phrases run beside the grammar instead
            if plan is not None:
                planned, ban_g = True, None
                if grammar is not None:
                    grammar = plan  # the must-include matcher stays, to report missing phrases
                else:
                    must_g = plan  # free text stays free (it may be cut); the plan is its phrase automaton
        return cls(
            vocab=vocab,
            grammar=grammar,
            ban=ban_g,
            must=must_g,
            must_phrases=tuple(must_include),
            budget_window=budget_window,
            planned=planned,
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

    ``restricted`` holds the mask the last `fill` had before budget-aware closing removed
    tokens from it (None: it removed none); decoders compare it with the model's choice to report
    ``finish_reason="closed_early"``.
    """

    __slots__ = ("cons", "grammar", "ban", "must", "restricted")

    def __init__(self, cons: Constraints, grammar: Matcher | None, ban, must):
        self.cons = cons
        self.grammar = grammar
        self.ban = ban
        self.must = must
        # The mask the last `fill` had before the budget removed tokens from it (None: it did not).
        self.restricted: np.ndarray | None = None

    def copy(self) -> "RowConstraints":
        return RowConstraints(
            self.cons,
            self.grammar.copy() if self.grammar is not None else None,
            self.ban.copy() if self.ban is not None else None,
            self.must.copy() if self.must is not None else None,
        )

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
        self.restricted = None
        if self.grammar is None:
            words[:] = cons.base_words
        else:
            self._fill_from(self.grammar, words)
        extra = np.empty_like(words)
        if self.ban is not None:
            if remaining is not None and remaining <= 1:
                # the text ends after this token: no match may be left pending on its end
                extra[:] = pack(self.ban.budget_mask(remaining))
            else:
                self._fill_from(self.ban, extra)
            words &= extra
        if self.must is not None:
            self._fill_from(self.must, extra)
            words &= extra
            if remaining is not None and not self.must.accepts_eos() and not (cons.planned and self.grammar):
                self._steer_to_phrases(words, remaining)  # (a planned grammar's own budget mask steers)
        if self.grammar is not None and remaining is not None:
            self._close_in_time(words, remaining)
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

    def _close_in_time(self, words: np.ndarray, remaining: int) -> None:
        """Keep the tokens after which the document can still be completed in ``remaining - 1``
        tokens (see the module docstring); when none, those that start the shortest completion."""
        grammar = self.grammar
        lower = grammar.closing_lower_bound()
        if remaining - 1 >= lower + self.cons.budget_window:
            return
        fits = words & pack(grammar.budget_mask(remaining))
        if lower > 0 and grammar.closing_distance() >= remaining - 1:
            self._drop_unsafe(fits, remaining)
        if not fits.any():
            fits = np.zeros_like(words)
            set_bits(fits, grammar.closing_tokens())
            fits &= words
            if not fits.any():
                return  # no known completion at all: the plain mask, and the budget decides
        if (fits != words).any():
            self.restricted = words.copy()
            words[:] = fits

    def _drop_unsafe(self, fits: np.ndarray, remaining: int) -> None:
        """In the last tokens (the known completion barely fits), drop a token after which the
        lower bound fits but the known completion does not and the two differ: the bound may be
        loose there, and a model that keeps to it would run out.  Only for a few tokens (each is
        stepped); a token after which the bound is exact is kept, so output that fits stays."""
        ids = [t for t in np.flatnonzero(_unpacked(fits, self.cons.vocab.size)).tolist()
               if t not in self.cons.vocab.eos_token_ids]
        if not 0 < len(ids) <= CLOSING_CHECK_TOKENS:
            return
        for t in ids:
            after = self.grammar.copy()
            after.advance(t)
            upper = after.closing_distance()
            if upper > remaining - 1 and after.closing_lower_bound() < upper:
                fits.view(np.uint32)[t >> 5] &= np.uint32(~(1 << (t & 31)) & 0xFFFFFFFF)

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
        """Tokens enough for the grammar to close from here (at most ``remaining``)."""
        return min(remaining, self.grammar.closing_distance())

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

    def overruns_budget(self, token: int, remaining: int | None) -> bool:
        """True when the document might not be finished in time after ``token``; the decoder
        then picks again (one step, for the picked token only).

        Two checks, on the configuration after ``token``.  The grammar's lower bound there must
        fit in the ``remaining - 1`` tokens left: the budget mask bounds its candidates before
        they are stepped (`Matcher.budget_mask`; stepping them all costs too much), and only in
        the last tokens, so a token that opens something long (a second tool call, an array item
        with required keys) can get past it.  And while a known completion fits now
        (`Matcher.closing_distance`, a number of tokens known to be enough), one must still fit
        after ``token`` wherever the bound after it is near the budget or rose: a lower bound
        that fits does not prove the document can be finished (it may be loose), and a decoder
        that kept only to it could run out of tokens.  So the output ends complete whenever a
        known completion fitted when the budget started to matter; where the two bounds differ
        this may refuse a token after which the document would just have fitted (reported as
        ``closed_early``)."""
        g = self.grammar
        if g is None or remaining is None or token in self.cons.vocab.eos_token_ids:
            return False
        after = g.copy()
        after.advance(token)
        lower = after.closing_lower_bound()
        if lower > remaining - 1:
            return True
        if remaining - 1 >= lower + self.cons.budget_window and lower <= g.closing_lower_bound():
            return False  # far from the end and nothing new opened: the bounds change little
        if g.closing_distance() > remaining:
            return False  # no known completion fits any more: the lower bounds alone decide
        return after.closing_distance() > remaining - 1

    def vetoes(self, token: int, remaining: int | None = None) -> bool:
        """True when ``token`` passes every mask but leads nowhere: the grammar would end while
        a must-include phrase is missing or a banned word is pending, or (one token of
        look-ahead) no token at all could follow.  Only grammar + ban / must-include can
        disagree this way; deeper dead ends (a grammar that forces a banned word over several
        tokens) surface as `NoAllowedToken`."""
        if self.grammar is None or (self.must is None and self.ban is None) or self.cons.planned:
            return False  # (a planned grammar has exact masks: no dead end to look for)
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


def _unpacked(words: np.ndarray, size: int) -> np.ndarray:
    return np.unpackbits(words.view(np.uint8), count=size, bitorder="little").astype(bool)
