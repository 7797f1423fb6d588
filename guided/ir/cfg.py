"""`CfgIR`: a context-free constraint as terminals (byte DFAs) plus LALR(1) tables, and what it accepts.

Every grammar-shaped front-end (Lark, JSON Schema, Pydantic, XML, tool calls) produces a
`CfgIR`; the CFG engine (`guided.engine.cfg`) turns it into token masks.  Regex constraints
skip this layer: their intermediate form is a single `guided.ir.dfa.ByteDFA`.

Encoding
--------
Symbols are small integers.  Terminal ``i`` is ``terminals[i]``; ``END`` (-1) is the end of
input.  ``actions[q]`` maps a terminal (or ``END``) to an encoded action in parser state ``q``:
``a >= 0`` shifts to state ``a``; ``a < 0`` reduces by rule ``-a - 1``, whose ``rules`` entry is
``(lhs nonterminal, length of its right-hand side)``; after the pop, ``gotos[q'][lhs]`` is the
state pushed.  A terminal or state missing from a table is a syntax error.

Semantics: which byte strings a `CfgIR` accepts
-----------------------------------------------
Every engine must implement exactly this (the CFG engine does, byte by byte; the tests check it
against `guided.frontends.jsonschema._recognize`, which spells it out without masks).

1. **Contextual lexing.**  At a lexeme boundary the parser is in state ``q`` (the top of its
   stack).  The *candidates* are the terminals ``t != END`` with an entry in ``actions[q]``, plus
   the ``ignore`` terminals unless ``q`` is in ``no_ignore_states``.  When the lexeme just ended
   was an ignored one and ``ignore_repeats`` is False, the ignored terminals are not candidates
   (the JSON Schema front-end bounds each whitespace run this way).
2. **Greedy lexemes.**  A lexeme grows byte by byte while at least one candidate's DFA can still
   read the bytes so far plus the next byte (each terminal DFA is trimmed: a live state can
   still reach acceptance).  When the next byte extends no candidate, the lexeme ends there;
   there is no backtracking to a shorter lexeme.
3. **Tie-break.**  The ended lexeme is an instance of the candidate that accepts it with the
   highest ``priority``, then a string terminal (``is_string``) before a pattern, then the
   lowest ``order``.  If no candidate accepts it, the text is rejected.
4. **Parsing.**  An ignored terminal is dropped.  Any other is fed to the LALR(1) parser:
   reductions while ``actions`` says reduce, then one shift; no action is a syntax error.
5. **Nesting bound.**  When ``max_nesting > 0``, after each shift at most ``max_nesting``
   entries of the parser stack may be states of ``nesting_states`` (the states just after an
   opening bracket); more is a syntax error.  The tables alone cannot express this bound.
6. **End.**  The text is a complete document when its pending lexeme (if any) ends as in 3 and
   is fed as in 4, and the parser then reaches ``end_state`` by reducing on ``END``.  A decoder's
   end-of-sequence token is allowed exactly there.
7. **Prefixes.**  A text is a valid prefix when lexing and parsing it as above meets no error
   and its pending lexeme is still alive in a candidate that the parser accepts here (LALR(1)
   tables merge lookaheads, so a candidate of the lexer may be refused after reductions); an
   ignored candidate always counts.  Masks allow a token exactly when the text stays a valid
   prefix.
8. **Matched names** (`MatchedNames`, optional): context-sensitive checks that run beside the
   parser on the lexemes of named terminals (XML's close tags naming their open tag).

>>> from guided.ir.dfa import ByteDFA
>>> import numpy as np
>>> rows = np.zeros((3, 256), np.int32); rows[1, ord("a")] = 2
>>> a = Terminal("A", ByteDFA(rows, np.array([False, False, True]), 1))
>>> ir = CfgIR(terminals=(a,), ignore=frozenset(), actions=({0: 1}, {END: -1}, {}), gotos=({0: 2}, {}, {}),
...            rules=((0, 1),), nonterminals=("start",), start_state=0, end_state=2)
>>> ir.num_states
3
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


@dataclass(frozen=True)
class MatchedNames:
    """Element names that must match: what XML needs beyond a context-free grammar.

    That ``</b>`` must repeat the name of the innermost open element is not context-free when
    names are arbitrary.  This field says it beside the tables, in terms of terminals (indices
    into `CfgIR.terminals`); an engine keeps a stack of open names and, on each lexeme fed to the
    parser:

    - ``open_start`` (``<``): a start tag begins; its first ``name`` lexeme is the element's name,
      later ``name`` lexemes of the same tag are attribute names, pairwise distinct when
      ``unique_attributes``;
    - ``open_end`` (``>``) ends the start tag and pushes the element's name; ``empty_end``
      (``/>``) ends it without pushing (an empty element);
    - ``close_start`` (``</``): the next ``name`` lexeme must equal the innermost open name, and
      pops it;
    - the document may end only when no element is open.

    A byte that would make a close tag's name differ from the expected one is refused at that
    byte, so masks stay exact (the name so far must be a prefix of the expected one).
    ``name_bytes`` are the bytes a ``name`` lexeme is made of; an engine may rely on them (and on
    the spelling of the four tag terminals, which it checks) to find quickly which tokens can
    reach a name check.
    """

    name: int
    open_start: int
    open_end: int
    empty_end: int
    close_start: int
    name_bytes: frozenset[int]
    unique_attributes: bool = True


@dataclass(frozen=True, eq=False)
class CfgIR:
    """Terminals, ignored terminals and LALR(1) tables of a context-free constraint; see the module docstring."""

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
    matched_names: MatchedNames | None = None  # XML's close tags; see `MatchedNames`

    @property
    def num_states(self) -> int:
        return len(self.actions)

    def terminal_index(self, name: str) -> int:
        """The index of the terminal called ``name`` (`KeyError` if there is none)."""
        for i, t in enumerate(self.terminals):
            if t.name == name:
                return i
        raise KeyError(name)
