"""`CfgMatcher`: one sequence's place in a `CfgGrammar`, as a persistent history of configurations
(and `CheckedStackMatcher`, the closing answers of grammars that check beside such a CFG)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from guided.engine.bitmask import unpack, write_row
from guided.engine.matcher import UNREACHABLE, CheckedCfgMatcher, HistoryMatcher, text_bytes, token_index
from guided.engine.tuning import CLOSING_REFINE_ADVANCING, CLOSING_REFINE_TOKENS, CLOSING_SEARCH_TOKENS
from guided.errors import ConstraintViolation

if TYPE_CHECKING:
    from guided.engine.cfg.grammar import CfgGrammar


class CfgMatcher(HistoryMatcher):
    """Matcher over a `CfgGrammar`: its history holds (parser stack, lexer state) pairs."""

    __slots__ = ()

    def __init__(self, grammar: CfgGrammar):
        super().__init__(grammar, (grammar.start(), None))

    def __repr__(self) -> str:
        config = self._history[0]
        state = "finished" if config is None else f"lr={config[0].state}, lex={config[1]}"
        return f"CfgMatcher({state}, tokens={self._n})"

    def _words(self) -> np.ndarray:
        config = self._history[0]
        if config is None:
            return self.grammar.eos_words
        return self.grammar.words(*config)

    def mask(self) -> np.ndarray:
        return unpack(self._words(), self.grammar.vocab.size)

    def fill_bitmask(self, bitmask, row: int = 0) -> None:
        words = self._words()
        write_row(bitmask, row, words)

    def advance(self, token_id: int) -> None:
        token_id = token_index(token_id)
        g = self.grammar
        config = self._history[0]
        if token_id in g.vocab.eos_token_ids:
            if config is not None and not g.accepts_end(*config):
                raise ConstraintViolation(f"end of sequence is not allowed here: the text is incomplete "
                                          f"(after {self._n} tokens)")
            self._push(None)
            return
        if config is None:
            raise ConstraintViolation(f"token {token_id} after end of sequence")
        stack, lex = config
        for b in text_bytes(g.vocab, token_id, self._n):
            nxt = g.step(stack, lex, b)
            if nxt is None:
                break
            stack, lex = nxt
        else:
            if g.is_viable(stack, lex):
                self._push((stack, lex))
                return
        raise ConstraintViolation(f"token {token_id} ({g.vocab.token_text(token_id)!r}) leaves the grammar "
                                  f"after {self._n} tokens")

    def accepts_eos(self) -> bool:
        config = self._history[0]
        return config is not None and self.grammar.accepts_end(*config)

    def is_finished(self) -> bool:
        config = self._history[0]
        if config is None:
            return True
        words = self._words()
        return self.accepts_eos() and not np.any(words & ~self.grammar.eos_words)

    def forced_bytes(self) -> bytes:
        config = self._history[0]
        return b"" if config is None else self.grammar.forced_bytes(*config)

    def budget_mask(self, remaining: int) -> np.ndarray:
        config = self._history[0]
        plain = self.mask() if config is not None and remaining >= 1 else None
        return budget_allowed(self.grammar, config, plain, remaining)

    def closing_lower_bound(self) -> int:
        config = self._history[0]
        return 0 if config is None else _lower_bound(self.grammar, config)

    def closing_distance(self) -> int:
        config = self._history[0]
        if config is None or self.grammar.accepts_end(*config):
            return 0
        return self.grammar.completion_tokens(*config)[0]

    def closing_tokens(self) -> np.ndarray:
        config = self._history[0]
        if config is None:
            return np.zeros(0, np.int64)
        return np.array(self.grammar.completion_tokens(*config)[1], dtype=np.int64)


class CheckedStackMatcher(CheckedCfgMatcher):
    """What the matchers of checks beside a CFG parser share where each configuration holds the
    CFG's own (``stack``, ``lex``) (unique items, item counts): forced bytes, budget masks and
    closing answered by the CFG, the checks' verdict on the end (``accepts_end``) and on the
    CFG's completion (`_completion_kept`) added."""

    __slots__ = ()

    def _completion_kept(self, config) -> bool:
        """Does the CFG's shortest completion pass the checks too?  (Yes unless a subclass says.)"""
        return True

    def forced_bytes(self) -> bytes:
        config = self._history[0]
        return b"" if config is None else self.grammar.cfg.forced_bytes(config.stack, config.lex)

    def budget_mask(self, remaining: int) -> np.ndarray:
        config = self._history[0]
        g = self.grammar
        plain = self.mask() if config is not None and remaining >= 1 else None
        allowed = budget_allowed(g.cfg, None if config is None else (config.stack, config.lex), plain, remaining)
        if config is not None:
            allowed[g.cfg.table.eos_ids] = g.accepts_end(config)
        return allowed

    def closing_lower_bound(self) -> int:
        config = self._history[0]
        return 0 if config is None else self.grammar.cfg.lower_bound(config.stack, config.lex, True)

    def closing_distance(self) -> int:
        config = self._history[0]
        if config is None or self.grammar.accepts_end(config):
            return 0
        if not self._completion_kept(config):
            return UNREACHABLE
        return self.grammar.cfg.completion_tokens(config.stack, config.lex)[0]

    def closing_tokens(self) -> np.ndarray:
        config = self._history[0]
        if config is None or not self._completion_kept(config):
            return np.zeros(0, np.int64)
        return np.array(self.grammar.cfg.completion_tokens(config.stack, config.lex)[1], dtype=np.int64)


def budget_allowed(g: CfgGrammar, config, plain: np.ndarray | None, remaining: int) -> np.ndarray:
    """The tokens of ``plain`` (the configuration's mask; None where nothing but EOS matters)
    after which no lower bound rules out completing ``config`` within ``remaining - 1`` tokens
    (`guided.engine.matcher.Matcher.budget_mask`; the native core's CFG matchers call it too)."""
    complete = config is None or g.accepts_end(*config)
    if config is None or remaining < 1 or plain is None:
        allowed = np.zeros(g.vocab.size, dtype=bool)
    else:
        # Every token at once: what is left of this configuration's mandatory subsequence after
        # the token's bytes.  Where few tokens remain, each is stepped and bounded by its own
        # configuration's subsequence, which also counts what the token opened.
        bounds, advances = g.token_bounds(*config)
        allowed = plain & (bounds <= remaining - 1)
        allowed[g.table.eos_ids] = False
        ids = np.flatnonzero(allowed)
        if ids.size > CLOSING_REFINE_TOKENS:
            # Too many to step them all: those that reach into the mandatory part (a closing
            # quote, a bracket: where a token may open something new) are stepped; the rest, more
            # of the same lexeme, keep the bound above.
            ids = ids[advances[ids] > 0][:CLOSING_REFINE_ADVANCING]
        search = ids.size <= CLOSING_SEARCH_TOKENS  # the costlier bound only for a few
        for t in ids.tolist():
            after = _step(g, config, t)
            if after is None or _lower_bound(g, after, search) > remaining - 1:
                allowed[t] = False
    allowed[g.table.eos_ids] = complete
    return allowed


def _step(g: CfgGrammar, config, token_id: int):
    stack, lex = config
    for b in g.vocab.token_bytes[token_id]:
        nxt = g.step(stack, lex, b)
        if nxt is None:
            return None
        stack, lex = nxt
    return (stack, lex) if g.is_viable(stack, lex) else None


def _lower_bound(g: CfgGrammar, config, search: bool = True) -> int:
    """A true lower bound on the tokens that complete ``config`` (0 when it may end now)."""
    stack, lex = config
    return g.lower_bound(stack, lex, search)
