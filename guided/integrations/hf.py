"""A Hugging Face `LogitsProcessor` that constrains `model.generate(...)` to a compiled grammar.

Batch- and beam-safe: a row's matcher is found from the tokens the row generated, not from its
index, so beam reordering and finished rows cannot desynchronise it.  Reusable: a processor
notices when a new `generate` call starts and begins again from the grammar's start.

>>> import guided, torch
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"<eos>"], eos_token_ids=[2])
>>> proc = guided.LogitsProcessor(guided.compile(guided.Regex("ab"), vocab))
>>> proc(torch.tensor([[2]]), torch.zeros(1, 3)).tolist()
[[0.0, -inf, -inf]]
>>> proc(torch.tensor([[2, 0]]), torch.zeros(1, 3)).tolist()
[[-inf, 0.0, -inf]]
"""

from __future__ import annotations

import torch
import transformers

from guided.decoding.torch_masks import allocate_bitmask, apply_bitmask
from guided.engine.matcher import CompiledGrammar, Matcher
from guided.errors import ConstraintViolation, TokenizerMismatch, UsageError
from guided.vocab import Vocabulary


class LogitsProcessor(transformers.LogitsProcessor):
    """Masks every token that would lead outside ``grammar``; pass it in ``logits_processor=[...]``.

    Logits wider than the vocabulary (padded LM heads) are always masked past the vocabulary.
    ``tokenizer``: the model's tokenizer, checked against the one the grammar was compiled for
    (`TokenizerMismatch`).  Without it, a grammar compiled for another tokenizer is still caught
    when the model's logits are narrower than its vocabulary, or the prompt holds token ids
    its vocabulary does not have.
    """

    def __init__(self, grammar: CompiledGrammar, *, tokenizer=None):
        if not (hasattr(grammar, "matcher") and isinstance(getattr(grammar, "vocab", None), Vocabulary)):
            raise UsageError(f"guided.LogitsProcessor takes a compiled grammar (guided.compile(spec, tokenizer)), "
                             f"got {type(grammar).__name__}")
        self.grammar = grammar
        self.vocab = grammar.vocab
        if tokenizer is not None:
            from guided.compiler import as_vocabulary

            theirs = as_vocabulary(tokenizer)
            if theirs is not self.vocab and theirs.fingerprint != self.vocab.fingerprint:
                raise TokenizerMismatch("the grammar was compiled for another tokenizer than this one: compile it "
                                        "with guided.compile(spec, tokenizer)")
        self._prompt_len: int | None = None
        self._matchers: dict[tuple[int, ...], Matcher] = {}
        self._last_len = -1

    def reset(self) -> None:
        """Forget the current generation; the next call starts a new document."""
        self._prompt_len = None
        self._matchers = {}
        self._last_len = -1

    def matchers_for(self, input_ids: torch.LongTensor) -> list[Matcher]:
        """The matcher of every row of ``input_ids``, advanced over the row's generated tokens."""
        length = input_ids.shape[1]
        if self._prompt_len is None or length != self._last_len + 1:
            self._start(length)
        elif not self._continue(input_ids):
            self._start(length)
        self._last_len = length
        generated = input_ids[:, self._prompt_len :].tolist()
        return [self._matchers[tuple(row)] for row in generated]

    def _start(self, length: int) -> None:
        self._prompt_len = length
        self._matchers = {(): self.grammar.matcher()}

    def _continue(self, input_ids: torch.LongTensor) -> bool:
        """Advance each row's parent matcher by its newest token; False if a row has no parent."""
        new: dict[tuple[int, ...], Matcher] = {}
        for row in input_ids[:, self._prompt_len :].tolist():
            key = tuple(row)
            if key in new:
                continue
            parent = self._matchers.get(key[:-1])
            if parent is None:
                return False
            child = parent.copy()
            token = key[-1]
            try:
                child.advance(token)
            except ConstraintViolation:
                if not parent.is_finished():
                    raise ConstraintViolation(
                        f"the model produced token {token}, which the grammar forbids: another logits "
                        "processor after guided's re-enabled it, or the processor was reused across calls "
                        "without reset()"
                    ) from None
                # A finished row is padded by generate(); its tokens are not part of the document.
            new[key] = child
        self._matchers = new
        return True

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[-1] < self.vocab.size:
            raise TokenizerMismatch(
                f"the model's logits have {scores.shape[-1]} entries but the grammar's vocabulary has "
                f"{self.vocab.size} tokens: the grammar was compiled for another tokenizer"
            )
        starting = self._prompt_len is None or input_ids.shape[1] != self._last_len + 1
        if starting and input_ids.numel() and int(input_ids.max()) >= self.vocab.size:
            raise TokenizerMismatch(
                f"the prompt holds token id {int(input_ids.max())} but the grammar's vocabulary has "
                f"{self.vocab.size} tokens: the grammar was compiled for another tokenizer (compile it with "
                f"guided.compile(spec, tokenizer))"
            )
        matchers = self.matchers_for(input_ids)
        bitmask = allocate_bitmask(scores.shape[0], self.vocab.size)
        for row, matcher in enumerate(matchers):
            matcher.fill_bitmask(bitmask, row)
        return apply_bitmask(scores, bitmask)
