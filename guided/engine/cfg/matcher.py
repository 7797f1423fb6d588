"""`CfgMatcher`: one sequence's place in a `CfgGrammar`, as a persistent history of configurations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from guided.engine.bitmask import unpack, write_row
from guided.engine.matcher import UNREACHABLE, HistoryMatcher, text_bytes
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
        allowed = np.zeros(self.grammar.vocab.size, dtype=bool)
        config = self._history[0]
        if config is None or self.grammar.accepts_end(*config):
            allowed[self.grammar.table.eos_ids] = True
        if config is not None and remaining >= 1:
            ids = self.grammar.closing_tokens(*config, remaining - 1)
            allowed[ids] = True
        return allowed

    def closing_distance(self) -> int:
        config = self._history[0]
        if config is None or self.grammar.accepts_end(*config):
            return 0
        completion = self.grammar.completion(*config)
        return UNREACHABLE if completion is None else len(completion)
