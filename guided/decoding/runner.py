"""KV-cached forward passes over a batch of left-padded prompts (`ModelRunner`).

The prompt is run once (prefill); every later step feeds only the new tokens with the
`transformers.DynamicCache`, an attention mask that grows by one column per token and explicit
position ids (left padding shifts each row's positions).  `step` takes ``k`` tokens per row at
once, so a speculative decoder can verify a draft in one pass; `select` keeps, reorders or
repeats rows of the cache (beam reordering, finished rows leaving the batch); `truncate` takes a
row back to an earlier length (backtracking) by masking its later cache entries out.

Anything with the same three methods (`LogitsSource`) can drive the decoders: tests use a fake
model whose next-token distribution is a table.

>>> import guided
>>> model = guided.models.random_model(num_layers=1)               # doctest: +SKIP
>>> runner = ModelRunner(model)                                     # doctest: +SKIP
>>> runner.prefill([[1, 2, 3], [4]]).shape                         # doctest: +SKIP
torch.Size([2, 49152])
"""

from __future__ import annotations

import inspect
import time
from typing import Protocol, Sequence

import torch
import transformers

from guided.models import Model

__all__ = ["LogitsSource", "ModelRunner"]


class LogitsSource(Protocol):
    """What decoders need from a model: next-token logits for a batch, with cached state."""

    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Start rows from ``prompts``; the logits ``[batch, width]`` after each prompt."""
        ...

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens`` ``[batch, k]``; the logits ``[batch, k, width]`` after each one."""
        ...

    def select(self, rows: Sequence[int]) -> None:
        """Keep rows ``rows`` (in that order; repeats allowed)."""
        ...

    def truncate(self, row: int, length: int) -> None:
        """Forget all but the first ``length`` tokens of row ``row`` (prompt included); the next
        `step` continues it from there."""
        ...


def _cache_argument(hf) -> str:
    """The name ``forward`` takes the KV cache by: ``cache`` (transformers 5.x), else the older
    ``past_key_values`` (which 5.x still reads, with a deprecation warning at every call)."""
    try:
        parameters = inspect.signature(hf.forward).parameters
    except (TypeError, ValueError):
        return "cache"
    return "cache" if "cache" in parameters or "past_key_values" not in parameters else "past_key_values"


class ModelRunner:
    """`LogitsSource` over a Hugging Face causal LM with a KV cache; never re-runs the prompt."""

    def __init__(self, model: Model, pad_token_id: int | None = None):
        self.model = model
        self.hf = model.hf
        self.device = model.device
        tok = model.tokenizer
        if pad_token_id is None:
            pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else min(model.vocab.eos_token_ids)
        self.pad_token_id = int(pad_token_id)
        self.cache: transformers.DynamicCache | None = None
        self.attention_mask: torch.Tensor | None = None
        self.cols: list[list[int]] = []  # per row: the cache column of each of its tokens
        self.forward_seconds = 0.0
        self.forward_calls = 0
        self._keep_arg = True
        self._cache_arg = _cache_argument(self.hf)

    def _forward(self, input_ids, attention_mask, position_ids, keep: int) -> torch.Tensor:
        start = time.perf_counter()
        kwargs = dict(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
        )
        kwargs[self._cache_arg] = self.cache
        with torch.inference_mode():
            if self._keep_arg:
                try:
                    out = self.hf(**kwargs, logits_to_keep=keep)
                except TypeError:
                    self._keep_arg = False
                    out = self.hf(**kwargs)
            else:
                out = self.hf(**kwargs)
        logits = out.logits[:, -keep:, :]
        if logits.device.type == "cuda":
            torch.cuda.synchronize(logits.device)
        self.forward_seconds += time.perf_counter() - start
        self.forward_calls += 1
        return logits

    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        length = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), length), dtype=torch.long)
        for row, p in enumerate(prompts):
            ids[row, length - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            mask[row, length - len(p) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        self.cache = transformers.DynamicCache()
        self.attention_mask = mask
        self.cols = [list(range(length - len(p), length)) for p in prompts]
        return self._forward(ids, mask, positions, 1)[:, -1, :]

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(self.device)
        if tokens.dim() == 1:
            tokens = tokens[:, None]
        b, k = tokens.shape
        start = self.attention_mask.shape[1]
        ones = torch.ones((b, k), dtype=self.attention_mask.dtype, device=self.device)
        self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
        lengths = torch.tensor([len(c) for c in self.cols], device=self.device)
        positions = lengths[:, None] + torch.arange(k, device=self.device)[None, :]
        for c in self.cols:
            c.extend(range(start, start + k))
        return self._forward(tokens, self.attention_mask, positions, k)

    def select(self, rows: Sequence[int]) -> None:
        rows = list(rows)
        if rows == list(range(self.attention_mask.shape[0])):
            return
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        self.cache.reorder_cache(idx)
        self.attention_mask = self.attention_mask.index_select(0, idx)
        self.cols = [list(self.cols[i]) for i in rows]

    def truncate(self, row: int, length: int) -> None:
        """Hide the row's tokens past ``length`` from attention (their cache entries stay, masked
        out, like left padding); the next token fed to the row gets position ``length``."""
        dropped = self.cols[row][length:]
        if dropped:
            self.attention_mask[row, dropped] = 0
            del self.cols[row][length:]
