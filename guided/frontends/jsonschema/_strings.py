"""JSON strings as byte automata, exact on the *escaped* text.

A JSON Schema string constraint (``pattern``, ``format``, ``minLength``/``maxLength``, ``const``)
speaks about the decoded string, while the output is JSON text where a character may be
written raw (UTF-8), as a short escape (``\\n``, ``\\"``, ``\\/``...), as ``\\uXXXX`` (hex digits
in either case) or, above U+FFFF, as a surrogate pair ``\\uD83D\\uDE00``.  Every character class
of a constraint regex is therefore expanded to all the spellings of its characters
(`add_json_chars`), so that ``"\\u00e9"`` and ``"é"`` are the same one-character string.

Lone surrogate escapes (``"\\uD800"``) are never accepted: they are not characters.

With the canonical spelling (`add_canonical_json_chars` as the ``chars`` of the constructions,
``canonical=True`` for literals) every builder keeps only the one spelling ``json.dumps(s,
ensure_ascii=False)`` writes: each character raw, except ``"`` and ``\\`` (``\\"``, ``\\\\``), the
control characters with a short escape (``\\b \\f \\n \\r \\t``) and the other control characters
(``\\u0000``-``\\u001f``, lowercase hex).  That is what generation writes: a key, an enum value or a
``const`` is then one fixed byte string, which jump-forward can force.

Patterns use the ECMA-262 dialect with JSON Schema's unanchored ("search") semantics; see
`pattern_nfa` for what is supported.
"""

from __future__ import annotations


import re
import time
from functools import lru_cache
from typing import Callable, NamedTuple

import numpy as np
from interegular import patterns as _ip

from guided.errors import LimitExceeded, RegexError
from guided.ir.dfa import DEAD, MAX_UNICODE, ByteDFA, ByteNFA, Limits, determinize, trim
from guided.frontends import regex as _rx

_SHORT_ESCAPES = {0x22: ord('"'), 0x5C: ord("\\"), 0x2F: ord("/"), 0x08: ord("b"), 0x0C: ord("f"),
                  0x0A: ord("n"), 0x0D: ord("r"), 0x09: ord("t")}
_CANONICAL_SHORT = {cp: letter for cp, letter in _SHORT_ESCAPES.items() if cp != 0x2F}  # "/" is written raw
HEX_DIGIT_RANGES = {}  # value -> byte ranges


def _hex_digit_ranges(lo: int, hi: int, lower_only: bool = False) -> list[tuple[int, int]]:
    """Byte ranges of the hex digits with values lo..hi (letters in both cases, or lowercase only)."""
    out = []
    if lo <= 9:
        out.append((0x30 + lo, 0x30 + min(hi, 9)))
    if hi >= 10:
        a, b = max(lo, 10) - 10, hi - 10
        out.append((0x61 + a, 0x61 + b))
        if not lower_only:
            out.append((0x41 + a, 0x41 + b))
    return out


def _add_hex(nfa: ByteNFA, start: int, end: int, lo: int, hi: int, width: int, lower_only: bool = False) -> None:
    """``width`` hex digits whose value is in lo..hi."""
    if width == 1:
        for r in _hex_digit_ranges(lo, hi, lower_only):
            nfa.ranges[start].append((r[0], r[1], end))
        return
    unit = 16 ** (width - 1)
    dlo, dhi = lo // unit, hi // unit
    rlo, rhi = lo % unit, hi % unit
    if dlo == dhi:
        mid = nfa.add_state()
        for r in _hex_digit_ranges(dlo, dlo, lower_only):
            nfa.ranges[start].append((r[0], r[1], mid))
        _add_hex(nfa, mid, end, rlo, rhi, width - 1, lower_only)
        return
    first, last = dlo, dhi
    if rlo != 0:
        mid = nfa.add_state()
        for r in _hex_digit_ranges(dlo, dlo, lower_only):
            nfa.ranges[start].append((r[0], r[1], mid))
        _add_hex(nfa, mid, end, rlo, unit - 1, width - 1, lower_only)
        first = dlo + 1
    if rhi != unit - 1:
        mid = nfa.add_state()
        for r in _hex_digit_ranges(dhi, dhi, lower_only):
            nfa.ranges[start].append((r[0], r[1], mid))
        _add_hex(nfa, mid, end, 0, rhi, width - 1, lower_only)
        last = dhi - 1
    if first <= last:
        mid = nfa.add_state()
        for r in _hex_digit_ranges(first, last, lower_only):
            nfa.ranges[start].append((r[0], r[1], mid))
        _add_hex(nfa, mid, end, 0, unit - 1, width - 1, lower_only)


def _clip(ranges, lo, hi):
    return [(max(a, lo), min(b, hi)) for a, b in ranges if b >= lo and a <= hi]


def _minus(ranges, points):
    out = []
    for a, b in ranges:
        cur = a
        for p in sorted(points):
            if cur <= p <= b:
                if cur <= p - 1:
                    out.append((cur, p - 1))
                cur = p + 1
        if cur <= b:
            out.append((cur, b))
    return out


def add_json_chars(nfa: ByteNFA, start: int, end: int, ranges: list[tuple[int, int]], canonical: bool = False) -> None:
    """Every JSON spelling of one character in ``ranges`` (sorted, disjoint code point ranges), or
    only its canonical one (see the module docstring)."""
    raw = _minus(_clip(ranges, 0x20, MAX_UNICODE), (0x22, 0x5C))
    if raw:
        nfa.add_codepoints(start, raw, end)
    if canonical:
        _add_canonical_escapes(nfa, start, end, ranges)
        return
    backslash = None

    def bs():
        nonlocal backslash
        if backslash is None:
            backslash = nfa.add_state()
            nfa.ranges[start].append((0x5C, 0x5C, backslash))
        return backslash

    for cp, letter in _SHORT_ESCAPES.items():
        if any(a <= cp <= b for a, b in ranges):
            nfa.ranges[bs()].append((letter, letter, end))
    bmp = _clip(ranges, 0, 0xD7FF) + _clip(ranges, 0xE000, 0xFFFF)
    astral = _clip(ranges, 0x10000, MAX_UNICODE)
    if bmp or astral:
        u = nfa.add_state()
        nfa.ranges[bs()].append((ord("u"), ord("u"), u))
        for a, b in bmp:
            _add_hex(nfa, u, end, a, b, 4)
        for a, b in astral:
            # split by high surrogate
            ha, la = 0xD800 + ((a - 0x10000) >> 10), 0xDC00 + ((a - 0x10000) & 0x3FF)
            hb, lb = 0xD800 + ((b - 0x10000) >> 10), 0xDC00 + ((b - 0x10000) & 0x3FF)
            pieces = []
            if ha == hb:
                pieces.append((ha, ha, la, lb))
            else:
                pieces.append((ha, ha, la, 0xDFFF))
                if ha + 1 <= hb - 1:
                    pieces.append((ha + 1, hb - 1, 0xDC00, 0xDFFF))
                pieces.append((hb, hb, 0xDC00, lb))
            for h0, h1, l0, l1 in pieces:
                mid = nfa.add_state()
                _add_hex(nfa, u, mid, h0, h1, 4)
                m2, m3 = nfa.add_state(), nfa.add_state()
                nfa.ranges[mid].append((0x5C, 0x5C, m2))
                nfa.ranges[m2].append((ord("u"), ord("u"), m3))
                _add_hex(nfa, m3, end, l0, l1, 4)


def _add_canonical_escapes(nfa: ByteNFA, start: int, end: int, ranges: list[tuple[int, int]]) -> None:
    """The escapes of the canonical spelling: short ones, ``\\u00XX`` (lowercase) for other controls."""
    short = [cp for cp in _CANONICAL_SHORT if any(a <= cp <= b for a, b in ranges)]
    controls = _minus(_clip(ranges, 0, 0x1F), tuple(_CANONICAL_SHORT))
    if not short and not controls:
        return
    backslash = nfa.add_state()
    nfa.ranges[start].append((0x5C, 0x5C, backslash))
    for cp in short:
        letter = _CANONICAL_SHORT[cp]
        nfa.ranges[backslash].append((letter, letter, end))
    if controls:
        u = nfa.add_state()
        nfa.ranges[backslash].append((ord("u"), ord("u"), u))
        for a, b in controls:
            _add_hex(nfa, u, end, a, b, 4, lower_only=True)


def canonical_text(text: str) -> bytes:
    """The canonical spelling of a string's content (what ``json.dumps(text, ensure_ascii=False)``
    writes between its quotes)."""
    import json

    spelled = json.dumps(text, ensure_ascii=False)[1:-1]
    # A lone surrogate has no UTF-8 form: its one spelling is the escape (as `_spellings` says).
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", spelled).encode("utf-8")


_SURROGATE = re.compile("[\ud800-\udfff]")


ALL_CHARS = [(0, MAX_UNICODE)]


#: How a character set is spelt in the output: ``chars(nfa, start, end, ranges)`` adds, from
#: ``start`` to ``end``, every spelling of every character in ``ranges`` (sorted, disjoint code
#: point ranges).  `add_json_chars` for JSON strings (`add_canonical_json_chars`: only the
#: canonical spelling); the XML front-end passes its own spellings (`guided.frontends.xml_text`),
#: so the same constructions give exact XML character data.
Spelling = Callable[[ByteNFA, int, int, list[tuple[int, int]]], None]


def add_canonical_json_chars(nfa: ByteNFA, start: int, end: int, ranges: list[tuple[int, int]]) -> None:
    """The canonical JSON spelling of one character in ``ranges`` (see the module docstring)."""
    add_json_chars(nfa, start, end, ranges, canonical=True)


def json_spelling(canonical: bool) -> Spelling:
    """JSON's `Spelling`: every spelling, or only the canonical one."""
    return add_canonical_json_chars if canonical else add_json_chars


class _JsonBuilder(_rx._Builder):
    """The regex front-end's Thompson construction, with each character expanded to its spellings
    (JSON's unless ``chars`` says otherwise)."""

    def __init__(self, nfa: ByteNFA, pattern: str, limits: Limits | None = None, dialect: str = "python",
                 chars: Spelling = add_json_chars, bmp_only: bool = False):
        super().__init__(nfa, pattern, limits, dialect)
        self.chars = chars
        # A pattern ECMA-262 reads without the u flag matches UTF-16 code units: '.', a negated class
        # or an astral literal would meet surrogate halves. Its classes keep only the Basic
        # Multilingual Plane, where a character is one code unit and both readings agree.
        self.top = 0xFFFF if bmp_only else MAX_UNICODE

    def char_set(self, nfa: ByteNFA, start: int, end: int, ranges: list[tuple[int, int]]) -> None:
        self.chars(nfa, start, end, _clip(ranges, 0, self.top))

    def any_char(self, nfa: ByteNFA, start: int, end: int) -> None:
        self.chars(nfa, start, end, ALL_CHARS)

    def _lookaround(self, node, start, end, flags):
        if node.negate and self.top < MAX_UNICODE:
            # Its body's classes would be narrowed to the BMP: a negative lookaround would then allow more.
            at = self.pattern.find("(?<!" if node.backwards else "(?!")
            raise RegexError("a negative lookaround in a pattern ECMA-262 reads without the u flag is not supported",
                             self.pattern, at if at >= 0 else None)
        super()._lookaround(node, start, end, flags)

    def build(self, node, start, end, flags):
        if isinstance(node, _ip._CharGroup) and node.chars & _rx._MARKS:
            super().build(node, start, end, flags)
        elif isinstance(node, _ip._CharGroup):
            self.chars(self.nfa, start, end, _clip(self.ranges(node, flags), 0, self.top))
        elif node is _ip._DOT:
            # ECMA-262 '.' excludes all line terminators
            excl = [] if flags & _ip.REFlags.SINGLE_LINE else [(0x0A, 0x0A), (0x0D, 0x0D), (0x2028, 0x2029)]
            from guided.ir.dfa import complement_codepoints
            self.chars(self.nfa, start, end, _clip(complement_codepoints(excl), 0, self.top))
        else:
            super().build(node, start, end, flags)


def _any_loop(nfa: ByteNFA, start: int, end: int, chars: Spelling = add_json_chars) -> None:
    loop = nfa.add_state()
    nfa.add_epsilon(start, loop)
    back = nfa.add_state()
    chars(nfa, loop, back, ALL_CHARS)
    nfa.add_epsilon(back, loop)
    nfa.add_epsilon(loop, end)


def _split_top(pattern: str) -> list[str]:
    """Split at top-level '|' (outside groups and classes)."""
    parts, depth, in_class, cur, i = [], 0, False, [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            cur.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
        elif c == "[":
            in_class = True
            # a ']' right after '[' or '[^' is literal in Python, but ECMA reads '[]' as empty
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


_ECMA_REPEAT = re.compile(r"\{[0-9]+(?:,[0-9]*)?\}")
_SURROGATE_PAIR = re.compile(r"\\u(D[89ABab][0-9A-Fa-f]{2})\\u(D[C-Fc-f][0-9A-Fa-f]{2})")
_U_SYNTAX = set("^$\\.*+?()[]{}|/")
_U_ESCAPE = re.compile(r"[dDwWsSfnrtv]|0(?![0-9])|c[A-Za-z]|x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|u\{([0-9A-Fa-f]+)\}"
                       r"|[pP]\{[A-Za-z0-9_=]+\}")
_GROUP_OPENING = re.compile(r"\((?:\?(?:[:=!]|<[=!]|<[A-Za-z_$][A-Za-z0-9_$]*>))?")
_U_CLASS_ESCAPE = re.compile(r"\\[dDwWsSpP]")


def unicode_mode(pattern: str) -> bool:
    """Whether ECMA-262 reads ``pattern`` with the ``u`` flag, as the JSON Schema reference does.

    The reference (``new RegExp(p, "u")``, else ``new RegExp(p)`` where the ``u`` flag makes ``p`` a
    syntax error) matches code points in the first case and UTF-16 code units in the second. This
    scan is conservative: it answers True only for patterns inside the ``u`` grammar (the escapes
    it allows, no backreference, no lone ``]``, ``{`` or ``}``, no class escape as a range end, no quantified
    lookaround), and False for anything else, which is sound: `pattern_nfa` then only narrows
    the pattern's classes to the Basic Multilingual Plane, where both readings agree.

    >>> unicode_mode("^[a-z]+$"), unicode_mode("^[^]]*$"), unicode_mode(r"\\-"), unicode_mode("a{")
    (True, False, False, False)
    """
    i, n, in_class = 0, len(pattern), False
    last = ""  # "atom" (a quantifier may follow), "quantifier" (a lazy "?" may follow) or ""
    stack: list[bool] = []  # per open group: is it a lookaround?
    class_items: list[str] = []
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return False
            d = pattern[i + 1]
            m = _U_ESCAPE.match(pattern, i + 1)
            if m and m.group(1) is not None and int(m.group(1), 16) > MAX_UNICODE:
                return False
            if m or d in _U_SYNTAX:
                length, last = (m.end() - i if m else 2), "atom"
            elif d == "b" and in_class:
                length = 2
            elif d in "bB" and not in_class:
                length, last = 2, ""
            else:
                return False  # backreferences (guided has none), escapes outside the u grammar, [\\-]
            if in_class:
                class_items.append(pattern[i:i + length])
            i += length
            continue
        if in_class:
            if c == "]":
                in_class, last = False, "atom"
                for k, item in enumerate(class_items):
                    if item == "-" and 0 < k < len(class_items) - 1 and (
                            _U_CLASS_ESCAPE.match(class_items[k - 1]) or _U_CLASS_ESCAPE.match(class_items[k + 1])):
                        return False
            else:
                class_items.append(c)
            i += 1
            continue
        quantifier = _ECMA_REPEAT.match(pattern, i) if c == "{" else None
        if c in "*+?{":
            if c == "?" and last == "quantifier":
                last = ""
            elif last != "atom" or (c == "{" and not quantifier):
                return False
            else:
                last = "quantifier"
            i = quantifier.end() if quantifier else i + 1
            continue
        if c == "[":
            in_class, class_items = True, []
            if pattern.startswith("[^", i):
                i += 1
        elif c in "]}":
            return False
        elif c == "(":
            prefix = _GROUP_OPENING.match(pattern, i)
            assert prefix is not None
            if pattern.startswith("(?", i) and prefix.end() == i + 1:
                return False
            stack.append(prefix.group() in ("(?=", "(?!", "(?<=", "(?<!"))
            i, last = prefix.end(), ""
            continue
        elif c == ")":
            if not stack:
                return False
            last = "" if stack.pop() else "atom"
        else:
            last = "" if c in "|^$" else "atom"
        i += 1
    return not in_class and not stack


def _control_escape(pattern: str, i: int, in_class: bool) -> bool:
    """Is the backslash at ``i`` a control escape ``\\cX`` (in a class also ``\\c0``..``\\c9``, ``\\c_``)?"""
    if not pattern.startswith("\\c", i) or i + 2 >= len(pattern):
        return False
    x = pattern[i + 2]
    return x.isascii() and (x.isalpha() or in_class and (x.isdigit() or x == "_"))


def _identity_escape(pattern: str, i: int, in_class: bool) -> bool:
    """Without the u flag, is the backslash at ``i`` an identity escape of an ASCII letter?"""
    d = pattern[i + 1]
    if not (d.isascii() and d.isalpha()) or d in "bBdDfnrsStvwW":
        return False
    if d == "c":
        return not _control_escape(pattern, i, in_class)
    if d == "x":
        return not re.compile(r"[0-9A-Fa-f]{2}").match(pattern, i + 2)
    if d == "u":
        return not re.compile(r"[0-9A-Fa-f]{4}").match(pattern, i + 2)
    if d == "k":
        return "(?<" not in pattern.replace("(?<=", "").replace("(?<!", "")
    return True


def _ecma_to_python(pattern: str, unicode: bool = True) -> str:
    """Rewrite ECMA-262 spellings that differ from Python's ``re`` (refusing the untranslatable);
    ``unicode``: read as with the ``u`` flag (without it, ``\\u{41}`` is ``u`` 41 times)."""
    out, i, in_class = [], 0, False
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            d = pattern[i + 1]
            # \d \w \s and their complements stay: the construction reads them as ECMA-262 does.
            if not unicode and _identity_escape(pattern, i, in_class):
                # Without u, an escaped letter that is no ECMA-262 escape is the letter itself
                # (re would read \a as BEL, \Z as an anchor), and \c without a letter is "\c".
                out.append("\\\\c" if d == "c" else d)
                i += 2
                continue
            if _control_escape(pattern, i, in_class and not unicode):
                out.append(f"\\x{ord(pattern[i + 2]) % 32:02x}")
                i += 3
                continue
            elif d == "u" and unicode and _SURROGATE_PAIR.match(pattern, i):
                pair = _SURROGATE_PAIR.match(pattern, i)
                assert pair is not None
                high, low = int(pair.group(1), 16), int(pair.group(2), 16)
                out.append(f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}")  # one code point under u
                i = pair.end()
                continue
            elif d == "u" and i + 2 < n and pattern[i + 2] == "{":
                m = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}").match(pattern, i)
                if not m:
                    raise RegexError("malformed \\u{...} escape", pattern, i)
                out.append(f"\\x{{{m.group(1)}}}")
                i = m.end()
                continue
            elif d == "/" or d == "-" and not in_class:
                out.append("\\" + d if d == "-" else "/")
            elif d == "0" and not (i + 2 < n and pattern[i + 2].isdigit()):
                out.append("\\x00")
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c == "[":
                out.append("\\[")
                i += 1
                continue
            out.append(c)
            i += 1
            continue
        if c == "[":
            if pattern.startswith("[^]", i):
                out.append("(?s:.)")
                i += 3
                continue
            if pattern.startswith("[]", i):
                out.append("[^\\s\\S]")  # matches nothing
                i += 2
                continue
            in_class = True
            out.append(c)
            i += 1
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            continue
        if c == "{" and not _ECMA_REPEAT.match(pattern, i):
            out.append("\\{")  # ECMA-262 reads "{,2}" (which re would repeat) as text
            i += 1
            continue
        if c == "(" and pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def pattern_nfa(nfa: ByteNFA, pattern: str, start: int, end: int, limits: Limits | None = None,
                chars: Spelling = add_json_chars) -> None:
    """JSON-string *content* (spelt by ``chars``) whose decoded text contains a match of ECMA-262 ``pattern``.

    A pattern outside the ``u`` flag's grammar (`unicode_mode`) is read as ECMA-262 reads it
    without the flag, on UTF-16 code units; guided then narrows its classes, ``.`` and literals to
    the Basic Multilingual Plane (a documented restriction: sound, since there a character is one
    code unit, but such a pattern never matches an astral character, which the reference might
    match as two code units). The text around an unanchored match stays free.
    """
    unicode = unicode_mode(pattern)
    # One builder for every alternative: zero-width assertions look at the whole text, so a
    # pattern that has some is determinised whole (from the start of the text) and embedded.
    outer, outer_start, outer_end = nfa, start, end
    nfa = ByteNFA()
    start, end = nfa.start, nfa.add_state()
    builder = _JsonBuilder(nfa, pattern, limits, dialect="ecma", chars=chars, bmp_only=not unicode)
    alternatives = _split_top(pattern)
    # The unanchored alternatives share one loop before them and one after: a loop each would
    # let determinisation track which alternatives have matched (2^n subsets) before minimising.
    loops: dict[str, int] = {}

    def lead() -> int:
        if "lead" not in loops:
            loops["lead"] = nfa.add_state()
            _any_loop(nfa, start, loops["lead"], chars)
        return loops["lead"]

    def tail() -> int:
        if "tail" not in loops:
            loops["tail"] = nfa.add_state()
            _any_loop(nfa, loops["tail"], end, chars)
        return loops["tail"]

    whole = None  # the one alternative's tree, where it spans the whole text (^...$)
    for alt in alternatives:
        a_start = alt.startswith("^")
        body = alt[1:] if a_start else alt
        a_end = False
        if body.endswith("$"):
            k = len(body) - 1
            slashes = 0
            while k - 1 - slashes >= 0 and body[k - 1 - slashes] == "\\":
                slashes += 1
            if slashes % 2 == 0:
                a_end = True
                body = body[:-1]
        py = _ecma_to_python(body, unicode)
        normal = _rx._check_and_normalise(py, dialect="ecma", edges=False)
        tree = _rx.parse_tree(normal, pattern, limits)
        s1 = nfa.add_state()
        e1 = nfa.add_state()
        if a_start:
            nfa.add_epsilon(start, s1)
        else:
            nfa.add_epsilon(lead(), s1)
        builder.build(tree, s1, e1, _ip.REFlags(0))
        if a_start and a_end and len(alternatives) == 1:
            whole = tree
        if a_end:
            nfa.add_epsilon(e1, end)
        else:
            nfa.add_epsilon(e1, tail())
    _embed_built(builder, end, outer, outer_start, outer_end, f"pattern {_rx.shown(pattern)}", whole)


def _embed_built(builder: _rx._Builder, end: int, outer: ByteNFA, start: int, stop: int, what: str,
                 tree=None) -> None:
    """Copy what ``builder`` built (its NFA, from its start to ``end``) into ``outer`` from
    ``start`` to ``stop``: as it is, or determinised first where it has zero-width assertions
    (``tree``: the parse tree built, where it spans the whole text)."""
    from guided.ir.dfa_ops import embed

    nfa = builder.nfa
    if builder.guards:
        nfa.accepting.add(end)
        embed(outer, builder.finish(what, tree), start, stop)
        return
    offset = outer.num_states
    for _ in range(nfa.num_states):
        outer.add_state()
    for q in range(nfa.num_states):
        outer.ranges[q + offset].extend((lo, hi, t + offset) for lo, hi, t in nfa.ranges[q])
        outer.epsilons[q + offset].extend(t + offset for t in nfa.epsilons[q])
    outer.add_epsilon(start, nfa.start + offset)
    outer.add_epsilon(end + offset, stop)


def fullmatch_nfa(nfa: ByteNFA, regex: str, start: int, end: int, limits: Limits | None = None,
                  chars: Spelling = add_json_chars) -> None:
    """JSON-string content (spelt by ``chars``) whose decoded text fully matches ``regex`` (guided's Python-style dialect)."""
    normal = _rx._check_and_normalise(regex)
    tree = _rx.parse_tree(normal, regex, limits)
    local = ByteNFA()
    last = local.add_state()
    builder = _JsonBuilder(local, regex, limits, dialect="ecma", chars=chars)
    builder.build(tree, local.start, last, _ip.REFlags(0))
    _embed_built(builder, last, nfa, start, end, f"regex {_rx.shown(regex)}", tree)


def _content_dfa(build, max_states: int, what: str) -> ByteDFA:
    # One deadline for building and determinising, as for any regex.
    limits = Limits(max_states, 30.0, time.monotonic() + 30.0)
    nfa = ByteNFA()
    end = nfa.add_state()
    build(nfa, nfa.start, end, limits)
    nfa.accepting.add(end)
    return determinize(nfa, limits, what=what)


def pattern_content(pattern: str, max_states: int = 100_000, chars: Spelling = add_json_chars) -> ByteDFA:
    """String content containing a match of the ECMA-262 ``pattern`` (cached whichever way it is called)."""
    return _pattern_content(pattern, max_states, chars)


@lru_cache(maxsize=4096)
def _pattern_content(pattern: str, max_states: int, chars: Spelling) -> ByteDFA:
    return _content_dfa(lambda n, s, e, lim: pattern_nfa(n, pattern, s, e, lim, chars), max_states,
                        f"pattern {pattern!r}")


def regex_content(regex: str, max_states: int = 100_000, chars: Spelling = add_json_chars) -> ByteDFA:
    """String content whose decoded text fully matches ``regex`` (a format's regex)."""
    return _regex_content(regex, max_states, chars)


@lru_cache(maxsize=4096)
def _regex_content(regex: str, max_states: int, chars: Spelling) -> ByteDFA:
    return _content_dfa(lambda n, s, e, lim: fullmatch_nfa(n, regex, s, e, lim, chars), max_states,
                        f"regex {regex!r}")


def _spellings(ch: str, canonical: bool = False) -> list[tuple[tuple[int, ...], ...]]:
    """Every JSON spelling of one character, as sequences of byte choices (hex letters in either
    case), or only its canonical spelling."""
    cp = ord(ch)
    if canonical:
        return [tuple((b,) for b in canonical_text(ch))]

    def hex4(value: int) -> tuple[tuple[int, ...], ...]:
        return tuple(tuple(sorted({ord(c) for c in (f"{value:04x}"[k], f"{value:04X}"[k])})) for k in range(4))

    out = []
    if cp >= 0x20 and ch not in '"\\' and not 0xD800 <= cp <= 0xDFFF:  # a lone surrogate has no UTF-8
        out.append(tuple((b,) for b in ch.encode("utf-8")))
    if cp in _SHORT_ESCAPES:
        out.append(((0x5C,), (_SHORT_ESCAPES[cp],)))
    if cp < 0x10000:
        out.append(((0x5C,), (ord("u"),)) + hex4(cp))
    else:
        high, low = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
        out.append(((0x5C,), (ord("u"),)) + hex4(high) + ((0x5C,), (ord("u"),)) + hex4(low))
    return out


@lru_cache(maxsize=8192)
def literal_content(text: str, canonical: bool = False) -> ByteDFA:
    """Every JSON spelling of the content of the string ``text`` (or only the canonical one)."""
    return literals_content((text,), canonical)


@lru_cache(maxsize=1024)
def literals_content(texts: tuple[str, ...], canonical: bool = False) -> ByteDFA:
    """Every JSON spelling of the content of any of ``texts`` (or only the canonical one), built
    directly as a trie."""
    return _literals_trie(texts, canonical, quoted=False)


@lru_cache(maxsize=1024)
def quoted_literals(texts: tuple[str, ...], canonical: bool = False, max_states: int | None = None) -> ByteDFA:
    """``quoted(literals_content(texts))`` built in one pass: a large enum's table is then
    allocated once instead of copied by two concatenations.  Raises `LimitExceeded` as soon as
    the trie needs more than ``max_states`` states, before the table is allocated."""
    return _literals_trie(texts, canonical, quoted=True, max_states=max_states)


def _literals_trie(texts: tuple[str, ...], canonical: bool, quoted: bool, max_states: int | None = None,
                   planned: bool = True) -> ByteDFA:
    """The trie of every JSON spelling of any of ``texts``, with the quotes when ``quoted``.

    A trie node is a decoded prefix plus the bytes of the current character spelled so far.
    No subset construction is needed: the spellings of one character never share a first byte
    except through the backslash (then ``u`` or one escape letter), and UTF-8 and the escapes
    are prefix-free, so two characters' spellings part before either ends.  Edges are gathered
    sparsely and written into the dense table at once (a 10,000-value enum has ~10^5 nodes).

    A character read from a node that has no other child yet (every character of a property
    name, most of an enum's) takes its states and edges from `_char_plan`, the same ones in the
    same order as the step by step walk below, which only the second and later children of a
    node take (they share the escape states of their elder siblings).  ``planned=False`` walks
    every character step by step: the reference the plans are tested against.
    """
    count = 1  # state 0 is dead
    src: list[int] = []
    byte: list[int] = []
    dst: list[int] = []

    def state() -> int:
        nonlocal count
        count += 1
        if max_states is not None and count > max_states:
            too_many()
        return count - 1

    def too_many() -> None:
        raise LimitExceeded(f"the {len(texts)} strings need more than max_states={max_states} automaton states "
                            f"in every JSON spelling (canonical=True spells each one way, about 5 times fewer)")

    def edge(a: int, options: tuple[int, ...], b: int) -> None:
        for o in options:
            src.append(a)
            byte.append(o)
            dst.append(b)

    initial = state()
    root = initial
    if quoted:
        root = state()
        edge(initial, (0x22,), root)
    at_boundary = {"": root}
    inside: dict[tuple, int] = {}
    # Nodes whose one child was read by its plan: (plan, first state) to name its inner states by
    # when a second child comes; and every node with a child.
    planned_child: dict[str, tuple[_CharPlan, int]] = {}
    parents: set[str] = set()
    uses: list[tuple[_CharPlan, int, int]] = []  # (plan, node read from, first state)
    ends: list[int] = []
    unique = sorted(set(texts))
    if planned and len(unique) == 1:  # one text (a property name): every character by its plan
        at = root
        for ch in unique[0]:
            plan = _char_plan(ch, canonical)
            uses.append((plan, at, count))
            at = count
            count += plan.states
        if max_states is not None and count + quoted > max_states:
            too_many()
        ends.append(at)
        unique = []
    for text in unique:
        prefix = ""
        for ch in text:
            target = at_boundary.get(prefix + ch)
            if target is None and planned and prefix not in parents:
                plan = _char_plan(ch, canonical)
                target = at_boundary[prefix + ch] = count
                count += plan.states
                if max_states is not None and count > max_states:
                    too_many()
                uses.append((plan, at_boundary[prefix], target))
                planned_child[prefix] = (plan, target)
                parents.add(prefix)
            elif target is None:
                elder = planned_child.pop(prefix, None)
                if elder is not None:  # name the elder sibling's inner states, to share them
                    for k, spelled in enumerate(elder[0].inner):
                        inside[(prefix, spelled)] = elder[1] + 1 + k
                parents.add(prefix)
                target = at_boundary[prefix + ch] = state()
                for spelling in _char_spellings(ch, canonical):
                    at = at_boundary[prefix]
                    for k, options in enumerate(spelling):
                        if k == len(spelling) - 1:
                            nxt = target
                        else:
                            nxt = inside.get((prefix, spelling[:k + 1]))
                            if nxt is None:
                                nxt = inside[(prefix, spelling[:k + 1])] = state()
                            else:  # a sibling character's spelling made it, and the edge
                                at = nxt
                                continue
                        edge(at, options, nxt)
                        at = nxt
            prefix += ch
        ends.append(at_boundary[text])
    final = state() if quoted else None
    table = np.zeros((count, 256), np.int32)
    table[np.array(src, np.intp), np.array(byte, np.intp)] = np.array(dst, np.int32)
    if uses:
        # Local state 0 is the node read from, local j >= 1 the state first + j - 1.
        sizes = np.array([len(p.src) for p, _, _ in uses], np.intp)
        frm = np.repeat(np.array([a for _, a, _ in uses], np.intp), sizes)
        first = np.repeat(np.array([f for _, _, f in uses], np.intp), sizes) - 1
        lsrc = np.concatenate([p.src for p, _, _ in uses])
        ldst = np.concatenate([p.dst for p, _, _ in uses])
        table[np.where(lsrc == 0, frm, first + lsrc), np.concatenate([p.byte for p, _, _ in uses])] = first + ldst
    accepting = np.zeros(count, bool)
    if final is None:
        accepting[ends] = True
    else:
        table[ends, 0x22] = final
        accepting[final] = True
    return ByteDFA(transitions=table, accepting=accepting, initial=initial)


class _CharPlan(NamedTuple):
    """One character read from a trie node with no other child: its states (the node it ends
    at, then the inner ones of its escapes) and edges in local numbers (0: the node read from,
    1: the node it ends at, 2 and on: inner states), as `_literals_trie` walks them."""

    states: int
    inner: tuple[tuple[tuple[int, ...], ...], ...]  # inner state 2 + k spells inner[k] so far
    src: np.ndarray
    byte: np.ndarray
    dst: np.ndarray


@lru_cache(maxsize=8192)
def _char_plan(ch: str, canonical: bool) -> _CharPlan:
    inner: dict[tuple, int] = {}
    src: list[int] = []
    byte: list[int] = []
    dst: list[int] = []
    for spelling in _char_spellings(ch, canonical):
        at = 0
        for k, options in enumerate(spelling):
            if k == len(spelling) - 1:
                nxt = 1
            else:
                nxt = inner.get(spelling[:k + 1], -1)
                if nxt < 0:
                    nxt = inner[spelling[:k + 1]] = 2 + len(inner)
                else:
                    at = nxt
                    continue
            for o in options:
                src.append(at)
                byte.append(o)
                dst.append(nxt)
            at = nxt
    return _CharPlan(1 + len(inner), tuple(inner), np.array(src, np.intp), np.array(byte, np.intp),
                     np.array(dst, np.intp))


@lru_cache(maxsize=4096)
def _char_spellings(ch: str, canonical: bool) -> list[tuple[tuple[int, ...], ...]]:
    return _spellings(ch, canonical)


@lru_cache(maxsize=8)
def _one_char(chars: Spelling = add_json_chars) -> tuple[np.ndarray, np.ndarray]:
    """The DFA of exactly one character spelt by ``chars``, as (rows of the non-final states, 'goes to final' mask)."""
    dfa = _content_dfa(lambda n, s, e, _: chars(n, s, e, ALL_CHARS), 10_000, "one character")
    final = dfa.accepting
    assert not dfa.transitions[final].any(), "a complete character has no continuation"
    # renumber: keep the non-final live states, initial first
    keep = [s for s in range(1, dfa.num_states) if not final[s]]
    keep.remove(dfa.initial)
    keep = [dfa.initial] + keep
    local = {s: i for i, s in enumerate(keep)}
    rows = np.zeros((len(keep), 256), np.int64)  # local index + 1, or -1 for "char complete"
    for s, i in local.items():
        for b in range(256):
            t = int(dfa.transitions[s, b])
            if t == DEAD:
                continue
            rows[i, b] = -1 if final[t] else local[t] + 1
    return rows, None


def length_content(min_len: int, max_len: int | None, chars: Spelling = add_json_chars) -> ByteDFA:
    """Content of JSON strings with between ``min_len`` and ``max_len`` characters (None: unbounded)."""
    return _length_content(min_len, max_len, chars)


@lru_cache(maxsize=512)
def _length_content(min_len: int, max_len: int | None, chars: Spelling = add_json_chars) -> ByteDFA:
    rows, _ = _one_char(chars)
    k = rows.shape[0]
    blocks = (max_len if max_len is not None else min_len) + 1
    n = 1 + blocks * k
    table = np.zeros((n, 256), np.int32)
    acc = np.zeros(n, bool)
    inner = rows > 0
    done = rows < 0
    for blk in range(blocks):
        base = 1 + blk * k
        block = np.zeros((k, 256), np.int32)
        block[inner] = (rows[inner] - 1 + base).astype(np.int32)
        if max_len is None and blk == blocks - 1:
            nxt = base
        elif blk + 1 < blocks:
            nxt = base + k
        else:
            nxt = 0
        block[done] = nxt
        table[base:base + k] = block
        acc[base] = blk >= min_len
    return trim(table, acc, initial=1)


@lru_cache(maxsize=4)
def counted_string(chars: Spelling = add_json_chars) -> tuple[ByteDFA, np.ndarray]:
    """A quoted JSON string of any length, and its counted transitions: those that complete a
    character (however spelt: a UTF-8 sequence, an escape, a surrogate pair escape), so that
    the count of a lexeme is the length of the decoded string, as JSON Schema counts it
    (`guided.ir.Count`).

    States: 1 before the opening quote, 2 between characters, 3 ... inside a character, the
    last one after the closing quote.
    """
    rows, _ = _one_char(chars)
    k = rows.shape[0]
    n = 3 + k  # dead, start, k character states (the first between characters), final
    final = n - 1
    table = np.zeros((n, 256), np.int32)
    counted = np.zeros((n, 256), bool)
    quote = ord('"')
    assert rows[0, quote] == 0, "a raw quote is no character"
    table[1, quote] = 2
    inner, done = rows > 0, rows < 0
    table[2:2 + k][inner] = (rows[inner] - 1 + 2).astype(np.int32)
    table[2:2 + k][done] = 2
    counted[2:2 + k] = done
    table[2, quote] = final
    accepting = np.zeros(n, bool)
    accepting[final] = True
    return ByteDFA(transitions=table, accepting=accepting, initial=1), counted


@lru_cache(maxsize=256)
def counted_class(cls: str, chars: Spelling = add_json_chars) -> tuple[ByteDFA, np.ndarray]:
    """`counted_string` for the strings whose every character matches the ECMA-262 class ``cls``
    (``[a-z]``, ``\\d``, ``.``): the quoted content of ``^cls*$`` and, by a product with
    `counted_string`'s automaton, the transitions that complete a character."""
    return counted_product(quoted(pattern_content(f"^{cls}*$", 100_000, chars)), chars)


def counted_product(base: ByteDFA, chars: Spelling = add_json_chars) -> tuple[ByteDFA, np.ndarray]:
    """A quoted string automaton ``base`` and the transitions that complete a character (as
    `counted_string` counts them), by a product with `counted_string`'s automaton."""
    track, tcounted = counted_string(chars)
    pairs = {(base.initial, track.initial): 1}
    order = [(base.initial, track.initial)]
    rows: list[np.ndarray] = [np.zeros(256, np.int32), np.zeros(256, np.int32)]
    flags: list[np.ndarray] = [np.zeros(256, bool), np.zeros(256, bool)]
    for b, t in order:
        row, flag = rows[pairs[(b, t)]], flags[pairs[(b, t)]]
        for byte in np.flatnonzero(base.transitions[b]).tolist():
            b2, t2 = int(base.transitions[b, byte]), int(track.transitions[t, byte])
            assert t2 != DEAD, "a pattern's content is JSON string content"
            key = (b2, t2)
            if key not in pairs:
                pairs[key] = len(rows)
                order.append(key)
                rows.append(np.zeros(256, np.int32))
                flags.append(np.zeros(256, bool))
            row[byte] = pairs[key]
            flag[byte] = tcounted[t, byte]
    accepting = np.zeros(len(rows), bool)
    for (b, _), i in pairs.items():
        accepting[i] = base.accepting[b]
    return ByteDFA(transitions=np.stack(rows), accepting=accepting, initial=1), np.stack(flags)


def any_content(chars: Spelling = add_json_chars) -> ByteDFA:
    return _length_content(0, None, chars)


# --- direct constructions on DFAs ---------------------------------------------------------------

def concat_fast(a: ByteDFA, b: ByteDFA) -> ByteDFA:
    """``a`` then ``b`` when no accepting state of ``a`` has a move on a first byte of ``b``.

    Both parts are trimmed, so every state of the result stays live and all but ``b``'s initial
    state stay reachable; that one is kept even when nothing re-enters it (an unreachable state
    costs nothing, renumbering the table to drop it would cost a copy).
    """
    if a.initial == DEAD or b.initial == DEAD:
        from guided.ir.dfa_ops import EMPTY
        return EMPTY
    first = b.transitions[b.initial]
    cols = np.flatnonzero(first)
    acc_a = np.flatnonzero(a.accepting)
    if (a.transitions[np.ix_(acc_a, cols)] != 0).any():
        from guided.ir.dfa_ops import concat_dfas
        return concat_dfas([a, b])
    na = a.num_states
    shift = na - 1  # b's state s > 0 becomes s + shift; its dead state merges with a's
    table = np.zeros((na + b.num_states - 1, 256), np.int32)
    table[:na] = a.transitions
    bt = b.transitions[1:]
    np.add(bt, shift, out=table[na:], where=bt != DEAD)  # in place: b may be large
    table[np.ix_(acc_a, cols)] = first[cols] + shift  # (cols are the live first bytes: no dead entry)
    acc = np.zeros(table.shape[0], bool)
    acc[na:] = b.accepting[1:]
    if b.accepting[b.initial]:
        acc[:na] = a.accepting
    return ByteDFA(transitions=table, accepting=acc, initial=a.initial)


def quoted(content: ByteDFA) -> ByteDFA:
    """``"`` + content + ``"`` (content never holds a raw ``"`` byte).

    Written at once in the layout of `quoted_by_concat` (the same states, numbered the same):
    state 1 reads the opening quote into 2, which has the content's initial moves; the content's
    states follow from 3; then the closing quote's automaton (its initial state, unreachable, and
    its accepting state ``n + 3``, reached on ``"`` from every accepting content state)."""
    if content.initial == DEAD:
        from guided.ir.dfa_ops import EMPTY
        return EMPTY
    n = content.num_states
    ct = content.transitions
    acc_c = content.accepting
    if ct[acc_c, 0x22].any():  # a quote after a complete content: only the general concatenation
        return quoted_by_concat(content)
    # Shifted in place (one pass: string automata of long bounds have 10^5 states, 100 MB).
    table = np.zeros((n + 4, 256), np.int32)
    np.add(ct[1:], 2, out=table[3:n + 2], where=ct[1:] != DEAD)
    table[1, 0x22] = 2
    np.add(ct[content.initial], 2, out=table[2], where=ct[content.initial] != DEAD)
    table[n + 2, 0x22] = n + 3
    ends = np.flatnonzero(acc_c[1:]) + 3
    table[ends, 0x22] = n + 3
    if acc_c[content.initial]:
        table[2, 0x22] = n + 3
    acc = np.zeros(n + 4, bool)
    acc[n + 3] = True
    return ByteDFA(transitions=table, accepting=acc, initial=1)


def quoted_by_concat(content: ByteDFA) -> ByteDFA:
    """`quoted` by two concatenations: its reference, and its way for content that may end before a quote."""
    from guided.ir.dfa_ops import literal_dfa
    q = literal_dfa(b'"')
    return concat_fast(concat_fast(q, content), q)


def with_ws(dfa: ByteDFA, n: int) -> ByteDFA:
    """Up to ``n`` JSON whitespace bytes, then ``dfa`` (whose first byte is never whitespace)."""
    if n == 0 or dfa.initial == DEAD:
        return dfa
    m = dfa.num_states
    table = np.zeros((m + n, 256), np.int32)
    table[:m] = dfa.transitions
    init_row = dfa.transitions[dfa.initial]
    ws = [9, 10, 13, 32]
    assert not init_row[ws].any()
    # State m + k has read k whitespace bytes; after the n-th only ``dfa``'s own initial state
    # is left, whose whitespace columns are dead.
    new_initial = m
    for k in range(n):
        table[m + k] = init_row
        table[m + k, ws] = m + k + 1 if k + 1 < n else dfa.initial
    acc = np.zeros(m + n, bool)
    acc[:m] = dfa.accepting
    acc[m:] = dfa.accepting[dfa.initial]
    # Every whitespace state leads into ``dfa``, which is trimmed: nothing to trim.
    return ByteDFA(transitions=table, accepting=acc, initial=new_initial)
