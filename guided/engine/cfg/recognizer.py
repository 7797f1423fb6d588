"""Configurations and their steps: a `guided.ir.CfgIR`'s semantics run byte by byte.

A *configuration* is a pair (parser stack, lexer state): where a text has got to.  `Recognizer`
steps one byte at a time through the lexer table (`guided.engine.cfg.lexer`) and the parser
stacks (`guided.engine.cfg.stacks`) exactly as the rules of `guided.ir.cfg` say: greedy
contextual lexemes, the tie-break, ignored terminals, LALR(1) moves with the nesting bound, the
end of input, and the viability of a pending lexeme.  Masks (`guided.engine.cfg.masks`) compute
the same thing for the whole vocabulary at once.

>>> import guided
>>> ir = guided.Grammar('start: "[" NUMBER "]"\\n%import common.NUMBER').to_ir()
>>> from guided.engine.cfg.lexer import LexerTable
>>> from guided.engine.cfg.stacks import StackTable
>>> rec = Recognizer(ir, LexerTable(ir, 10_000), StackTable(ir))
>>> config = rec.start()
>>> for b in b"[12]":
...     config = rec.step(*config, b)
>>> rec.accepts_end(*config), rec.step(*config, ord("x"))
(True, None)
"""

from __future__ import annotations

import numpy as np

from guided.engine.cfg.counting import Counting
from guided.engine.cfg.lexer import LexerTable
from guided.engine.cfg.stacks import Stack, StackTable
from guided.ir import DEAD, CfgIR

Config = tuple[Stack, int]
"""A configuration: (parser stack, lexer state).  A plain tuple: one is made per byte."""


class Recognizer:
    """The byte-level semantics of one grammar's configurations."""

    def __init__(self, ir: CfgIR, lexers: LexerTable, stacks: StackTable, counting: Counting | None = None):
        self.ir = ir
        self.lexers = lexers
        self.counting = counting  # counted terminals: the exact count rides with the lexer state
        self.stacks = stacks
        self.feed = stacks.feed
        self.can_end = stacks.can_end

    def start(self) -> Config:
        """The configuration before any input."""
        root = self.stacks.root
        return root, self.lexers.start(root.state)

    def viable_terminals(self, stack: Stack) -> np.ndarray | None:
        """The terminals of the stack's lexer that the parser really accepts here.

        None when that is all of them (the usual case); LALR(1) lookaheads merged from other
        contexts make the exceptions.  A lexer state is viable while one of them is alive in it.
        """
        if stack.viable is not False:
            return stack.viable
        # Both of the stack's terminal sets must exist before their viability is read.
        self.lexers.start(stack.state)
        self.lexers.start(stack.state, after_ignore=True)
        members = self.lexers.sets[self.lexers.set_of_state[stack.state]]
        accepted = [t for t in members if t in self.ir.ignore or self.feed(stack, t) is not None]
        viable = None if len(accepted) == len(members) else np.array(accepted, np.int64)
        stack.viable = viable
        return viable

    def viable(self, stack: Stack, lexes: np.ndarray) -> np.ndarray:
        """Which of the lexer states ``lexes`` can still complete a lexeme ``stack`` accepts."""
        accepted = self.viable_terminals(stack)
        if accepted is None:
            return lexes != DEAD
        return self.lexers.alive[lexes][:, accepted].any(axis=1) & (lexes != DEAD)

    def step(self, stack: Stack, lex: int, byte: int) -> Config | None:
        """One byte of input: extend the lexeme, or end it and start the next one."""
        lexers = self.lexers
        nxt = int((lexers.table if lexers.filled[lex] else lexers.ready(lex))[lex, byte])
        if nxt:
            counting = self.counting
            return stack, (nxt if counting is None else counting.after(lex, nxt, byte, False))
        terminal = int(self.lexers.chosen[lex])
        if terminal < 0:
            return None
        ignored = terminal in self.ir.ignore
        if not ignored:
            fed = self.feed(stack, terminal)
            if fed is None:
                return None
            stack = fed
        start = self.lexers.start(stack.state, ignored)
        nxt = int(self.lexers.table[start, byte])  # re-read: `start` may have grown the table
        if nxt and self.counting is not None:
            nxt = self.counting.after(start, nxt, byte, True)
        return (stack, nxt) if nxt else None

    def lexeme_end(self, lex: int, byte: int) -> int | None:
        """None when ``byte`` extends the pending lexeme; else the terminal the lexeme ends as
        (-1: none accepts it, and `step` refuses the byte)."""
        lexers = self.lexers
        if (lexers.table if lexers.filled[lex] else lexers.ready(lex))[lex, byte]:
            return None
        return int(lexers.chosen[lex])

    def is_viable(self, stack: Stack, lex: int) -> bool:
        """Can the pending lexeme still end as a terminal the parser accepts here?"""
        accepted = self.viable_terminals(stack)
        return lex != DEAD and (accepted is None or bool(self.lexers.alive[lex, accepted].any()))

    def accepts_end(self, stack: Stack, lex: int) -> bool:
        """Is the text that led here a complete document?"""
        if lex in self.lexers.start_states:
            return self.can_end(stack)
        terminal = int(self.lexers.chosen[lex])
        if terminal < 0:
            return False
        if terminal not in self.ir.ignore:
            fed = self.feed(stack, terminal)
            if fed is None:
                return False
            stack = fed
        return self.can_end(stack)
