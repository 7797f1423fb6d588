"""The XML matcher: well-formed XML, with close tags that repeat their open tag's names, as exact token masks.

That ``</b>`` must name the innermost open element is beyond any context-free grammar when
names are arbitrary.  `XmlGrammar` runs the CFG engine on an XML grammar (`XML_GRAMMAR`: the
syntax, with every lexical rule Python's parser enforces: valid characters, the predefined
entities, valid character references, no ``]]>`` in text, no ``--`` in comments) and tracks
beside each CFG configuration the non-context-free part: the stack of open element names and
the attribute names of the tag being written (XML forbids duplicates).

Masks are exact.  A token is allowed iff its bytes keep the CFG configuration viable *and* pass
the name checks (a close tag's name must be a prefix of the innermost open name while it is
being written and equal to it when it ends; an attribute name must be new to its tag).  The CFG
mask (vectorised, cached) already decides every token whose bytes cannot reach a name check;
only the few tokens that can (those that contain ``</``, or ``=`` after ``<``, or a closing quote
inside a tag, ... a per-vocabulary classification, see `_Risk`) are re-checked byte by byte, and
inside a close tag the allowed names are looked up directly (prefixes of the expected name).

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"<a>", b"<b>", b"</a>", b"</b>", b"x", b"<eos>"], eos_token_ids=[5])
>>> m = XmlGrammar(vocab).matcher()
>>> m.advance(0); m.advance(1); m.mask().tolist()   # inside <a><b>: only </b> may close
[True, True, False, True, True, False]
>>> m.advance(3); m.advance(2); m.accepts_eos()
True
"""

from __future__ import annotations

import bisect
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from guided.engine.bitmask import pack, set_bits, unpack, write_row
from guided.engine.cfg import CfgGrammar
from guided.engine.matcher import HistoryMatcher, text_bytes, token_index
from guided.errors import ConstraintViolation, UsageError
from guided.vocab import Vocabulary

__all__ = ["XML_GRAMMAR", "Xml", "XmlGrammar", "XmlMatcher", "compile_xml"]


# ------------------------------------------------------------------------------------------
# The grammar


def _digit_class(lo: int, hi: int, base: int) -> str:
    chars = []
    for v in range(lo, hi + 1):
        c = "0123456789abcdef"[v]
        chars.append(c if not c.isalpha() else c + c.upper())
    return "[" + "".join(chars) + "]"


def _same_length(a: list[int], b: list[int], base: int) -> str:
    """Regex for the digit strings of a's length between ``a`` and ``b`` (digit value lists)."""
    if not a:
        return ""
    if a == [0] * len(a) and b == [base - 1] * len(b):
        return _digit_class(0, base - 1, base) + (f"{{{len(a)}}}" if len(a) > 1 else "")
    if a[0] == b[0]:
        return _digit_class(a[0], a[0], base) + _same_length(a[1:], b[1:], base)
    rest = len(a) - 1
    parts = [_digit_class(a[0], a[0], base) + _same_length(a[1:], [base - 1] * rest, base)]
    if b[0] - a[0] > 1:
        parts.append(_digit_class(a[0] + 1, b[0] - 1, base) + _same_length([0] * rest, [base - 1] * rest, base))
    parts.append(_digit_class(b[0], b[0], base) + _same_length([0] * rest, b[1:], base))
    return "(?:" + "|".join(parts) + ")"


def _digits(n: int, base: int) -> list[int]:
    out = []
    while True:
        out.append(n % base)
        n //= base
        if not n:
            return out[::-1]


def range_regex(lo: int, hi: int, base: int = 10) -> str:
    """A regex for the numbers ``lo..hi`` written in ``base`` (10 or 16), leading zeros allowed.

    >>> import re
    >>> r = range_regex(32, 55295)
    >>> [bool(re.fullmatch(r, s)) for s in ("31", "32", "0032", "55295", "55296")]
    [False, True, True, True, False]
    """
    parts = []
    length = len(_digits(lo, base))
    while True:
        start = max(lo, base ** (length - 1) if length > 1 else 0)
        end = min(hi, base ** length - 1)
        if start > end:
            break
        parts.append(_same_length(_digits(start, base), _digits(end, base), base))
        if end == hi:
            break
        length += 1
    return "0*(?:" + "|".join(parts) + ")"


_XML_CHAR_RANGES = [(0x9, 0x9), (0xA, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD), (0x10000, 0x10FFFF)]
_DEC = "|".join(range_regex(lo, hi, 10) for lo, hi in _XML_CHAR_RANGES)
_HEX = "|".join(range_regex(lo, hi, 16) for lo, hi in _XML_CHAR_RANGES)
_NOT_CHAR = r"\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff"  # excluded from every kind of character data
_REF = rf"&(?:lt|gt|amp|apos|quot|#(?:{_DEC})|#x(?:{_HEX}));"
_WS = r"[ \t\r\n]"

#: The syntax of the XML documents `XmlGrammar` accepts (Lark, LALR(1)); see the module docstring.
#: A subset of XML 1.0 that Python's parser (expat, as used by `xml.etree.ElementTree`) accepts
#: whole: ASCII names without ``:`` (no namespace prefixes to declare), the five predefined
#: entities and character references to valid characters, comments, CDATA sections, an optional
#: ``<?xml version="1.0"?>`` declaration; no DOCTYPE, no processing instructions.
XML_GRAMMAR = rf"""
start: XMLDECL? _misc* element _misc*
_misc: COMMENT | _S

element: LT NAME _tag_end
_tag_end: _S? SLASHGT
        | _S? GT content LTSLASH NAME _S? GT
        | _S attribute _tag_end
attribute: NAME _S? EQ _S? ATTVALUE

// Character data never follows character data directly: a TEXT lexeme is cut only by "<" or
// "&" (or by the ">" of a forbidden "]]>", which then cannot start anything).
content: _chars? (_markup _chars?)*
_chars: TEXT | _S
_markup: REFERENCE | CDATA | COMMENT | element

LT: "<"
LTSLASH: "</"
GT: ">"
SLASHGT: "/>"
EQ: "="
NAME: /[A-Za-z_][A-Za-z0-9._-]*/
ATTVALUE: /"(?:[^<&"{_NOT_CHAR}]|{_REF})*"/ | /'(?:[^<&'{_NOT_CHAR}]|{_REF})*'/
TEXT: /(?:[^<&\]{_NOT_CHAR}]|\][^<&\]{_NOT_CHAR}]|\]\]+[^<&\]>{_NOT_CHAR}])+\]*|\]+/
REFERENCE: /{_REF}/
CDATA: /<!\[CDATA\[(?:[^\]{_NOT_CHAR}]|\][^\]{_NOT_CHAR}]|\]\]+[^\]>{_NOT_CHAR}])*\]*\]\]>/
COMMENT: /<!--(?:[^-{_NOT_CHAR}]|-[^-{_NOT_CHAR}])*-->/
XMLDECL: /<\?xml{_WS}+version{_WS}*={_WS}*(?:"1\.0"|'1\.0')(?:{_WS}+encoding{_WS}*={_WS}*(?:"[Uu][Tt][Ff]-8"|'[Uu][Tt][Ff]-8'))?(?:{_WS}+standalone{_WS}*={_WS}*(?:"(?:yes|no)"|'(?:yes|no)'))?{_WS}*\?>/
_S.2: /{_WS}+/
"""

NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_WS_BYTES = frozenset(b" \t\r\n")


@dataclass(frozen=True)
class Xml:
    """The XML constraint: any well-formed document (``schema=None``), or one shaped by a schema.

    ``schema`` is a Pydantic model class or a JSON Schema dict; see `guided.frontends.xml`.
    `compile_xml` (and, once wired, `guided.compile`) turns it into a compiled grammar.

    >>> Xml().schema is None
    True
    """

    schema: object = None
    root: str | None = None  # root element name for schema-shaped XML (default: the model's title)

    def __post_init__(self) -> None:
        shape = self.schema
        if not (shape is None or isinstance(shape, dict) or (isinstance(shape, type) and hasattr(shape, "model_json_schema"))):
            raise UsageError(f"guided.Xml takes a JSON Schema dict or a Pydantic model class (or nothing), got "
                             f"{type(shape).__name__}")
        if self.root is not None and (not isinstance(self.root, str) or not self.root):
            raise UsageError(f"Xml(root=...) takes an element name, got {self.root!r}")

    def __hash__(self) -> int:
        return hash((_hashable(self.schema), self.root))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Xml) and _hashable(self.schema) == _hashable(other.schema) and self.root == other.root


def _hashable(schema):
    if isinstance(schema, dict):
        import json

        return json.dumps(schema, sort_keys=True)
    return schema


_compiled: "weakref.WeakKeyDictionary[Vocabulary, dict]" = weakref.WeakKeyDictionary()
_compiled_lock = threading.Lock()


def compile_xml(spec: Xml | None, vocab) -> "XmlGrammar | CfgGrammar":
    """Compile an `Xml` spec for ``vocab`` (a Vocabulary, tokenizer or Model); cached per vocabulary.

    Free-form XML gives an `XmlGrammar`; schema-shaped XML a plain `CfgGrammar` (its element
    names are fixed, so the grammar alone is exact).
    """
    from guided.compiler import as_vocabulary

    vocab = as_vocabulary(vocab)
    spec = spec if spec is not None else Xml()
    with _compiled_lock:
        hit = _compiled.setdefault(vocab, {}).get(spec)
    if hit is not None:
        return hit
    if spec.schema is None:
        grammar = XmlGrammar(vocab)
    else:
        from guided.frontends.lark import Grammar, lark_to_ir
        from guided.frontends.xml import schema_grammar

        grammar = CfgGrammar(lark_to_ir(Grammar(schema_grammar(spec.schema, root=spec.root))), vocab)
    with _compiled_lock:
        _compiled[vocab][spec] = grammar
    return grammar


# ------------------------------------------------------------------------------------------
# Name stacks and configurations


class _Names:
    """An interned node of the persistent stack of open element names."""

    __slots__ = ("name", "parent", "uid", "depth")

    def __init__(self, name: bytes, parent: "_Names | None", uid: int):
        self.name = name
        self.parent = parent
        self.uid = uid
        self.depth = 0 if parent is None else parent.depth + 1


# Modes of the tag tracker (which terminal was fed last, as far as names are concerned).
OUT, OPEN_NAME, TAG, CLOSE_NAME, CLOSE_END = range(5)

# A configuration: (cfg stack, lexer state, names, mode, attrs, pending open name, lexeme bytes).
# ``lexbuf`` holds the bytes of the current lexeme while they may matter: names, "<", "</";
# inside an attribute value it is just the opening quote; None when irrelevant.


class _Risk:
    """Per-vocabulary token classes: which tokens may reach a name check from each kind of position."""

    def __init__(self, vocab: Vocabulary, ids: np.ndarray):
        n = vocab.size
        tb = vocab.token_bytes
        arrays = {k: np.zeros(n, dtype=bool) for k in
                  ("content", "eq", "name_sep", "sep_first", "slash_first", "name_first", "dq", "sq")}
        for i in ids.tolist():
            b = tb[i]
            lt = b.find(b"<")
            if lt >= 0 and (b"</" in b or b.find(b"=", lt) >= 0):
                arrays["content"][i] = True
            if b"=" in b:
                arrays["eq"][i] = True
            if b"<" in b and b"/" in b[lt:]:
                arrays["content"][i] = True  # "<" ... "/": a close tag may start (conservative)
            for j in range(len(b) - 1):
                if b[j] in NAME_BYTES and (b[j + 1] in _WS_BYTES or b[j + 1] == 0x3D):
                    arrays["name_sep"][i] = True
                    break
            if b[0] in _WS_BYTES or b[0] == 0x3D:
                arrays["sep_first"][i] = True
            if b[0] == 0x2F:
                arrays["slash_first"][i] = True
            if b[0] in NAME_BYTES:
                arrays["name_first"][i] = True
            if 0x22 in b:
                arrays["dq"][i] = True
            if 0x27 in b:
                arrays["sq"][i] = True
        for k, v in arrays.items():
            setattr(self, k, pack(v))
        pairs = sorted((tb[i], i) for i in ids.tolist())
        self.sorted_bytes = [p[0] for p in pairs]
        self.sorted_ids = [p[1] for p in pairs]
        self.by_bytes: dict[bytes, list[int]] = {}
        for data, i in pairs:
            self.by_bytes.setdefault(data, []).append(i)

    def starting_with(self, prefix: bytes) -> list[int]:
        """Token ids whose bytes start with ``prefix``, longer than it."""
        lo = bisect.bisect_right(self.sorted_bytes, prefix)
        hi = bisect.bisect_left(self.sorted_bytes, prefix + b"\xff" * 8)
        out = []
        for k in range(lo, hi):
            data = self.sorted_bytes[k]
            if data.startswith(prefix):
                out.append(self.sorted_ids[k])
        return out


_risks: "weakref.WeakKeyDictionary[Vocabulary, _Risk]" = weakref.WeakKeyDictionary()

MASK_CACHE_SIZE = 4096


class XmlGrammar:
    """Well-formed XML for one vocabulary: the `CompiledGrammar` of ``format="xml"`` without a schema."""

    def __init__(self, vocab: Vocabulary):
        from guided.frontends.lark import Grammar, lark_to_ir

        self.vocab = vocab
        self.cfg = CfgGrammar(lark_to_ir(Grammar(XML_GRAMMAR)), vocab)
        ir = self.cfg.ir
        names = {t.name: i for i, t in enumerate(ir.terminals)}
        self.T_NAME, self.T_LT, self.T_LTSLASH = names["NAME"], names["LT"], names["LTSLASH"]
        self.T_GT, self.T_SLASHGT = names["GT"], names["SLASHGT"]
        self.cfg.lexers.build_all()  # the arrays below are kept, so they must be complete
        self._table = self.cfg.lexers.table
        self._chosen = self.cfg.lexers.chosen
        self._ignore = ir.ignore
        with _compiled_lock:
            risk = _risks.get(vocab)
            if risk is None:
                risk = _risks[vocab] = _Risk(vocab, self.cfg.table.token_ids)
        self.risk = risk
        self._lock = threading.Lock()
        self._interned: dict[tuple[bytes, int], _Names] = {}
        self._uids = iter(range(1, 1 << 62))
        self.empty = _Names(b"", None, 0)
        self._masks: OrderedDict[tuple, np.ndarray] = OrderedDict()
        root = self.cfg.root
        self.start = (root, self.cfg.lexers.start(root.state), self.empty, OUT, frozenset(), None, b"")

    def __repr__(self) -> str:
        return f"XmlGrammar(vocab={self.vocab.size})"

    def matcher(self) -> "XmlMatcher":
        return XmlMatcher(self)

    # -- names ---------------------------------------------------------------------------------

    def push(self, names: _Names, name: bytes) -> _Names:
        key = (name, names.uid)
        with self._lock:
            node = self._interned.get(key)
            if node is None:
                if len(self._interned) > 200_000:
                    self._interned = {}
                node = self._interned[key] = _Names(name, names, next(self._uids))
        return node

    # -- one byte --------------------------------------------------------------------------------

    def step(self, config: tuple, b: int) -> tuple | None:
        """The configuration after byte ``b``, or None where the text leaves the language."""
        stack, lex, names, mode, attrs, pending, lexbuf = config
        nxt = int(self._table[lex, b])
        if nxt:
            if lexbuf is not None:
                if mode == TAG and lexbuf[:1] in (b'"', b"'"):
                    pass
                elif mode == OUT and (len(lexbuf) >= 2 or lexbuf[:1] != b"<"):
                    lexbuf = None
                else:
                    lexbuf = lexbuf + bytes((b,))
                    if mode == CLOSE_NAME and not names.name.startswith(lexbuf):
                        return None
            return stack, nxt, names, mode, attrs, pending, lexbuf
        term = int(self._chosen[lex])
        if term < 0:
            return None
        if term not in self._ignore:
            stack = self.cfg.feed(stack, term)
            if stack is None:
                return None
            if term == self.T_NAME:
                if mode == OPEN_NAME:
                    pending, mode, attrs = lexbuf, TAG, frozenset()
                elif mode == TAG:
                    if lexbuf in attrs:
                        return None
                    attrs = attrs | {lexbuf}
                elif mode == CLOSE_NAME:
                    if lexbuf != names.name:
                        return None
                    names, mode = names.parent, CLOSE_END
            elif term == self.T_LT:
                mode = OPEN_NAME
            elif term == self.T_LTSLASH:
                mode = CLOSE_NAME
            elif term == self.T_GT:
                if mode == TAG:
                    names = self.push(names, pending)
                mode, attrs, pending = OUT, frozenset(), None
            elif term == self.T_SLASHGT:
                mode, attrs, pending = OUT, frozenset(), None
        nxt = int(self._table[self.cfg.lexers.start(stack.state, term in self._ignore), b])
        if not nxt:
            return None
        lexbuf = bytes((b,))
        if mode == CLOSE_NAME and not names.name.startswith(lexbuf):
            return None
        if mode == OUT and b != 0x3C:
            lexbuf = None
        return stack, nxt, names, mode, attrs, pending, lexbuf

    def walk(self, config: tuple, data: bytes) -> tuple | None:
        """The configuration after ``data`` if it stays viable, else None."""
        for b in data:
            config = self.step(config, b)
            if config is None:
                return None
        return config if self.cfg.is_viable(config[0], config[1]) else None

    def accepts_end(self, config: tuple) -> bool:
        return config[2].parent is None and self.cfg.accepts_end(config[0], config[1])

    # -- masks -----------------------------------------------------------------------------------

    def words(self, config: tuple) -> np.ndarray:
        stack, lex, names, mode, attrs, pending, lexbuf = config
        key = (stack.uid, lex, names.uid, mode, attrs, pending, lexbuf)
        with self._lock:
            words = self._masks.get(key)
            if words is not None:
                self._masks.move_to_end(key)
                return words
        words = self._compute(config)
        with self._lock:
            self._masks[key] = words
            while len(self._masks) > MASK_CACHE_SIZE:
                self._masks.popitem(last=False)
        return words

    def _compute(self, config: tuple) -> np.ndarray:
        stack, lex, names, mode, attrs, pending, lexbuf = config
        r = self.risk
        cfg_words = self.cfg.words(stack, lex)
        direct: list[int] = []  # allowed without re-checking (the CFG mask still applies)
        if mode == CLOSE_NAME:
            need = names.name[len(lexbuf or b""):]
            if need:
                base = np.zeros_like(cfg_words)
                risky = None
                direct = [i for k in range(1, len(need) + 1) for i in r.by_bytes.get(need[:k], ())]
                check = [i for i in r.starting_with(need) if
                         self.vocab.token_bytes[i][len(need)] not in NAME_BYTES]
            else:
                base = cfg_words & ~r.name_first
                risky = r.content
                check = []
        else:
            base = cfg_words
            check = []
            if mode == OUT and lexbuf in (b"<", b"</") and names.parent is not None:
                need = (b"/" if lexbuf == b"<" else b"") + names.name
                base = cfg_words & ~(r.slash_first if lexbuf == b"<" else r.name_first)
                direct = [i for k in range(1, len(need) + 1) for i in r.by_bytes.get(need[:k], ())]
                check = [i for i in r.starting_with(need) if self.vocab.token_bytes[i][len(need)] not in NAME_BYTES]
                risky = r.content | r.eq
            elif mode == OUT or mode == CLOSE_END:
                risky = r.content | r.eq if lexbuf == b"<" else r.content
            elif mode == OPEN_NAME:
                risky = r.content | r.eq
            else:  # TAG
                if lexbuf is not None and lexbuf[:1] in (b'"', b"'"):
                    risky = r.dq if lexbuf[:1] == b'"' else r.sq
                elif attrs:
                    risky = r.content | r.eq | r.name_sep
                    if lexbuf is not None and lexbuf[:1] and lexbuf[0] in NAME_BYTES:
                        risky = risky | r.sep_first
                else:
                    risky = r.content | r.eq
        words = base.copy()
        if risky is not None:
            words &= ~risky
            cand = unpack(base & risky, self.vocab.size)
            check = check + np.flatnonzero(cand).tolist()
        allowed_bits = unpack(cfg_words, self.vocab.size)
        ok = [i for i in direct if allowed_bits[i]]
        tb = self.vocab.token_bytes
        for i in set(check):
            if allowed_bits[i] and self.walk(config, tb[i]) is not None:
                ok.append(i)
        if ok:
            ids = np.array(ok, dtype=np.int64)
            set_bits(words, ids)
        if self.accepts_end(config):
            words |= self.cfg.eos_words
        else:
            words &= ~self.cfg.eos_words
        return words

    def completion(self, config: tuple) -> bytes | None:
        """A short text that completes the document (verified), or None."""
        stack, lex, names, mode, attrs, pending, lexbuf = config
        out = bytearray()
        cur = config
        for _ in range(4 * (names.depth + 4)):
            if self.accepts_end(cur):
                return bytes(out)
            stack, lex, names, mode, attrs, pending, lexbuf = cur
            if mode == CLOSE_NAME:
                piece = names.name[len(lexbuf or b""):] + b">"
            elif mode == OUT and lexbuf in (b"<", b"</") and names.parent is not None:
                piece = (b"/" if lexbuf == b"<" else b"") + names.name + b">"
            else:
                piece = self.cfg.completion(stack, lex)
                if piece is None:
                    return None
                # Take the CFG's completion up to the first close tag; write the right name there.
                cut = piece.find(b"</")
                if cut >= 0:
                    piece = piece[:cut + 2]
            if not piece:
                return None
            nxt = cur
            for b in piece:
                nxt = self.step(nxt, b)
                if nxt is None:
                    return None
            out += piece
            cur = nxt
        return None


class XmlMatcher(HistoryMatcher):
    """Matcher over an `XmlGrammar`: its history holds XML parser configurations."""

    __slots__ = ()

    def __init__(self, grammar: XmlGrammar):
        super().__init__(grammar, (grammar.start, None))

    def __repr__(self) -> str:
        config = self._history[0]
        depth = "finished" if config is None else f"depth={config[2].depth}"
        return f"XmlMatcher({depth}, tokens={self._n})"

    def _words(self) -> np.ndarray:
        config = self._history[0]
        if config is None:
            return self.grammar.cfg.eos_words
        return self.grammar.words(config)

    def mask(self) -> torch.Tensor:
        return torch.from_numpy(unpack(self._words(), self.grammar.vocab.size))

    def fill_bitmask(self, bitmask, row: int = 0) -> None:
        write_row(bitmask, row, self._words())

    def advance(self, token_id: int) -> None:
        token_id = token_index(token_id)
        g = self.grammar
        config = self._history[0]
        if token_id in g.vocab.eos_token_ids:
            if config is None or not g.accepts_end(config):
                if config is not None:
                    raise ConstraintViolation(f"end of sequence is not allowed here: the XML is incomplete "
                                              f"(after {self._n} tokens)")
            self._push(None)
            return
        if config is None:
            raise ConstraintViolation(f"token {token_id} after end of sequence")
        nxt = g.walk(config, text_bytes(g.vocab, token_id, self._n))
        if nxt is None:
            raise ConstraintViolation(f"token {token_id} ({g.vocab.token_text(token_id)!r}) leaves well-formed XML "
                                      f"after {self._n} tokens")
        self._push(nxt)

    def accepts_eos(self) -> bool:
        config = self._history[0]
        return config is not None and self.grammar.accepts_end(config)

    def is_finished(self) -> bool:
        config = self._history[0]
        if config is None:
            return True
        return self.accepts_eos() and not np.any(self._words() & ~self.grammar.cfg.eos_words)

    def forced_bytes(self) -> bytes:
        config = self._history[0]
        if config is None:
            return b""
        stack, lex, names, mode, attrs, pending, lexbuf = config
        if mode == CLOSE_NAME:
            return names.name[len(lexbuf or b""):]
        if mode == OUT and lexbuf == b"</" and names.parent is not None:
            return names.name
        return self.grammar.cfg.forced_bytes(stack, lex)

    def budget_mask(self, remaining: int) -> torch.Tensor:
        g = self.grammar
        allowed = np.zeros(g.vocab.size, dtype=bool)
        config = self._history[0]
        if config is None or g.accepts_end(config):
            allowed[g.cfg.table.eos_ids] = True
        if config is not None and remaining >= 1:
            completion = g.completion(config)
            if completion:
                spare = remaining - 1
                ok = unpack(self._words(), g.vocab.size)
                for k in range(1, len(completion) + 1):
                    if len(completion) - k <= spare:
                        for i in g.risk.by_bytes.get(completion[:k], ()):
                            if ok[i]:
                                allowed[i] = True
        return torch.from_numpy(allowed)
