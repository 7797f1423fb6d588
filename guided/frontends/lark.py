"""The Lark front-end: a Lark grammar to `guided.ir.CfgIR` (terminal DFAs + LALR(1) tables).

Lark reads the grammar (its full syntax: rules, terminals, ``%import`` from ``common``,
``%ignore``, priorities, templates); `guided.ir.lalr` builds the LALR(1) tables (the tables
Lark would build, conflicts resolved as Lark resolves them, but iteratively and in a time
bound: Lark's own analysis recurses as deep as the grammar's longest chain of rules); each
terminal's regex goes through guided's regex front-end to a byte DFA.  The analysis is kept
in memory per grammar text (and the files it imports).

Lexing semantics are Lark's contextual lexer, with one difference worth knowing: guided lexes
greedily (a lexeme ends when the next byte cannot extend it), while Lark tries the terminals
of a context in priority order and takes the first that matches.  The two agree unless two
terminals allowed in the same context can match overlapping text; where a string terminal and
a regex terminal match the same lexeme, the string wins, as in Lark.

Grammars whose LALR(1) tables have conflicts (shift/reduce or reduce/reduce collisions, more
than one token of lookahead, ambiguity) are parsed by Earley instead (``Grammar.parser``,
`guided.ir.cfg` rule 10): every sentence of the grammar is accepted, as Lark's Earley parser
accepts it, with a greedy lexer whose candidates are the terminals some parse can shift next
(Lark's lexer order check does not apply: no Lark lexer takes part).  Such grammars run on the
Python engine.  ``parser="lalr"`` keeps Lark's LALR semantics (shifts win shift/reduce
conflicts; reduce/reduce collisions that rule priorities do not decide are refused naming the
colliding rules, as Lark refuses them).  Terminals that match the empty string are refused, as Lark's lexers
refuse them.  Limits (`guided.errors.LimitExceeded`): ``max_nesting`` for brackets nested
in the grammar text, ``max_rules`` for the BNF rules its EBNF expands to, ``max_states`` per
terminal automaton, ``max_seconds`` for the whole compilation.

>>> from guided.frontends.lark import Grammar, lark_to_ir
>>> ir = lark_to_ir(Grammar('start: "a" NUMBER\\n%import common.NUMBER'))
>>> sorted(t.name for t in ir.terminals)
['A', 'NUMBER']
"""

from __future__ import annotations

import difflib
import os
import pathlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import lark
from lark.load_grammar import load_grammar, verify_used_files

from guided.errors import GuidedError, LimitExceeded, RegexError, SpecError, UsageError
from guided.frontends.regex import Regex, check_limits, literal_to_dfa, regex_to_dfa
from guided.frontends.lark_order import LexerOrderError, check_lexer_order, lark_order
from guided.ir import END, CfgIR, Terminal
from guided.ir.dfa import ByteDFA
from guided.ir.lalr import Tables, lalr_tables

GRAMMARS_DIR = pathlib.Path(__file__).resolve().parent.parent.parent / "grammars"

# Lark's common.lark spells string terminals with a lookbehind, which no DFA can run; these are
# the same languages written without it.
_EQUIVALENT_PATTERNS = {
    r'".*?(?<!\\)(\\\\)*?"': r'"(?:[^"\\\n]|\\[^\n])*"',
    r'.*?(?<!\\)(\\\\)*?': r'(?:[^"\\\n]|\\[^\n])*',
}


class GrammarError(SpecError):
    """A Lark grammar is malformed, not LALR(1), or uses a terminal guided cannot enforce."""


class LexerOrderConflict(GrammarError):
    """Lark's lexer would read some text otherwise than guided's: see `guided.frontends.lark_order`.

    ``lark_terminal`` and ``guided_terminal`` name the two terminals, ``text`` the example
    lexeme (guided reads it whole as ``guided_terminal``), ``candidates`` the terminals Lark's
    contextual lexer tries in the parser state where it happens.
    """

    def __init__(self, err: LexerOrderError, terminals, text: str):
        self.lark_terminal = terminals[err.lark_term].name
        self.guided_terminal = terminals[err.guided_term].name
        self.text = err.text.decode("utf-8", "replace")
        self.candidates = tuple(terminals[i].name for i in err.candidates)
        first, greedy = _describe(text, terminals[err.lark_term]), _describe(text, terminals[err.guided_term])
        if err.how == "shorter":
            how = (f"Lark's lexer takes {first} for a shorter text where guided's greedy lexer would read "
                   f"{self.text!r} as {greedy}")
        elif err.how == "longer":
            how = (f"Lark's lexer reads {self.text!r} as {first}, which only rules that never finish use (guided "
                   f"drops them and reads a shorter text as {greedy})")
        else:
            how = f"Lark's lexer reads {self.text!r} as {first} where guided's greedy lexer would read {greedy}"
        fix = ("remove the rules that never finish" if err.how == "longer" else
               "give the terminal meant to win a higher priority (e.g. NAME.2: ...), or make the terminals' "
               "texts not overlap")
        super().__init__(
            f"terminals {first} and {greedy} can both start a lexeme in one parser state, and {how}: Lark "
            f"tries a state's terminals in a fixed order (priority, then longest possible match, then pattern "
            f"length, then name) and takes the first that matches at all, so guided cannot enforce the "
            f"language Lark accepts; {fix}")


@dataclass(frozen=True)
class Grammar:
    """A Lark grammar constraint: the output must be a sentence of ``source`` from rule ``start``.

    ``source`` is the grammar text or a path to a ``.lark`` file (relative ``%import``s resolve
    next to it); a bare name such as ``"json"`` picks a grammar shipped in ``grammars/``
    (`shipped_grammars`).  ``max_states`` bounds each terminal's automaton, ``max_seconds`` the
    compilation, ``max_nesting`` how deep brackets nest in the grammar text, ``max_rules`` the
    BNF rules its EBNF expands to.

    ``parser``: ``"auto"`` (the default) parses with LALR(1) tables where they have no conflict
    and with an Earley parser otherwise (`guided.ir.cfg`, rule 10: shift/reduce or reduce/reduce
    collisions, more than one token of lookahead, ambiguity; the Python engine); ``"lalr"``
    keeps the tables with conflicts resolved as Lark's LALR parser resolves them (shifts win:
    Lark's ``parser="lalr"`` language) and refuses what it refuses; ``"earley"`` always parses
    by Earley.

    >>> Grammar("json").start
    'start'
    """

    source: str | os.PathLike
    start: str = "start"
    max_states: int = 100_000
    max_seconds: float = 10.0
    max_nesting: int = 100
    max_rules: int = 10_000
    parser: str = "auto"

    def __post_init__(self) -> None:
        if self.parser not in ("auto", "lalr", "earley"):
            raise UsageError(f"Grammar(parser=...) takes 'auto', 'lalr' or 'earley', got {self.parser!r}")
        if not isinstance(self.source, (str, os.PathLike)):
            hint = (" (a compiled grammar is already compiled: pass it on as it is)"
                    if hasattr(self.source, "matcher") else "")
            raise UsageError(f"guided.Grammar takes Lark text, a .lark path or a shipped grammar's name, got "
                             f"{type(self.source).__name__}{hint}")
        if not isinstance(self.start, str) or not self.start:
            raise UsageError(f"Grammar(start=...) takes a rule name, got {self.start!r}")
        check_limits(self, max_states=int, max_seconds=float, max_nesting=int, max_rules=int)

    def text_and_path(self) -> tuple[str, pathlib.Path | None]:
        src = self.source
        if isinstance(src, os.PathLike):
            path = pathlib.Path(src)
            return _read(path), path
        if "\n" not in src and (src.endswith(".lark") or re.fullmatch(r"[A-Za-z0-9_]+", src)):
            path = pathlib.Path(src)
            if not path.suffix:
                path = GRAMMARS_DIR / f"{src}.lark"
            if path.is_file():
                return _read(path), path
            if src.endswith(".lark"):
                raise GrammarError(f"grammar file not found: {src}")
            # One word is never a grammar (a rule needs a colon): a mistyped name.
            shipped = shipped_grammars()
            close = difflib.get_close_matches(src, shipped, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise GrammarError(f"unknown grammar name {src!r}: {hint}the shipped grammars are {', '.join(shipped)} "
                               f"(or pass Lark text, or the path of a .lark file)")
        return src, None

    def to_ir(self) -> CfgIR:
        """The intermediate form: terminal DFAs and LALR(1) tables (`lark_to_ir`)."""
        return lark_to_ir(self)


def shipped_grammars() -> list[str]:
    """The names of the grammars shipped in ``grammars/`` (``Grammar("json")``...)."""
    return sorted(p.stem for p in GRAMMARS_DIR.glob("*.lark"))


def _read(path: pathlib.Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GrammarError(f"cannot read the grammar file {str(path)!r}: {exc}") from None


def lark_to_ir(spec: Grammar, automata: Mapping[str, ByteDFA] | None = None, *, lark_lexing: bool = True) -> CfgIR:
    """Build the intermediate form of ``spec``, or raise `GrammarError` / `LimitExceeded` naming the cause.

    ``automata``: terminals whose language a front-end built as an automaton (what no regex in
    the text could say briefly, such as numbers between bounds); each named terminal takes its
    automaton, its pattern in the text only declares it to Lark.

    ``lark_lexing``: refuse a grammar that Lark's lexer would read otherwise than guided's
    (`guided.frontends.lark_order`), so that the language enforced is the one Lark accepts.
    Front-ends whose reference is not Lark (XML, checked against an XML parser) write their
    grammars for guided's greedy lexer and pass False.
    """
    deadline = time.monotonic() + spec.max_seconds
    text, path = spec.text_and_path()
    lark_terminals, ignore_names, tables, lark_contexts, earley = _analysis(text, path, spec, deadline)
    index = {t.name: i for i, t in enumerate(lark_terminals)}
    automata = automata or {}
    unknown = set(automata) - set(index)
    if unknown:
        raise UsageError(f"lark_to_ir(automata=...): no terminal {sorted(unknown)[0]!r} in the grammar")
    dfas = []
    for t in lark_terminals:
        if time.monotonic() > deadline:
            raise LimitExceeded(f"the grammar's terminals took longer than max_seconds={spec.max_seconds} s to build")
        given = automata.get(t.name)
        if given is not None:
            if given.initial == 0 or given.accepting[given.initial]:
                raise GrammarError(f"terminal {t.name}: its automaton matches no text, or the empty string")
            dfas.append(given)
            continue
        dfas.append(_terminal_dfa(t, text, spec.max_states, deadline - time.monotonic()))
    ignore = frozenset(index[name] for name in ignore_names if name in index)
    if lark_lexing and not earley:
        try:
            check_lexer_order(lark_terminals, dfas, ((ours | ignore, theirs | ignore) for ours, theirs in lark_contexts),
                              deadline)
        except LexerOrderError as err:
            raise LexerOrderConflict(err, lark_terminals, text) from None
    # Lark's BasicLexer order: the first of several terminals matching the same text wins.
    rank = lark_order(lark_terminals)
    terminals = tuple(
        Terminal(
            name=t.name,
            dfa=dfa,
            priority=t.priority,
            is_string=isinstance(t.pattern, lark.lexer.PatternStr),
            order=rank[i],
        )
        for i, (t, dfa) in enumerate(zip(lark_terminals, dfas))
    )
    return CfgIR(
        terminals=terminals,
        ignore=ignore,
        source=str(path) if path else text[:200],
        earley=earley,
        rule_rhs=tables.rhs if earley else (),
        **tables.ir_fields(),
    )


_ANALYSES: dict[tuple, tuple] = {}  # (text, start, folder, limits) -> (imported files' hashes, analysis)
_ANALYSES_LIMIT = 64


def _analysis(text: str, path: pathlib.Path | None, spec: Grammar, deadline: float):
    """``(terminals, ignored terminal names, tables)`` of a grammar, kept in memory per text.

    Not on disk: a cache file is read back with pickle, and a file planted in the cache folder
    would run code (why Lark's own cache is not used either).
    """
    key = (text, spec.start, str(path.parent) if path else None, spec.max_nesting, spec.max_rules, spec.parser)
    hit = _ANALYSES.get(key)
    if hit is not None and verify_used_files(hit[0]):
        return hit[1]
    _check_nesting(text, spec.max_nesting)
    import_paths = [str(path.parent)] if path else []
    try:
        grammar, used_files = load_grammar(text, str(path) if path else "<string>", import_paths, False)
        _check_expansions(grammar, text, spec.max_rules)
        lark_terminals, rules, ignore_names = grammar.compile([spec.start], set())
    except lark.exceptions.LarkError as exc:
        raise GrammarError(f"malformed grammar: {exc}") from None
    except OSError as exc:  # a %import of a file that is not there
        raise GrammarError(_import_error(text, exc)) from None
    except RecursionError:
        raise LimitExceeded(f"the grammar nests too deeply for Lark to read (lower the nesting; "
                            f"max_nesting={spec.max_nesting})") from None
    found = (lark_terminals, list(ignore_names), *_tables(lark_terminals, rules, spec, deadline))
    if len(_ANALYSES) >= _ANALYSES_LIMIT:
        _ANALYSES.clear()
    _ANALYSES[key] = (used_files, found)
    return found


def _tables(lark_terminals, rules, spec: Grammar, deadline: float) -> tuple[Tables, list, bool]:
    """LALR(1) tables of Lark's compiled rules, refusing what Lark's own analysis refuses; the
    lexer contexts, ``(terminals guided's state takes, terminals Lark's lexer tries there)`` (Lark's
    own tables keep the rules that never finish: their terminals take part in Lark's lexing); and
    whether the grammar is parsed by Earley (`Grammar.parser`; then there are no contexts)."""
    index = {t.name: i for i, t in enumerate(lark_terminals)}
    defined = {r.origin.name for r in rules}
    if spec.start not in defined:
        raise GrammarError(f"the grammar has no rule {spec.start!r} to start from (start=)")
    for r in rules:
        for sym in r.expansion:
            if sym.is_term and sym.name not in index:
                raise GrammarError(f"terminal {sym.name} is used in rule {r.origin.name} but never defined "
                                   f"(guided lexes every terminal itself: %declare is not supported)")
    seen: dict[tuple, object] = {}
    for r in rules:
        key = (r.origin.name, tuple(x.name for x in r.expansion))
        if key in seen:
            raise GrammarError(f"rule defined twice: {r}")
        seen[key] = r

    all_rules = rules
    rules = _productive_rules(rules, spec.start)

    def check() -> None:
        if time.monotonic() > deadline:
            raise LimitExceeded(f"the grammar's LALR(1) analysis took longer than max_seconds={spec.max_seconds} s "
                                f"({len(rules)} rules)")

    def build(rules) -> Tables:
        tables = lalr_tables([(r.origin.name, tuple(x.name for x in r.expansion)) for r in rules], index,
                             spec.start, check=check, priority=[r.options.priority or 0 for r in rules])
        if tables.conflicts and spec.parser == "lalr":
            collisions = []
            for _, terminal, colliding in tables.conflicts[:5]:
                name = "$END" if terminal < 0 else lark_terminals[terminal].name
                collisions.append(f"Reduce/Reduce collision in {name} between the following rules:"
                                  + "".join(f"\n\t- {rules[r]}" for r in colliding))
            raise GrammarError("the grammar is not LALR(1):\n" + "\n".join(collisions)
                               + "\n(parser='auto' or 'earley' parses it with an Earley parser)")
        return tables

    if spec.parser == "lalr":
        _check_cycles(rules)
    tables = build(rules)
    if spec.parser == "earley" or (spec.parser == "auto" and tables.collisions):
        # Rule 10 of `guided.ir.cfg`: an Earley parser over the rules, with a lexer whose
        # candidates are the terminals some parse can shift next (no Lark lexer to agree with).
        # A rule deriving itself alone is no trouble there (an item set holds each item once).
        return tables, [], True
    _check_cycles(rules)
    try:
        # Lark's own tables, with the rules that never finish: where Lark refuses them, so does guided.
        lark_tables = build(all_rules) if len(rules) < len(all_rules) else None
        if lark_tables is not None and lark_tables.conflicts:  # parser="auto" (lalr raised in build)
            raise GrammarError("Lark's LALR(1) analysis refuses the grammar's rules that never finish")
        if lark_tables is None:
            contexts = [(c, c) for c in dict.fromkeys(frozenset(t for t in acts if t != END)
                                                      for acts in tables.actions)]
            return tables, contexts, False
        return tables, _paired_contexts(tables, lark_tables, lark_terminals), False
    except GrammarError:
        if spec.parser == "auto":  # Lark's LALR parser would refuse or read it otherwise: Earley
            return tables, [], True
        raise


def _paired_contexts(ours: Tables, lark_tables: Tables, lark_terminals) -> list[tuple[frozenset, frozenset]]:
    """The parser states of guided's pruned tables beside Lark's own, run in step: ``(our terminals,
    Lark's terminals)`` per pair of states; `GrammarError` where they act differently.

    Lark keeps the rules that never finish: they add terminals to its lexer's contexts (checked by
    `check_lexer_order`) and may take part in conflicts, which Lark resolves by shifting into a
    rule that never finishes where guided's tables reduce: Lark then rejects texts guided would
    accept.  Both tables are LR automata over the same symbols, so they are run as one product
    from their start states (shifts and gotos in step; a reduction pops both stacks alike), and
    every action guided takes must be Lark's too in each reachable pair.
    """
    lark_nt = {name: i for i, name in enumerate(lark_tables.nonterminals)}
    ours_rules = set(ours.rule_names)

    def dead_rules(state: int) -> str:
        names = [lark_tables.rule_names[r] for r, _ in lark_tables.kernels[state]
                 if r < len(lark_tables.rule_names) and lark_tables.rule_names[r] not in ours_rules]
        return ", ".join(dict.fromkeys(names)) or "a rule that never finishes"

    def refuse(symbol: int, state: int, what: str) -> None:
        name = "the end of input" if symbol == END else lark_terminals[symbol].name
        raise GrammarError(f"rules that never finish change how Lark parses: on {name}, {what} (it keeps "
                           f"{dead_rules(state)}), so Lark rejects texts guided's tables would accept; remove "
                           f"the rules that never finish")

    start = (ours.start_state, lark_tables.start_state)
    seen = {start}
    todo = [start]
    contexts: dict[tuple[frozenset, frozenset], None] = {}
    while todo:
        q, lq = todo.pop()
        acts, lark_acts = ours.actions[q], lark_tables.actions[lq]
        contexts[(frozenset(t for t in acts if t != END), frozenset(t for t in lark_acts if t != END))] = None
        pairs = []
        for symbol, action in acts.items():
            theirs = lark_acts.get(symbol)
            if theirs is None:
                refuse(symbol, lq, "Lark's tables have no action")
            elif action >= 0:
                if theirs < 0:
                    refuse(symbol, lq, f"Lark reduces by {lark_tables.rule_names[-theirs - 1]} where guided shifts")
                pairs.append((action, theirs))
            elif theirs >= 0:
                refuse(symbol, theirs, f"Lark shifts where guided reduces by {ours.rule_names[-action - 1]}")
            elif ours.rule_names[-action - 1] != lark_tables.rule_names[-theirs - 1]:
                refuse(symbol, lq, f"Lark reduces by {lark_tables.rule_names[-theirs - 1]} where guided reduces "
                                   f"by {ours.rule_names[-action - 1]}")
        for nt, target in ours.gotos[q].items():
            theirs = lark_tables.gotos[lq].get(lark_nt[ours.nonterminals[nt]])
            if theirs is None:
                raise GrammarError(f"internal: Lark's tables have no goto on {ours.nonterminals[nt]}")
            pairs.append((target, theirs))
        for pair in pairs:
            if pair not in seen:
                seen.add(pair)
                todo.append(pair)
    return list(contexts)


def _productive_rules(rules, start: str) -> list:
    """The rules that can finish: every symbol of their expansion derives some finite text.

    A rule using a symbol that derives no finite text (``r: "c" r``) would let the parser shift
    into it and then ask for input forever: a mask would allow a token that no complete sentence
    continues.  Lark keeps such rules; guided drops them before building the tables, and refuses
    a start symbol that derives nothing at all (the grammar's language is empty).
    """
    productive: set[str] = set()
    changed = True
    while changed:
        changed = False
        for r in rules:
            if r.origin.name not in productive and all(s.is_term or s.name in productive for s in r.expansion):
                productive.add(r.origin.name)
                changed = True
    if start not in productive:
        raise GrammarError(f"the grammar accepts no sentence: no derivation of '{start}' ends "
                           f"(every alternative needs a rule that never finishes)")
    return [r for r in rules
            if r.origin.name in productive and all(s.is_term or s.name in productive for s in r.expansion)]


def _check_cycles(rules) -> None:
    """`GrammarError` when a rule can derive itself and nothing else (``a: a | "x"``, or ``a: b``
    with ``b: a``): its sentences have endless parses, and LALR tables whose collisions rule
    priorities decide would reduce forever."""
    nullable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for r in rules:
            if r.origin.name not in nullable and all(not x.is_term and x.name in nullable for x in r.expansion):
                nullable.add(r.origin.name)
                changed = True
    # a -> b when a rule of a is b between symbols that can be empty
    unit: dict[str, set[str]] = {}
    for r in rules:
        symbols = r.expansion
        for i, x in enumerate(symbols):
            if not x.is_term and all(not y.is_term and y.name in nullable
                                     for j, y in enumerate(symbols) if j != i):
                unit.setdefault(r.origin.name, set()).add(x.name)
    # Depth first with an explicit stack, colouring nodes: a grey target closes a cycle.
    colour: dict[str, int] = {}
    for root in unit:
        if colour.get(root):
            continue
        path = [root]
        stack = [iter(sorted(unit.get(root, ())))]
        colour[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = 2
                stack.pop()
                continue
            if colour.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise GrammarError(f"rule {nxt} derives itself through {' -> '.join(cycle)} alone: its sentences "
                                   f"would have endless parses (remove the alternative that is only "
                                   f"{cycle[1] if len(cycle) > 1 else nxt})")
            if not colour.get(nxt):
                colour[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(unit.get(nxt, ()))))


def _check_expansions(grammar, text: str, max_rules: int) -> None:
    """`LimitExceeded` when the grammar's rules expand to more than ``max_rules`` BNF rules.

    Lark turns EBNF into BNF by distributing: each alternative, optional part (``x?``, ``[x]``,
    ``x*``) and small repeat (``x~n`` below 50: n copies) multiplies the alternatives of the
    expansion around it, so a short rule can stand for millions of rules, which Lark would
    spend minutes writing out.  This counts them first (an upper bound, over Lark's parse of
    the grammar), with an explicit stack.
    """
    total = 0
    cap = max_rules + 1
    for definition in grammar.rule_defs:
        name, tree = definition[0], definition[2]
        # Post-order: (node, children counted?); counts of finished nodes by id.  ``x*`` and
        # ``x+`` become a rule of their own (``_x: _x x | x``): twice x's alternatives, added
        # to the total as they are met.
        counts: dict[int, int] = {}
        stack = [(tree, False)]
        while stack:
            node, done = stack.pop()
            children = [c for c in getattr(node, "children", ()) if isinstance(c, lark.Tree)]
            if not done and children:
                stack.append((node, True))
                stack.extend((c, False) for c in children)
                continue
            inner = [counts.pop(id(c)) for c in children]
            kind = getattr(node, "data", None)
            if kind == "expansions":
                count = sum(inner)
            elif kind == "expansion":
                count = 1
                for c in inner:
                    count = min(count * c, cap)
            elif kind == "expr":
                base = inner[0] if inner else 1
                op, args = str(node.children[1]), [str(a) for a in node.children[2:]]
                if op == "?":
                    count = base + 1
                elif op in ("*", "+"):
                    total += 2 * base
                    count = 2 if op == "*" else 1
                elif op == "~":
                    low, high = (int(args[0]), int(args[-1])) if args else (1, 1)
                    if high >= 50:  # split into rules of a few copies each
                        total += 8 * min(base ** 5, cap)
                        count = 1
                    else:
                        count = sum(min(base ** k, cap) for k in range(low, high + 1))
                else:
                    count = 1
            elif kind == "maybe":
                count = (inner[0] if inner else 1) + 1
            else:
                count = inner[0] if inner else 1
            counts[id(node)] = min(count, cap)
        total = min(total + counts.get(id(tree), 1), cap)
        if total > max_rules:
            m = re.search(rf"^\s*[?!]?{re.escape(str(name))}\b", text, re.MULTILINE)
            where = f" (line {text.count(chr(10), 0, m.start()) + 1})" if m else ""
            raise LimitExceeded(f"the grammar expands to more than max_rules={max_rules} BNF rules, by rule "
                                f"{name}{where}: alternatives, optional parts and repeats (~n) multiply when "
                                f"Lark writes them out (raise max_rules=, or move repeated parts into rules "
                                f"of their own)")


def _check_nesting(text: str, max_nesting: int) -> None:
    """`LimitExceeded` naming the line where brackets nest deeper than ``max_nesting`` (Lark reads
    nesting recursively); strings, regexps and comments are skipped."""
    depth, line, i, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "/" and text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "\"/":
            i += 1
            while i < n and text[i] != c and text[i] != "\n":
                i += 2 if text[i] == "\\" else 1
        elif c in "([{":
            depth += 1
            if depth > max_nesting:
                raise LimitExceeded(f"the grammar nests brackets more than max_nesting={max_nesting} deep at line {line}")
        elif c in ")]}":
            depth -= 1
        i += 1


def _import_error(text: str, exc: OSError) -> str:
    missing = pathlib.Path(getattr(exc, "filename", None) or "").stem
    m = re.search(rf"^\s*%import\s+\.?{re.escape(missing)}\b", text, re.MULTILINE) if missing else None
    where = f" (line {text.count(chr(10), 0, m.start()) + 1})" if m else ""
    return (f"%import{where}: no grammar {missing or '?'!r} to import ({exc.strerror or exc}); imports resolve "
            f"next to the grammar file and in Lark's own grammars (common, ...)")


_REGEX_DFAS: dict[tuple[str, int], object] = {}  # terminal regexes shared by grammars (bounded)


def _regex_dfa(regex: str, max_states: int, seconds: float):
    dfa = _REGEX_DFAS.get((regex, max_states))
    if dfa is None:
        dfa = regex_to_dfa(Regex(regex, max_states=max_states, max_seconds=max(seconds, 0.001)), assertions=False)
        if len(_REGEX_DFAS) >= 4096:
            _REGEX_DFAS.clear()
        _REGEX_DFAS[(regex, max_states)] = dfa
    return dfa


def _terminal_dfa(terminal, grammar_text: str, max_states: int, seconds: float):
    pattern = terminal.pattern
    try:
        if isinstance(pattern, lark.lexer.PatternStr) and not set(pattern.flags) - {"i"}:
            dfa = literal_to_dfa(pattern.value, "i" in pattern.flags)
        else:
            regex = re.escape(pattern.value) if isinstance(pattern, lark.lexer.PatternStr) else \
                _EQUIVALENT_PATTERNS.get(pattern.value, pattern.value)
            flags = "".join(sorted(pattern.flags))
            if flags:
                regex = f"(?{flags}:{regex})"
            dfa = _regex_dfa(regex, max_states, seconds)
    except (RegexError, GuidedError) as exc:
        where = _where(grammar_text, terminal)
        if isinstance(exc, LimitExceeded):
            raise LimitExceeded(f"terminal {terminal.name}{where}: {exc}") from None
        raise GrammarError(f"terminal {terminal.name}{where}: {exc}") from None
    if dfa.initial == 0:
        raise GrammarError(f"terminal {terminal.name}{_where(grammar_text, terminal)} matches no text at all")
    if dfa.accepting[dfa.initial]:
        raise GrammarError(f"terminal {terminal.name}{_where(grammar_text, terminal)} matches the empty string: "
                           f"every terminal must match at least one character (as in Lark's lexers; "
                           f"make it optional in the rules instead, e.g. X? or [X])")
    return dfa


def _describe(text: str, terminal) -> str:
    """A terminal as the grammar spells it, with its line: ``NAME (line 3)``, or ``"do" (line 5)``
    for a terminal the grammar writes inline."""
    if re.search(rf"^\s*{re.escape(terminal.name)}(\.-?\d+)?\s*:", text, re.MULTILINE):
        return f"{terminal.name}{_where(text, terminal)}"
    value = terminal.pattern.value
    spelled = f"/{value}/" if isinstance(terminal.pattern, lark.lexer.PatternRE) else f'"{value}"'
    return f"{spelled}{_where(text, terminal)}"


def _where(text: str, terminal) -> str:
    """`` (line N)`` of a terminal's definition, or of its pattern for an anonymous one."""
    m = re.search(rf"^\s*{re.escape(terminal.name)}(\.-?\d+)?\s*:", text, re.MULTILINE)
    if m is None:
        value = terminal.pattern.value
        spelled = f"/{value}/" if isinstance(terminal.pattern, lark.lexer.PatternRE) else f'"{value}"'
        found = text.find(spelled)
        what = "an %ignore, " if terminal.name.startswith("__IGNORE") else ""
        return f" ({what}line {text.count(chr(10), 0, found) + 1})" if found >= 0 else f" ({what[:-2]})" if what else ""
    return f" (line {text.count(chr(10), 0, m.start()) + 1})"
