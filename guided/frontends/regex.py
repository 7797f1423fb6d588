"""The regex front-end: a regular expression to a UTF-8 exact byte-level DFA.

Patterns are parsed with interegular and compiled to a `guided.ir.dfa.ByteNFA`, then determinised
under configurable limits.  A pattern must match the *whole* output (``re.fullmatch``).

Supported syntax (Python ``re`` spelling):

- literals, escapes (``\\n \\t \\xNN \\uNNNN \\U0010FFFF \\x{...}``, octal ``\\0NN``), ``.``
  (any character but ``\\n``; with ``(?s)`` any character);
- classes ``[a-z]``, ``[^...]``, ``\\d \\w \\s \\D \\W \\S`` (ASCII meanings, as in ECMA-262
  and ``re.ASCII``);
- groups ``(...)``, ``(?:...)``, ``(?P<name>...)``, alternation ``|``;
- quantifiers ``* + ? {n} {n,} {,m} {n,m}`` (lazy forms accepted: under full-match they are the same);
- inline flags ``(?i)``, ``(?s)``, scoped ``(?i:...)``;
- ``^`` at the very start and ``$`` (or ``\\Z``, ``\\z``) at the very end, which full-match implies.

Refused with a `guided.errors.RegexError` naming the position: backreferences, lookahead and
lookbehind, word boundaries ``\\b \\B``, anchors anywhere else, conditionals, Unicode property
classes ``\\p{...}``.

>>> dfa = regex_to_dfa(Regex(r"[0-9]{4}-[0-9]{2}"))
>>> dfa.fullmatch(b"2024-05"), dfa.is_prefix(b"20"), dfa.fullmatch(b"2024-5")
(True, True, False)
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from interegular import patterns as _ip

from guided.errors import RegexError
from guided.ir.dfa import (
    ByteDFA,
    ByteNFA,
    Limits,
    MAX_UNICODE,
    codepoint_ranges,
    complement_codepoints,
    determinize,
)


@dataclass(frozen=True)
class Regex:
    """A regular-expression constraint: the output must fully match ``pattern``.

    ``max_states`` bounds the automaton (a guard against patterns such as ``(a|b)*a(a|b){30}``
    whose DFA is exponential); ``max_seconds`` bounds construction time.

    >>> Regex(r"\\d+").pattern
    '\\\\d+'
    """

    pattern: str
    max_states: int = 100_000
    max_seconds: float = 10.0

    def to_ir(self) -> ByteDFA:
        """The intermediate form: a trimmed byte DFA (`regex_to_dfa`)."""
        return regex_to_dfa(self)


def regex_to_dfa(spec: Regex | str) -> ByteDFA:
    """Compile a regex to a trimmed byte-level DFA, or raise `RegexError` / `LimitExceeded`."""
    if isinstance(spec, str):
        spec = Regex(spec)
    nfa = regex_to_nfa(spec.pattern)
    dfa = determinize(nfa, Limits(spec.max_states, spec.max_seconds), what=f"regex {spec.pattern!r}")
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


def regex_to_nfa(pattern: str) -> ByteNFA:
    """Parse ``pattern`` and build its byte-level NFA (no determinisation)."""
    body = _check_and_normalise(pattern)
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
    nfa = ByteNFA()
    end = nfa.add_state()
    _Builder(nfa, pattern).build(tree, nfa.start, end, _ip.REFlags(0))
    nfa.accepting.add(end)
    return nfa


class _Builder:
    """Thompson construction from interegular's parse tree onto a ByteNFA."""

    def __init__(self, nfa: ByteNFA, pattern: str):
        self.nfa = nfa
        self.pattern = pattern

    def build(self, node, start: int, end: int, flags) -> None:
        nfa = self.nfa
        if isinstance(node, _ip.Pattern):
            flags = _ip._combine_flags(flags, node.added_flags, node.removed_flags)
            for option in node.options:
                self.build(option, start, end, flags)
        elif isinstance(node, _ip._Concatenation):
            state = start
            parts = list(node.parts)
            if not parts:
                nfa.add_epsilon(start, end)
            for i, part in enumerate(parts):
                if isinstance(part, _ip._NonCapturing):
                    raise RegexError("lookahead and lookbehind are not supported", self.pattern)
                nxt = end if i == len(parts) - 1 else nfa.add_state()
                self.build(part, state, nxt, flags)
                state = nxt
        elif isinstance(node, _ip._Repeated):
            self._repeat(node, start, end, flags)
        elif isinstance(node, _ip._CharGroup):
            nfa.add_codepoints(start, _class_ranges(node, flags), end)
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


def _class_ranges(group, flags) -> list[tuple[int, int]]:
    if len(group.chars) == 1 and not group.negated and not flags & _ip.REFlags.CASE_INSENSITIVE:
        cp = ord(next(iter(group.chars)))
        return [(cp, cp)]
    chars = set(group.chars)
    if flags & _ip.REFlags.CASE_INSENSITIVE:
        for c in list(chars):
            chars.update(_case_variants(c))
    ranges = codepoint_ranges(ord(c) for c in chars)
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


# --- checking the pattern text before interegular sees it -------------------------------------

_LOOKAROUND = re.compile(r"\(\?(=|!|<=|<!)")


def _check_and_normalise(pattern: str) -> str:
    """Refuse unsupported constructs with their position; strip outer anchors; expand \\u escapes.

    Returns the pattern interegular parses.  Positions in errors refer to the user's pattern.
    """
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    class_start = -1
    # Inline flags may precede a leading ^: (?i)^abc
    lead = re.match(r"\(\?[aiLmsux]+\)", pattern)
    if lead:
        out.append(lead.group(0))
        i = lead.end()
    if i < n and pattern[i] == "^":
        i += 1
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                raise RegexError("pattern ends with a lone backslash", pattern, i)
            d = pattern[i + 1]
            if d in "uUx" and (expanded := _unicode_escape(pattern, i)) is not None:
                char, length = expanded
                out.append(_literal(char, in_class))
                i += length
                continue
            if not in_class:
                if d in "123456789":
                    raise RegexError("backreferences are not supported", pattern, i)
                if d in "bB":
                    raise RegexError(f"word boundary \\{d} is not supported", pattern, i)
                if d == "A":
                    if i == 0:
                        i += 2
                        continue
                    raise RegexError("\\A is only supported at the start of the pattern", pattern, i)
                if d in "Zz":
                    if i + 2 == n:
                        break
                    raise RegexError(f"\\{d} is only supported at the end of the pattern", pattern, i)
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
            elif c == "[" and i + 1 < n and pattern[i + 1] == ":":
                raise RegexError("POSIX classes [:...:] are not supported", pattern, i)
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            class_start = i
        elif c == "(":
            m = _LOOKAROUND.match(pattern, i)
            if m:
                raise RegexError("lookahead and lookbehind are not supported", pattern, i)
            if pattern.startswith("(?P=", i):
                raise RegexError("backreferences are not supported", pattern, i)
            if pattern.startswith("(?(", i):
                raise RegexError("conditional groups are not supported", pattern, i)
            if pattern.startswith("(?>", i):
                raise RegexError("atomic groups are not supported", pattern, i)
        elif c == "^":
            raise RegexError("'^' is only supported at the start of the pattern", pattern, i)
        elif c == "$":
            if i == n - 1:
                break
            raise RegexError("'$' is only supported at the end of the pattern", pattern, i)
        elif c in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            raise RegexError("possessive quantifiers are not supported", pattern, i + 1)
        out.append(c)
        i += 1
    if in_class:
        raise RegexError("unterminated character class", pattern, class_start)
    return "".join(out)


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
