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
from guided.engine.xml import Xml, compile_xml
from guided.errors import TokenizerMismatch, UsageError
from guided.frontends.jsonschema import JsonSchema, schema_to_ir
from guided.frontends.lark import Grammar, lark_to_ir
from guided.frontends.pydantic import is_pydantic_model, pydantic_spec
from guided.frontends.regex import Regex, regex_to_dfa
from guided.vocab import Vocabulary

CACHE_SIZE = 64

_cache: "weakref.WeakKeyDictionary[Vocabulary, OrderedDict[Any, CompiledGrammar]]" = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def compile(spec: Any, vocab: Any, *, cache: bool = True) -> CompiledGrammar:
    """Compile ``spec`` for ``vocab``: a `guided.Regex`, `guided.Grammar`, `guided.JsonSchema`,
    a Pydantic model class, `guided.Xml` or `guided.Tools`.

    ``vocab`` may be a `guided.Vocabulary`, a Hugging Face tokenizer or a `guided.Model`.  A
    grammar compiled already is returned as it is when it was compiled for ``vocab``
    (`TokenizerMismatch` otherwise).
    """
    vocab = as_vocabulary(vocab)
    if hasattr(spec, "matcher") and isinstance(getattr(spec, "vocab", None), Vocabulary):
        if spec.vocab is not vocab and spec.vocab.fingerprint != vocab.fingerprint:
            raise TokenizerMismatch("this grammar was compiled for another vocabulary: compile its spec for this one")
        return spec
    if is_pydantic_model(spec):
        spec = pydantic_spec(spec)  # models with the same schema share one compiled grammar
    if not cache or not isinstance(spec, (Regex, Grammar, JsonSchema, Xml)) and not hasattr(spec, "compile_for"):
        return _compile(spec, vocab)  # (which refuses what it cannot compile)
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


def _compile(spec: Any, vocab: Vocabulary) -> CompiledGrammar:
    if isinstance(spec, Regex):
        return AutomatonGrammar(regex_to_dfa(spec), vocab, source=spec.pattern)
    if isinstance(spec, Grammar):
        return CfgGrammar(lark_to_ir(spec), vocab)
    if isinstance(spec, JsonSchema):
        return CfgGrammar(schema_to_ir(spec), vocab)
    if isinstance(spec, Xml):
        return compile_xml(spec, vocab)
    if hasattr(spec, "compile_for"):  # guided.tools.Tools
        return spec.compile_for(vocab)
    if isinstance(spec, str):
        raise UsageError("a bare string is ambiguous: wrap it as guided.Regex(...), guided.Grammar(...) "
                         "or guided.JsonSchema(...)")
    if isinstance(spec, (dict, bool)):
        raise UsageError("a dict is ambiguous: wrap a JSON Schema as guided.JsonSchema(...)")
    raise UsageError(f"cannot compile a {type(spec).__name__}; expected guided.Regex, guided.Grammar, "
                     "guided.JsonSchema, guided.Xml, guided.Tools or a Pydantic model class")


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
