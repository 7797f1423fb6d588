"""Ban lists and must-include phrases as byte-level automata over the decoded text.

Both compile to a `guided.ir.dfa.ByteDFA` over the *bytes* of the generated text and then to an
ordinary compiled grammar (`AutomatonGrammar`), so they are checked against every token's bytes
at once, in every tokenization: a banned word is blocked whether the model would write it as
one token, as ``"Pa" + "ris"`` or byte by byte.  Their matchers follow the `guided.Matcher`
protocol (state per row, ``copy``/``rollback``), so they compose with any grammar, with beams
and with batches: a decoder intersects their masks with the grammar's.

Matching (`PhraseOptions`):

- ``whole_word=True`` (default), ``word_prefixes=True`` (default): a case-sensitive match that
  starts at a word boundary, like the regex ``\\bphrase``: the phrase as a word *or as the start
  of a longer word*, since a word glued to the next one is still written ("oceanwaves",
  "Parisis").  A boundary is required before the phrase if it starts with a word character.
  Word characters are ASCII letters, digits, ``_`` and every non-ASCII character (bytes
  0x80-0xFE); the start and the end of the generated text are boundaries.  So banning ``"cat"``
  blocks ``"a cat."``, ``"cat"``, ``"cats"`` and ``"catwalk"`` but not ``"concatenate"`` or
  ``"bobcat"``.
- ``word_prefixes=False`` (the behaviour before): a whole-word match, like ``\\bphrase\\b``:
  a boundary is also required after the phrase if it ends with a word character, so
  ``"cats"`` and ``"catwalk"`` pass.
- ``case_sensitive=False``: each character also matches its upper/lower-case forms.
- ``whole_word=False``: raw substring matching (``"concatenate"`` is blocked too).

A ban-list matcher forbids every token that would complete a banned match, and EOS while the
text ends with a match that only the end of the text completes.  A must-include matcher allows
every text token and allows EOS only once each phrase has appeared; its `budget_mask` steers
towards the missing phrases when the token budget runs short.

**Planning** (`plan_dfa`): where the rest of the constraint is itself an automaton (a regex, or
free text), the phrases are not checked beside it but multiplied into it: one DFA of the texts
the constraint allows that hold every must-include phrase and no banned one.  Its masks are
exact, so a phrase is written wherever it still fits (the product's budget mask plans where,
even against a regex's length bound) and no token leads into a dead end; an empty product
fails at once (`PhrasesCannotFit`) instead of searching.  Lark grammars and JSON schemas are
context-free: there the phrase automata run beside the grammar (dead ends are avoided one
token ahead and backtracked from beyond that).

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"ca", b"t", b"s", b" ", b"<eos>"], eos_token_ids=[4])
>>> m = ban_grammar(["cat"], vocab).matcher()
>>> m.advance(0); m.mask().tolist()  # "ca" + "t" would start a word with "cat"
[True, False, True, True, True]
>>> m = ban_grammar(["cat"], vocab, PhraseOptions(word_prefixes=False)).matcher()
>>> m.advance(0); m.advance(1); m.mask().tolist()  # "cat": only a word character may follow
[True, True, True, False, False]
"""

from __future__ import annotations

import functools
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from guided.engine.automaton import AutomatonGrammar
from guided.errors import LimitExceeded, SpecError
from guided.ir.dfa import DEAD, ByteDFA, ByteNFA, Limits, determinize, trim
from guided.vocab import Vocabulary

__all__ = ["PhraseOptions", "PhrasesCannotFit", "ban_dfa", "ban_grammar", "must_include_dfa", "must_include_grammar",
           "plan_dfa", "plan_grammar"]

BOUNDARY = 0xFF
"""A byte that never occurs in UTF-8 text: stands for the start and the end of the text."""

_WORD = np.zeros(256, dtype=bool)
for _b in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_":
    _WORD[_b] = True
_WORD[0x80:0xFF] = True
_NONWORD_RANGES = [(lo, hi) for lo, hi in ((0, 47), (58, 64), (91, 94), (96, 96), (123, 127), (0xFF, 0xFF))]
MAX_PRODUCT_STATES = 200_000


class PhrasesCannotFit(SpecError):
    """No text the constraint allows holds every must-include phrase without a banned one."""


@dataclass(frozen=True)
class PhraseOptions:
    """How phrases match the text: see the module docstring."""

    whole_word: bool = True
    case_sensitive: bool = True
    word_prefixes: bool = True  # with whole_word: a word that starts with the phrase matches too


def _is_word_char(ch: str) -> bool:
    return bool(_WORD[ch.encode("utf-8")[0]])


def _variants(ch: str, case_sensitive: bool) -> list[bytes]:
    if case_sensitive:
        return [ch.encode("utf-8")]
    forms = {ch, ch.lower(), ch.upper(), ch.swapcase(), ch.casefold()}
    return sorted({f.encode("utf-8") for f in forms if f})


def _check_phrases(phrases: Iterable[str], what: str) -> tuple[str, ...]:
    out = []
    for p in phrases:
        if not isinstance(p, str):
            raise SpecError(f"{what} entries must be strings, got {type(p).__name__}")
        if not p:
            raise SpecError(f"{what} holds an empty phrase")
        out.append(p)
    return tuple(dict.fromkeys(out))


def _add_phrase(nfa: ByteNFA, start: int, phrase: str, options: PhraseOptions) -> int:
    """Add the path of one phrase (with its boundaries) from ``start``; return its end state."""
    state = start
    if options.whole_word and _is_word_char(phrase[0]):
        nxt = nfa.add_state()
        for lo, hi in _NONWORD_RANGES:
            nfa.ranges[state].append((lo, hi, nxt))
        state = nxt
    for ch in phrase:
        nxt = nfa.add_state()
        for variant in _variants(ch, options.case_sensitive):
            nfa.add_sequence(state, [(b, b) for b in variant], nxt)
        state = nxt
    if options.whole_word and not options.word_prefixes and _is_word_char(phrase[-1]):
        nxt = nfa.add_state()
        for lo, hi in _NONWORD_RANGES:
            nfa.ranges[state].append((lo, hi, nxt))
        state = nxt
    return state


def _contains_dfa(phrases: Sequence[str], options: PhraseOptions, absorbing: bool) -> ByteDFA:
    """DFA of ``(anything) match`` (``absorbing``: ``... match (anything)``), over the text
    preceded by a `BOUNDARY` byte; accepting = a match has been read."""
    nfa = ByteNFA()
    nfa.ranges[nfa.start].append((0, 255, nfa.start))
    for phrase in phrases:
        end = _add_phrase(nfa, nfa.start, phrase, options)
        nfa.accepting.add(end)
        if absorbing:
            nfa.ranges[end].append((0, 255, end))
    return determinize(nfa, Limits(max_states=MAX_PRODUCT_STATES), what=f"phrases {list(phrases)!r}")


def ban_dfa(phrases: Sequence[str], options: PhraseOptions = PhraseOptions()) -> ByteDFA:
    """The texts with no banned match, as a trimmed DFA whose accepting states are those where
    the text may end (no match pending on the end-of-text boundary).

    >>> d = ban_dfa(["cat"])
    >>> [d.fullmatch(t) for t in (b"a cat", b"a cat!", b"concatenate", b"cats", b"bobcat")]
    [False, False, True, False, True]
    >>> d = ban_dfa(["cat"], PhraseOptions(word_prefixes=False))
    >>> [d.fullmatch(t) for t in (b"a cat", b"a cat!", b"concatenate", b"cats", b"bobcat")]
    [False, False, True, True, True]
    """
    phrases = _check_phrases(phrases, "ban")
    bad = _contains_dfa(phrases, options, absorbing=False)
    tr, acc = bad.transitions, bad.accepting
    safe = np.where(acc[tr], DEAD, tr).astype(np.int32)
    safe[DEAD] = DEAD
    may_end = ~acc[tr[:, BOUNDARY]]
    may_end[DEAD] = False
    initial = int(tr[bad.initial, BOUNDARY])
    if acc[initial]:
        raise SpecError(f"the ban list {list(phrases)!r} bans the empty text")
    # States read only through a match (now dead) drop out in trim.
    return trim(safe, may_end, initial)


def must_include_dfa(phrases: Sequence[str], options: PhraseOptions = PhraseOptions()) -> ByteDFA:
    """The texts that contain every phrase (product of one automaton per phrase).

    >>> d = must_include_dfa(["red", "blue"])
    >>> [d.fullmatch(t) for t in (b"red and blue", b"blue, red", b"red", b"bluered")]
    [True, True, False, False]
    """
    phrases = _check_phrases(phrases, "must_include")
    parts = [_contains_dfa([p], options, absorbing=True) for p in phrases]
    starts = tuple(int(d.transitions[d.initial, BOUNDARY]) for d in parts)
    # A state may end the text when each phrase has matched, counting the end-of-text boundary.
    ends = [d.accepting[d.transitions[:, BOUNDARY]] for d in parts]
    strides = np.cumprod([1] + [d.num_states for d in parts[:-1]]).astype(np.int64)
    index: dict[tuple[int, ...], int] = {(0,) * len(parts): DEAD, starts: 1}
    order = [(0,) * len(parts), starts]
    rows = [np.zeros(256, np.int32)]
    i = 1
    while i < len(order):
        state = order[i]
        i += 1
        if len(order) > MAX_PRODUCT_STATES:
            raise LimitExceeded(f"must_include {list(phrases)!r}: more than {MAX_PRODUCT_STATES} automaton states")
        nexts = np.stack([d.transitions[s] for d, s in zip(parts, state)])  # [k, 256]
        keys = (nexts.astype(np.int64) * strides[:, None]).sum(axis=0)
        row = np.zeros(256, np.int32)
        uniq, inverse = np.unique(keys, return_inverse=True)
        for j, key in enumerate(uniq.tolist()):
            comp = tuple(int(nexts[c, np.flatnonzero(inverse == j)[0]]) for c in range(len(parts)))
            if 0 in comp:
                continue  # cannot happen: each part loops on every byte
            target = index.get(comp)
            if target is None:
                target = index[comp] = len(order)
                order.append(comp)
            row[inverse == j] = target
        rows.append(row)
    transitions = np.stack(rows)
    accepting = np.array([all(e[s] for e, s in zip(ends, st)) if n else False for n, st in enumerate(order)])
    return trim(transitions, accepting, 1)


_cache: "weakref.WeakKeyDictionary[Vocabulary, dict]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _lookup(cache: weakref.WeakKeyDictionary, owner: Any, key: Any) -> Any:
    with _lock:
        return cache.setdefault(owner, {}).get(key)


def _store(cache: weakref.WeakKeyDictionary, owner: Any, key: Any, value: Any) -> None:
    """Keep ``value`` under ``owner`` (a vocabulary or a grammar); at most 64 entries per owner
    (a full table is emptied: specs repeat, so a small one is enough)."""
    with _lock:
        per_owner = cache.setdefault(owner, {})
        if len(per_owner) > 64:
            per_owner.clear()
        per_owner[key] = value


def _cached(kind: str, phrases: Sequence[str], options: PhraseOptions, vocab: Vocabulary, build) -> AutomatonGrammar:
    key = (kind, tuple(phrases), options)
    hit = _lookup(_cache, vocab, key)
    if hit is None:
        hit = AutomatonGrammar(build(phrases, options), vocab, source=f"{kind}{list(phrases)!r}")
        _store(_cache, vocab, key, hit)
    return hit


def ban_grammar(
    phrases: Sequence[str], vocab: Vocabulary, options: PhraseOptions = PhraseOptions()
) -> AutomatonGrammar:
    """The ban list compiled for ``vocab`` (cached per phrases, options and vocabulary)."""
    return _cached("ban", _check_phrases(phrases, "ban"), options, vocab, ban_dfa)


def must_include_grammar(
    phrases: Sequence[str], vocab: Vocabulary, options: PhraseOptions = PhraseOptions(whole_word=False)
) -> AutomatonGrammar:
    """The must-include constraint compiled for ``vocab`` (cached).  Substring matching by default."""
    return _cached("must", _check_phrases(phrases, "must_include"), options, vocab, must_include_dfa)


def plan_dfa(base: ByteDFA | None, ban: Sequence[str] = (), must: Sequence[str] = (),
             ban_options: PhraseOptions = PhraseOptions(),
             must_options: PhraseOptions = PhraseOptions(whole_word=False)) -> ByteDFA:
    """The texts of ``base`` (``None``: any text) with every ``must`` phrase and no ``ban`` match.

    Raises `PhrasesCannotFit` when there is none, `LimitExceeded` when the product is too large.

    >>> from guided.frontends.regex import Regex, regex_to_dfa
    >>> d = plan_dfa(regex_to_dfa(Regex("[a-z ]{3,12}")), must=["whale"])
    >>> [d.fullmatch(t) for t in (b"a whale", b"a fish", b"whales")]
    [True, False, True]
    >>> plan_dfa(regex_to_dfa(Regex("[a-z]{3}")), must=["whale"])
    Traceback (most recent call last):
    ...
    guided.sampling.phrases.PhrasesCannotFit: no text of the constraint holds the must-include phrases ['whale']
    """
    from guided.ir.dfa_ops import intersect, is_empty

    parts = ([base] if base is not None else []) + ([must_include_dfa(must, must_options)] if must else []) + (
        [ban_dfa(ban, ban_options)] if ban else [])
    if not parts:
        raise ValueError("nothing to plan")
    out = parts[0]
    for part in parts[1:]:
        out = intersect(out, part, MAX_PRODUCT_STATES, what="must-include / ban phrases with the constraint")
    if is_empty(out):
        what = []
        if must:
            what.append(f"the must-include phrases {list(must)!r}")
        if ban:
            what.append(f"{'and ' if must else ''}no banned phrase of {list(ban)!r}")
        raise PhrasesCannotFit(f"no text of the constraint holds {' '.join(what)}")
    return out


_plans: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


def plan_grammar(base: AutomatonGrammar | None, vocab: Vocabulary, ban: Sequence[str] = (),
                 must: Sequence[str] = (), ban_options: PhraseOptions = PhraseOptions(),
                 must_options: PhraseOptions = PhraseOptions(whole_word=False)) -> AutomatonGrammar:
    """`plan_dfa` compiled for ``vocab`` (cached per base grammar, phrases and options)."""
    key = (tuple(ban), ban_options, tuple(must), must_options)
    owner = base if base is not None else vocab
    hit = _lookup(_plans, owner, key)
    if hit is None:
        dfa = plan_dfa(base.dfa if base is not None else None, ban, must, ban_options, must_options)
        source = f"{base.source if base is not None else 'text'} with must{list(must)!r} ban{list(ban)!r}"
        hit = AutomatonGrammar(dfa, vocab, source=source)
        _store(_plans, owner, key, hit)
    return hit


@functools.lru_cache(maxsize=256)
def find_match(text: str, phrases: tuple[str, ...], options: PhraseOptions = PhraseOptions()) -> str | None:
    """The first phrase that matches in ``text`` under ``options`` (for checks and tests)."""
    data = text.encode("utf-8")
    for phrase in phrases:
        dfa = _contains_dfa([phrase], options, absorbing=True)
        if dfa.accepting[dfa.walk(data + bytes([BOUNDARY]), int(dfa.transitions[dfa.initial, BOUNDARY]))]:
            return phrase
    return None
