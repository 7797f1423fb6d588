"""The regex front-end: a regular expression to a UTF-8 exact byte-level DFA.

Patterns are parsed with interegular and compiled to a `guided.ir.dfa.ByteNFA`, then determinised
under configurable limits.  A pattern must match the *whole* output (``re.fullmatch``).

Supported syntax (Python ``re`` spelling):

- literals, escapes (``\\n \\t \\xNN \\uNNNN \\U0010FFFF \\x{...}``, octal ``\\0NN``), ``.``
  (any character but ``\\n``; with ``(?s)`` any character);
- classes ``[a-z]``, ``[^...]`` (a ``]`` first in a class is a literal, as in ``re``),
  ``\\d \\w \\s \\D \\W \\S`` with their Unicode meanings, exactly as ``re`` reads them
  (``\\d`` is any decimal digit, ``٣`` included; ``[0-9]`` for ASCII digits);
- groups ``(...)``, ``(?:...)``, ``(?P<name>...)``, alternation ``|``;
- quantifiers ``* + ? {n} {n,} {,m} {n,m}`` (lazy forms accepted: under full-match they are the same);
- inline flags ``(?i)``, ``(?s)``, ``(?m)``, scoped ``(?i:...)``;
- zero-width assertions anywhere, compiled into the automaton exactly
  (`guided.frontends.regex_assertions`): lookaheads ``(?=...)`` ``(?!...)``, lookbehinds
  ``(?<=...)`` ``(?<!...)``, word boundaries ``\\b \\B`` (``re``'s Unicode word characters;
  ``\\B`` fails on the empty text as in ``re`` before Python 3.14), ``^``/``\\A`` (the start),
  ``$`` (the end or before a final newline, as ``re``), ``\\Z``, and under ``(?m)`` the line
  anchors.  A lookahead may hold any of these (``(?=.*\\bcat\\b)``: one automaton per state
  of the text before it), a lookbehind lookbehinds and ``^``; what would look past a
  lookbehind's end (``(?<=a$)``, ``(?<=a\\b)``, ``(?<=(?=a)a)``) is refused;
- atomic groups ``(?>...)`` and possessive quantifiers ``*+ ++ ?+ {n,m}+`` where their first match
  does not depend on the order ``re`` tries alternatives in: a body no match of which is a
  prefix of another (``(?>abc|d)`` is ``abc|d``), or a greedy repeat of such a body
  (``\\d++`` is ``\\d+(?!\\d)``); others are refused.

Refused with a `guided.errors.RegexError` naming the position: what ``re`` itself refuses (with
its message), backreferences, the lookaheads inside lookbehinds above, anchors under a scoped ``(?m:...)``,
conditionals, Unicode property classes ``\\p{...}``, the flags ``(?a)``, ``(?L)``, ``(?x)``,
and the noncharacters U+FDD0 to U+FDDF (used internally).  Comments ``(?#...)`` are ignored, as
``re`` ignores them.  `regex_to_dfa(..., assertions=False)` (Lark terminals) refuses every
zero-width assertion, edge anchors included: Lark checks a terminal's ``^`` and ``$`` against
the whole text, not the terminal's own match.

Limits (`guided.errors.LimitExceeded`, fast): groups nested deeper than ``max_nesting``; a
pattern whose automaton must have more than ``max_states`` states (a shortest or longest match
longer than that: counted repeats such as ``.{100000}`` unroll), or whose construction
unrolls past twice that many automaton states or runs past ``max_seconds`` (parsing,
building, determinising and minimising share the one deadline).

>>> dfa = regex_to_dfa(Regex(r"[0-9]{4}-[0-9]{2}"))
>>> dfa.fullmatch(b"2024-05"), dfa.is_prefix(b"20"), dfa.fullmatch(b"2024-5")
(True, True, False)
"""

from __future__ import annotations

import copy
import functools
import re
import time
import warnings
from dataclasses import dataclass

from interegular import patterns as _ip

from guided.errors import LimitExceeded, RegexError, UsageError
from guided.ir.cfg import CfgIR
from guided.ir.dfa import (
    DEAD,
    MAX_UNICODE,
    ByteDFA,
    ByteNFA,
    Limits,
    codepoint_ranges,
    complement_codepoints,
    determinize,
)
from guided.frontends.regex_assertions import (
    Assertion,
    ContextualLookahead,
    determinize_guarded,
    histories_of,
    lookahead,
    lookbehind,
)


@dataclass(frozen=True)
class Regex:
    """A regular-expression constraint: the output must fully match ``pattern``.

    ``max_states`` bounds the automaton (a guard against patterns such as ``(a|b)*a(a|b){30}``
    whose DFA is exponential); ``max_seconds`` bounds construction time; ``max_nesting`` bounds
    how deep groups nest.

    >>> Regex(r"\\d+").pattern
    '\\\\d+'
    """

    pattern: str
    max_states: int = 100_000
    max_seconds: float = 10.0
    max_nesting: int = 40

    def __post_init__(self) -> None:
        if not isinstance(self.pattern, str):
            hint = (" (a compiled grammar is already compiled: pass it on as it is)"
                    if hasattr(self.pattern, "matcher") else "")
            raise UsageError(f"guided.Regex takes a pattern string, got {type(self.pattern).__name__}{hint}")
        check_limits(self, max_states=int, max_seconds=float, max_nesting=int)

    def to_ir(self) -> ByteDFA | CfgIR:
        """The intermediate form: a trimmed byte DFA (`regex_to_dfa`); for a pattern whose one
        large repeat (``x[0-9]{1,100000}y``) can be counted exactly, a one-terminal grammar
        counting it instead of unrolling it (`guided.frontends.regex_counted`)."""
        from guided.frontends.regex_counted import counted_regex_ir, has_large_repeat

        if has_large_repeat(self.pattern):
            counted = counted_regex_ir(self)
            if counted is not None:
                return counted
        return regex_to_dfa(self)


def shown(pattern: str, width: int = 80) -> str:
    """``repr(pattern)``, shortened for messages: patterns can be megabytes long."""
    text = repr(pattern)
    return text if len(text) <= width else f"{text[:width - 20]}...{text[-12:]} ({len(pattern)} characters)"


def check_limits(spec, **kinds: type) -> None:
    """Refuse a spec whose limit fields (``name=int`` or ``name=float``) are not positive numbers."""
    for name, kind in kinds.items():
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int) or not value > 0:
            raise UsageError(f"{type(spec).__name__}({name}=...) takes a positive "
                             f"{'number' if kind is float else 'integer'}, got {value!r}")


def regex_to_dfa(spec: Regex | str, *, assertions: bool = True) -> ByteDFA:
    """Compile a regex to a trimmed byte-level DFA, or raise `RegexError` / `LimitExceeded`.

    ``assertions=False`` refuses lookarounds, word boundaries and anchors inside the pattern (a
    grammar terminal's would look at the text around it).
    """
    if isinstance(spec, str):
        spec = Regex(spec)
    limits = Limits(spec.max_states, spec.max_seconds, time.monotonic() + spec.max_seconds)
    builder = _build(spec.pattern, limits, spec.max_nesting, assertions)
    dfa = builder.finish(f"regex {shown(spec.pattern)}", builder.tree)
    if dfa.initial == 0:
        raise RegexError("the regex matches no string at all", spec.pattern)
    return dfa


@functools.lru_cache(maxsize=4096)
def literal_to_dfa(text: str, ignore_case: bool = False) -> ByteDFA:
    """The DFA of one literal string (optionally case-insensitive, as ``re.IGNORECASE``), built
    without going through the regex parser: grammars have many keywords.

    >>> literal_to_dfa("select", ignore_case=True).fullmatch(b"SeLeCt")
    True
    """
    nfa = ByteNFA()
    state = nfa.start
    for char in text:
        nxt = nfa.add_state()
        chars = _case_variants(char) if ignore_case else {char}
        nfa.add_codepoints(state, codepoint_ranges(ord(c) for c in chars), nxt)
        state = nxt
    nfa.accepting.add(state)
    return determinize(nfa, what=f"literal {text!r}", minimal=False)  # a chain is already minimal


def regex_to_nfa(pattern: str, limits: Limits | None = None, max_nesting: int = 40) -> ByteNFA:
    """Parse ``pattern`` and build its byte-level NFA within ``limits`` (determinised first only
    where it has zero-width assertions, which a plain NFA cannot carry)."""
    limits = limits or Limits()
    builder = _build(pattern, limits, max_nesting)
    if not builder.guards:
        return builder.nfa
    from guided.ir.dfa_ops import embed

    nfa = ByteNFA()
    end = nfa.add_state()
    embed(nfa, builder.finish(f"regex {shown(pattern)}"), nfa.start, end)
    nfa.accepting.add(end)
    return nfa


def _build(pattern: str, limits: Limits, max_nesting: int, assertions: bool = True) -> "_Builder":
    """The builder holding ``pattern``'s NFA (its accepting state added) and its guarded moves."""
    # A grammar terminal's edge anchors are not implied by a full match: Lark reads `^` and `$`
    # there at the ends of the whole text, so they are refused like the other assertions.
    body = _check_and_normalise(pattern, max_nesting, edges=assertions, assertions=assertions)
    _check_python_syntax(pattern)
    tree = parse_tree(body, pattern, limits, max_nesting)
    nfa = ByteNFA()
    end = nfa.add_state()
    builder = _Builder(nfa, pattern, limits)
    builder.build(tree, nfa.start, end, _ip.REFlags(0))
    nfa.accepting.add(end)
    builder.tree = tree
    return builder


def parse_tree(body: str, pattern: str, limits: Limits | None = None, max_nesting: int = 40):
    """interegular's parse tree of ``body`` (``pattern`` normalised), checked against ``limits``.

    `RegexError` for a malformed pattern, `LimitExceeded` for one whose automaton cannot fit:
    both before any automaton state is built.
    """
    parser = _ip._ParsePattern(body)
    try:
        tree = parser.parse().simplify()
    except _ip.Unsupported as exc:
        raise RegexError(f"unsupported regex construct ({exc})", pattern, _map_position(pattern, body, parser.index)) from None
    except _ip.InvalidSyntax as exc:
        raise RegexError(f"invalid regex syntax{': ' + str(exc) if str(exc) else ''}", pattern,
                         _map_position(pattern, body, parser.index)) from None
    except _ip.NoMatch as exc:
        raise RegexError("invalid regex syntax", pattern, _map_position(pattern, body, exc.index)) from None
    except ValueError as exc:
        raise RegexError(f"invalid regex: {exc}", pattern, None) from None
    except RecursionError:
        raise LimitExceeded(f"regex {shown(pattern)}: nested too deeply to parse (lower the nesting, "
                            f"max_nesting={max_nesting})") from None
    except (AttributeError, TypeError, IndexError):  # interegular's parser on input it does not expect
        raise RegexError("invalid regex syntax", pattern, _map_position(pattern, body, parser.index)) from None
    _check_size(tree, pattern, limits or Limits(), max_nesting)
    return tree


_SATURATED = 1 << 62  # sizes are only compared with limits: stop counting past this


def _check_size(tree, pattern: str, limits: Limits, max_nesting: int) -> None:
    """Refuse a tree whose automaton cannot fit in ``limits.max_states`` (lower bounds, one pass).

    A trimmed DFA has more states than its shortest match has bytes (the states along that
    match are distinct), and, when the language is finite, more than its longest match has
    bytes; a character is at least one byte.  The NFA is built by unrolling counted repeats,
    so its size is the tree's size with each repeat's body counted once per copy.
    """
    # Post-order over an explicit stack: (node, depth, children done?).  Results per node id:
    # (nfa states, shortest match, longest match or None when unbounded).
    results: dict[int, tuple[int, int, int | None]] = {}
    stack = [(tree, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > 4 * max_nesting:
            raise LimitExceeded(f"regex {shown(pattern)}: its parse tree nests more than {4 * max_nesting} levels "
                                f"(groups and repeats inside one another; max_nesting={max_nesting})")
        if isinstance(node, _ip.Pattern):
            children = list(node.options)
        elif isinstance(node, _ip._Concatenation):
            children = list(node.parts)
        elif isinstance(node, _ip._Repeated):
            children = [node.base]
        else:
            children = []
        if children and not done:
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children)
            continue
        parts = [results[id(c)] for c in children]
        if isinstance(node, _ip.Pattern):
            size = sum(p[0] for p in parts)
            shortest = min((p[1] for p in parts), default=0)
            longest = None if any(p[2] is None for p in parts) else max((p[2] for p in parts), default=0)
        elif isinstance(node, _ip._Concatenation):
            size = sum(p[0] for p in parts) + len(parts)
            shortest = sum(p[1] for p in parts)
            longest = None if any(p[2] is None for p in parts) else sum(p[2] for p in parts)
        elif isinstance(node, _ip._NonCapturing) or (isinstance(node, _ip._CharGroup) and
                                                      node.chars & (_MARKS | _ATOMIC_MARKS)):
            size, shortest, longest = 1, 0, 0  # zero-width (a lookaround's body is built on its own)
        elif isinstance(node, _ip._Repeated):
            (b_size, b_short, b_long), lo, hi = parts[0], node.min, node.max
            size = b_size * (max(lo, hi if hi is not None else lo) + 1) + 2
            shortest = b_short * lo
            longest = 0 if b_long == 0 else None if hi is None or b_long is None else b_long * hi
        elif node is _ip._EMPTY:
            size, shortest, longest = 1, 0, 0
        else:  # a character class or '.': at least one byte
            size, shortest, longest = 2, 1, 1
        results[id(node)] = (min(size, _SATURATED), min(shortest, _SATURATED),
                             None if longest is None else min(longest, _SATURATED))
    size, shortest, longest = results[id(tree)]
    bound = max(shortest, longest or 0) + 2  # states along the match, the dead state
    if bound > limits.max_states:
        which = "shortest" if shortest >= (longest or 0) else "longest"
        length = "more than 10**18" if max(shortest, longest or 0) >= _SATURATED else max(shortest, longest or 0)
        raise LimitExceeded(f"regex {shown(pattern)}: its {which} match is {length} characters, so its automaton needs "
                            f"more than max_states={limits.max_states} states{_repeat_hint(pattern)}")
    if size > 2 * limits.max_states:
        raise LimitExceeded(f"regex {shown(pattern)}: building it unrolls to more than {2 * limits.max_states} automaton "
                            f"states (twice max_states={limits.max_states}){_repeat_hint(pattern)}")


def _repeat_hint(pattern: str) -> str:
    """Where the largest counted repeat is, which is usually the cause of a size limit."""
    best = None
    for m in re.finditer(r"(?<!\\)\{(\d*)(?:,(\d*))?\}", pattern):
        count = max(int(m.group(1) or 0), int(m.group(2) or 0))
        if best is None or count > best[0]:
            best = (count, m.start(), m.group(0))
    if best is None:
        return " (raise max_states=, or simplify the pattern)"
    return (f" (the counted repeat {best[2]} at position {best[1]} copies its body {best[0]} times: "
            f"raise max_states=, or shorten the repeat)")


def _check_python_syntax(pattern: str) -> None:
    """What ``re`` refuses is refused, with its message and position (interegular is laxer)."""
    # \x{...} is guided's own spelling of \U........
    spelled = _BRACED_HEX.sub(lambda m: f"{m.group(1)}\\U{int(m.group(2), 16):08x}", pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FutureWarning on "[[", "--" ...: still literal characters
        try:
            re.compile(spelled)
        except re.error as exc:
            raise RegexError(f"invalid regex syntax: {exc.msg}", pattern, exc.pos) from None
        except OverflowError:
            return  # a repeat count past re's own maximum: the size check refuses it (LimitExceeded)
        except RecursionError as exc:
            raise RegexError(f"invalid regex: {exc}", pattern, None) from None


class _Builder:
    """Thompson construction from interegular's parse tree onto a ByteNFA.

    ``dialect`` gives the class escapes (``\\d \\w \\s`` and their complements) their sets:
    ``"python"`` as ``re`` (Unicode), ``"ecma"`` as ECMA-262 (ASCII ``\\d \\w``, its own ``\\s``).
    Counted repeats are unrolled; past twice ``limits.max_states`` NFA states or the deadline,
    `LimitExceeded` (`parse_tree` refuses most such patterns before anything is built).
    """

    def __init__(self, nfa: ByteNFA, pattern: str, limits: Limits | None = None, dialect: str = "python"):
        limits = limits or Limits()
        self.nfa = nfa
        self.pattern = pattern
        self.dialect = dialect
        self.max_nfa_states = 2 * limits.max_states
        self.deadline = limits.until()
        self.limits = limits
        self.calls = 0
        self._ranges: dict[tuple, list[tuple[int, int]]] = {}
        # Caches are keyed by id(node): the nodes stay alive with the builder so that no id is
        # reused by another node (a builder may build several parse trees, one per alternative).
        self._alive: list = []
        # Zero-width assertions: state -> [(assertion, target)], opened by the guarded construction.
        self.guards: dict[int, list[tuple[Assertion | ContextualLookahead, int]]] = {}
        self._assertions: dict[object, Assertion | ContextualLookahead] = {}  # shared with forks: one per node / placeholder
        self._universe: list[ByteDFA] = []
        self.tree = None  # the parse tree built from the start state, once built (see finish)

    # --- how characters are spelt (the JSON Schema builder spells them its own way) -----------

    def char_set(self, nfa: ByteNFA, start: int, end: int, ranges: list[tuple[int, int]]) -> None:
        """One character of ``ranges`` (sorted code point ranges), from ``start`` to ``end``."""
        nfa.add_codepoints(start, ranges, end)

    def any_char(self, nfa: ByteNFA, start: int, end: int) -> None:
        """Any one character (the text around a match: never narrowed)."""
        nfa.add_codepoints(start, [(0, MAX_UNICODE)], end)

    # --- zero-width assertions -------------------------------------------------------------------

    def finish(self, what: str, tree=None) -> ByteDFA:
        """The trimmed, minimised DFA of the NFA built so far (its accepting states set); ``tree``:
        what was built, if it spans the whole text (`_top_lookaheads` may then take a faster way)."""
        if self.guards:
            if tree is not None:
                found = self._top_lookaheads(tree, what)
                if found is not None:
                    return found
            return determinize_guarded(self.nfa, self.guards, self.limits, what)
        return determinize(self.nfa, self.limits, what=what)

    def _top_lookaheads(self, tree, what: str) -> ByteDFA | None:
        """A whole-text pattern whose only assertions are lookaheads in its top concatenation
        (``(?=.*[A-Z])(?=.*\\d).{8,64}``), by automaton products: ``X(?=A)Y`` is ``X·(Y ∩ AΣ*)``
        and ``X(?!A)Y`` is ``X·(Y - AΣ*)`` where Y runs to the end of the text.  Products of a few
        DFAs are much cheaper than carrying the obligations state by state.  None where the
        pattern has another shape (the general construction then runs)."""
        from guided.ir.dfa_ops import concat_dfas, difference, intersect

        if not (isinstance(tree, _ip.Pattern) and len(tree.options) == 1 and
                isinstance(tree.options[0], _ip._Concatenation)):
            return None
        flags = _ip._combine_flags(_ip.REFlags(0), tree.added_flags, tree.removed_flags)
        parts = tree.options[0].parts
        if any(isinstance(p, _ip._NonCapturing) and p.backwards for p in parts):
            return None
        if not any(isinstance(p, _ip._NonCapturing) for p in parts):
            return None
        limit = self.limits.max_states

        def plain(run) -> ByteDFA | None:  # the DFA of ordinary parts, None if they hold assertions
            sub = self._fork()
            last = sub.nfa.add_state()
            sub.build(_ip._Concatenation(tuple(run)), sub.nfa.start, last, flags)
            sub.nfa.accepting.add(last)
            return None if sub.guards else sub.finish(what)

        suffix: ByteDFA | None = None  # from the current position to the end; None: the empty text
        run: list = []
        for part in reversed(parts):
            if not isinstance(part, _ip._NonCapturing):
                run.insert(0, part)
                continue
            if run or suffix is None:
                rest = plain(run)
                if rest is None:
                    return None
                rest = rest if suffix is None else concat_dfas([rest, suffix], limit, what)
            else:
                rest = suffix
            assertion = self._assertions[(id(part), flags)]
            if isinstance(assertion, ContextualLookahead):
                return None
            suffix = (intersect if assertion.positive else difference)(rest, assertion.dfa, limit, what)
            run = []
        head = plain(run)
        if head is None:
            return None
        assert suffix is not None
        return concat_dfas([head, suffix], limit, what) if run else suffix

    def _fork(self) -> "_Builder":
        """A builder like this one over a fresh NFA (for a lookaround's body)."""
        sub = copy.copy(self)
        sub.nfa = ByteNFA()
        sub.guards = {}
        return sub

    def _loop(self, nfa: ByteNFA, start: int, end: int) -> None:
        """Any text, from ``start`` to ``end``."""
        loop, back = nfa.add_state(), nfa.add_state()
        nfa.add_epsilon(start, loop)
        self.any_char(nfa, loop, back)
        nfa.add_epsilon(back, loop)
        nfa.add_epsilon(loop, end)

    def _language(self, *pieces) -> ByteDFA:
        """The DFA of the concatenated ``pieces``: "any" (any text), "char" (any one character),
        "" (the empty text) or a list of code point ranges (one character of them)."""
        nfa = ByteNFA()
        state = nfa.start
        for piece in pieces:
            nxt = nfa.add_state()
            if piece == "any":
                self._loop(nfa, state, nxt)
            elif piece == "char":
                self.any_char(nfa, state, nxt)
            elif piece == "":
                nfa.add_epsilon(state, nxt)
            else:
                self.char_set(nfa, state, nxt, piece)
            state = nxt
        nfa.accepting.add(state)
        return determinize(nfa, self.limits, what=f"regex {shown(self.pattern)}")

    def universe(self) -> ByteDFA:
        """Every text, as spelt."""
        if not self._universe:
            self._universe.append(self._language("any"))
        return self._universe[0]

    def _assertion(self, key: str) -> Assertion:
        """The assertions placeholders are made of, built once per builder family."""
        found = self._assertions.get(key)
        if found is None:
            words = list(escape_ranges("w", self.dialect)) if "word" in key else []
            newline = [(10, 10)]
            found = {
                "word before": lambda: lookbehind(self._language("any", words), True),
                "no word before": lambda: lookbehind(self._language("any", words), False),
                "word after": lambda: lookahead(self._language(words, "any"), True, self.universe()),
                "no word after": lambda: lookahead(self._language(words, "any"), False, self.universe()),
                "text before": lambda: lookbehind(self._language("any", "char"), True),
                "no text before": lambda: lookbehind(self._language("any", "char"), False),
                "text after": lambda: lookahead(self._language("char", "any"), True, self.universe()),
                "no text after": lambda: lookahead(self._language("char", "any"), False, self.universe()),
                # Python's $: at the end, or before a newline that ends the text.
                "end or final newline": lambda: lookahead(self._union([""], [newline]), True, self.universe()),
                "line start": lambda: lookbehind(self._union([""], ["any", newline]), True),
                "line end": lambda: lookahead(self._union([""], [newline, "any"]), True, self.universe()),
            }[key]()
            self._assertions[key] = found
        return found

    def _union(self, *alternatives) -> ByteDFA:
        from guided.ir.dfa_ops import union_dfas

        return union_dfas([self._language(*alt) for alt in alternatives])

    def _guards(self, start: int, end: int, *paths: tuple[str, ...]) -> None:
        """Guarded moves from ``start`` to ``end``: one path per alternative, each a chain of assertions."""
        for path in paths:
            state = start
            for k, key in enumerate(path):
                nxt = end if k == len(path) - 1 else self.nfa.add_state()
                self.guards.setdefault(state, []).append((self._assertion(key), nxt))
                state = nxt

    def _mark(self, marker: str, start: int, end: int) -> None:
        """An assertion placeholder (`_check_and_normalise` checked where it stands)."""
        if marker == BOUNDARY:
            self._guards(start, end, ("word before", "no word after"), ("no word before", "word after"))
        elif marker == NON_BOUNDARY:
            if self.dialect == "python" and _EMPTY_TEXT_HAS_NO_NON_BOUNDARY:
                # re's \B fails on the empty text (before Python 3.14)
                self._guards(start, end, ("word before", "word after"),
                             ("no word before", "no word after", "text before"),
                             ("no word before", "no word after", "no text before", "text after"))
            else:
                self._guards(start, end, ("word before", "word after"), ("no word before", "no word after"))
        elif marker == START:
            self._guards(start, end, ("no text before",))
        elif marker == END:
            self._guards(start, end, ("no text after",))
        elif marker == PY_END:
            self._guards(start, end, ("end or final newline",))
        elif marker == LINE_START:
            self._guards(start, end, ("line start",))
        else:
            self._guards(start, end, ("line end",))

    def _alone(self, node, flags) -> ByteDFA:
        """The DFA of ``node``'s own matches (no assertion may be in it)."""
        sub = self._fork()
        last = sub.nfa.add_state()
        sub.build(node, sub.nfa.start, last, flags)
        sub.nfa.accepting.add(last)
        if sub.guards:
            raise RegexError("an atomic group or possessive quantifier holding an assertion is not supported",
                             self.pattern, _atomic_position(self.pattern))
        return sub.finish(f"regex {shown(self.pattern)}")

    def _atomic(self, node, start: int, end: int, flags, lazy: bool) -> None:
        """``(?>X)`` or a possessive ``X*+``: X's first match only, with no backtracking into it.

        Where no match of X is a proper prefix of another (prefix-free), at most one can start
        here, so X's first match is X's only one: X as it is.  A greedy repeat ``Y{n,m}`` of a
        prefix-free Y takes Y as often as Y matches, up to m: ``Y{m} | Y{n,m-1}(?!Y)``.
        Anything else is refused (its first match depends on the order re tries alternatives in).
        """
        node = _unwrap(node)
        if _prefix_free(self._alone(node, flags)):
            self.build(node, start, end, flags)
            return
        if isinstance(node, _ip._Repeated) and not lazy:
            base = self._alone(node.base, flags)
            if _prefix_free(base):
                lo, hi = node.min, node.max
                if hi is not None:
                    self.build(_ip._Repeated(node.base, hi, hi), start, end, flags)
                if hi is None or hi > lo:
                    middle = self.nfa.add_state()
                    self.build(_ip._Repeated(node.base, lo, None if hi is None else hi - 1), start, middle, flags)
                    key = ("no more", id(node.base), flags)
                    found = self._assertions.get(key)
                    if found is None:
                        nfa = ByteNFA()
                        middle2, last = nfa.add_state(), nfa.add_state()
                        from guided.ir.dfa_ops import embed

                        embed(nfa, base, nfa.start, middle2)
                        self._loop(nfa, middle2, last)
                        nfa.accepting.add(last)
                        found = self._assertions[key] = lookahead(determinize(nfa, self.limits), False, self.universe())
                        self._alive.append(node.base)
                    self.guards.setdefault(middle, []).append((found, end))
                return
        raise RegexError("an atomic group or possessive quantifier is only supported where its first match is "
                         "its only one (no match a prefix of another, e.g. (?>abc|d)) or it repeats such a "
                         "pattern greedily (\\d++, [^\"]*+, (?>(?:ab)*))", self.pattern, _atomic_position(self.pattern))

    def _lookaround(self, node, start: int, end: int, flags) -> None:
        """``(?=A)``, ``(?!A)``, ``(?<=B)`` or ``(?<!B)``: its body compiled once (Σ*B or AΣ*)."""
        key = (id(node), flags)
        found = self._assertions.get(key)
        if found is None:
            sub = self._fork()
            nfa = sub.nfa
            middle, last = nfa.add_state(), nfa.add_state()
            if node.backwards:
                sub._loop(nfa, nfa.start, middle)
                sub.build(node.inner, middle, last, flags)
            else:
                sub.build(node.inner, nfa.start, middle, flags)
                sub._loop(nfa, middle, last)
            nfa.accepting.add(last)
            what = f"regex {shown(self.pattern)}"
            if not node.backwards and histories_of(sub.guards):
                # Its body looks back (\b, a lookbehind...): one automaton per state of what it reads.
                found = ContextualLookahead(nfa, sub.guards, not node.negate, self.universe(), self.limits, what)
            else:
                dfa = sub.finish(what)
                found = (lookbehind(dfa, not node.negate) if node.backwards
                         else lookahead(dfa, not node.negate, self.universe()))
            self._assertions[key] = found
            self._alive.append(node)
        self.guards.setdefault(start, []).append((found, end))

    def ranges(self, group, flags) -> list[tuple[int, int]]:
        """`_class_ranges`, once per class node: a counted repeat builds its body many times."""
        key = (id(group), flags)
        found = self._ranges.get(key)
        if found is None:
            found = self._ranges[key] = _class_ranges(group, flags, self.dialect)
            self._alive.append(group)
        return found

    def build(self, node, start: int, end: int, flags) -> None:
        nfa = self.nfa
        self.calls += 1
        if self.calls % 1024 == 0:
            if nfa.num_states > self.max_nfa_states:
                raise LimitExceeded(f"regex {shown(self.pattern)}: building it unrolls to more than {self.max_nfa_states} "
                                    f"automaton states (twice max_states={self.limits.max_states})"
                                    f"{_repeat_hint(self.pattern)}")
            if time.monotonic() > self.deadline:
                raise LimitExceeded(f"regex {shown(self.pattern)}: construction took longer than "
                                    f"max_seconds={self.limits.max_seconds} s{_repeat_hint(self.pattern)}")
        if isinstance(node, _ip.Pattern):
            flags = _ip._combine_flags(flags, node.added_flags, node.removed_flags)
            for option in node.options:
                self.build(option, start, end, flags)
        elif isinstance(node, _ip._Concatenation):
            state = start
            parts = list(node.parts)
            if not parts:
                nfa.add_epsilon(start, end)
            marks = [_atomic_mark(part) for part in parts]
            last = max((i for i, mark in enumerate(marks) if not mark), default=-1)
            for i, part in enumerate(parts):
                if marks[i]:
                    continue  # read with the part before it
                nxt = end if i == last else nfa.add_state()
                if isinstance(part, _ip._NonCapturing):
                    self._lookaround(part, state, nxt, flags)
                elif i + 1 < len(parts) and marks[i + 1]:
                    self._atomic(part, state, nxt, flags, lazy=marks[i + 1] == ATOMIC_LAZY)
                else:
                    self.build(part, state, nxt, flags)
                state = nxt
            if last < 0 and parts:
                nfa.add_epsilon(start, end)
        elif isinstance(node, _ip._Repeated):
            self._repeat(node, start, end, flags)
        elif isinstance(node, _ip._CharGroup) and len(node.chars) == 1 and node.chars & _MARKS:
            self._mark(next(iter(node.chars)), start, end)
        elif isinstance(node, _ip._CharGroup):
            nfa.add_codepoints(start, self.ranges(node, flags), end)
        elif node is _ip._DOT:
            excluded = [] if flags & _ip.REFlags.SINGLE_LINE else [(10, 10)]
            nfa.add_codepoints(start, complement_codepoints(excluded), end)
        elif node is _ip._EMPTY:
            nfa.add_epsilon(start, end)
        else:  # pragma: no cover - interegular grew a node type we do not know
            raise RegexError(f"unsupported regex node {type(node).__name__}", self.pattern)

    def _repeat(self, node, start: int, end: int, flags) -> None:
        nfa = self.nfa
        lo, hi = node.min, node.max
        if hi is not None and hi < lo:
            raise RegexError(f"repetition {{{lo},{hi}}} has max < min", self.pattern)
        state = start
        for _ in range(lo):
            nxt = nfa.add_state()
            self.build(node.base, state, nxt, flags)
            state = nxt
        if hi is None:
            # Loop through a fresh state so the epsilon back-edge cannot leak into `state`'s other paths.
            loop = nfa.add_state()
            nfa.add_epsilon(state, loop)
            body_end = nfa.add_state()
            self.build(node.base, loop, body_end, flags)
            nfa.add_epsilon(body_end, loop)
            nfa.add_epsilon(loop, end)
            return
        for _ in range(hi - lo):
            nfa.add_epsilon(state, end)
            nxt = nfa.add_state()
            self.build(node.base, state, nxt, flags)
            state = nxt
        nfa.add_epsilon(state, end)


# The class escapes reach interegular as one noncharacter each (its own sets are ASCII and it
# merges them into the class), and the construction expands them in the pattern's dialect.
CLASS_ESCAPES = {escape: chr(0xFDD0 + i) for i, escape in enumerate("dDwWsS")}
_PLACEHOLDERS = {v: k for k, v in CLASS_ESCAPES.items()}
# Zero-width assertions other than lookarounds reach interegular the same way, one noncharacter
# each, and the construction lays each down as guarded moves (guided.frontends.regex_assertions).
BOUNDARY, NON_BOUNDARY, START, END, PY_END, LINE_START, LINE_END = (chr(0xFDD6 + i) for i in range(7))
_MARKS = frozenset((BOUNDARY, NON_BOUNDARY, START, END, PY_END, LINE_START, LINE_END))
# After a group or repeat: read it atomically ((?>X), X*+), its text holding a lazy quantifier or not.
ATOMIC, ATOMIC_LAZY = chr(0xFDDD), chr(0xFDDE)
_ATOMIC_MARKS = frozenset((ATOMIC, ATOMIC_LAZY))
_LOOKS_BACK = frozenset((BOUNDARY, NON_BOUNDARY, START, LINE_START))  # each needs the text before it
_LOOKS_AHEAD = frozenset((BOUNDARY, NON_BOUNDARY, END, PY_END, LINE_END))  # ... or after it


def _internal(c: str) -> bool:
    """Is ``c`` one of the noncharacters U+FDD0 to U+FDDF this module uses as placeholders?"""
    return 0xFDD0 <= ord(c) <= 0xFDDF
_ECMA_SETS = {
    "d": ((0x30, 0x39),),
    "w": ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)),
    # WhiteSpace and LineTerminator
    "s": ((0x09, 0x0D), (0x20, 0x20), (0xA0, 0xA0), (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029),
          (0x202F, 0x202F), (0x205F, 0x205F), (0x3000, 0x3000), (0xFEFF, 0xFEFF)),
}


@functools.cache
def escape_ranges(escape: str, dialect: str) -> tuple[tuple[int, int], ...]:
    """The code points of ``\\d \\D \\w \\W \\s \\S`` (``escape`` is the letter) in ``dialect``.

    Python: exactly the sets ``re`` matches (``str.isdecimal``, ``isalnum`` or ``_``, ``isspace``
    for this Python's Unicode version), read off ``re`` itself.

    >>> escape_ranges("d", "ecma"), any(lo <= ord("٣") <= hi for lo, hi in escape_ranges("d", "python"))
    (((48, 57),), True)
    """
    ranges = _ECMA_SETS[escape.lower()] if dialect == "ecma" else _python_escape(escape.lower())
    return tuple(complement_codepoints(ranges)) if escape.isupper() else tuple(ranges)


@functools.cache
def _python_escape(letter: str) -> tuple[tuple[int, int], ...]:
    every = "".join(map(chr, range(MAX_UNICODE + 1)))
    return tuple((m.start(), m.end() - 1) for m in re.finditer(f"\\{letter}+", every))


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(a, b) for a, b in out]


def _class_ranges(group, flags, dialect: str = "python") -> list[tuple[int, int]]:
    chars = set(group.chars)
    escapes = [_PLACEHOLDERS[c] for c in chars if c in _PLACEHOLDERS]
    if len(chars) == 1 and not escapes and not group.negated and not flags & _ip.REFlags.CASE_INSENSITIVE:
        cp = ord(next(iter(chars)))
        return [(cp, cp)]
    chars.difference_update(_PLACEHOLDERS)
    if flags & _ip.REFlags.CASE_INSENSITIVE:
        for c in list(chars):
            chars.update(_case_variants(c))
    ranges = codepoint_ranges(ord(c) for c in chars)
    if escapes:
        ranges = _merge(ranges + [r for e in escapes for r in escape_ranges(e, dialect)])
    return complement_codepoints(ranges) if group.negated else ranges


def _case_variants(c: str) -> set[str]:
    """Characters equal to ``c`` ignoring case, as Python's ``re.IGNORECASE`` decides (ſ ~ s, K ~ k)."""
    if c.isascii():
        return set(_ASCII_CLASSES.get(c.lower(), (c, c.swapcase())))
    out = {c}
    for _ in range(2):  # to a fixpoint: each step can only add lowercase-equivalent characters
        for v in list(out):
            out.update(x for x in (v.lower(), v.upper(), v.swapcase()) if len(x) == 1)
            low = chr(_tolower(ord(v)))
            out.add(low)
            out.update(chr(x) for x in _EXTRA_CASES.get(ord(low), ()))
            # Outside ASCII only KELVIN SIGN and CAPITAL I WITH DOT lowercase (as re sees it) to
            # ASCII letters; the full table is built only when a pattern needs it.
            out.update(_ASCII_PREIMAGES.get(low, ()) if low.isascii() else _lowercase_preimages().get(low, ()))
    return out


_ASCII_PREIMAGES = {"k": ("\u212a",), "i": ("\u0130",)}
# The only ASCII letters whose case-insensitive class reaches outside ASCII (tests check these
# against re): the long s, the Kelvin sign, and the dotted / dotless i.
_ASCII_CLASSES = {
    "s": ("s", "S", "\u017f"),
    "k": ("k", "K", "\u212a"),
    "i": ("i", "I", "\u0130", "\u0131"),
}


@functools.lru_cache(maxsize=1)
def _lowercase_preimages() -> dict[str, tuple[str, ...]]:
    """For each lowercase character, the other characters that lowercase to it (K -> k, İ...)."""
    out: dict[str, list[str]] = {}
    for cp in range(0x1E922):  # no cased character lies above U+1E921
        low = _tolower(cp)
        if low != cp:
            out.setdefault(chr(low), []).append(chr(cp))
    return {k: tuple(v) for k, v in out.items()}


try:  # the tables Python's re uses for case-insensitive matching
    from re._casefix import _EXTRA_CASES
except ImportError:  # pragma: no cover - other Python versions
    _EXTRA_CASES = {}
try:
    from _sre import unicode_tolower as _tolower
except ImportError:  # pragma: no cover - other implementations
    def _tolower(cp: int) -> int:
        low = chr(cp).lower()
        return ord(low) if len(low) == 1 else cp


def _atomic_mark(node) -> str | None:
    """The atomic mark ``node`` is, if it is one."""
    if isinstance(node, _ip._CharGroup) and len(node.chars) == 1 and not node.negated:
        char = next(iter(node.chars))
        return char if char in _ATOMIC_MARKS else None
    return None


def _unwrap(node):
    """``node`` without the groups around it: (?:(?:X)) is X."""
    while isinstance(node, _ip.Pattern) and len(node.options) == 1 and not node.added_flags and \
            not node.removed_flags:
        only = node.options[0]
        if isinstance(only, _ip._Concatenation) and len(only.parts) == 1:
            node = only.parts[0]
        else:
            break
    return node


def _prefix_free(dfa: ByteDFA) -> bool:
    """No accepted text is a proper prefix of another (a trimmed DFA: no accepting state moves on)."""
    return not (dfa.transitions[dfa.accepting] != DEAD).any()


def _atomic_position(pattern: str) -> int | None:
    """Where the first atomic group or possessive quantifier is (for messages)."""
    m = re.search(r"\(\?>|(?<!\\)[*+?}]\+", pattern)
    return None if m is None else m.start() + (0 if m.group().startswith("(") else 1)


_EMPTY_TEXT_HAS_NO_NON_BOUNDARY = re.search(r"\B", "") is None


# --- checking the pattern text before interegular sees it -------------------------------------

_LOOKAROUND = re.compile(r"\(\?(=|!|<=|<!)")
_LAZY = re.compile(r"[*+?}]\?")  # a lazy quantifier (or something like one: only ever refuses more)
_SCOPED_FLAGS = re.compile(r"\(\?([aiLmsux]*-?[aiLmsux]*):")
_QUANTIFIER = re.compile(r"\{(?:[0-9]+(?:,[0-9]*)?|,[0-9]*)\}")  # a "{" that re reads as a repeat
_BRACED_HEX = re.compile(r"(?<!\\)((?:\\\\)*)\\x\{([0-9A-Fa-f]{1,6})\}")
_OCTAL = re.compile(r"\\(0[0-7]{0,2}|[1-7][0-7]{2})")
_CLASS_OCTAL = re.compile(r"\\([0-7]{1,3})")


_QUANTIFIER_AFTER = re.compile(r"[*+?]|\{\d*(?:,\d*)?\}")


def _check_and_normalise(pattern: str, max_nesting: int = 40, dialect: str = "python", edges: bool = True,
                         assertions: bool = True) -> str:
    """Refuse unsupported constructs with their position; strip outer anchors and comments;
    expand \\u escapes; refuse groups nested deeper than ``max_nesting`` (`LimitExceeded`).

    ``edges``: a leading ``^`` and a trailing ``$`` are dropped (full match implies them); other
    anchors and word boundaries become assertion placeholders, read as ``dialect`` reads them
    (Python: ``$`` also before a final newline; ECMA-262: at the end only), or are refused where
    ``assertions`` is false (as are lookarounds).

    Returns the pattern interegular parses.  Positions in errors refer to the user's pattern.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    class_start = -1
    depth = 0
    groups: list[str] = []  # per open group: "ahead", "behind" (a lookaround), "atomic" or "group"
    atomic_starts: list[int] = []  # where each open atomic group starts
    # Inline flags may precede a leading ^: (?i)^abc
    lead = re.match(r"\(\?[aiLmsux]+\)", pattern)
    multiline = bool(lead and "m" in lead.group(0))
    scoped_multiline = any("m" in m.group(1) for m in _SCOPED_FLAGS.finditer(pattern))
    if lead:
        out.append(lead.group(0))
        i = lead.end()
    if edges and i < n and pattern[i] == "^":
        i += 1

    def mark(marker: str, what: str, at: int) -> None:
        """Lay down an assertion placeholder, or refuse it where it cannot be exact."""
        if not assertions:
            raise RegexError(f"{what} is not supported here (in a grammar terminal it would look at the text "
                             f"around the terminal)", pattern, at)
        if marker in _LOOKS_AHEAD and "behind" in groups:
            raise RegexError(f"{what} inside a lookbehind is not supported (it looks past the lookbehind's "
                             f"position)", pattern, at)
        if marker not in (BOUNDARY, NON_BOUNDARY) and scoped_multiline:
            raise RegexError(f"{what} with a scoped MULTILINE flag (?m:...) is not supported", pattern, at)
        out.append(marker)

    while i < n:
        c = pattern[i]
        if _internal(c):
            raise RegexError(f"the noncharacter U+{ord(c):04X} is not supported", pattern, i)
        if c == "\\":
            if i + 1 >= n:
                raise RegexError("pattern ends with a lone backslash", pattern, i)
            d = pattern[i + 1]
            if d in "uUx" and (expanded := _unicode_escape(pattern, i)) is not None:
                char, length = expanded
                if _internal(char):
                    raise RegexError(f"the noncharacter U+{ord(char):04X} is not supported", pattern, i)
                out.append(_literal(char, in_class))
                i += length
                continue
            if d in CLASS_ESCAPES:
                if in_class and (_range_dash_before(pattern, i, class_start) or
                                 (pattern.startswith("-", i + 2) and not pattern.startswith("-]", i + 2))):
                    raise RegexError(f"\\{d} cannot bound a character range", pattern, i)
                out.append(CLASS_ESCAPES[d])
                i += 2
                continue
            # re reads \0, \0N, \0NN and \NNN (in a class: \N to \NNN) as octal characters;
            # interegular reads a lone \0 as "0".
            octal = (_CLASS_OCTAL if in_class else _OCTAL).match(pattern, i)
            if octal:
                out.append(_literal(chr(int(octal.group(1), 8)), in_class))
                i = octal.end()
                continue
            if not in_class:
                if d in "123456789":
                    raise RegexError("backreferences are not supported", pattern, i)
                if d in "bB":
                    mark(BOUNDARY if d == "b" else NON_BOUNDARY, f"word boundary \\{d}", i)
                    i += 2
                    continue
                if d == "A":
                    if i == 0 and edges:
                        i += 2
                        continue
                    mark(START, "\\A", i)
                    i += 2
                    continue
                if d in "Zz":
                    if i + 2 == n and edges:
                        break
                    mark(END, f"\\{d}", i)
                    i += 2
                    continue
            if d in "pP":
                raise RegexError(f"Unicode property classes \\{d}{{...}} are not supported", pattern, i)
            if d == "N":
                raise RegexError("named characters \\N{...} are not supported", pattern, i)
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]" and i > class_start + 1 and not (i == class_start + 2 and pattern[class_start + 1] == "^"):
                in_class = False
            elif c == "]":  # first in the class: a literal for re (interegular would close the class)
                out.append("\\]")
                i += 1
                continue
            elif c == "[" and i + 1 < n and pattern[i + 1] == ":":
                raise RegexError("POSIX classes [:...:] are not supported", pattern, i)
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            class_start = i
        elif c == "(" and pattern.startswith("(?#", i):  # a comment: ignored up to the first ')'
            close = pattern.find(")", i)
            if close < 0:
                raise RegexError("unterminated comment (?#...", pattern, i)
            i = close + 1
            continue
        elif c == ")":
            depth -= 1
            closed = groups.pop() if groups else "group"
            if closed in ("ahead", "behind") and _QUANTIFIER_AFTER.match(pattern, i + 1):
                # re repeats a lookaround; the parser underneath would read "{2}" after one as text.
                raise RegexError("a quantifier on a lookaround is not supported (a lookaround reads nothing: "
                                 "write it once, or drop it where it may be skipped)", pattern, i + 1)
            if closed == "atomic":
                # (?>X) went out as (?:(?:X)<mark>): the mark makes the construction read X atomically.
                opened = atomic_starts.pop()
                lazy = _LAZY.search(pattern, opened, i) is not None
                out.append(")" + (ATOMIC_LAZY if lazy else ATOMIC) + ")")
                i += 1
                continue
        elif c == "(":
            depth += 1
            if depth > max_nesting:
                raise LimitExceeded(f"regex {shown(pattern)}: groups nest more than max_nesting={max_nesting} deep at "
                                    f"position {i}")
            m = _LOOKAROUND.match(pattern, i)
            kind = "group" if not m else "behind" if m.group(1).startswith("<") else "ahead"
            if m and not assertions:
                raise RegexError("lookahead and lookbehind are not supported here (in a grammar terminal they would "
                                 "look at the text around the terminal)", pattern, i)
            if kind == "ahead" and "behind" in groups:
                raise RegexError("a lookahead inside a lookbehind is not supported (it looks past the lookbehind's "
                                 "position)", pattern, i)
            groups.append(kind)
            if pattern.startswith("(?P=", i):
                raise RegexError("backreferences are not supported", pattern, i)
            if pattern.startswith("(?(", i):
                raise RegexError("conditional groups are not supported", pattern, i)
            if pattern.startswith("(?>", i):
                if dialect == "ecma" or not assertions:
                    raise RegexError("atomic groups are not supported", pattern, i)
                groups[-1] = "atomic"
                atomic_starts.append(i)
                out.append("(?:(?:")
                i += 3
                continue
        elif c == "^":
            mark(LINE_START if multiline else START, "'^'", i)
            i += 1
            continue
        elif c == "$":
            if i == n - 1 and edges:
                break
            mark(LINE_END if multiline else END if dialect == "ecma" else PY_END, "'$'", i)
            i += 1
            continue
        elif c in "*+?" and i + 1 < n and pattern[i + 1] == "+":
            if dialect == "ecma" or not assertions:
                raise RegexError("possessive quantifiers are not supported", pattern, i + 1)
            out.append(c + ATOMIC)  # X*+ is (?>X*): the mark after the repeat says so
            i += 2
            continue
        elif c == "{":
            repeat = _QUANTIFIER.match(pattern, i)
            if not repeat:
                out.append("\\{")  # not a repeat: a literal brace for re (an error for interegular)
                i += 1
                continue
            if repeat.end() < n and pattern[repeat.end()] == "+":
                if dialect == "ecma" or not assertions:
                    raise RegexError("possessive quantifiers are not supported", pattern, repeat.end())
                out.append(repeat.group(0) + ATOMIC)
                i = repeat.end() + 1
                continue
            out.append(repeat.group(0))
            i = repeat.end()
            continue
        out.append(c)
        i += 1
    if in_class:
        raise RegexError("unterminated character class", pattern, class_start)
    return "".join(out)


def _range_dash_before(pattern: str, i: int, class_start: int) -> bool:
    """Is ``pattern[i]`` preceded by a ``-`` that is not the first thing in its class?"""
    if i < 1 or pattern[i - 1] != "-" or (i >= 2 and pattern[i - 2] == "\\"):
        return False
    first = class_start + (2 if pattern.startswith("[^", class_start) else 1)
    return i - 1 > first


def _unicode_escape(pattern: str, i: int) -> tuple[str, int] | None:
    """Decode \\uXXXX, \\UXXXXXXXX or \\x{...} at ``i``; None for other escapes (\\xNN stays)."""
    d = pattern[i + 1]
    if d == "x":
        m = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}").match(pattern, i)
    elif d == "u":
        m = re.compile(r"\\u([0-9A-Fa-f]{4})").match(pattern, i)
        if not m:
            raise RegexError("\\u needs four hex digits", pattern, i)
    else:
        m = re.compile(r"\\U([0-9A-Fa-f]{8})").match(pattern, i)
        if not m:
            raise RegexError("\\U needs eight hex digits", pattern, i)
    if not m:
        return None
    cp = int(m.group(1), 16)
    if cp > MAX_UNICODE:
        raise RegexError("code point out of range", pattern, i)
    return chr(cp), m.end() - i


def _literal(char: str, in_class: bool) -> str:
    """``char`` spelled so interegular reads it as itself."""
    if char.isalnum() or (ord(char) > 127 and char.isprintable()):
        return char
    cp = ord(char)
    if cp <= 0xFF:
        return f"\\x{cp:02x}"
    # interegular has no \u escape: a non-printable code point above 0xFF is safe as itself,
    # except the characters its parser treats specially (all ASCII, handled above).
    return char


def _map_position(original: str, body: str, index: int) -> int | None:
    """Map an offset in the normalised body back to the user's pattern (best effort)."""
    if original == body:
        return index
    if not body:
        return 0
    # The body differs only by a stripped leading '^' and expanded escapes; align by suffix.
    tail = body[index:]
    pos = original.rfind(tail) if tail else len(original)
    return pos if pos >= 0 else None
