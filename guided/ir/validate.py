"""Validation of the intermediate form: the invariants every engine may rely on, checked.

`ByteDFA.validate` and `CfgIR.validate` call these.  An IR built by guided's front-ends meets
them by construction (the test suite validates every IR it compiles); an IR from elsewhere (read
back from bytes, handed over by another process, built by hand) must pass them before an engine
sees it, since engines index their arrays without checking.  Each failure raises
`guided.errors.InvalidIR` naming the field and the offending index.

What is checked, for a `ByteDFA`: a ``[n, 256]`` int32 transition table with every target in
range, a bool ``accepting`` of length ``n``, state 0 dead (all its moves to 0, not accepting), the
initial state in range, and the automaton trimmed: every state but 0 can reach an accepting
state, which is what makes masks exact (states no walk reaches are allowed: some operations
leave them rather than copy the table); only the empty language has initial state 0.

For a `CfgIR`: every terminal's DFA as above; indices in range (ignored terminals, action keys
and shift targets, reduced rules, goto keys and targets, rule left-hand sides, the start, end,
no-ignore and nesting states, matched-name terminals); the field types; and the consistency of
actions with gotos: the end state is reachable from the start state, and for every reduction by
a rule of length ``L`` in a state ``q`` reachable from the start, every path of ``L`` moves
ending in ``q`` starts in a state at least ``L`` moves from the start (so the pop never empties
the stack) whose gotos have the rule's left-hand side (so the goto after the pop exists).
With ``earley`` (rule 10): one right-hand side per rule, of the rule's length, over terminals and
nonterminals in range; the start symbol has a rule; every rule can finish (each nonterminal of
its right-hand side derives some text), which is what makes masks exact there; no nesting bound
and no matched names.
Counted terminals (rule 11, `guided.ir.Count`): bounds ``0 <= min <= max``, ``counted`` shaped like
the DFA's transitions and set only on live moves, from every state the counts of paths to
acceptance an interval (proven cheaply where every accepting state extends by one counted
transition to another, `extends_by_one`; otherwise checked, for DFAs of at most
`MAX_COUNTED_STATES` states), and all of a grammar's counted
terminals counting alike (the same bytes counted on every text two of them can read: engines
keep one count per lexeme); neither ignored nor the matched-names ``name`` terminal.

>>> import numpy as np
>>> from guided.ir.dfa import ByteDFA
>>> rows = np.zeros((3, 256), np.int32); rows[1, ord("a")] = 2
>>> ByteDFA(rows, np.array([False, False, True]), 1).validate().num_states
3
>>> rows[2, ord("b")] = 7
>>> ByteDFA(rows, np.array([False, False, True]), 1).validate()
Traceback (most recent call last):
  ...
guided.errors.InvalidIR: ByteDFA: transitions[2, 98] = 7 is not a state (the DFA has 3)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from guided.errors import InvalidIR
from guided.ir.dfa import DEAD, _edges, _search

if TYPE_CHECKING:
    from guided.ir.cfg import CfgIR
    from guided.ir.dfa import ByteDFA


def _is_int(x: Any) -> bool:
    return type(x) is int or (isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_)))


def validate_dfa(dfa: "ByteDFA", what: str = "ByteDFA") -> None:
    """Raise `InvalidIR` unless ``dfa`` is a well-formed, trimmed byte DFA (see the module docstring)."""
    validate_dfas([dfa], [what])


def validate_dfas(dfas: "list[ByteDFA]", whats: list[str]) -> None:
    """`validate_dfa` for each of ``dfas`` (``whats`` name them), the trimming checked on all at once."""
    for dfa, what in zip(dfas, whats):
        _check_arrays(dfa, what)
    live = [i for i, dfa in enumerate(dfas) if dfa.initial != DEAD]
    if not live:
        return
    sizes = np.array([dfas[i].num_states for i in live], np.int64)
    offsets = np.zeros(len(live) + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    # One graph of every DFA, each shifted to its own block (their dead states stay separate
    # nodes with no edges), searched once backwards from the accepting states.
    table = np.concatenate([dfas[i].transitions.astype(np.int64) + offsets[k] for k, i in enumerate(live)])
    table[table == np.repeat(offsets[:-1], sizes)[:, None]] = 0  # moves to a block's dead state
    accepting = np.concatenate([dfas[i].accepting for i in live])
    n = int(offsets[-1])
    src, dst = _edges(table)
    back = np.argsort(dst, kind="stable")
    finals = np.flatnonzero(accepting)
    alive = _search(dst[back], src[back], n, finals) if finals.size else np.zeros(n, bool)
    alive[offsets[:-1]] = True
    if not alive.all():
        row = int(np.flatnonzero(~alive)[0])
        k = int(np.searchsorted(offsets, row, side="right")) - 1
        raise InvalidIR(f"{whats[live[k]]}: state {row - int(offsets[k])} cannot reach an accepting state "
                        f"(the DFA is not trimmed)")


def _check_arrays(dfa: "ByteDFA", what: str) -> None:
    t, acc, initial = dfa.transitions, dfa.accepting, dfa.initial
    if not isinstance(t, np.ndarray) or t.dtype != np.int32 or t.ndim != 2 or t.shape[1] != 256 or t.shape[0] < 1:
        raise InvalidIR(f"{what}: transitions must be an int32 array of shape [n >= 1, 256], got "
                        f"{_describe(t)}")
    n = t.shape[0]
    if not isinstance(acc, np.ndarray) or acc.dtype != np.bool_ or acc.shape != (n,):
        raise InvalidIR(f"{what}: accepting must be a bool array of shape [{n}], got {_describe(acc)}")
    if not _is_int(initial) or not 0 <= initial < n:
        raise InvalidIR(f"{what}: initial state {initial!r} is not a state (the DFA has {n})")
    if t.min() < 0 or t.max() >= n:
        s, b = (int(x) for x in np.argwhere((t < 0) | (t >= n))[0])
        raise InvalidIR(f"{what}: transitions[{s}, {b}] = {int(t[s, b])} is not a state (the DFA has {n})")
    if t[DEAD].any() or acc[DEAD]:
        raise InvalidIR(f"{what}: state 0 must be dead (every move to 0, not accepting)")
    if initial == DEAD and n != 1:
        raise InvalidIR(f"{what}: initial state 0 (the empty language) with {n - 1} other states: not trimmed")


def _describe(x: Any) -> str:
    if isinstance(x, np.ndarray):
        return f"{x.dtype} array of shape {list(x.shape)}"
    return type(x).__name__


def _index_set(values: Any, limit: int, what: str) -> None:
    if not isinstance(values, frozenset):
        raise InvalidIR(f"CfgIR.{what} must be a frozenset of ints, got {type(values).__name__}")
    for v in values:
        if not _is_int(v) or not 0 <= v < limit:
            raise InvalidIR(f"CfgIR.{what}: {v!r} is out of range (0 .. {limit - 1})")


def validate_cfg(ir: "CfgIR") -> None:
    """Raise `InvalidIR` unless ``ir`` meets the invariants of the module docstring."""
    from guided.ir.cfg import END, Terminal
    from guided.ir.dfa import ByteDFA

    if not isinstance(ir.terminals, tuple):
        raise InvalidIR("CfgIR.terminals must be a tuple of Terminal")
    n_terms = len(ir.terminals)
    dfas: dict[int, tuple["ByteDFA", str]] = {}  # terminals may share one DFA
    for i, term in enumerate(ir.terminals):
        if not isinstance(term, Terminal):
            raise InvalidIR(f"CfgIR.terminals[{i}] is a {type(term).__name__}, not a Terminal")
        if not isinstance(term.name, str) or not isinstance(term.is_string, bool):
            raise InvalidIR(f"CfgIR.terminals[{i}]: name must be a str and is_string a bool")
        if not _is_int(term.priority) or not _is_int(term.order):
            raise InvalidIR(f"CfgIR.terminals[{i}] ({term.name}): priority and order must be ints")
        if not isinstance(term.dfa, ByteDFA):
            raise InvalidIR(f"CfgIR.terminals[{i}] ({term.name}): dfa is a {type(term.dfa).__name__}, not a ByteDFA")
        dfas.setdefault(id(term.dfa), (term.dfa, f"CfgIR.terminals[{i}] ({term.name})"))
    validate_dfas([d for d, _ in dfas.values()], [w for _, w in dfas.values()])
    _index_set(ir.ignore, n_terms, "ignore")
    _validate_counts(ir)

    actions, gotos, rules = ir.actions, ir.gotos, ir.rules
    if not isinstance(actions, tuple) or not isinstance(gotos, tuple) or not isinstance(rules, tuple):
        raise InvalidIR("CfgIR.actions, gotos and rules must be tuples")
    n_states, n_rules = len(actions), len(rules)
    if n_states < 1:
        raise InvalidIR("CfgIR has no parser state")
    if len(gotos) != n_states:
        raise InvalidIR(f"CfgIR has {n_states} action rows but {len(gotos)} goto rows")
    if not isinstance(ir.nonterminals, tuple) or not all(isinstance(x, str) for x in ir.nonterminals):
        raise InvalidIR("CfgIR.nonterminals must be a tuple of str")
    n_nt = len(ir.nonterminals)
    for r, rule in enumerate(rules):
        if (not isinstance(rule, tuple) or len(rule) != 2 or not _is_int(rule[0]) or not _is_int(rule[1])
                or not 0 <= rule[0] < n_nt or rule[1] < 0):
            raise InvalidIR(f"CfgIR.rules[{r}] = {rule!r}: expected (lhs in 0 .. {n_nt - 1}, length >= 0)")
    if ir.rule_names and (len(ir.rule_names) != n_rules or not all(isinstance(x, str) for x in ir.rule_names)):
        raise InvalidIR(f"CfgIR.rule_names must be empty or {n_rules} strs")
    q, sym, act = _entries(actions, "actions")
    bad = ~((sym == END) | ((sym >= 0) & (sym < n_terms)))
    if bad.any():
        k = int(np.argmax(bad))
        raise InvalidIR(f"CfgIR.actions[{q[k]}]: key {sym[k]} is neither a terminal (0 .. {n_terms - 1}) nor END")
    bad = np.where(act >= 0, act >= n_states, -act - 1 >= n_rules)
    if bad.any():
        k = int(np.argmax(bad))
        raise InvalidIR(f"CfgIR.actions[{q[k]}][{sym[k]}] = {act[k]}: neither a shift to a state "
                        f"(0 .. {n_states - 1}) nor a reduction by a rule (-1 .. {-n_rules})")
    q, sym, target = _entries(gotos, "gotos")
    bad = (sym < 0) | (sym >= n_nt) | (target < 0) | (target >= n_states)
    if bad.any():
        k = int(np.argmax(bad))
        raise InvalidIR(f"CfgIR.gotos[{q[k]}]: {sym[k]} -> {target[k]} is out of range "
                        f"({n_nt} nonterminals, {n_states} states)")
    for name in ("start_state", "end_state"):
        v = getattr(ir, name)
        if not _is_int(v) or not 0 <= v < n_states:
            raise InvalidIR(f"CfgIR.{name} = {v!r} is not a state (0 .. {n_states - 1})")
    _index_set(ir.no_ignore_states, n_states, "no_ignore_states")
    _index_set(ir.nesting_states, n_states, "nesting_states")
    if not _is_int(ir.max_nesting) or ir.max_nesting < 0:
        raise InvalidIR(f"CfgIR.max_nesting = {ir.max_nesting!r} must be an int >= 0")
    if not isinstance(ir.ignore_repeats, bool) or not isinstance(ir.source, str):
        raise InvalidIR("CfgIR.ignore_repeats must be a bool and source a str")
    if ir.matched_names is not None:
        _validate_names(ir)
    if ir.unique_items is not None:
        _validate_unique(ir)
    if ir.item_counts is not None:
        _validate_item_counts(ir)
    _validate_moves(ir)
    _validate_earley(ir)


def _validate_earley(ir: "CfgIR") -> None:
    """Rule 10: ``rule_rhs`` present (exactly) with ``earley``, one right-hand side per rule, of the
    rule's length, over symbols in range; no nesting bound or matched names beside it."""
    if not isinstance(ir.earley, bool) or not isinstance(ir.rule_rhs, tuple):
        raise InvalidIR("CfgIR.earley must be a bool and rule_rhs a tuple")
    if not ir.earley:
        if ir.rule_rhs:
            raise InvalidIR("CfgIR.rule_rhs is only for earley=True")
        return
    if (ir.matched_names is not None or ir.unique_items is not None or ir.item_counts is not None
            or ir.max_nesting or any(t.count is not None for t in ir.terminals)):
        raise InvalidIR("CfgIR: earley=True takes no matched_names, no unique_items, no item_counts, no counted "
                        "terminals and no nesting bound")
    n_terms, n_nt = len(ir.terminals), len(ir.nonterminals)
    if len(ir.rule_rhs) != len(ir.rules):
        raise InvalidIR(f"CfgIR.rule_rhs has {len(ir.rule_rhs)} entries for {len(ir.rules)} rules")
    for r, (rhs, (_, length)) in enumerate(zip(ir.rule_rhs, ir.rules)):
        if not isinstance(rhs, tuple) or len(rhs) != length or not all(
                _is_int(s) and (0 <= s < n_terms if s >= 0 else ~s < n_nt) for s in rhs):
            raise InvalidIR(f"CfgIR.rule_rhs[{r}] = {rhs!r}: expected {length} symbols, terminals "
                            f"0 .. {n_terms - 1} or nonterminals ~0 .. ~{n_nt - 1}")
    if not any(lhs == 0 for lhs, _ in ir.rules):
        raise InvalidIR("CfgIR: earley=True needs a rule for the start symbol (nonterminal 0)")
    productive = [False] * n_nt
    changed = True
    while changed:
        changed = False
        for (lhs, _), rhs in zip(ir.rules, ir.rule_rhs):
            if not productive[lhs] and all(s >= 0 or productive[~s] for s in rhs):
                productive[lhs] = changed = True
    for r, rhs in enumerate(ir.rule_rhs):
        if not all(s >= 0 or productive[~s] for s in rhs):
            raise InvalidIR(f"CfgIR.rule_rhs[{r}]: the rule can never finish (a nonterminal of it derives no text)")


def _entries(rows: tuple, what: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A table of per-state dicts as three int64 arrays: state, key, value of every entry."""
    for q, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InvalidIR(f"CfgIR.{what}[{q}] must be a dict, not a {type(row).__name__}")
    counts = [len(row) for row in rows]
    keys = [k for row in rows for k in row]
    values = [v for row in rows for v in row.values()]
    out = []
    for items in (keys, values):
        arr = np.array(items)
        if arr.size and arr.dtype.kind not in "iu":
            bad = next(x for x in items if not _is_int(x))
            raise InvalidIR(f"CfgIR.{what}: {bad!r} is not an int")
        out.append(arr.astype(np.int64) if arr.size else np.zeros(0, np.int64))
    return np.repeat(np.arange(len(rows)), counts), out[0], out[1]


MAX_COUNTED_STATES = 64  # a counted terminal's DFA (the upward-closure check is cubic in it)


def _validate_counts(ir: "CfgIR") -> None:
    """Rule 11: counted terminals are well formed, their count sets intervals, and they all
    count alike (`_check_alike`), so that one count per lexeme serves all."""
    from guided.ir.cfg import Count

    unit = None
    checked: set[tuple[int, bytes]] = set()
    for i, term in enumerate(ir.terminals):
        c = term.count
        if c is None:
            continue
        what = f"CfgIR.terminals[{i}] ({term.name}).count"
        if not isinstance(c, Count):
            raise InvalidIR(f"{what} is a {type(c).__name__}, not a Count")
        if i in ir.ignore or (ir.matched_names is not None and i == ir.matched_names.name):
            raise InvalidIR(f"{what}: an ignored or matched-name terminal cannot be counted")
        if not _is_int(c.min) or c.min < 0 or not (c.max is None or (_is_int(c.max) and c.max >= c.min)):
            raise InvalidIR(f"{what}: bounds must be ints with 0 <= min <= max (max None: unbounded), "
                            f"not {c.min!r}, {c.max!r}")
        counted = c.counted
        dfa = term.dfa
        if not isinstance(counted, np.ndarray) or counted.dtype != bool or counted.shape != dfa.transitions.shape:
            raise InvalidIR(f"{what}.counted must be a bool array shaped like the DFA's transitions "
                            f"{dfa.transitions.shape}")
        if (counted & (dfa.transitions == 0)).any():
            raise InvalidIR(f"{what}.counted marks a dead transition")
        key = (id(dfa), counted.tobytes())  # terminals sharing a DFA and its counts: checked once
        if key in checked:
            continue
        checked.add(key)
        if not extends_by_one(dfa, counted):
            if dfa.num_states > MAX_COUNTED_STATES:
                raise InvalidIR(f"{what}: a counted terminal's DFA has {dfa.num_states} states, above "
                                f"{MAX_COUNTED_STATES}, and some accepting state cannot be extended by exactly "
                                f"one counted transition to another accepting one")
            _check_interval(dfa, counted, what)
        if unit is None:
            unit = (dfa, counted)
        else:
            _check_alike(unit, (dfa, counted), what)


def extends_by_one(dfa, counted: np.ndarray) -> bool:
    """Whether every *end* state (one that reaches acceptance through uncounted transitions only,
    such as the state before a string's closing quote) reaches an end state through exactly one
    counted transition (and any uncounted ones): a cheap proof of rule 11's interval property,
    for DFAs of any size.  From a live state whose fewest counted transitions to acceptance are
    ``f``, a path of ``f`` reaches an end state (just after its last counted transition), from
    which one more counted transition at a time reaches an end state again: every count from
    ``f`` up is realised, none below (a string pattern such as a URL's, which a character can
    always lengthen).  End states with no counted transition ahead that no counted transition
    enters (after a closing quote) are exempt: they count 0, and no such path ends in them."""
    from guided.ir.graph import reaching

    n = dfa.num_states
    src, byte = np.nonzero(dfa.transitions)
    dst = dfa.transitions[src, byte]
    w = counted[src, byte]
    us, ud = src[~w], dst[~w]
    ends = reaching(n, us, ud, dfa.accepting)  # acceptance with no counted transition left
    ends[DEAD] = False
    into_end = np.zeros(n, bool)  # a counted move into an end state
    into_end[src[w & ends[dst]]] = True
    extends = reaching(n, us, ud, into_end)
    has_counted = np.zeros(n, bool)
    has_counted[src[w]] = True
    ahead = reaching(n, src, dst, has_counted)  # some counted transition ahead
    targets = np.zeros(n, bool)
    targets[dst[w]] = True
    must = ends & (ahead | targets)  # the rest count exactly 0 (after a closing quote)
    return not bool((must & ~extends).any())


def _check_alike(a: tuple, b: tuple, what: str) -> None:
    """Two counted terminals count alike: on every text both can read from their initial states,
    the same bytes are counted (so that one count per lexeme serves both)."""
    (da, ca), (db, cb) = a, b
    seen = {(da.initial, db.initial)}
    todo = list(seen)
    while todo:
        sa, sb = todo.pop()
        both = (da.transitions[sa] != 0) & (db.transitions[sb] != 0)
        if (ca[sa][both] != cb[sb][both]).any():
            raise InvalidIR(f"{what}: counted terminals must count alike (one count per lexeme): they differ "
                            f"after a common text at states {sa} and {sb}")
        for byte in np.flatnonzero(both).tolist():
            nxt = (int(da.transitions[sa, byte]), int(db.transitions[sb, byte]))
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)


def _check_interval(dfa, counted: np.ndarray, what: str) -> None:
    """From every live state, the numbers of counted transitions on paths to acceptance are all
    the integers between the fewest and the most (`guided.ir.cfg.count_range`).  Such a set is
    ultimately periodic with threshold and period bounded by the states (Chrobak), so checking
    up to ``n * n + 2 * n`` past the largest finite bound settles it."""
    from guided.ir.cfg import count_range

    n = dfa.num_states
    src, byte = np.nonzero(dfa.transitions)
    dst = dfa.transitions[src, byte]
    w = counted[src, byte]
    zero = np.eye(n, dtype=bool)
    zero[src[~w], dst[~w]] = True
    one = np.zeros((n, n), bool)
    one[src[w], dst[w]] = True
    while True:  # reflexive-transitive closure of the uncounted moves
        nxt = (zero.astype(np.int32) @ zero.astype(np.int32)) > 0
        if np.array_equal(nxt, zero):
            break
        zero = nxt
    lo, hi = count_range(dfa, counted)
    live = lo >= 0
    finite = np.concatenate([lo[live], hi[live & (hi < (1 << 61))]])
    top = int(finite.max(initial=0)) + n * n + 2 * n
    reach = (zero.astype(np.int32) @ dfa.accepting.astype(np.int32)) > 0  # exactly 0 counted
    step = ((zero.astype(np.int32) @ one.astype(np.int32)) > 0).astype(np.int32)
    for k in range(top + 1):
        expected = live & (lo <= k) & (k <= hi)
        bad = expected != reach
        if bad.any():
            s = int(np.flatnonzero(bad)[0])
            raise InvalidIR(f"{what}: from DFA state {s} the counts of counted transitions on paths to acceptance "
                            f"are not an interval (exactly {k}: {'none' if expected[s] else 'one'} though the fewest is "
                            f"{int(lo[s])} and the most {int(hi[s])})")
        reach = (step @ reach.astype(np.int32)) > 0


def _validate_names(ir: "CfgIR") -> None:
    from guided.ir.cfg import MatchedNames

    names = ir.matched_names
    if not isinstance(names, MatchedNames):
        raise InvalidIR(f"CfgIR.matched_names is a {type(names).__name__}, not MatchedNames")
    roles = {role: getattr(names, role) for role in ("name", "open_start", "open_end", "empty_end", "close_start")}
    n_terms = len(ir.terminals)
    for role, t in roles.items():
        if not _is_int(t) or not 0 <= t < n_terms:
            raise InvalidIR(f"CfgIR.matched_names.{role} = {t!r} is not a terminal (0 .. {n_terms - 1})")
        if t in ir.ignore:
            raise InvalidIR(f"CfgIR.matched_names.{role} names an ignored terminal ({ir.terminals[t].name})")
    if len(set(roles.values())) != len(roles):
        raise InvalidIR("CfgIR.matched_names: the five roles must be five different terminals")
    if (not isinstance(names.name_bytes, frozenset) or not names.name_bytes
            or not all(_is_int(b) and 0 <= b < 256 for b in names.name_bytes)):
        raise InvalidIR("CfgIR.matched_names.name_bytes must be a non-empty frozenset of bytes (0 .. 255)")
    if not isinstance(names.unique_attributes, bool):
        raise InvalidIR("CfgIR.matched_names.unique_attributes must be a bool")
    dfa = ir.terminals[names.name].dfa
    used = set(np.flatnonzero(dfa.transitions.any(axis=0)).tolist())
    if not used <= names.name_bytes:
        raise InvalidIR(f"CfgIR.matched_names.name_bytes misses bytes of the name terminal: {sorted(used - names.name_bytes)}")


def _validate_unique(ir: "CfgIR") -> None:
    from guided.ir.cfg import UniqueItems

    unique = ir.unique_items
    if not isinstance(unique, UniqueItems):
        raise InvalidIR(f"CfgIR.unique_items is a {type(unique).__name__}, not UniqueItems")
    if ir.matched_names is not None:
        raise InvalidIR("CfgIR.unique_items and matched_names cannot be combined")
    if not isinstance(unique.open_states, frozenset) or not isinstance(unique.item_rules, frozenset):
        raise InvalidIR("CfgIR.unique_items.open_states and item_rules must be frozensets")
    _index_set(unique.open_states, len(ir.actions), "unique_items.open_states")
    _index_set(unique.item_rules, len(ir.rules), "unique_items.item_rules")


def _validate_item_counts(ir: "CfgIR") -> None:
    """Rule 12: states and rules in range, bounds of ints with 0 <= min <= max, the three sets of
    states disjoint, one row per open state, and no other run-time check beside it."""
    from guided.ir.cfg import ItemCounts

    counts = ir.item_counts
    if not isinstance(counts, ItemCounts):
        raise InvalidIR(f"CfgIR.item_counts is a {type(counts).__name__}, not ItemCounts")
    if ir.matched_names is not None or ir.unique_items is not None:
        raise InvalidIR("CfgIR.item_counts cannot be combined with matched_names or unique_items")
    if not isinstance(counts.bounds, tuple) or not all(isinstance(row, tuple) and len(row) == 3 for row in counts.bounds):
        raise InvalidIR("CfgIR.item_counts.bounds must be a tuple of (open state, min, max) rows")
    for name in ("item_rules", "separator_states", "close_states"):
        if not isinstance(getattr(counts, name), frozenset):
            raise InvalidIR(f"CfgIR.item_counts.{name} must be a frozenset")
    n_states = len(ir.actions)
    opens = [row[0] for row in counts.bounds]
    _index_set(frozenset(opens), n_states, "item_counts.bounds (open states)")
    if len(set(opens)) != len(opens):
        raise InvalidIR("CfgIR.item_counts.bounds lists an open state twice")
    for q, lo, hi in counts.bounds:
        if not _is_int(lo) or lo < 0 or not (hi is None or (_is_int(hi) and hi >= max(lo, 1))):
            raise InvalidIR(f"CfgIR.item_counts.bounds: state {q} has bounds ({lo!r}, {hi!r}); expected "
                            "0 <= min <= max, max >= 1 or None")
    _index_set(counts.item_rules, len(ir.rules), "item_counts.item_rules")
    _index_set(counts.separator_states, n_states, "item_counts.separator_states")
    _index_set(counts.close_states, n_states, "item_counts.close_states")
    if set(opens) & (counts.separator_states | counts.close_states) or counts.separator_states & counts.close_states:
        raise InvalidIR("CfgIR.item_counts: open, separator and close states must be disjoint")


def _validate_moves(ir: "CfgIR") -> None:
    """Actions agree with gotos on every stack the tables can build (see the module docstring)."""
    n_states = len(ir.actions)
    succ: list[list[int]] = [[] for _ in range(n_states)]
    pred: list[list[int]] = [[] for _ in range(n_states)]
    for q in range(n_states):
        targets = {a for a in ir.actions[q].values() if a >= 0} | set(ir.gotos[q].values())
        for p in targets:
            succ[q].append(p)
            pred[p].append(q)
    # Shortest distance from the start state: a stack whose top is q holds at least dist[q]
    # states above the start state.
    dist = [-1] * n_states
    dist[ir.start_state] = 0
    frontier = [ir.start_state]
    while frontier:
        nxt = []
        for q in frontier:
            for p in succ[q]:
                if dist[p] < 0:
                    dist[p] = dist[q] + 1
                    nxt.append(p)
        frontier = nxt
    if dist[ir.end_state] < 0:
        raise InvalidIR(f"CfgIR.end_state {ir.end_state} is unreachable from start_state {ir.start_state}")
    # levels[q][k]: the reachable states from which a path of k moves leads to q.
    levels: dict[int, list[set[int]]] = {}

    def states_before(q: int, length: int) -> set[int]:
        found = levels.setdefault(q, [{q}])
        while len(found) <= length:
            found.append({p for r in found[-1] for p in pred[r] if dist[p] >= 0})
        return found[length]

    checked: set[tuple[int, int]] = set()
    for q in range(n_states):
        if dist[q] < 0:
            continue  # never on a stack
        for sym, act in ir.actions[q].items():
            if act >= 0 or (q, act) in checked:
                continue
            checked.add((q, act))
            lhs, length = ir.rules[-act - 1]
            if length > dist[q]:
                raise InvalidIR(f"CfgIR.actions[{q}][{sym}] reduces by rule {-act - 1} of length {length}, but "
                                f"state {q} is only {dist[q]} moves from the start: the pop would empty the stack")
            for p in states_before(q, length):
                if lhs not in ir.gotos[p]:
                    raise InvalidIR(f"CfgIR.actions[{q}][{sym}] reduces by rule {-act - 1} to nonterminal {lhs}, "
                                    f"but state {p}, {length} moves before, has no goto on it")
