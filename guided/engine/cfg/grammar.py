"""`CfgGrammar`: a `guided.ir.CfgIR` compiled against a vocabulary, made of the package's parts.

A matcher's configuration is a pair (parser stack, lexer state).  The parts, one concept each:

- `guided.engine.cfg.lexer`: the lexer table (union DFAs of the contextual terminal sets, one
  lazily filled transition table);
- `guided.engine.cfg.stacks`: persistent, interned LR stacks and the parser's moves;
- `guided.engine.cfg.recognizer`: one byte at a time, the IR's semantics;
- `guided.engine.cfg.masks` and `guided.engine.cfg.sharing`: the whole vocabulary at once, with
  per-lexer-state data shared between grammars;
- `guided.engine.cfg.closing`: completions within a token budget, forced bytes;
- `guided.engine.cfg.matcher`: the `Matcher` over them.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"[", b"]", b"1", b",", b"1,", b"],", b"<eos>"], eos_token_ids=[6])
>>> g = guided.compile(guided.Grammar('start: "[" NUMBER ("," NUMBER)* "]"\\n%import common.NUMBER'), vocab)
>>> m = g.matcher(); m.advance(0); m.advance(2)
>>> m.mask().tolist()  # "1" may grow, "," and "1," continue, "]" closes; "]," cannot follow
[False, True, True, True, True, False, False]
"""

from __future__ import annotations

from typing import cast

import numpy as np

from guided.engine.automaton import MaskStats
from guided.engine.bitmask import pack
from guided.engine.cfg.closing import Closer, EarleyCloser
from guided.engine.cfg.counting import Counting
from guided.engine.cfg.earley import EarleyTable
from guided.engine.cfg.lexer import LexerTable
from guided.engine.cfg.masks import MaskAssembler
from guided.engine.cfg.matcher import CfgMatcher
from guided.engine.cfg.recognizer import Recognizer
from guided.engine.cfg.stacks import StackTable
from guided.engine.token_table import TokenTable
from guided.errors import SpecError
from guided.ir import DEAD, CfgIR
from guided.vocab import Vocabulary


class CfgGrammar:
    """A `CfgIR` compiled against a vocabulary: the `CompiledGrammar` of Lark grammars, JSON Schema, tools.

    Its operations are its parts' methods, bound once here (no indirection per call, no
    reference cycle through the grammar): configuration steps (`step`, `is_viable`,
    `accepts_end`, `lexeme_end`, `start`), the parser (`feed`, `can_end`), masks (`words`),
    closing (`completion`, `completion_tokens`, `mandatory`, `lower_bound`, `token_bounds`,
    `forced_bytes`).
    """

    engine = "python"

    def __init__(self, ir: CfgIR, vocab: Vocabulary, *, max_lexer_states: int = 200_000):
        for t in ir.terminals:
            # A lexeme must hold a byte: an empty one could end and start again forever.
            if t.dfa.initial != DEAD and t.dfa.accepting[t.dfa.initial]:
                raise SpecError(f"terminal {t.name} matches the empty string; every terminal must match at least "
                                f"one byte")
        self.ir = ir
        self.vocab = vocab
        # Counted terminals (rule 11) compile as their capped expansions; the exact counts ride
        # with the configurations (`guided.engine.cfg.counting`).
        self.counting = Counting(ir, vocab) if any(t.count is not None for t in ir.terminals) else None
        if self.counting is not None:
            ir = self.counting.ir
        self.table = TokenTable.of(vocab)
        self.stats = MaskStats()
        eos = np.zeros(vocab.size, dtype=bool)
        eos[self.table.eos_ids] = True
        self.eos_words = pack(eos)
        self.lexers = LexerTable(ir, max_lexer_states)
        # Grammars whose tables have conflicts parse by Earley (`guided.ir.cfg`, rule 10): its
        # columns stand where LR stacks stand, with lexer contexts of their own.
        # (Duck-typed: `EarleyTable` has `StackTable`'s moves, a `Column` `Stack`'s fields.)
        self.stacks = cast(StackTable, EarleyTable(ir, self.lexers)) if ir.earley else StackTable(ir)
        self.root = self.stacks.root
        if self.counting is not None:
            self.counting.lexers = self.lexers
        recognizer = self.recognizer = Recognizer(ir, self.lexers, self.stacks, self.counting)
        masks = self.masks = MaskAssembler(recognizer, vocab, self.table, self.eos_words, self.stats)
        closing = self.closing = (EarleyCloser if ir.earley else Closer)(recognizer, masks, vocab, self.table)
        self.feed, self.can_end = self.stacks.feed, self.stacks.can_end
        self.start, self.step, self.lexeme_end = recognizer.start, recognizer.step, recognizer.lexeme_end
        self.is_viable, self.accepts_end = recognizer.is_viable, recognizer.accepts_end
        self.viable_terminals = recognizer.viable_terminals
        self.words = masks.words
        self.completion, self.completion_tokens = closing.completion, closing.completion_tokens
        self.mandatory, self.lower_bound, self.token_bounds = closing.mandatory, closing.lower_bound, closing.token_bounds
        self.forced_bytes = closing.forced_bytes

    def __repr__(self) -> str:
        parser = "earley" if self.ir.earley else f"lr_states={self.ir.num_states}"
        return (f"CfgGrammar({self.ir.source!r}, {parser}, "
                f"lexer_states={self.lexers.size} built, vocab={self.vocab.size})")

    def matcher(self) -> CfgMatcher:
        return CfgMatcher(self)
