"""`compile`: turn any supported constraint spec into a `CompiledGrammar` for a vocabulary.

Compiled grammars are cached per (spec, vocabulary), so calling `compile` again with an equal
spec is free.

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"yes", b"no", b"y", b"<eos>"], eos_token_ids=[3])
>>> g = guided.compile(guided.Regex("yes|no"), vocab)
>>> g is guided.compile(guided.Regex("yes|no"), vocab)
True
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import Any

from guided.engine.automaton import AutomatonGrammar
from guided.engine.cfg import CfgGrammar
from guided.engine.matcher import CompiledGrammar
from guided.engine.xml import XmlGrammar
from guided.frontends.pydantic import is_pydantic_model, pydantic_spec
from guided.ir import ByteDFA, CfgIR
from guided.vocab import Vocabulary

CACHE_SIZE = 64

_cache: "weakref.WeakKeyDictionary[Vocabulary, OrderedDict[Any, CompiledGrammar]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def compile(spec: Any, vocab: Any, *, cache: bool = True) -> CompiledGrammar:
    """Compile ``spec`` for ``vocab``: a `guided.Regex`, `guided.Grammar`, `guided.JsonSchema`,
    a Pydantic model class, `guided.Xml` or `guided.Tools`.

    ``vocab`` may be a `guided.Vocabulary`, a Hugging Face tokenizer or a `guided.Model`.
    This is the one place that picks an engine, and its cache (per vocabulary, up to
    `CACHE_SIZE` specs, least recently used first out) the one cache of compiled grammars.
    """
    vocab = as_vocabulary(vocab)
    if is_pydantic_model(spec):
        spec = pydantic_spec(spec)  # models with the same schema share one compiled grammar
    if not cache:
        return _compile(spec, vocab)
    with _lock:
        per_vocab = _cache.setdefault(vocab, OrderedDict())
        hit = per_vocab.get(spec)
        if hit is not None:
            per_vocab.move_to_end(spec)
            return hit
    grammar = _compile(spec, vocab)
    with _lock:
        per_vocab[spec] = grammar
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
        raise TypeError("a bare string is ambiguous: wrap it as guided.Regex(...), guided.Grammar(...) "
                        "or guided.JsonSchema(...)")
    if not callable(getattr(spec, "to_ir", None)):
        raise TypeError(f"cannot compile a {type(spec).__name__}; expected guided.Regex, guided.Grammar, "
                        "guided.JsonSchema, guided.Xml, guided.Tools or a Pydantic model class")
    return spec.to_ir()


def engine_for(ir: ByteDFA | CfgIR, vocab: Vocabulary, source: str = "") -> CompiledGrammar:
    """The engine that compiles ``ir`` for ``vocab``: automata for a DFA, the CFG engine for a
    `CfgIR`, the XML engine for one with matched names."""
    if isinstance(ir, ByteDFA):
        return AutomatonGrammar(ir, vocab, source=source)
    if ir.matched_names is not None:
        return XmlGrammar(ir, vocab)
    return CfgGrammar(ir, vocab)


def _compile(spec: Any, vocab: Vocabulary) -> CompiledGrammar:
    return engine_for(lower(spec), vocab, source=getattr(spec, "pattern", ""))


def as_vocabulary(obj: Any) -> Vocabulary:
    """The `Vocabulary` of a Vocabulary, a `guided.Model` or a Hugging Face tokenizer."""
    if isinstance(obj, Vocabulary):
        return obj
    vocab = getattr(obj, "vocab", None)
    if isinstance(vocab, Vocabulary):
        return vocab
    if hasattr(obj, "convert_ids_to_tokens"):
        return _tokenizer_vocab(obj)
    raise TypeError(f"expected a guided.Vocabulary, a guided.Model or a tokenizer, got {type(obj).__name__}")


_tokenizer_vocabs: "weakref.WeakKeyDictionary[Any, Vocabulary]" = weakref.WeakKeyDictionary()


def _tokenizer_vocab(tokenizer: Any) -> Vocabulary:
    with _lock:
        vocab = _tokenizer_vocabs.get(tokenizer)
    if vocab is None:
        vocab = Vocabulary.from_tokenizer(tokenizer)
        with _lock:
            _tokenizer_vocabs[tokenizer] = vocab
    return vocab
