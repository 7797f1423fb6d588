"""The CFG engine: token masks for a `guided.ir.CfgIR` (greedy contextual lexer over LALR(1) tables)."""

from guided.engine.cfg.grammar import CfgGrammar, CfgMatcher

__all__ = ["CfgGrammar", "CfgMatcher"]
