"""The intermediate form of context-free constraints: terminals as byte DFAs plus LALR(1) tables.

Every grammar-shaped front-end (Lark today; JSON Schema and XML build on it) produces a
`CfgIR`; the CFG engine (`guided.engine.cfg`) turns it into token masks.  Regex constraints
skip this layer: their intermediate form is a single `guided.ir.dfa.ByteDFA`.

Symbols are small integers.  Terminal ``i`` is ``terminals[i]``; ``END`` is the end of input.
Actions are encoded as ints: ``a >= 0`` shifts to state ``a``; ``a < 0`` reduces by rule
``-a - 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from guided.ir.dfa import ByteDFA

END = -1  # the end-of-input pseudo-terminal


@dataclass(frozen=True, eq=False)
class Terminal:
    """A lexeme type: its name, its language as a byte DFA, and how collisions are resolved."""

    name: str
    dfa: ByteDFA
    priority: int = 0
    is_string: bool = False  # string terminals win over regexes matching the same text, as in Lark
    order: int = 0  # Lark's tie-break order among terminals accepting the same text


@dataclass(frozen=True, eq=False)
class CfgIR:
    """Terminals, ignored terminals and LALR(1) tables of a context-free constraint."""

    terminals: tuple[Terminal, ...]
    ignore: frozenset[int]
    actions: tuple[dict[int, int], ...]  # state -> terminal (or END) -> encoded action
    gotos: tuple[dict[int, int], ...]  # state -> nonterminal -> state
    rules: tuple[tuple[int, int], ...]  # rule -> (lhs nonterminal, length of its expansion)
    nonterminals: tuple[str, ...]
    start_state: int
    end_state: int
    source: str = ""
    rule_names: tuple[str, ...] = field(default=())
    # May an ignored lexeme directly follow another of the same terminal?  Lark's lexer allows
    # it; the JSON Schema front-end does not, so that each whitespace run is one bounded lexeme.
    ignore_repeats: bool = True
    no_ignore_states: frozenset[int] = frozenset()  # parser states where nothing is ignored
    # A nesting bound the tables cannot express: at most ``max_nesting`` of the parser states in
    # ``nesting_states`` (those just after an opening bracket) on the stack at once; 0: none.
    nesting_states: frozenset[int] = frozenset()
    max_nesting: int = 0

    @property
    def num_states(self) -> int:
        return len(self.actions)
