"""guided inside llama-cpp-python: a logits processor for any guided spec, on GGUF models run by llama.cpp.

``llama-cpp-python`` calls each logits processor with every token so far (prompt and generated,
``np.intc``) and the next token's logits (``np.single``), and samples from what it returns.
`GuidedLlamaProcessor` keeps a matcher for the generated part and sets every forbidden logit to
``-inf``; `vocabulary_from_llama` reads the model's exact token bytes from llama.cpp itself, so
no Hugging Face tokenizer is needed::

    from llama_cpp import Llama, LogitsProcessorList
    llm = Llama(model_path="model.gguf")
    proc = GuidedLlamaProcessor.for_llama(llm, guided.JsonSchema(schema))
    out = llm.create_completion(prompt, logits_processor=LogitsProcessorList([proc]), max_tokens=200)

One processor serves one generation at a time (llama-cpp-python runs one sequence); it notices a
new generation (the token list stops extending the previous one) and starts again from the
grammar's start.  ``llama.cpp``'s KV cache, sampling chain and stopping stay llama.cpp's: when the
document is complete only EOS is allowed, which ends the generation.  Stop with ``max_tokens``
only where the document can close in time: budget-aware closing needs the remaining budget, which
llama-cpp-python does not pass to processors (pass ``max_tokens=`` here to enable it).

This module imports nothing from ``llama_cpp`` at import time, so it is importable (and its
doctests run) without it.

>>> import numpy as np, guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"<eos>"], eos_token_ids=[2])
>>> proc = GuidedLlamaProcessor(guided.compile(guided.Regex("ab"), vocab))
>>> proc(np.array([7, 7], np.intc), np.zeros(3, np.single)).tolist()   # the prompt is [7, 7]
[0.0, -inf, -inf]
>>> proc(np.array([7, 7, 0], np.intc), np.zeros(3, np.single)).tolist()
[-inf, 0.0, -inf]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from guided.compiler import compile as compile_spec
from guided.engine.bitmask import pack, words_for
from guided.engine.matcher import CompiledGrammar, closing_mask
from guided.errors import ConstraintViolation, TokenizerMismatch
from guided.vocab import Vocabulary

__all__ = ["GuidedLlamaProcessor", "vocabulary_from_llama"]


class GuidedLlamaProcessor:
    """A llama-cpp-python ``LogitsProcessor`` constraining generation to ``grammar``.

    ``max_tokens`` (optional, the ``max_tokens`` given to llama.cpp) turns on budget-aware
    closing: near the end only tokens after which the document can still be finished in time
    are allowed.
    """

    def __init__(self, grammar: CompiledGrammar, *, max_tokens: int | None = None, budget_window: int = 48):
        self.grammar = grammar
        self.vocab = grammar.vocab
        self.max_tokens = max_tokens
        self.budget_window = budget_window
        self._words = np.zeros((1, words_for(self.vocab.size)), dtype=np.int32)
        self.reset()

    @classmethod
    def for_llama(cls, llm: Any, spec: Any, **kwargs) -> GuidedLlamaProcessor:
        """A processor for ``spec`` (any guided spec) on the ``llama_cpp.Llama`` model ``llm``."""
        return cls(compile_spec(spec, vocabulary_from_llama(llm)), **kwargs)

    def reset(self) -> None:
        """Forget the current generation; the next call starts a new document."""
        self._prompt: list[int] | None = None
        self._generated: list[int] = []
        self._matcher = self.grammar.matcher()

    def _follow(self, input_ids: np.ndarray) -> None:
        ids = input_ids.tolist()
        known = (self._prompt or []) + self._generated
        if self._prompt is None or len(ids) < len(known) or ids[: len(known)] != known:
            self.reset()
            self._prompt = ids
            return
        for token in ids[len(known):]:
            try:
                self._matcher.advance(token)
            except ConstraintViolation:
                raise ConstraintViolation(
                    f"llama.cpp sampled token {token}, which the grammar forbids: another processor after "
                    "guided's re-enabled it") from None
            self._generated.append(token)

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        if scores.shape[-1] < self.vocab.size:
            raise TokenizerMismatch(f"the model's logits have {scores.shape[-1]} entries but the grammar's "
                                    f"vocabulary has {self.vocab.size} tokens: it was compiled for another model")
        self._follow(input_ids)
        words = self._words
        self._matcher.fill_bitmask(words, 0)
        if self.max_tokens is not None:
            remaining = self.max_tokens - len(self._generated)
            if 0 < remaining <= self.budget_window:
                budget = closing_mask(self._matcher, remaining)
                if budget.any():
                    words[0] = pack(budget)[: words.shape[1]]
        allowed = np.unpackbits(words[0].view(np.uint8), bitorder="little")[: scores.shape[-1]].astype(bool)
        if allowed.size < scores.shape[-1]:
            allowed = np.concatenate([allowed, np.zeros(scores.shape[-1] - allowed.size, bool)])
        return np.where(allowed, scores, np.single(-np.inf)).astype(scores.dtype, copy=False)


def vocabulary_from_llama(llm: Any) -> Vocabulary:
    """The exact bytes of every token of a ``llama_cpp.Llama`` model, read from llama.cpp.

    Each text token's piece is what it appends to the text (SentencePiece's ``▁`` as a space,
    byte tokens as their byte); control and unused tokens are special (never produced by a
    grammar); EOS is llama.cpp's end-of-generation set (``llama_vocab_is_eog``).
    """
    import llama_cpp

    model = llm._model
    vocab_ptr = llama_cpp.llama_model_get_vocab(model.model)
    n = llama_cpp.llama_vocab_n_tokens(vocab_ptr)
    buf = (llama_cpp.ctypes.c_char * 256)()
    tokens: list[bytes] = []
    special: list[int] = []
    eos: list[int] = []
    for token in range(n):
        if llama_cpp.llama_vocab_is_eog(vocab_ptr, token):
            eos.append(token)
        if llama_cpp.llama_vocab_is_control(vocab_ptr, token):
            special.append(token)
            tokens.append(b"")
            continue
        size = llama_cpp.llama_token_to_piece(vocab_ptr, token, buf, len(buf), 0, False)
        if size < 0:
            raise TokenizerMismatch(f"token {token}'s piece is longer than {len(buf)} bytes")
        tokens.append(bytes(buf[:size]))
    if not eos:
        raise TokenizerMismatch("the model declares no end-of-generation token")
    return Vocabulary.from_token_bytes(tokens, eos_token_ids=eos, special_token_ids=special,
                                       name=str(getattr(llm, "model_path", "")))
