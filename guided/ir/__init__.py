"""The intermediate form: what every front-end produces and every engine consumes.

- `guided.ir.dfa`: `ByteDFA` (a trimmed, UTF-8 exact byte automaton: the intermediate form of a
  regex, and of each terminal of a grammar) and its construction (`ByteNFA`, `determinize`);
- `guided.ir.dfa_ops`: products, unions and concatenations of byte DFAs;
- `guided.ir.cfg`: `CfgIR`, a context-free constraint as terminals (byte DFAs) plus LALR(1)
  tables, with its lexing and parsing semantics written down;
- `guided.ir.lalr`: LALR(1) tables for generated grammars (JSON Schema).

This package imports nothing of guided but `guided.errors`.
"""

from guided.ir.cfg import END, CfgIR, Count, ItemCounts, MatchedNames, Terminal, UniqueItems, canonical_json
from guided.ir.dfa import DEAD, ByteDFA, ByteNFA

__all__ = ["DEAD", "END", "ByteDFA", "ByteNFA", "CfgIR", "Count", "ItemCounts", "MatchedNames", "Terminal",
           "UniqueItems", "canonical_json"]
