"""A stand-in for the parts of SGLang that drive a grammar backend (SGLang needs CUDA; it cannot run here).

`install()` puts a module ``sglang.srt.constrained.base_grammar_backend`` into ``sys.modules``
with the interface third-party backends build on (``BaseGrammarObject``, ``InvalidGrammarObject``,
``GrammarRow``, ``BaseGrammarBackend`` with its compile cache and futures,
``register_grammar_backend``), reduced to what a backend sees.  `Scheduler` drives a registered
backend the way SGLang's scheduler does:

- a request's ``(key_type, key_string)`` goes to ``get_cached_or_future_value``; a future is
  waited on and its result cached (``set_cache``); an ``InvalidGrammarObject`` aborts the request
  with its message;
- each decode step, the first grammar of the batch allocates the mask, every unfinished row is
  filled (``fill_vocab_mask``, or ``fill_vocab_mask_batched`` for the whole batch), the mask is moved
  and applied to the logits in place, a token is sampled and ``accept_token`` follows it; the
  request finishes on EOS or ``max_new_tokens`` (``finished`` is set);
- jump-forward: ``try_jump_forward`` then ``jump_forward_str_state``; the output is decoded, the
  forced text appended, re-encoded, and ``jump_and_retokenize(old_ids, new_ids, state)`` follows;
- speculative decoding: draft tokens are accepted one by one, and rejected ones undone with
  ``rollback(k)``.
"""

from __future__ import annotations

import sys
import types
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch


def install() -> types.ModuleType:
    """Register the stand-in modules (only where the real SGLang is absent)."""
    name = "sglang.srt.constrained.base_grammar_backend"
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)

    class BaseGrammarObject:
        def __init__(self):
            self._finished = False
            self.grammar_stats = None

        def accept_token(self, token: int) -> None:
            raise NotImplementedError

        def rollback(self, k: int):
            raise NotImplementedError

        def is_terminated(self):
            return False

        def copy(self):
            return self

        @property
        def finished(self):
            return self._finished

        @finished.setter
        def finished(self, finished):
            self._finished = finished

        @staticmethod
        def fill_vocab_mask_batched(entries, vocab_mask):
            for entry in entries:
                entry.grammar.fill_vocab_mask(vocab_mask, entry.row)

    class InvalidGrammarObject(BaseGrammarObject):
        def __init__(self, error_message: str = "Unknown grammar error"):
            super().__init__()
            self.error_message = error_message

    class GrammarRow(NamedTuple):
        row: int
        grammar: Any

    class BaseGrammarBackend:
        def __init__(self):
            self.executor = ThreadPoolExecutor(max_workers=2)
            self.cache: dict = {}

        def _init_value_dispatch(self, key):
            key_type, key_string = key
            dispatch = {"json": self.dispatch_json, "regex": self.dispatch_regex, "ebnf": self.dispatch_ebnf,
                        "structural_tag": self.dispatch_structural_tag}[key_type]
            return dispatch(key_string)

        def get_cached_or_future_value(self, key):
            value = self.cache.get(key)
            if value is not None:
                return value.copy(), True
            return self.executor.submit(self._init_value_dispatch, key), False

        def set_cache(self, key, value):
            self.cache[key] = value

    registry: dict = {}

    def register_grammar_backend(name, init_func):
        registry[name] = init_func

    for obj in (BaseGrammarObject, InvalidGrammarObject, GrammarRow, BaseGrammarBackend, register_grammar_backend):
        setattr(module, obj.__name__, obj)
    module.GRAMMAR_BACKEND_REGISTRY = registry
    for parent in ("sglang", "sglang.srt", "sglang.srt.constrained"):
        sys.modules.setdefault(parent, types.ModuleType(parent))
    sys.modules[name] = module
    return module


@dataclass(eq=False)
class Req:
    key: tuple[str, str]
    max_new_tokens: int
    output_ids: list[int] = field(default_factory=list)
    grammar: Any = None
    error: str | None = None
    finished: bool = False


class Scheduler:
    """Drives a backend from ``GRAMMAR_BACKEND_REGISTRY[name]`` over a batch of requests."""

    def __init__(self, name: str, tokenizer, vocab_size: int, eos_token_ids: set[int], *, batched_fill: bool,
                 generator: torch.Generator, server_args: Any = None):
        registry = sys.modules["sglang.srt.constrained.base_grammar_backend"].GRAMMAR_BACKEND_REGISTRY
        self.backend = registry[name](server_args, tokenizer, vocab_size, eos_token_ids)
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        self.eos = eos_token_ids
        self.batched_fill = batched_fill
        self.gen = generator
        self.module = sys.modules["sglang.srt.constrained.base_grammar_backend"]

    def admit(self, req: Req) -> None:
        value, cache_hit = self.backend.get_cached_or_future_value(req.key)
        if not cache_hit:
            assert isinstance(value, Future)
            value = value.result(timeout=60)
            self.backend.set_cache(req.key, value)
            value = value.copy()
        if isinstance(value, self.module.InvalidGrammarObject):
            req.error, req.finished = value.error_message, True
            return
        req.grammar = value

    def step(self, batch: list[Req], logits: torch.Tensor) -> None:
        rows = [(i, r) for i, r in enumerate(batch) if r.grammar is not None and not r.grammar.finished]
        if rows:
            first = rows[0][1].grammar
            mask = first.allocate_vocab_mask(self.vocab_size, len(batch), logits.device)
            first.reset_vocab_mask(mask)  # rows without a grammar stay unconstrained
            if self.batched_fill:
                first.fill_vocab_mask_batched([self.module.GrammarRow(i, r.grammar) for i, r in rows], mask)
            else:
                for i, r in rows:
                    r.grammar.fill_vocab_mask(mask, i)
            mask = first.move_vocab_mask(mask, logits.device)
            first.apply_vocab_mask(logits=logits, vocab_mask=mask)
        probs = torch.softmax(logits, dim=-1)
        for i, req in enumerate(batch):
            if req.finished:
                continue
            token = int(torch.multinomial(probs[i], 1, generator=self.gen))
            req.output_ids.append(token)
            if req.grammar is not None:
                req.grammar.accept_token(token)
            req.finished = token in self.eos or len(req.output_ids) >= req.max_new_tokens
            if req.grammar is not None:
                req.grammar.finished = req.finished

    def jump_forward(self, req: Req) -> str:
        helper = req.grammar.try_jump_forward(self.tokenizer)
        if helper is None:
            return ""
        text, state = req.grammar.jump_forward_str_state(helper)
        if not text:
            return ""
        old = list(req.output_ids)
        new = self.tokenizer.encode(self.tokenizer.decode(old) + text, add_special_tokens=False)
        req.grammar.jump_and_retokenize(old, new, state)
        req.output_ids = new
        return text
