"""The Lark front-end: a Lark grammar to `guided.ir.CfgIR` (terminal DFAs + LALR(1) tables).

Lark reads the grammar (its full syntax: rules, terminals, ``%import`` from ``common``,
``%ignore``, priorities, templates) and builds the LALR(1) tables; each terminal's regex goes
through guided's regex front-end to a byte DFA.

Lexing semantics are Lark's contextual lexer, with one difference worth knowing: guided lexes
greedily (a lexeme ends when the next byte cannot extend it), while Lark tries the terminals
of a context in priority order and takes the first that matches.  The two agree unless two
terminals allowed in the same context can match overlapping text; where a string terminal and
a regex terminal match the same lexeme, the string wins, as in Lark.

Grammars that LALR(1) cannot handle are refused with Lark's own explanation (the colliding
rules); there is no Earley fallback yet, so rewrite such grammars (for instance, factor out
the common prefix of colliding alternatives).

>>> from guided.frontends.lark import Grammar, lark_to_ir
>>> ir = lark_to_ir(Grammar('start: "a" NUMBER\\n%import common.NUMBER'))
>>> sorted(t.name for t in ir.terminals)
['A', 'NUMBER']
"""

from __future__ import annotations

import functools
import os
import pathlib
import re
from dataclasses import dataclass

import lark
from lark.parsers.lalr_analysis import Shift

from guided.errors import GuidedError, RegexError, SpecError
from guided.frontends.regex import Regex, literal_to_dfa, regex_to_dfa
from guided.ir import END, CfgIR, Terminal

GRAMMARS_DIR = pathlib.Path(__file__).resolve().parent.parent.parent / "grammars"

# Lark's common.lark spells string terminals with a lookbehind, which no DFA can run; these are
# the same languages written without it.
_EQUIVALENT_PATTERNS = {
    r'".*?(?<!\\)(\\\\)*?"': r'"(?:[^"\\\n]|\\[^\n])*"',
    r'.*?(?<!\\)(\\\\)*?': r'(?:[^"\\\n]|\\[^\n])*',
}


class _NoLexer(lark.lexer.Lexer):
    """Stands in for Lark's lexer, which guided never runs: building it costs more than the tables."""

    def __init__(self, lexer_conf):
        pass

    def lex(self, lexer_state, parser_state):  # pragma: no cover - never called
        raise NotImplementedError


class GrammarError(SpecError):
    """A Lark grammar is malformed, not LALR(1), or uses a terminal guided cannot enforce."""


@dataclass(frozen=True)
class Grammar:
    """A Lark grammar constraint: the output must be a sentence of ``source`` from rule ``start``.

    ``source`` is the grammar text or a path to a ``.lark`` file (relative ``%import``s resolve
    next to it); a bare name such as ``"json"`` picks a grammar shipped in ``grammars/``.
    ``max_states`` bounds each terminal's automaton.

    >>> Grammar("json").start
    'start'
    """

    source: str | os.PathLike
    start: str = "start"
    max_states: int = 100_000

    def text_and_path(self) -> tuple[str, pathlib.Path | None]:
        src = self.source
        if isinstance(src, os.PathLike):
            path = pathlib.Path(src)
            return path.read_text(), path
        if "\n" not in src and (src.endswith(".lark") or re.fullmatch(r"[A-Za-z0-9_]+", src)):
            path = pathlib.Path(src)
            if not path.suffix:
                path = GRAMMARS_DIR / f"{src}.lark"
            if path.exists():
                return path.read_text(), path
            if src.endswith(".lark"):
                raise GrammarError(f"grammar file not found: {src}")
        return src, None

    def to_ir(self) -> CfgIR:
        """The intermediate form: terminal DFAs and LALR(1) tables (`lark_to_ir`)."""
        return lark_to_ir(self)


def lark_to_ir(spec: Grammar) -> CfgIR:
    """Build the intermediate form of ``spec``, or raise `GrammarError` naming the cause."""
    text, path = spec.text_and_path()
    try:
        parser = lark.Lark(
            text,
            parser="lalr",
            lexer=_NoLexer,
            start=spec.start,
            import_paths=[str(path.parent)] if path else [],
            maybe_placeholders=False,
            # No ``cache=``: Lark's cache unpickles its file before checking the grammar's hash,
            # so a file planted in the cache folder would run code.
        )
    except lark.exceptions.LarkError as exc:
        if "collision" in str(exc).lower():
            raise GrammarError(f"the grammar is not LALR(1); Lark's analysis: {exc}") from None
        raise GrammarError(f"malformed grammar: {exc}") from None

    lark_terminals = list(parser.terminals)
    index = {t.name: i for i, t in enumerate(lark_terminals)}
    # Lark's BasicLexer order: the first of several terminals matching the same text wins.
    order = sorted(lark_terminals, key=lambda t: (-t.priority, -t.pattern.max_width, -len(t.pattern.value), t.name))
    rank = {t.name: r for r, t in enumerate(order)}
    terminals = tuple(
        Terminal(
            name=t.name,
            dfa=_terminal_dfa(t, text, spec.max_states),
            priority=t.priority,
            is_string=isinstance(t.pattern, lark.lexer.PatternStr),
            order=rank[t.name],
        )
        for t in lark_terminals
    )

    table = parser.parser.parser._parse_table
    tables = ir_tables_from_lark(table, index)
    return CfgIR(
        terminals=terminals,
        ignore=frozenset(index[name] for name in parser.lexer_conf.ignore if name in index),
        start_state=table.start_states[spec.start],
        end_state=table.end_states[spec.start],
        source=str(path) if path else text[:200],
        **tables,
    )


def ir_tables_from_lark(table, terminal_index: dict[str, int]) -> dict:
    """Lark's LALR(1) parse table as `CfgIR` fields (actions, gotos, rules, names)."""
    nonterminals: dict[str, int] = {}
    rules: dict[object, int] = {}
    rule_list: list[tuple[int, int]] = []
    rule_names: list[str] = []
    actions: list[dict[int, int]] = []
    gotos: list[dict[int, int]] = []
    for state in range(len(table.states)):
        acts: dict[int, int] = {}
        gos: dict[int, int] = {}
        for symbol, (action, arg) in table.states[state].items():
            if symbol == "$END" or symbol in terminal_index:
                key = END if symbol == "$END" else terminal_index[symbol]
                if action is Shift:
                    acts[key] = arg
                else:
                    if arg not in rules:
                        lhs = nonterminals.setdefault(arg.origin.name, len(nonterminals))
                        rules[arg] = len(rule_list)
                        rule_list.append((lhs, len(arg.expansion)))
                        rule_names.append(str(arg))
                    acts[key] = -rules[arg] - 1
            else:
                gos[nonterminals.setdefault(symbol, len(nonterminals))] = arg
        actions.append(acts)
        gotos.append(gos)
    return dict(
        actions=tuple(actions),
        gotos=tuple(gotos),
        rules=tuple(rule_list),
        nonterminals=tuple(sorted(nonterminals, key=nonterminals.get)),
        rule_names=tuple(rule_names),
    )


@functools.lru_cache(maxsize=4096)
def _regex_dfa(regex: str, max_states: int):
    return regex_to_dfa(Regex(regex, max_states=max_states))


def _terminal_dfa(terminal, grammar_text: str, max_states: int):
    pattern = terminal.pattern
    if isinstance(pattern, lark.lexer.PatternStr):
        if not set(pattern.flags) - {"i"}:
            return literal_to_dfa(pattern.value, "i" in pattern.flags)
        regex = re.escape(pattern.value)
    else:
        regex = _EQUIVALENT_PATTERNS.get(pattern.value, pattern.value)
    flags = "".join(sorted(pattern.flags))
    if flags:
        regex = f"(?{flags}:{regex})"
    try:
        return _regex_dfa(regex, max_states)
    except (RegexError, GuidedError) as exc:
        line = _definition_line(grammar_text, terminal.name)
        where = f" (line {line})" if line else ""
        raise GrammarError(f"terminal {terminal.name}{where}: {exc}") from None


def _definition_line(text: str, name: str) -> int | None:
    m = re.search(rf"^\s*{re.escape(name)}(\.-?\d+)?\s*:", text, re.MULTILINE)
    return text.count("\n", 0, m.start()) + 1 if m else None
