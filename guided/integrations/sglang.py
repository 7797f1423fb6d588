"""guided as an SGLang grammar backend: `GuidedGrammarBackend` and `GuidedGrammar` (untested against a real SGLang).

SGLang lets third parties add a grammar backend (``register_grammar_backend(name, factory)``);
the backend compiles a request's ``json_schema`` / ``regex`` / ``ebnf`` into a
``BaseGrammarObject`` that the scheduler drives: ``accept_token`` after each sampled token,
``fill_vocab_mask`` per batch row (then ``move_vocab_mask`` and ``apply_vocab_mask``),
``rollback`` under speculative decoding, ``try_jump_forward`` / ``jump_forward_str_state`` /
``jump_and_retokenize`` for jump-forward decoding, ``is_terminated`` and ``copy`` (a fresh matcher
from the cached compiled grammar).  Register it in the server process before it starts::

    import guided.integrations.sglang
    guided.integrations.sglang.register()          # then: --grammar-backend guided

SGLang needs CUDA and cannot run on the machine this was written on: the adapter is written
against SGLang's ``sglang.srt.constrained.base_grammar_backend`` interface and tested with a
stand-in that drives it as SGLang's scheduler does (``tests/test_sglang.py``), never against a
real SGLang.

Differences from SGLang's built-in backends: the ``ebnf`` slot takes a **Lark** grammar (or a
shipped grammar's name), not GBNF; ``structural_tag`` is not supported; a spec guided refuses
becomes an ``InvalidGrammarObject`` carrying guided's message (SGLang aborts the request with it).
Masks are int32 bitmasks (bit set = allowed), filled on the CPU.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from sglang.srt.constrained.base_grammar_backend import (
    BaseGrammarBackend,
    BaseGrammarObject,
    InvalidGrammarObject,
    register_grammar_backend,
)

from guided.compiler import compile as compile_spec
from guided.engine.bitmask import set_bits, words_for
from guided.engine.matcher import CompiledGrammar
from guided.errors import ConstraintViolation, GuidedError
from guided.frontends.jsonschema import JsonSchema
from guided.frontends.lark import Grammar
from guided.frontends.regex import Regex
from guided.engine.native import fill_bitmasks
from guided.vocab import Vocabulary

__all__ = ["GuidedGrammar", "GuidedGrammarBackend", "create_backend", "register"]

log = logging.getLogger("guided.sglang")

BACKEND_NAME = "guided"


class GuidedGrammar(BaseGrammarObject):
    """One request's constraint state in SGLang: a guided matcher behind SGLang's grammar-object interface."""

    def __init__(self, grammar: CompiledGrammar):
        super().__init__()
        self.grammar = grammar
        self.matcher = grammar.matcher()
        self.failed: str | None = None

    def accept_token(self, token: int) -> None:
        if self.failed is not None:
            return
        try:
            self.matcher.advance(int(token))
        except ConstraintViolation as exc:  # a request must not crash the scheduler: end it instead
            self.failed = str(exc)
            log.error("guided: a request left its constraint (%s); it is allowed only EOS", exc)

    def rollback(self, k: int) -> None:
        self.matcher.rollback(k)

    def is_terminated(self) -> bool:
        return self.failed is not None or self.matcher.is_finished()

    def allocate_vocab_mask(self, vocab_size: int, batch_size: int, device) -> torch.Tensor:
        return torch.zeros((batch_size, words_for(vocab_size)), dtype=torch.int32)

    def fill_vocab_mask(self, vocab_mask: torch.Tensor, idx: int) -> None:
        target = vocab_mask.numpy()
        if self.failed is not None:
            target[idx] = 0
            set_bits(target[idx], np.array(sorted(self.grammar.vocab.eos_token_ids), dtype=np.int64))
        else:
            self.matcher.fill_bitmask(target, idx)

    @staticmethod
    def fill_vocab_mask_batched(entries, vocab_mask: torch.Tensor) -> None:
        """Fill the listed rows in one `fill_bitmasks` call; other rows are left as they are."""
        live = [e for e in entries if isinstance(e.grammar, GuidedGrammar) and e.grammar.failed is None]
        if live:
            rows = np.zeros((len(live), vocab_mask.shape[1]), dtype=np.int32)
            fill_bitmasks([e.grammar.matcher for e in live], rows)
            vocab_mask.numpy()[[e.row for e in live]] = rows
        filled = {id(e) for e in live}
        for entry in entries:
            if id(entry) not in filled:
                entry.grammar.fill_vocab_mask(vocab_mask, entry.row)

    @staticmethod
    def reset_vocab_mask(vocab_mask: torch.Tensor) -> None:
        vocab_mask.fill_(-1)  # every bit set: nothing forbidden

    @staticmethod
    def move_vocab_mask(vocab_mask: torch.Tensor, device) -> torch.Tensor:
        return vocab_mask.to(device, non_blocking=True)

    @staticmethod
    def apply_vocab_mask(logits: torch.Tensor, vocab_mask: torch.Tensor) -> None:
        words = vocab_mask.to(logits.device)
        shifts = torch.arange(32, dtype=torch.int32, device=logits.device)
        allowed = ((words.unsqueeze(-1) >> shifts) & 1).reshape(words.shape[0], -1).bool()
        width = logits.shape[-1]
        if allowed.shape[1] < width:  # padded logits past the mask: never allowed
            pad = torch.zeros((allowed.shape[0], width - allowed.shape[1]), dtype=torch.bool, device=logits.device)
            allowed = torch.cat([allowed, pad], dim=1)
        logits.masked_fill_(~allowed[:, :width], float("-inf"))

    def copy(self) -> GuidedGrammar:
        """A fresh matcher on the same compiled grammar (SGLang copies a cached prototype per request)."""
        return GuidedGrammar(self.grammar)

    def try_jump_forward(self, tokenizer) -> bytes | None:
        if self.failed is not None:
            return None
        forced = self.matcher.forced_bytes()
        return forced or None

    def jump_forward_str_state(self, helper: bytes) -> tuple[str, int]:
        """The forced text, cut before an incomplete UTF-8 character (SGLang appends text, not bytes)."""
        for end in range(len(helper), max(len(helper) - 4, -1), -1):
            try:
                return helper[:end].decode("utf-8"), -1
            except UnicodeDecodeError:
                continue
        return "", -1

    def jump_and_retokenize(self, old_output_ids: list[int], new_output_ids: list[int], next_state: int) -> None:
        """Follow SGLang's retokenization of the output after a jump: undo the tokens that changed,
        consume the new ones (any tokenization of a valid text is accepted)."""
        common = 0
        for a, b in zip(old_output_ids, new_output_ids):
            if a != b:
                break
            common += 1
        self.matcher.rollback(len(old_output_ids) - common)
        for token in new_output_ids[common:]:
            self.accept_token(token)


class GuidedGrammarBackend(BaseGrammarBackend):
    """Compiles SGLang's ``json`` / ``regex`` / ``ebnf`` keys with guided (cached by `guided.compile`)."""

    def __init__(self, tokenizer: Any, vocab_size: int, eos_token_ids=None, *, compact_json: bool = False):
        super().__init__()
        eos = sorted(int(t) for t in eos_token_ids) if eos_token_ids else None
        self.vocab = Vocabulary.from_tokenizer(tokenizer, eos_token_ids=eos)
        self.vocab_size = vocab_size
        self.json_whitespace = "compact" if compact_json else "any"

    def _compile(self, spec: Any) -> BaseGrammarObject:
        try:
            return GuidedGrammar(compile_spec(spec, self.vocab))
        except GuidedError as exc:
            return InvalidGrammarObject(f"{type(exc).__name__}: {exc}")

    def dispatch_json(self, key_string: str) -> BaseGrammarObject:
        if key_string == "$$ANY$$":  # SGLang's "any JSON" (response_format json_object)
            return self._compile(Grammar("json"))
        try:
            spec = JsonSchema(key_string, whitespace=self.json_whitespace)
        except GuidedError as exc:
            return InvalidGrammarObject(f"{type(exc).__name__}: {exc}")
        return self._compile(spec)

    def dispatch_regex(self, key_string: str) -> BaseGrammarObject:
        return self._compile(Regex(key_string))

    def dispatch_ebnf(self, key_string: str) -> BaseGrammarObject:
        if "::=" in key_string:
            return InvalidGrammarObject("guided's SGLang backend takes a Lark grammar in the ebnf field, "
                                        "not GBNF/EBNF (rules are written 'name: ...', not 'name ::= ...')")
        one_line = "\n" not in key_string
        if one_line and (key_string.endswith(".lark") or "/" in key_string):
            return InvalidGrammarObject("file paths are not accepted from requests; send the grammar's text")
        return self._compile(Grammar(key_string))

    def dispatch_structural_tag(self, key_string: str) -> BaseGrammarObject:
        return InvalidGrammarObject("structural_tag is not supported by guided's SGLang backend")


def create_backend(*args: Any, **kwargs: Any) -> GuidedGrammarBackend:
    """The factory SGLang calls: ``(server_args, tokenizer, vocab_size, eos_token_ids)`` in most
    releases, keyword arguments (``tokenizer=``, ``vocab_size=``, ``eos_token_ids=``,
    ``constrained_json_disable_any_whitespace=``) in others.  SGLang's
    ``--constrained-json-disable-any-whitespace`` gives compact JSON."""
    if args:
        server_args, tokenizer, vocab_size, *rest = args
        eos = rest[0] if rest else kwargs.get("eos_token_ids")
        compact = getattr(server_args, "constrained_json_disable_any_whitespace", False)
    else:
        tokenizer, vocab_size, eos = kwargs["tokenizer"], kwargs["vocab_size"], kwargs.get("eos_token_ids")
        compact = kwargs.get("constrained_json_disable_any_whitespace", False)
    return GuidedGrammarBackend(tokenizer, vocab_size, eos, compact_json=bool(compact))


def register(name: str = BACKEND_NAME) -> None:
    """Make ``--grammar-backend guided`` (or ``name``) pick this backend."""
    register_grammar_backend(name, create_backend)
