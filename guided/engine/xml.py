"""The XML engine: a `guided.ir.CfgIR` with matched names (XML's close tags) as exact token masks.

That ``</b>`` must name the innermost open element is beyond any context-free grammar when
names are arbitrary.  The IR states it as `guided.ir.MatchedNames` (which terminals open and
close elements and name them); `XmlGrammar` runs the CFG engine on the IR's tables and tracks
beside each CFG configuration the non-context-free part: the stack of open element names and
the attribute names of the tag being written (XML forbids duplicates).

Masks are exact.  A token is allowed iff its bytes keep the CFG configuration viable *and* pass
the name checks (a close tag's name must be a prefix of the innermost open name while it is
being written and equal to it when it ends; an attribute name must be new to its tag).  The CFG
mask (vectorised, cached) already decides every token whose bytes cannot reach a name check;
only the few tokens that can (those that contain ``</``, or ``=`` after ``<``, or a closing quote
inside a tag, ... a per-vocabulary classification, see `_Risk`) are re-checked byte by byte, and
inside a close tag the allowed names are looked up directly (prefixes of the expected name).
That classification relies on XML's spelling of tags (``<``, ``</``, ``>``, ``/>``, checked
against the IR's terminals when a grammar is built), of attributes (``=``, quoted values) and of
whitespace.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"<a>", b"<b>", b"</a>", b"</b>", b"x", b"<eos>"], eos_token_ids=[5])
>>> m = guided.compile(guided.Xml(), vocab).matcher()
>>> m.advance(0); m.advance(1); m.mask().tolist()   # inside <a><b>: only </b> may close
[True, True, False, True, True, False]
>>> m.advance(3); m.advance(2); m.accepts_eos()
True
"""

from __future__ import annotations

import bisect
import threading
import weakref
from typing import NamedTuple

import numpy as np

from guided.engine.lru import LockedLru
from guided.engine.bitmask import pack, set_bits, unpack
from guided.engine.cfg import CfgGrammar, Stack
from guided.engine.closing import prefix_tokens, subsequence_cover, suffix_tokenizations
from guided.engine.matcher import UNREACHABLE, CheckedCfgMatcher
from guided.engine.token_table import TokenTable
from guided.engine.tuning import CLOSING_REFINE_TOKENS, INTERN_LIMIT, MANDATORY_MAX_SYMBOLS, MASK_CACHE_SIZE
from guided.errors import SpecError
from guided.ir import DEAD, ByteDFA, CfgIR
from guided.vocab import Vocabulary

__all__ = ["XmlGrammar", "XmlMatcher", "check_matched_names"]

_WS_BYTES = frozenset(b" \t\r\n")
_ATTRIBUTE_BYTES = frozenset(b"=\"'")


def _spells(dfa: ByteDFA, text: bytes) -> bool:
    """Does ``dfa`` accept exactly ``text`` and nothing else?"""
    state = dfa.initial
    for b in text:
        live = np.flatnonzero(dfa.transitions[state] != DEAD)
        if dfa.accepting[state] or live.tolist() != [b]:
            return False
        state = int(dfa.transitions[state, b])
    return bool(dfa.accepting[state]) and not dfa.transitions[state].any()


def check_matched_names(ir: CfgIR) -> None:
    """The byte classes of `_Risk` assume XML's tags: refuse an IR whose named terminals differ."""
    names = ir.matched_names
    if names is None:
        raise SpecError(f"XmlGrammar needs a CfgIR with matched_names ({ir.source[:80]!r} has none)")
    for role, text in (("open_start", b"<"), ("close_start", b"</"), ("open_end", b">"), ("empty_end", b"/>")):
        if not _spells(ir.terminals[getattr(names, role)].dfa, text):
            raise SpecError(f"matched_names.{role} must be the terminal {text.decode()!r} for the XML engine")
    dfa = ir.terminals[names.name].dfa
    used = set(np.flatnonzero(dfa.transitions.any(axis=0)).tolist())
    if not used <= names.name_bytes:
        raise SpecError("matched_names.name_bytes must hold every byte of the name terminal")


# ------------------------------------------------------------------------------------------
# Name stacks and configurations


class _Names:
    """An interned node of the persistent stack of open element names."""

    __slots__ = ("name", "parent", "uid", "depth")

    def __init__(self, name: bytes, parent: "_Names | None", uid: int):
        self.name = name
        self.parent = parent
        self.uid = uid
        self.depth: int = 0 if parent is None else parent.depth + 1


# Modes of the tag tracker (which terminal was fed last, as far as names are concerned).
OUT, OPEN_NAME, TAG, CLOSE_NAME, CLOSE_END = range(5)


class XmlConfig(NamedTuple):
    """Where an XML matcher stands: a CFG configuration plus the names it must match."""

    stack: Stack  # the CFG engine's parser stack
    lex: int  # and lexer state
    names: _Names  # the open elements, innermost first
    mode: int  # OUT, OPEN_NAME, TAG, CLOSE_NAME or CLOSE_END
    attrs: frozenset  # attribute names of the start tag being written
    pending: bytes | None  # the name of the start tag being written, pushed at its ">"
    # The bytes of the current lexeme while they may matter: names, "<", "</"; inside an
    # attribute value just the opening quote; None when irrelevant.
    lexbuf: bytes | None


class _Risk:
    """Per-vocabulary token classes: which tokens may reach a name check from each kind of position."""

    # Packed token sets (see `__init__`): tokens that may reach a name check after content,
    # hold "=", join a name to a separator, start with a separator, "/", a name byte; hold '"', "'".
    content: np.ndarray
    eq: np.ndarray
    name_sep: np.ndarray
    sep_first: np.ndarray
    slash_first: np.ndarray
    name_first: np.ndarray
    dq: np.ndarray
    sq: np.ndarray

    def __init__(self, vocab: Vocabulary, ids: np.ndarray, name_bytes: frozenset[int]):
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
                if b[j] in name_bytes and (b[j + 1] in _WS_BYTES or b[j + 1] == 0x3D):
                    arrays["name_sep"][i] = True
                    break
            if b[0] in _WS_BYTES or b[0] == 0x3D:
                arrays["sep_first"][i] = True
            if b[0] == 0x2F:
                arrays["slash_first"][i] = True
            if b[0] in name_bytes:
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
        out = []
        for k in range(lo, len(self.sorted_bytes)):  # sorted: those starting with it come first
            if not self.sorted_bytes[k].startswith(prefix):
                break
            out.append(self.sorted_ids[k])
        return out


# Per vocabulary, per set of name bytes: vocabulary data, not compiled grammars (those are cached
# by `guided.compiler` alone).
_risks: "weakref.WeakKeyDictionary[Vocabulary, dict[frozenset[int], _Risk]]" = weakref.WeakKeyDictionary()
_risks_lock = threading.Lock()


class XmlGrammar:
    """A `CfgIR` with matched names compiled for one vocabulary: the `CompiledGrammar` of ``guided.Xml()``."""

    def __init__(self, ir: CfgIR, vocab: Vocabulary):
        check_matched_names(ir)
        names = ir.matched_names
        assert names is not None  # `_check_spelling` refuses an IR without them
        self.vocab = vocab
        self.cfg = CfgGrammar(ir, vocab)
        self.T_NAME, self.T_LT, self.T_LTSLASH = names.name, names.open_start, names.close_start
        self.T_GT, self.T_SLASHGT = names.open_end, names.empty_end
        self.name_bytes = names.name_bytes
        self.unique_attributes = names.unique_attributes
        with _risks_lock:
            per_vocab = _risks.setdefault(vocab, {})
            risk = per_vocab.get(names.name_bytes)
            if risk is None:
                risk = per_vocab[names.name_bytes] = _Risk(vocab, TokenTable.of(vocab).token_ids, names.name_bytes)
        self.risk = risk
        self._lock = threading.Lock()
        self._interned: dict[tuple[bytes, int], _Names] = {}
        self._uids = iter(range(1, 1 << 62))
        self.empty = _Names(b"", None, 0)
        self._masks: LockedLru[tuple, np.ndarray] = LockedLru(MASK_CACHE_SIZE)
        stack, lex = self.cfg.start()
        self.start = XmlConfig(stack, lex, self.empty, OUT, frozenset(), None, b"")

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
                if len(self._interned) > INTERN_LIMIT:
                    self._interned = {}
                node = self._interned[key] = _Names(name, names, next(self._uids))
        return node

    # -- one byte --------------------------------------------------------------------------------

    def step(self, config: XmlConfig, b: int) -> XmlConfig | None:
        """The configuration after byte ``b``, or None where the text leaves the language."""
        stack, lex, names, mode, attrs, pending, lexbuf = config
        cfg = self.cfg
        ended = cfg.lexeme_end(lex, b)
        moved = cfg.step(stack, lex, b)
        if moved is None:
            return None
        stack, nxt = moved
        if ended is None:  # ``b`` extends the lexeme
            if lexbuf is not None:
                if mode == TAG and lexbuf[:1] in (b'"', b"'"):
                    pass
                elif mode == OUT and (len(lexbuf) >= 2 or lexbuf[:1] != b"<"):
                    lexbuf = None
                else:
                    lexbuf = lexbuf + bytes((b,))
                    if mode == CLOSE_NAME and not names.name.startswith(lexbuf):
                        return None
            return XmlConfig(stack, nxt, names, mode, attrs, pending, lexbuf)
        if ended == self.T_NAME:
            if mode == OPEN_NAME:
                pending, mode, attrs = lexbuf, TAG, frozenset()
            elif mode == TAG:
                if self.unique_attributes and lexbuf in attrs:
                    return None
                attrs = attrs | {lexbuf}
            elif mode == CLOSE_NAME:
                if lexbuf != names.name or names.parent is None:
                    return None
                names, mode = names.parent, CLOSE_END
        elif ended == self.T_LT:
            mode = OPEN_NAME
        elif ended == self.T_LTSLASH:
            mode = CLOSE_NAME
        elif ended == self.T_GT:
            if mode == TAG and pending is not None:
                names = self.push(names, pending)
            mode, attrs, pending = OUT, frozenset(), None
        elif ended == self.T_SLASHGT:
            mode, attrs, pending = OUT, frozenset(), None
        lexbuf = bytes((b,))
        if mode == CLOSE_NAME and not names.name.startswith(lexbuf):
            return None
        if mode == OUT and b != 0x3C:
            lexbuf = None
        return XmlConfig(stack, nxt, names, mode, attrs, pending, lexbuf)

    def walk(self, config: XmlConfig, data: bytes) -> XmlConfig | None:
        """The configuration after ``data`` if it stays viable, else None."""
        for b in data:
            moved = self.step(config, b)
            if moved is None:
                return None
            config = moved
        return config if self.cfg.is_viable(config.stack, config.lex) else None

    def accepts_end(self, config: XmlConfig) -> bool:
        return config.names.parent is None and self.cfg.accepts_end(config.stack, config.lex)

    # -- masks -----------------------------------------------------------------------------------

    def words(self, config: XmlConfig) -> np.ndarray:
        stack, lex, names, mode, attrs, pending, lexbuf = config
        key = (stack.uid, lex, names.uid, mode, attrs, pending, lexbuf)
        words = self._masks.get(key)
        if words is None:
            words = self._compute(config)
            self._masks.put(key, words)
        return words

    def _compute(self, config: XmlConfig) -> np.ndarray:
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
                         self.vocab.token_bytes[i][len(need)] not in self.name_bytes]
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
                check = [i for i in r.starting_with(need) if self.vocab.token_bytes[i][len(need)] not in self.name_bytes]
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
                    if lexbuf is not None and lexbuf[:1] and lexbuf[0] in self.name_bytes:
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

    def mandatory(self, config: XmlConfig) -> tuple[frozenset, ...]:
        """A mandatory subsequence of every completion (`guided.engine.closing`): the close tags
        of the open elements, innermost first, after the end of the tag being written."""
        stack, lex, names, mode, attrs, pending, lexbuf = config
        if names.parent is None and mode in (OUT, CLOSE_END):
            return self.cfg.mandatory(stack, lex)  # no element open: the grammar's own structure
        head: list[frozenset] = []  # byte sets before ``out``'s bytes
        inner: _Names | None = names  # the elements whose close tags are still to come
        out = bytearray()
        if mode == CLOSE_NAME:
            out += names.name[len(lexbuf or b""):] + b">"
            inner = names.parent
        elif mode == OUT and lexbuf in (b"<", b"</") and names.parent is not None:
            # the close tag of the innermost element, or a child first: its name and ">" either way
            out += names.name + b">"
            inner = names.parent
        elif mode == CLOSE_END:
            out += b">"
        elif mode in (OPEN_NAME, TAG):
            if lexbuf == b">":  # the tag is written (its lexeme not ended yet): the element is open
                out += b"</" + (pending or b"") + b">"
            elif lexbuf != b"/>":
                # What the attribute being written still needs before the tag can end (the CFG
                # knows: "=", the value's quotes), then ">" or "/>", both ending with ">".
                for item in self.cfg.mandatory(stack, lex, search=False)[:3]:
                    if not item <= _ATTRIBUTE_BYTES:
                        break
                    head.append(item)
                out += b">"
        while inner is not None and inner.parent is not None:
            out += b"</" + inner.name + b">"
            inner = inner.parent
        return tuple(head + [frozenset((b,)) for b in bytes(out)])[:MANDATORY_MAX_SYMBOLS]

    def completion(self, config: XmlConfig) -> bytes | None:
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
                cfg_piece = self.cfg.completion(stack, lex)
                if cfg_piece is None:
                    return None
                # Take the CFG's completion up to the first close tag; write the right name there.
                cut = cfg_piece.find(b"</")
                piece = cfg_piece[:cut + 2] if cut >= 0 else cfg_piece
            if not piece:
                return None
            nxt = cur
            for b in piece:
                moved = self.step(nxt, b)
                if moved is None:
                    return None
                nxt = moved
            out += piece
            cur = nxt
        return None


class XmlMatcher(CheckedCfgMatcher):
    """Matcher over an `XmlGrammar`: its history holds XML parser configurations."""

    __slots__ = ()
    language = "well-formed XML"

    def __repr__(self) -> str:
        config = self._history[0]
        depth = "finished" if config is None else f"depth={config.names.depth}"
        return f"XmlMatcher({depth}, tokens={self._n})"

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

    def budget_mask(self, remaining: int) -> np.ndarray:
        config = self._history[0]
        plain = self.mask() if config is not None and remaining >= 1 else None
        return budget_allowed(self.grammar, config, plain, remaining)

    def closing_lower_bound(self) -> int:
        config = self._history[0]
        return 0 if config is None else _lower_bound(self.grammar, config)

    def _completion_tokens(self) -> tuple[int, list[int]]:
        g = self.grammar
        config = self._history[0]
        if config is None or g.accepts_end(config):
            return 0, []
        completion = g.completion(config)
        if not completion:
            return UNREACHABLE, []
        suffixes = suffix_tokenizations(g.cfg.table, completion)
        ok = unpack(self._words(), g.vocab.size)
        starts = [t for t, n in prefix_tokens(g.cfg.table, completion) if 1 + suffixes[n] == suffixes[0] and ok[t]]
        return suffixes[0], starts

    def closing_distance(self) -> int:
        return self._completion_tokens()[0]

    def closing_tokens(self) -> np.ndarray:
        return np.array(self._completion_tokens()[1], dtype=np.int64)


def budget_allowed(g: XmlGrammar, config: XmlConfig | None, plain: np.ndarray | None, remaining: int) -> np.ndarray:
    """The tokens of ``plain`` (the configuration's mask; None where nothing but EOS matters)
    after which no lower bound rules out completing ``config`` within ``remaining - 1`` tokens
    (`guided.engine.matcher.Matcher.budget_mask`; the native core's XML matchers call it too)."""
    complete = config is None or g.accepts_end(config)
    if config is None or remaining < 1 or plain is None:
        allowed = np.zeros(g.vocab.size, dtype=bool)
    else:  # as for the CFG engine (`guided.engine.cfg.matcher`)
        bounds = subsequence_cover(g.cfg.table).token_bounds(g.mandatory(config))
        allowed = plain & (bounds <= remaining - 1)
        allowed[g.cfg.table.eos_ids] = False
        ids = np.flatnonzero(allowed)
        if ids.size <= CLOSING_REFINE_TOKENS:
            for t in ids.tolist():
                after = g.walk(config, g.vocab.token_bytes[t])
                if after is None or _lower_bound(g, after) > remaining - 1:
                    allowed[t] = False
    allowed[g.cfg.table.eos_ids] = complete
    return allowed


def _lower_bound(g: XmlGrammar, config: XmlConfig) -> int:
    """A true lower bound on the tokens that complete ``config`` (0 when it may end now)."""
    if g.accepts_end(config):
        return 0
    return max(1, subsequence_cover(g.cfg.table).cover(g.mandatory(config)))
