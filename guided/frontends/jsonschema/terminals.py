"""Terminal automata of the JSON Schema grammar: a terminal *description* (a hashable tuple) to its
`ByteDFA`, cached across schemas by description.

A description names a lexeme class, never a schema: ``("lit", b"null")``, ``("alt", (b"true",
b"false"))``, ``("strlit", text)``, ``("string", StringSpec)``, ``("key", description)`` (a key
with its colon), ``("int", IntegerRange)``, ``("num", NumberRange)``, ``("numlit", ...)`` (one enum
number, see `number_key`), ``("union", descriptions)``, ``("minus", kept, removed)``, ``("regex",
pattern)`` and ``("dfa", automaton)``.  The rule emitter (`guided.frontends.jsonschema.rules`)
makes them; `Terminals` builds them (strings through `._strings`, numbers through `._numbers`).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np

from guided.frontends.jsonschema import _numbers, _strings
from guided.frontends.jsonschema._formats import FORMAT_MAX_LENGTH, FORMATS
from guided.frontends.jsonschema.errors import SchemaTooLarge, UnsupportedSchema
from guided.frontends.jsonschema.options import Options
from guided.frontends.regex import Regex, regex_to_dfa
from guided.ir import dfa_ops as _dfa
from guided.errors import GuidedError, LimitExceeded
from guided.ir.cfg import Count, count_range
from guided.ir.validate import MAX_COUNTED_STATES, extends_by_one
from guided.ir.dfa import ByteDFA

Description = tuple[Any, ...]  # a terminal description, as above (hashable: the cache key)


# The constraints of the scalar descriptions, named.  Tuples (NamedTuple): hashed and compared as
# the plain tuples they replace, and `union` orders descriptions by their text, which names change
# only where the same class sits in both descriptions compared (so unions keep their order).
class StringSpec(NamedTuple):
    """What the content of a ``("string", spec)`` terminal's strings satisfies, all of it."""

    patterns: tuple[str, ...] = ()  # ECMA-262 patterns, each searched in the content
    min_length: int = 0  # in characters, as JSON Schema counts them
    max_length: int | None = None
    formats: tuple[str, ...] = ()  # names in `_formats.FORMATS`
    excluded: tuple[str, ...] = ()  # texts the string is not (an object's other keys: the names it defines)


class IntegerRange(NamedTuple):
    """The integers of an ``("int", range)`` terminal: bounds inclusive (None: unbounded)."""

    lo: int | None
    hi: int | None
    multiple: tuple[int, int] | None  # multipleOf as (p, q), p / 10**q (`_numbers.decimal_ratio`)
    fraction: bool  # also written with a zero fraction (1.0): not under drafts 3 and 4


class NumberRange(NamedTuple):
    """The numbers of a ``("num", range)`` terminal (bounds as decimal text; None: unbounded)."""

    lo: str | None = None
    lo_exclusive: bool = False
    hi: str | None = None
    hi_exclusive: bool = False
    multiple: tuple[int, int] | None = None  # as `IntegerRange.multiple`


NULL: Description = ("lit", b"null")
BOOLEAN: Description = ("alt", (b"true", b"false"))
ANY_STRING: Description = ("string", StringSpec())
ANY_NUMBER: Description = ("num", NumberRange())



# String lengths: a plain string value's bounds past COUNTED_FROM are kept as a count (`Terminals.counted`,
# up to the option max_string_length); elsewhere lengths unroll into automata, up to UNROLLED_LENGTH.
COUNTED_FROM = 256
# A pattern that repeats one character class (`_CLASS_REPEAT`) is counted from shorter bounds: its
# unrolled automaton multiplies every position by the class's spellings.
COUNTED_CLASS_FROM = 32
_CLASS_REPEAT = re.compile(r"\^(\[(?:[^\]\\]|\\.)+\]|\\[dDwWsS]|\.)(?:\{(\d+)(?:(,)(\d*))?\}|([+*]))\$\Z")
UNROLLED_LENGTH = 4_096

_BARE_CACHE: dict[tuple, ByteDFA] = {}
# A pattern's counted automaton and counted moves, or None where `extends_by_one` cannot prove it.
_COUNTED_PATTERNS: dict[tuple, tuple[ByteDFA, np.ndarray] | None] = {}
_SPELLED = frozenset({"strlit", "string", "key", "union", "minus"})  # descriptions holding JSON strings
_CACHE_LIMIT = 20_000


def _cache_put(cache: dict, key, value):
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value
    return value


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> ByteDFA:
    return regex_to_dfa(Regex(pattern))


def ws_dfa(n: int) -> ByteDFA:
    return _regex(f"[ \\t\\n\\r]{{1,{n}}}")



def union(keys) -> tuple:
    """One description for several (deduplicated, in a canonical order)."""
    keys = list(dict.fromkeys(keys))
    return keys[0] if len(keys) == 1 else ("union", tuple(sorted(keys, key=repr)))


def key_type(k) -> str:
    """The JSON type of the values a scalar description stands for."""
    if k[0] == "lit":
        return "null" if k[1] == b"null" else "boolean" if k[1] in (b"true", b"false") else "number"
    if k[0] == "alt":
        return "boolean"
    if k[0] in ("strlit", "string"):
        return "string"
    return "number"


def number_key(v, integer_only: bool, typed: bool = False) -> tuple:
    """The terminal of one enum number: every exponent-free spelling of its value (``1``,
    ``1.0``, ``1.00``; ``-0`` for 0), and the one ``json.dumps`` writes when it has an exponent.

    ``typed`` (drafts 3 and 4, where ``1`` is an integer and ``1.0`` is not): the value is produced
    only in spellings of its own type, so that a sibling ``not: {"type": "integer"}`` holds for
    every spelling; its exact automaton (what a negation takes away) still has them all.
    """
    d = Decimal(repr(v)) if isinstance(v, float) else Decimal(v)
    text = format(d.normalize(), "f") if d else "0"
    dumped = json.dumps(v).encode()
    spelled = None if not typed else "int" if isinstance(v, int) else "frac"
    return ("numlit", text, integer_only, dumped if b"e" in dumped.lower() and not integer_only else b"", spelled)


class Terminals:
    """Builds the automata of terminal descriptions under one compilation's options."""

    def __init__(self, opts: Options):
        self.opts = opts

    def bare(self, key: tuple, pointer: str = "") -> ByteDFA:
        """The automaton of a terminal description, without leading whitespace."""
        # A key's automaton holds the whitespace before its colon, so the bound is part of its name;
        # string automata depend on the spelling (every one JSON allows, or the canonical one).
        name = (key, self.opts.ws if key[0] == "key" else None, self.opts.canonical and key[0] in _SPELLED)
        dfa = _BARE_CACHE.get(name)
        if dfa is None:
            self.opts.check_time(pointer)
            dfa = _cache_put(_BARE_CACHE, name, self._build(key, pointer))
        return dfa


    def exact(self, key: tuple, pointer: str = "") -> ByteDFA:
        """The automaton of a terminal description over the exact spelling space.

        Numbers in the exact space are those written without an exponent (see
        `guided.frontends.jsonschema._numbers`); every other lexeme is in it.  Over that space
        the automaton accepts a lexeme if and only if its value matches the description, so a
        difference of two such automata is exact.  `bare` is this automaton plus, for numbers
        whose value is not compared, their exponent spellings.
        """
        kind = key[0]
        if kind == "union" and any(k[0] in ("num", "numlit", "union", "minus") for k in key[1]):
            name = ("exact", key, self.opts.canonical)
            dfa = _BARE_CACHE.get(name)
            if dfa is None:
                dfa = _cache_put(_BARE_CACHE, name, _dfa.union_dfas(
                    [self.exact(k, pointer) for k in key[1]], self.opts.max_states))
            return dfa
        if kind == "num" and key[1] == NumberRange():
            return _regex(_numbers.PLAIN_NUMBER)
        if kind == "numlit":
            r = _numbers.literal(Decimal(key[1]), key[2])
            return _regex(r) if r is not None else _dfa.EMPTY
        return self.bare(key, pointer)


    def _build(self, key: tuple, pointer: str) -> ByteDFA:
        kind = key[0]
        ws = self.opts.ws
        if kind == "lit":
            return _dfa.literal_dfa(key[1])
        if kind == "alt":  # alternation of literal byte strings
            return _dfa.union_dfas([_dfa.literal_dfa(b) for b in key[1]])
        if kind == "regex":
            return _regex(key[1])
        if kind == "strlit":
            return _strings.quoted_literals((key[1],), self.opts.canonical)
        if kind == "string":
            return _strings.quoted(self.string_content(key[1], pointer))
        if kind == "key":  # "name" ws :
            return _strings.concat_fast(self.bare(key[1], pointer), _strings.with_ws(_dfa.literal_dfa(b":"), ws))
        if kind == "dfa":
            return key[1]
        if kind == "union":
            # An enum's strings share one trie instead of a subset construction over many parts.
            texts = tuple(k[1] for k in key[1] if k[0] == "strlit")
            parts = [self.bare(k, pointer) for k in key[1] if k[0] != "strlit"]
            if len(texts) > 1:
                try:
                    parts.append(_strings.quoted_literals(texts, self.opts.canonical, self.opts.max_states))
                except LimitExceeded as exc:
                    raise SchemaTooLarge(pointer, f"enum: {exc}") from None
            elif texts:
                parts.append(self.bare(("strlit", texts[0]), pointer))
            return _dfa.union_dfas(parts, self.opts.max_states)
        if kind == "minus":
            # Exact over the exact space on both sides: exponent spellings are left out, since
            # the subtracted automaton could not know every one of its values' spellings.
            return _dfa.difference(self.exact(key[1], pointer), self.exact(key[2], pointer), self.opts.max_states)
        if kind == "numlit":  # a number's exact spellings and the one json.dumps writes
            extra = [_dfa.literal_dfa(key[3])] if key[3] else []
            own = self.exact(key, pointer)
            if key[4] is not None:  # drafts 3 and 4: spelt as the enum value is typed (1 or 1.0)
                r = _numbers.literal(Decimal(key[1]), integer_only=key[4] == "int", fraction_only=key[4] == "frac")
                own = _regex(r) if r is not None else _dfa.EMPTY
            return _dfa.union_dfas([own] + extra, self.opts.max_states)
        if kind == "int":
            i: IntegerRange = key[1]
            return self.int_dfa(i.lo, i.hi, i.multiple, i.fraction, pointer)
        if kind == "num":
            n: NumberRange = key[1]
            return self.num_dfa(n.lo, n.lo_exclusive, n.hi, n.hi_exclusive, n.multiple, pointer)
        raise AssertionError(key)


    def string_content(self, c: StringSpec, pointer: str, chars: _strings.Spelling | None = None) -> ByteDFA:
        """The content of strings under a ``("string", c)`` description, each character spelt by
        ``chars`` (default: JSON's spellings, all or the canonical one as the options say; the XML
        front-end passes its own)."""
        patterns, min_len, max_len, formats, literals_out = c
        ms = self.opts.max_states
        chars = chars if chars is not None else _strings.json_spelling(self.opts.canonical)
        parts: list[ByteDFA] = []
        self._check_length(min_len, max_len, pointer)
        if max(min_len, max_len or 0) > UNROLLED_LENGTH:
            # Only a string terminal of its own keeps its length as a count (`counted`); inside
            # an automaton (with a pattern or format, among other types, excluded values,
            # property names) the length unrolls, one state per character.
            raise SchemaTooLarge(pointer, f"{'maxLength' if (max_len or 0) >= min_len else 'minLength'} "
                                          f"{max(min_len, max_len or 0)} is above {UNROLLED_LENGTH}, the longest "
                                          f"length guided unrolls into an automaton: here the string also has a "
                                          f"pattern, a format, excluded values, another type or is a property "
                                          f"name; a plain string value (type string, minLength/maxLength only) "
                                          f"is counted instead, up to max_string_length="
                                          f"{self.opts.max_string_length}")
        for f in formats:
            parts.append(_strings.regex_content(FORMATS[f], ms, chars))
            if f in FORMAT_MAX_LENGTH:
                parts.append(_strings.length_content(0, FORMAT_MAX_LENGTH[f], chars))
        for p in patterns:
            parts.append(_strings.pattern_content(p, ms, chars))
        if min_len > 0 or max_len is not None:
            parts.append(_strings.length_content(min_len, max_len, chars))
        if not parts:
            parts.append(_strings.any_content(chars))
        # smallest first: cheaper products
        parts.sort(key=lambda d: d.num_states)
        out = parts[0]
        for part in parts[1:]:
            out = _dfa.intersect(out, part, ms, what=f"string constraints at {pointer or '#'}")
        if literals_out:
            # every JSON spelling of the excluded values goes (exclusion is only made for JSON)
            assert chars in (_strings.add_json_chars, _strings.add_canonical_json_chars)
            out = _dfa.difference(out, _strings.literals_content(tuple(sorted(set(literals_out)))), ms)
        return out


    def _check_length(self, min_len: int, max_len: int | None, pointer: str) -> None:
        if max_len is not None and max_len > self.opts.max_string_length:
            raise SchemaTooLarge(pointer, f"maxLength {max_len} is above max_string_length="
                                          f"{self.opts.max_string_length}")
        if min_len > self.opts.max_string_length:
            raise SchemaTooLarge(pointer, f"minLength {min_len} is above max_string_length="
                                          f"{self.opts.max_string_length}")

    def counted(self, key: tuple, pointer: str = "") -> tuple[ByteDFA, Count] | None:
        """A plain string description (bounds only) whose bounds are past `COUNTED_FROM`: the
        unbounded string automaton and its bounds as a `guided.ir.Count` (the count of decoded
        characters, as JSON Schema counts), instead of an automaton unrolled per character.
        None for any other description."""
        if key[0] != "string":
            return None
        patterns, min_len, max_len, formats, literals_out = key[1]
        if formats or literals_out or len(patterns) > 1:
            return None
        cls = None
        m = _CLASS_REPEAT.match(patterns[0]) if patterns else None
        if patterns and m is None:
            # Any other pattern (a URL's) with bounds past COUNTED_FROM: its own automaton, counted,
            # where the interval property is cheap to prove (`extends_by_one`); unrolling its
            # length would multiply its states by the bound.
            if max(min_len, max_len or 0) <= COUNTED_FROM or (max_len is not None and max_len < min_len):
                return None
            self._check_length(min_len, max_len, pointer)
            spelling = _strings.json_spelling(self.opts.canonical)
            name = ("counted-pattern", patterns[0], self.opts.canonical)
            if name not in _COUNTED_PATTERNS:
                try:
                    content = _strings.pattern_content(patterns[0], self.opts.max_states, spelling)
                except GuidedError:
                    return None  # a pattern the reader refuses: the unrolled path says why
                built = _strings.counted_product(_strings.quoted(content), spelling)
                ok = built[0].initial != 0 and extends_by_one(*built)
                _cache_put(_COUNTED_PATTERNS, name, built if ok else None)
            hit = _COUNTED_PATTERNS[name]
            if hit is None:
                return None
            dfa, counted = hit
            if max_len is not None and count_range(dfa, counted)[0][dfa.initial] > max_len:
                return None  # no string short enough: empty, as the unrolled path finds
            return dfa, Count(counted, min_len, max_len)
        if patterns:
            # A pattern that is one character class repeated (`^[a-z0-9_-]{1,255}$`, `^\\d+$`):
            # its repeat is a count too, over the class's own string automaton.
            assert m is not None
            cls = m.group(1)
            lo, comma, hi = m.group(2), m.group(3), m.group(4)
            if m.group(5):
                lo, hi = ("1" if m.group(5) == "+" else "0"), None
            elif comma is None:
                hi = lo
            min_len = max(min_len, int(lo))
            if hi:  # "{n,}": no maximum of its own
                max_len = int(hi) if max_len is None else min(max_len, int(hi))
        if max(min_len, max_len or 0) <= (COUNTED_CLASS_FROM if cls is not None else COUNTED_FROM):
            return None
        if max_len is not None and max_len < min_len:
            return None  # empty: the unrolled path says so
        self._check_length(min_len, max_len, pointer)
        spelling = _strings.json_spelling(self.opts.canonical)
        if cls is None:
            dfa, counted = _strings.counted_string(spelling)
        else:
            try:
                dfa, counted = _strings.counted_class(cls, spelling)
            except GuidedError:
                return None  # a class the pattern reader refuses: the unrolled path says why
            if dfa.num_states > MAX_COUNTED_STATES and not extends_by_one(dfa, counted):
                return None
        return dfa, Count(counted, min_len, max_len)

    def is_empty(self, key: tuple, pointer: str = "") -> bool:
        """Does the description match nothing?  (A counted string never is.)"""
        if self.counted(key, pointer) is not None:
            return False
        return _dfa.is_empty(self.bare(key, pointer))

    def int_dfa(self, lo, hi, mult, fraction, pointer=""):
        r = _numbers.integers(lo, hi, fraction)
        if r is None:
            return _dfa.EMPTY
        d = _regex(r)
        if mult is not None:
            p, q = mult
            p2 = p // math.gcd(p, 10 ** q)
            if p2 > 1:
                if p2 > self.opts.max_multiple_of:
                    raise UnsupportedSchema(pointer, "multipleOf", f"modulus {p2} is above max_multiple_of="
                                                                   f"{self.opts.max_multiple_of}")
                d = _dfa.intersect(d, _numbers.multiple_of_dfa(p2, 0, fraction), self.opts.max_states)
        return d


    def num_dfa(self, lo, lo_x, hi, hi_x, mult, pointer=""):
        if lo is None and hi is None and mult is None:
            return _regex(_numbers.NUMBER)
        parts = []
        if lo is not None:
            r = _numbers.number_ge(Decimal(lo), lo_x)
            if r is None:
                return _dfa.EMPTY
            parts.append(_regex(r))
        if hi is not None:
            r = _numbers.number_le(Decimal(hi), hi_x)
            if r is None:
                return _dfa.EMPTY
            parts.append(_regex(r))
        if mult is not None:
            p, q = mult
            if p > self.opts.max_multiple_of:
                raise UnsupportedSchema(pointer, "multipleOf", f"modulus {p} is above max_multiple_of="
                                                               f"{self.opts.max_multiple_of}")
            parts.append(_numbers.multiple_of_dfa(p, q, True))
        if not parts:
            parts.append(_regex(_numbers.PLAIN_NUMBER))
        out = parts[0]
        for p in parts[1:]:
            out = _dfa.intersect(out, p, self.opts.max_states)
        return out


