"""XML character data as byte automata: every XML spelling of the strings a constraint allows.

A schema's string keywords (``pattern``, ``format``, ``minLength``/``maxLength``, ``enum``) speak
about the *decoded* text, what an XML parser hands back; the output is XML text, where some
characters must be escaped.  As for JSON strings (`guided.frontends.jsonschema._strings`), each
character class of a constraint is expanded to its spellings (`Spelling`), so the same pattern,
format and length constructions give automata over XML text that are exact on decoded values.

The spellings are a canonical subset of what XML allows, chosen so that every character that can
appear in an XML document has one, the decoded value is what Python's parser
(`xml.etree.ElementTree`) reads back, and `escape` writes inside it:

- element text: ``<`` as ``&lt;``, ``&`` as ``&amp;``, ``\\r`` as ``&#13;`` (a raw carriage return
  would be read back as a line feed), ``>`` raw or as ``&gt;`` (raw never right after ``]]``: the
  text never holds ``]]>``); every other character raw (UTF-8);
- double-quoted attribute values: the same, plus ``"`` as ``&quot;`` and tab, line feed and
  carriage return as ``&#9;``, ``&#10;``, ``&#13;`` (raw ones are read back as spaces);
- characters XML cannot hold (most C0 controls, U+FFFE, U+FFFF, lone surrogates) have no
  spelling: a value with one cannot be written, so it is not in the language.

Other spellings XML would accept (``&#65;`` for ``A``, ``&apos;``) are not produced.

>>> import xml.etree.ElementTree as ET
>>> dfa = value_automaton(literal_texts(["a<b & c>d\\r"]), attribute=False)
>>> text = escape("a<b & c>d\\r", attribute=False); text
'a&lt;b &amp; c&gt;d&#13;'
>>> dfa.fullmatch(text.encode()), dfa.fullmatch(b"a&lt;b &amp; c>d&#13;"), ET.fromstring(f"<x>{text}</x>").text
(True, True, 'a<b & c>d\\r')
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from guided.frontends.jsonschema import _strings
from guided.ir import dfa_ops as _dfa
from guided.ir.dfa import DEAD, MAX_UNICODE, ByteDFA, ByteNFA, Limits, determinize

__all__ = ["XML_CHARS", "add_attribute_chars", "add_text_chars", "escape", "literal_texts", "value_automaton"]

#: The characters an XML 1.0 document may hold.
XML_CHARS = [(0x9, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, MAX_UNICODE)]

_TEXT_SPELLINGS = {"<": ("&lt;",), "&": ("&amp;",), ">": (">", "&gt;"), "\r": ("&#13;",)}
_ATTRIBUTE_SPELLINGS = {**_TEXT_SPELLINGS, '"': ("&quot;",), "\t": ("&#9;",), "\n": ("&#10;",)}


def _clip(ranges: list[tuple[int, int]], allowed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out = []
    for a, b in ranges:
        for lo, hi in allowed:
            if a <= hi and lo <= b:
                out.append((max(a, lo), min(b, hi)))
    return sorted(out)


def _spelling(special: dict[str, tuple[str, ...]]) -> _strings.Spelling:
    points = sorted(ord(c) for c in special)

    def add(nfa: ByteNFA, start: int, end: int, ranges: list[tuple[int, int]]) -> None:
        allowed = _clip(ranges, XML_CHARS)
        raw = _strings._minus(allowed, points)
        if raw:
            nfa.add_codepoints(start, raw, end)
        for ch, spellings in special.items():
            if not any(a <= ord(ch) <= b for a, b in allowed):
                continue
            for spelt in spellings:
                if spelt == ch:
                    continue  # raw: added above
                at = start
                data = spelt.encode()
                for k, byte in enumerate(data):
                    nxt = end if k == len(data) - 1 else nfa.add_state()
                    nfa.ranges[at].append((byte, byte, nxt))
                    at = nxt
            if ch in spellings:
                nfa.add_codepoints(start, [(ord(ch), ord(ch))], end)

    return add


#: `Spelling` of element text, and of a double-quoted attribute value (see the module docstring).
add_text_chars: _strings.Spelling = _spelling(_TEXT_SPELLINGS)
add_attribute_chars: _strings.Spelling = _spelling(_ATTRIBUTE_SPELLINGS)


def spelling(attribute: bool) -> _strings.Spelling:
    return add_attribute_chars if attribute else add_text_chars


def escape(text: str, attribute: bool) -> str:
    """The canonical spelling of ``text`` (``>`` as ``&gt;``): inside every `value_automaton` that
    allows ``text``; characters XML cannot hold are left as they are (no document holds them)."""
    special = _ATTRIBUTE_SPELLINGS if attribute else _TEXT_SPELLINGS
    return "".join(special[c][-1] if c in special else c for c in text)


@lru_cache(maxsize=1)
def _no_cdata_end() -> ByteDFA:
    """Any bytes without ``]]>`` (character data may not hold it raw)."""
    t = np.ones((4, 256), np.int32)
    t[0] = DEAD
    t[1:, ord("]")] = [2, 3, 3]
    t[3, ord(">")] = DEAD
    return ByteDFA(transitions=t, accepting=np.array([False, True, True, True]), initial=1)


@lru_cache(maxsize=1)
def _non_empty() -> ByteDFA:
    t = np.full((3, 256), 2, np.int32)
    t[0] = DEAD
    return ByteDFA(transitions=t, accepting=np.array([False, False, True]), initial=1)


def literal_texts(texts, max_states: int = 100_000) -> _LiteralTexts:
    """A finite set of decoded strings, for `value_automaton`."""
    return _LiteralTexts(tuple(sorted(set(texts))), max_states)


class _LiteralTexts:
    def __init__(self, texts: tuple[str, ...], max_states: int):
        self.texts = texts
        self.max_states = max_states

    def content(self, chars: _strings.Spelling) -> ByteDFA:
        limits = Limits(self.max_states)
        nfa = ByteNFA()
        end = nfa.add_state()
        nfa.accepting.add(end)
        for text in self.texts:
            at = nfa.start
            for k, ch in enumerate(text):
                nxt = end if k == len(text) - 1 else nfa.add_state()
                chars(nfa, at, nxt, [(ord(ch), ord(ch))])
                at = nxt
            if not text:
                nfa.add_epsilon(nfa.start, end)
        return determinize(nfa, limits, what="enum values")


def value_automaton(content, attribute: bool, max_states: int = 100_000) -> ByteDFA:
    """The XML spellings of the strings ``content`` stands for, as element text or attribute value.

    ``content`` builds a content automaton from a `Spelling`: a callable ``chars -> ByteDFA``
    (e.g. ``lambda chars: terminals.string_content(c, pointer, chars)``) or `literal_texts`.
    The result may accept the empty text (the empty string); `non_empty` drops it.
    """
    build = content.content if isinstance(content, _LiteralTexts) else content
    dfa = build(spelling(attribute))
    if not attribute:
        dfa = _dfa.intersect(dfa, _no_cdata_end(), max_states, what="XML text")
    return dfa


def non_empty(dfa: ByteDFA, max_states: int = 100_000) -> ByteDFA:
    """``dfa`` without the empty text (a terminal matches at least one byte)."""
    if not dfa.accepting[dfa.initial]:
        return dfa
    return _dfa.intersect(dfa, _non_empty(), max_states, what="XML text")


def accepts_empty(dfa: ByteDFA) -> bool:
    return bool(dfa.initial != DEAD and dfa.accepting[dfa.initial])


def is_empty(dfa: ByteDFA) -> bool:
    return _dfa.is_empty(dfa)

