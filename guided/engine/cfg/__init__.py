"""The CFG engine: token masks for a `guided.ir.CfgIR` (greedy contextual lexer over LALR(1) tables).

One module per concept (`grammar` lists them); `CfgGrammar` is the compiled grammar.
"""

from guided.engine.cfg.grammar import CfgGrammar
from guided.engine.cfg.matcher import CfgMatcher
from guided.engine.cfg.stacks import Stack

__all__ = ["CfgGrammar", "CfgMatcher", "Stack"]
