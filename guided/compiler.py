"""`compile`: turn any supported constraint spec into a `CompiledGrammar` for a vocabulary.

The one cache of compiled grammars lives here, in two levels:

- in memory, per (spec, vocabulary): calling `compile` again with an equal spec is free;
- on disk, per spec: the spec's IR (vocabulary-independent) in guided's serialised form, so a
  new process skips lowering (`guided.irstore`: where, size bound, safety rules, how to turn it
  off).  ``compile(..., cache=False)`` uses neither.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"yes", b"no", b"y", b"<eos>"], eos_token_ids=[3])
>>> g = guided.compile(guided.Regex("yes|no"), vocab)
>>> g is guided.compile(guided.Regex("yes|no"), vocab)
True
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import OrderedDict
from typing import Any

from guided import irstore
from guided.engine import native
from guided.engine.automaton import AutomatonGrammar
from guided.engine.cfg import CfgGrammar
from guided.engine.counts import CountsGrammar
from guided.engine.matcher import CompiledGrammar
from guided.engine.reasoning import ThoughtBudget
from guided.engine.unique import UniqueGrammar
from guided.engine.xml import XmlGrammar
from guided.errors import GuidedError, TokenizerMismatch, UsageError
from guided.frontends.pydantic import is_pydantic_model, pydantic_spec
from guided.frontends.reasoning import Reasoning
from guided.ir import ByteDFA, CfgIR
from guided.vocab import Vocabulary

CACHE_SIZE = 64

_cache: "weakref.WeakKeyDictionary[Vocabulary, OrderedDict[Any, CompiledGrammar]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def compile(spec: Any, vocab: Any, *, cache: bool = True, engine: str | None = None) -> CompiledGrammar:
    """Compile ``spec`` for ``vocab``: a `guided.Regex`, `guided.Grammar`, `guided.JsonSchema`,
    a Pydantic model class, `guided.Xml`, `guided.Tools` or a `guided.Reasoning` around one.

    ``vocab`` may be a `guided.Vocabulary`, a Hugging Face tokenizer or a `guided.Model`.
    This is the one place that picks an engine, and its cache (per vocabulary, up to
    `CACHE_SIZE` specs, least recently used first out; the IR also on disk, see the module
    docstring) the one cache of compiled grammars.  ``cache=False`` compiles from scratch and
    stores nothing.  ``engine`` is ``"native"`` (the compiled core, the default where it is
    built) or ``"python"`` (the reference engine); the environment variable ``GUIDED_ENGINE``
    sets the default.  A grammar compiled already is returned as it is when it was compiled for
    ``vocab`` (`TokenizerMismatch` otherwise).
    """
    vocab = as_vocabulary(vocab)
    engine = resolve_engine(engine)
    if hasattr(spec, "matcher") and isinstance(getattr(spec, "vocab", None), Vocabulary):
        if spec.vocab is not vocab and spec.vocab.fingerprint != vocab.fingerprint:
            raise TokenizerMismatch("this grammar was compiled for another vocabulary: compile its spec for this one")
        return spec
    if is_pydantic_model(spec):
        spec = pydantic_spec(spec)  # models with the same schema share one compiled grammar
    if isinstance(spec, Reasoning) and spec.max_tokens is not None:
        # the thought's token budget is not part of the language: one compiled grammar for
        # every budget, wrapped per budget
        inner = compile(spec.without_budget(), vocab, cache=cache, engine=engine)
        return ThoughtBudget(inner, prefix=spec.prefix, end=spec.end.encode(), max_tokens=spec.max_tokens)
    if not cache or not callable(getattr(spec, "to_ir", None)):
        return _compile(lower(spec), spec, vocab, engine)  # (lower refuses what it cannot compile)
    key = (spec, engine)
    with _lock:
        per_vocab = _cache.setdefault(vocab, OrderedDict())
        hit = per_vocab.get(key)
        if hit is not None:
            per_vocab.move_to_end(key)
            return hit
    grammar = _compile(cached_lower(spec), spec, vocab, engine)
    with _lock:
        per_vocab[key] = grammar
        while len(per_vocab) > CACHE_SIZE:
            per_vocab.popitem(last=False)
    return grammar


def lower(spec: Any) -> ByteDFA | CfgIR:
    """The intermediate form of a spec: ``spec.to_ir()``, the one method every front-end's spec has.

    >>> import guided
    >>> type(lower(guided.Regex("a+"))).__name__, type(lower(guided.Grammar("json"))).__name__
    ('ByteDFA', 'CfgIR')
    """
    if is_pydantic_model(spec):
        spec = pydantic_spec(spec)
    if isinstance(spec, str):
        raise UsageError("a bare string is ambiguous: wrap it as guided.Regex(...), guided.Grammar(...) "
                         "or guided.JsonSchema(...)")
    if isinstance(spec, (dict, bool)):
        raise UsageError("a dict is ambiguous: wrap a JSON Schema as guided.JsonSchema(...)")
    if not callable(getattr(spec, "to_ir", None)):
        raise UsageError(f"cannot compile a {type(spec).__name__}; expected guided.Regex, guided.Grammar, "
                         "guided.JsonSchema, guided.Xml, guided.Tools or a Pydantic model class")
    return spec.to_ir()


ENGINES = ("native", "python")


def resolve_engine(engine: str | None = None) -> str:
    """The engine to compile with: ``engine``, else ``$GUIDED_ENGINE``, else native where it is built."""
    if engine is None:
        engine = os.environ.get("GUIDED_ENGINE") or ("native" if native.available() else "python")
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; expected one of {ENGINES}")
    if engine == "native" and not native.available():
        raise GuidedError("engine='native' was asked for but the native core is not built in this installation")
    return engine


def engine_for(ir: ByteDFA | CfgIR, vocab: Vocabulary, source: str = "", engine: str | None = None) -> CompiledGrammar:
    """The engine that compiles ``ir`` for ``vocab``: automata for a DFA, the CFG engine for a
    `CfgIR`, the XML engine for one with matched names, the unique-items engine for one with
    unique items, the item-counts engine for one with item counts;
    ``engine`` as in `compile` (a `CfgIR` that parses by Earley gets the native core as a plain CFG;
    beside unique items or item counts, which validation refuses, the Python engine)."""
    engine = resolve_engine(engine)
    if isinstance(ir, ByteDFA):
        if engine == "native":
            return native.NativeRegexGrammar(ir, vocab, source=source)
        return AutomatonGrammar(ir, vocab, source=source)
    if ir.unique_items is not None:
        # Unique items (rule 9): native over LALR(1) tables (never beside item counts or matched names).
        if engine == "native" and not ir.earley and ir.item_counts is None and ir.matched_names is None:
            return native.NativeUniqueGrammar(ir, vocab)
        return UniqueGrammar(ir, vocab)
    if ir.item_counts is not None:
        # Item counts (minItems/maxItems counted at run time, rule 12): native over LALR(1) tables.
        if engine == "native" and not ir.earley and ir.matched_names is None:
            return native.NativeCountsGrammar(ir, vocab)
        return CountsGrammar(ir, vocab)
    if ir.matched_names is not None:
        # Counted terminals (`guided.ir.Count`) are native in CFG grammars, not yet beside matched
        # names (no front-end makes both): the Python XML engine takes those.
        if engine == "native" and not any(t.count is not None for t in ir.terminals):
            return native.NativeXmlGrammar(ir, vocab)
        return XmlGrammar(ir, vocab)
    if engine == "native":
        # Grammars whose LALR(1) tables have conflicts parse by Earley (`guided.ir.cfg` rule 10),
        # natively too (src/guided_native/earley.h).
        return native.NativeCfgGrammar(ir, vocab)
    return CfgGrammar(ir, vocab)


def cached_lower(spec: Any) -> ByteDFA | CfgIR:
    """`lower`, through the on-disk IR store when it is on and the spec has a stable key."""
    store = irstore.default_store()
    key = irstore.spec_key(spec) if store is not None else None
    if store is None or key is None:
        return lower(spec)
    ir = store.get(key)
    if ir is not None:
        return ir
    start = time.perf_counter()
    ir = lower(spec)
    if time.perf_counter() - start >= irstore.MIN_BUILD_SECONDS:
        store.put(key, ir)
    return ir


def _compile(ir: ByteDFA | CfgIR, spec: Any, vocab: Vocabulary, engine: str | None = None) -> CompiledGrammar:
    return engine_for(ir, vocab, source=getattr(spec, "pattern", ""), engine=engine)


def as_vocabulary(obj: Any) -> Vocabulary:
    """The `Vocabulary` of a Vocabulary, a `guided.Model` or a Hugging Face tokenizer."""
    if isinstance(obj, Vocabulary):
        return obj
    vocab = getattr(obj, "vocab", None)
    if isinstance(vocab, Vocabulary):
        return vocab
    if hasattr(obj, "convert_ids_to_tokens"):
        return _tokenizer_vocab(obj)
    hint = (": a Hugging Face model has no vocabulary of its own; pass its tokenizer"
            if hasattr(obj, "config") and hasattr(obj, "forward") else "")
    raise UsageError(f"expected a guided.Vocabulary, a guided.Model or a tokenizer, got {type(obj).__name__}{hint}")


_tokenizer_vocabs: "weakref.WeakKeyDictionary[Any, Vocabulary]" = weakref.WeakKeyDictionary()


def _tokenizer_vocab(tokenizer: Any) -> Vocabulary:
    with _lock:
        vocab = _tokenizer_vocabs.get(tokenizer)
    if vocab is None:
        vocab = Vocabulary.from_tokenizer(tokenizer)
        with _lock:
            _tokenizer_vocabs[tokenizer] = vocab
    return vocab
