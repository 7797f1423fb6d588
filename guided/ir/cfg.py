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

The same tables also come flat (`CfgIR.flat`, a `FlatTables`), for engines that index arrays
rather than dicts (the native core takes them as they are); the Python engine reads the dicts,
the fastest lookup in Python.  Layout (CSR, one row per parser state, entries sorted by symbol):
the actions of state ``q`` are ``action_symbols[action_offsets[q]:action_offsets[q + 1]]`` with
``action_values`` at the same positions, END spelt ``len(terminals)`` (a symbol of its own after
the terminals) and values encoded as in the dicts; gotos likewise (``goto_*``, nonterminal ->
state); rule ``r`` is ``(rule_lhs[r], rule_len[r])``.  Offsets are int64, everything else int32.

Semantics: which byte strings a `CfgIR` accepts
-----------------------------------------------
Every engine must implement exactly this.  `guided.ir.reference` is its executable definition
(byte by byte, no masks, no caches); every engine is tested against it.

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
9. **Unique items** (`UniqueItems`, optional): context-sensitive checks that run beside the
   parser on its reductions (JSON Schema's ``uniqueItems``: no two items of an array equal as
   JSON values); see `UniqueItems` for the exact rule, which also refines rule 7.
10. **General grammars** (``earley``): when ``earley`` is True the tables are not used for
    parsing (they stay, valid, with their conflicts resolved as Lark's LALR resolves them; an
    engine that cannot parse this way must refuse the IR).  The parser state is instead the set
    of Earley items of the terminals fed so far, over the rules ``rule_rhs`` (rule ``r`` is
    ``rules[r][0] -> rule_rhs[r]``; a symbol ``s >= 0`` is terminal ``s``, ``s < 0`` is
    nonterminal ``~s``; nonterminal 0 is the start symbol).  Rule 1's candidates are the
    terminals that some item expects next (every terminal some parse can shift: exactly the
    viable ones, so rule 7 needs no further check), plus the ignored terminals as above
    (``no_ignore_states`` does not apply); rule 4 feeds a terminal by Earley's scan, then
    prediction and completion, an empty item set being a syntax error; rule 6 accepts when an
    item of the start symbol spans the whole input.  ``nesting_states``/``max_nesting``,
    ``matched_names`` and ``unique_items`` must be empty.  Every rule must be able to finish
    (each nonterminal of its right-hand side derives some text; the front-end drops rules that
    cannot, `validate` checks it), so an item set that is not empty can always be completed:
    masks stay exact.
11. **Counted terminals** (`Count`, optional per terminal): the terminal's lexemes are those its
    DFA accepts that also take between ``count.min`` and ``count.max`` *counted* transitions
    (``count.counted[state, byte]``: a JSON string's characters, however spelt).  In rules 2, 3
    and 7 such a terminal can read a byte only while some completion still meets the bounds, and
    accepts a lexeme only when its count is within them.  Engines keep the exact count beside
    the lexer state, so a bound of 100,000 costs no automaton state per position.  Earley
    grammars (rule 10) have none.
12. **Item counts** (`ItemCounts`, optional): a number of items per open array, checked beside
    the parser (JSON Schema's ``minItems``/``maxItems`` past what the front-end unrolls): a shift
    into an open state opens a *frame* counting from 0, each reduction by an item rule adds one
    to the innermost frame, and a shift into a separator state when that count is already the
    frame's maximum, or into a close state while it is below its minimum, is a syntax error
    (rules 4 and 7 included); see `ItemCounts`.  Engines keep the counts beside the stack, so a
    bound of 100,000 costs no parser state per item.

>>> from guided.ir.dfa import ByteDFA
>>> import numpy as np
>>> rows = np.zeros((3, 256), np.int32); rows[1, ord("a")] = 2
>>> a = Terminal("A", ByteDFA(rows, np.array([False, False, True]), 1))
>>> ir = CfgIR(terminals=(a,), ignore=frozenset(), actions=({0: 1}, {END: -1}, {}), gotos=({0: 2}, {}, {}),
...            rules=((0, 1),), nonterminals=("start",), start_state=0, end_state=2)
>>> ir.validate().num_states
3
>>> ir.flat.action_symbols.tolist(), ir.flat.action_values.tolist()  # END is terminal 1 here
([0, 1], [1, -1])
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import ClassVar, Sequence

import numpy as np

from guided.ir.dfa import ByteDFA

END = -1  # the end-of-input pseudo-terminal


@dataclass(frozen=True, eq=False)
class Count:
    """A counting constraint on a terminal's lexemes (rule 11): the transitions ``counted[s, b]``
    taken while reading a lexeme number between ``min`` and ``max`` (None: no upper bound).

    Invariants (checked by `guided.ir.validate`): the counted terminals of a grammar count alike
    (on a text two of them can read, the same bytes count), and from every live DFA state the numbers of counted
    transitions on paths to acceptance are exactly the integers from the fewest to the most
    (`Terminal.count_range`; the most may be unbounded): an interval, so whether a count can
    still end within the bounds is two comparisons.
    """

    counted: np.ndarray  # bool [dfa states, 256]; True only on live (non-dead) transitions
    min: int = 0
    max: int | None = None

    def accepts(self, n: int) -> bool:
        """Is a count of ``n`` within the bounds?"""
        return n >= self.min and (self.max is None or n <= self.max)


UNBOUNDED = 1 << 62  # `count_range`'s most where a counted cycle lies on the way


def count_range(dfa: ByteDFA, counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per DFA state, the fewest and the most counted transitions on a path to acceptance
    (both -1: no path; most `UNBOUNDED`: a counted transition on a cycle lies on the way)."""
    from guided.ir.graph import components, reaching

    n = dfa.num_states
    src, byte = np.nonzero(dfa.transitions)
    dst = dfa.transitions[src, byte].astype(np.int64)
    w = counted[src, byte].astype(np.int64)
    if src.size:
        src, dst, w = np.unique(np.stack([src, dst, w]), axis=1)
    live = reaching(n, src, dst, dfa.accepting)
    keep = live[src] & live[dst]
    src, dst, w = src[keep], dst[keep], w[keep]
    comp = components(n, src, dst)
    on_cycle = (w == 1) & (comp[src] == comp[dst])  # a counted move inside a strongly connected part
    seeds = np.zeros(n, bool)
    seeds[src[on_cycle]] = True
    unbounded = reaching(n, src, dst, seeds) & live
    big = np.int64(1) << 40
    lo = np.where(dfa.accepting & live, 0, big).astype(np.int64)
    hi = np.where(dfa.accepting & live, 0, -big).astype(np.int64)
    bounded = ~unbounded[src]
    for _ in range(n + 1):  # Bellman-Ford; the bounded part has no counted cycle
        new_lo = lo.copy()
        np.minimum.at(new_lo, src, lo[dst] + w)
        new_hi = hi.copy()
        np.maximum.at(new_hi, src[bounded], np.where(hi[dst[bounded]] > -big, hi[dst[bounded]] + w[bounded], -big))
        if np.array_equal(new_lo, lo) and np.array_equal(new_hi, hi):
            break
        lo, hi = new_lo, new_hi
    hi = np.where(unbounded, UNBOUNDED, hi)
    return np.where(live, lo, -1), np.where(live, hi, -1)


@dataclass(frozen=True, eq=False)
class Terminal:
    """A lexeme type: its name, its language as a byte DFA, and how collisions are resolved."""

    name: str
    dfa: ByteDFA
    priority: int = 0
    is_string: bool = False  # string terminals win over regexes matching the same text, as in Lark
    order: int = 0  # Lark's tie-break order among terminals accepting the same text
    count: Count | None = None  # rule 11: a counting constraint over the DFA's counted transitions

    @functools.cached_property
    def count_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Rule 11: per DFA state, the fewest and the most counted transitions on a path to
        acceptance (`count_range`)."""
        assert self.count is not None
        return count_range(self.dfa, self.count.counted)

    def count_alive(self, state: int, n: int) -> bool:
        """Rule 11: can a lexeme at DFA ``state`` with ``n`` counted transitions so far still end
        within the bounds?  (The invariant of `Count` makes this two comparisons.)"""
        c = self.count
        assert c is not None
        lo, hi = (int(x[state]) for x in self.count_range)
        return lo >= 0 and (c.max is None or n + lo <= c.max) and n + hi >= c.min


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


@dataclass(frozen=True)
class UniqueItems:
    """Arrays whose items must be pairwise distinct JSON values: JSON Schema's ``uniqueItems``.

    Not context-free for items of an infinite domain.  This field says it beside the tables, in
    terms of parser states and rules; an engine tracks, beside the parser stack:

    - the *text* of each stack entry: a shifted terminal's lexeme, and for the entry a reduction
      pushes the concatenation of the texts it popped (the bytes of every lexeme the symbol
      spans, ignored ones excepted);
    - *frames*: a shift that pushes a state of ``open_states`` opens a frame (an empty set of
      values) held by that entry; the frame closes when the entry is popped;
    - a reduction by a rule of ``item_rules`` is an item: its text read as JSON and made
      canonical (`canonical_json`: ``1`` equals ``1.0``, object members in any order, string
      escapes decoded) must not be in the innermost open frame (a syntax error), and is added
      to it.  An item rule reduced with no frame open checks nothing.

    When the check runs.  The parser reduces on a lookahead, which would let a duplicate item
    through until the lexeme after it ends; so the check also runs ahead: after each shift, the
    reductions forced by the parser state alone (while the top state's every action is a
    reduction by one same rule) are simulated on a copy, and a duplicate item among them makes
    the shift a syntax error (the forced reductions are what any continuation would do first, so
    this refuses only texts with no valid completion).  And rule 7 is refined: while a frame is
    open, a pending lexeme that can still end in finitely many ways, at most ``COMPLETIONS``
    (each a byte string after which a candidate accepts: e.g. ``"ab`` of an enum of strings, or a
    lexeme that cannot grow at all, which can only end now), is viable only if one of them can
    end (rules 3, 4 and the check above).  A pending lexeme with more ways to end is viable as
    rule 7 says, even if every one leads to a used value (the number ``1`` when ``1`` and
    ``1.0``, ``1.00``, ... are its only spellings left): front-ends bound such finite domains
    where they can (see ``docs/json-schema-coverage.md``).  So is a pending lexeme in which a
    counted terminal (rule 11) is still alive: its ways to end are counted as many.
    """

    open_states: frozenset[int]
    item_rules: frozenset[int]
    COMPLETIONS: ClassVar[int] = 256


@dataclass(frozen=True)
class ItemCounts:
    """Arrays with a bounded number of items: JSON Schema's ``minItems``/``maxItems`` (rule 12).

    A bound as large as 100,000 would take one grammar position per item if unrolled.  This field
    says it beside the tables, in terms of parser states and rules; an engine keeps, beside the
    parser stack, *frames*: a shift that pushes a state of ``bounds`` (``(state, min, max)`` rows,
    max None for no maximum: the state just after an array's ``[``) opens a frame with a count of
    0 and that state's bounds, held by the entry it pushes; the frame closes when that entry is
    popped.  Then:

    - a reduction by a rule of ``item_rules`` (one per item of a counted array: the front-end
      writes the items left-recursively, ``items: item | items "," item``, so that each item is
      reduced as soon as the lookahead after it arrives and the stack stays flat) adds one to the
      innermost open frame's count; with no frame open it counts nothing;
    - a shift that pushes a state of ``separator_states`` (just after the ``,`` before another
      item) is a syntax error when the innermost frame's count is already its maximum;
    - a shift that pushes a state of ``close_states`` (just after the closing ``]``) is a syntax
      error when the innermost frame's count is below its minimum.

    The reductions of an item happen on the lookahead that follows it, before that lookahead is
    shifted, so the separator or closer after the k-th item sees a count of k.  Both checks are
    on shifts, which rule 7 (viability of the pending lexeme) includes: a ``,`` after the last
    item allowed, or a ``]`` before the first one needed, is refused as soon as it is read, and
    nothing else is: the masks have no dead end (below the maximum another item may always
    follow; at or above the minimum the array may always close).  The three sets of states are
    disjoint; the front-end also makes sure that no state mixes a counted array's items with
    another alternative's, so that the innermost frame is always the array being written.
    """

    bounds: tuple[tuple[int, int, int | None], ...]  # (open state, min, max or None), by state
    item_rules: frozenset[int]
    separator_states: frozenset[int]
    close_states: frozenset[int]

    @functools.cached_property
    def by_state(self) -> dict[int, tuple[int, int | None]]:
        """Open state -> (min, max)."""
        return {q: (lo, hi) for q, lo, hi in self.bounds}


_CANONICAL_NULL = ("null",)


def canonical_json(text: bytes):
    """A hashable value equal for two JSON texts iff JSON Schema calls their values equal.

    Numbers compare by mathematical value (``1``, ``1.0``, ``1e0``, ``-0`` and ``0``), never
    equal to booleans; strings by their decoded code points; objects by their members in any
    order; arrays item by item.  Text that is not JSON is compared as its bytes.

    >>> canonical_json(b'[1, {"a": "\\\\u0041", "b": 0}]') == canonical_json(b'[1.0,{"b":-0e3,"a":"A"}]')
    True
    >>> canonical_json(b"1") == canonical_json(b"true"), canonical_json(b"[1]") == canonical_json(b"1")
    (False, False)
    """
    import json

    try:
        value = json.loads(text, parse_float=_JsonNumber, parse_int=_JsonNumber,
                           parse_constant=lambda c: ("const", c))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ("bytes", bytes(text))

    def canon(v):
        if v is None:
            return _CANONICAL_NULL
        if v is True or v is False:
            return ("bool", v)
        if isinstance(v, _JsonNumber):
            return v.key
        if isinstance(v, str):
            return ("string", v)
        if isinstance(v, list):
            return ("array", tuple(canon(x) for x in v))
        if isinstance(v, dict):
            return ("object", frozenset((k, canon(x)) for k, x in v.items()))
        return ("other", repr(v))

    return canon(value)


class _JsonNumber:
    """A JSON number literal read exactly, at any exponent (`decimal.Decimal` refuses exponents
    past about 10**18): ``key`` is (sign, significant digits, exponent) with no leading or
    trailing zero digit, so equal values have equal keys (``1``, ``1.0``, ``10e-1``; ``-0`` is 0)."""

    __slots__ = ("key",)

    def __init__(self, literal: str):
        mantissa, _, exponent = literal.lower().partition("e")
        sign = -1 if mantissa.startswith("-") else 1
        whole, _, fraction = mantissa.lstrip("+-").partition(".")
        digits = (whole + fraction).lstrip("0")
        power = int(exponent or 0) - len(fraction)
        stripped = digits.rstrip("0")
        power += len(digits) - len(stripped)
        self.key = ("number", 0, "", 0) if not stripped else ("number", sign, stripped, power)


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
    unique_items: UniqueItems | None = None  # JSON Schema's uniqueItems; see `UniqueItems`
    item_counts: ItemCounts | None = None  # minItems/maxItems as run-time counts; see `ItemCounts`
    # Rule 10: parse by Earley over these right-hand sides (one per rule: terminal t as t,
    # nonterminal A as ~A) instead of by the tables, for grammars whose tables have conflicts.
    earley: bool = False
    rule_rhs: tuple[tuple[int, ...], ...] = field(default=())

    @property
    def num_states(self) -> int:
        return len(self.actions)

    @functools.cached_property
    def flat(self) -> "FlatTables":
        """The parse tables as flat arrays (layout in the module docstring), built once."""
        n_terms = len(self.terminals)
        return FlatTables(*_csr(self.actions, lambda s: n_terms if s == END else s), *_csr(self.gotos, int),
                          rule_lhs=np.array([lhs for lhs, _ in self.rules], np.int32),
                          rule_len=np.array([n for _, n in self.rules], np.int32))

    def validate(self) -> "CfgIR":
        """``self`` if it meets the invariants engines rely on, else `guided.errors.InvalidIR`
        naming the first one it breaks (`guided.ir.validate`)."""
        from guided.ir.validate import validate_cfg

        validate_cfg(self)
        return self

    def to_bytes(self, *, compress: bool = True) -> bytes:
        """The versioned binary form (`guided.ir.serialize`); `CfgIR.from_bytes` reads it back."""
        from guided.ir.serialize import to_bytes

        return to_bytes(self, compress=compress)

    @staticmethod
    def from_bytes(data: bytes) -> "CfgIR":
        """The IR serialised in ``data``, validated; `guided.errors.InvalidIR` if it is anything else."""
        from guided.ir.serialize import from_bytes

        return from_bytes(data, expect=CfgIR)

    def terminal_index(self, name: str) -> int:
        """The index of the terminal called ``name`` (`KeyError` if there is none)."""
        for i, t in enumerate(self.terminals):
            if t.name == name:
                return i
        raise KeyError(name)


@dataclass(frozen=True, eq=False)
class FlatTables:
    """`CfgIR`'s actions, gotos and rules as flat arrays; layout in the module docstring.

    The field names are those of the native core's `cfg_grammar` arguments.
    """

    action_offsets: np.ndarray  # int64 [states + 1]
    action_symbols: np.ndarray  # int32: a terminal, or len(terminals) for END
    action_values: np.ndarray  # int32: shift target (>= 0) or -rule - 1
    goto_offsets: np.ndarray  # int64 [states + 1]
    goto_symbols: np.ndarray  # int32: a nonterminal
    goto_values: np.ndarray  # int32: a state
    rule_lhs: np.ndarray  # int32 [rules]
    rule_len: np.ndarray  # int32 [rules]

    def arrays(self) -> dict[str, np.ndarray]:
        """The fields by name."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def rows(self, which: str, end: int | None) -> tuple[dict[int, int], ...]:
        """The per-state dicts back from ``which`` (``"action"`` or ``"goto"``); ``end`` is the
        symbol that stands for END (``len(terminals)`` for actions, None for gotos)."""
        offsets = getattr(self, f"{which}_offsets").tolist()
        symbols = getattr(self, f"{which}_symbols").tolist()
        values = getattr(self, f"{which}_values").tolist()
        out = []
        for q in range(len(offsets) - 1):
            lo, hi = offsets[q], offsets[q + 1]
            out.append({END if s == end else s: v for s, v in zip(symbols[lo:hi], values[lo:hi])})
        return tuple(out)


def _csr(rows: Sequence[dict[int, int]], key) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-state dicts as CSR rows sorted by (mapped) symbol: (offsets, symbols, values)."""
    offsets = np.zeros(len(rows) + 1, np.int64)
    symbols: list[int] = []
    values: list[int] = []
    for q, row in enumerate(rows):
        for sym, val in sorted((key(s), v) for s, v in row.items()):
            symbols.append(sym)
            values.append(val)
        offsets[q + 1] = len(symbols)
    return offsets, np.array(symbols, np.int32), np.array(values, np.int32)
