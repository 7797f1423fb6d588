"""Drafters for constrained speculative decoding (`guided.decoding.speculative`).

A drafter guesses the next tokens of a row cheaply; the target model then checks every guess in
one forward pass.  Two kinds:

- **model drafters** (``kind = "model"``) give next-token logits after any sequence; the
  speculative loop masks them with the grammar (a matcher copy) and runs them through the
  drafter's *own* `LogitsPipeline` (never the target's: processor state is not shared), then
  samples, so the draft is itself constrained:
  `DraftModelDrafter` (a second, smaller model sharing the tokenizer) and `EarlyExitDrafter`
  (the target's own first ``K`` layers, final norm and LM head: no second model, no extra weights);
- **lookup drafters** (``kind = "lookup"``) propose tokens deterministically (a point-mass
  proposal): `PromptLookupDrafter` copies what followed the latest earlier occurrence of the
  text's last n-gram (in the prompt or in the text so far).

The grammar's own forced bytes (jump-forward) are drafted by the loop itself, not here.

Model drafters keep a KV cache in sync by common prefix (`SyncedSource`): asked for the logits
after a sequence, they roll the cache back to the longest prefix they already hold and feed the
rest; rows of a batch with fewer new tokens are padded at the end and the padding is truncated.

>>> d = PromptLookupDrafter(max_ngram=2)
>>> d.propose([5, 6, 7, 8, 1, 5, 6], 3)
[7, 8, 1]
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

import torch

from guided.decoding.runner import LogitsSource, ModelRunner
from guided.errors import UsageError
from guided.models import Model

__all__ = [
    "Drafter",
    "DraftModelDrafter",
    "EarlyExitDrafter",
    "PromptLookupDrafter",
    "SyncedSource",
    "early_exit_model",
    "make_drafter",
]


class SyncedSource:
    """A `LogitsSource` plus the tokens each row's cache holds, so callers can ask for logits after
    arbitrary sequences and only the new suffix is fed (the rest is rolled back with `truncate`).

    ``forward_calls`` counts forward passes (prefill included)."""

    def __init__(self, source: LogitsSource, pad_token_id: int = 0):
        self.source = source
        self.pad = int(pad_token_id)
        self.cached: list[list[int]] = []
        self.last: list[torch.Tensor | None] = []  # logits after the whole cached sequence
        self.forward_calls = 0

    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        logits = self.source.prefill(prompts)
        self.forward_calls += 1
        self.cached = [list(p) for p in prompts]
        self.last = [logits[i] for i in range(len(prompts))]
        return logits

    def select(self, rows: Sequence[int]) -> None:
        rows = list(rows)
        self.source.select(rows)
        self.cached = [list(self.cached[i]) for i in rows]
        self.last = [self.last[i] for i in rows]

    def run(self, seqs: Sequence[Sequence[int]], first: Sequence[int]) -> list[torch.Tensor]:
        """For each row ``i``: logits ``[len(seqs[i]) - first[i] + 1, width]`` after
        ``seqs[i][:m]`` for every ``m`` from ``first[i]`` to ``len(seqs[i])``; one forward pass
        at most (none when every answer is already known)."""
        b = len(seqs)
        tails: list[list[int]] = []
        skip: list[int] = []  # per row: outputs of the step to drop before position first[i]
        use_last: list[bool] = []
        for i in range(b):
            seq, start, cached = seqs[i], first[i], self.cached[i]
            common = 0
            limit = min(len(cached), start)
            while common < limit and cached[common] == seq[common]:
                common += 1
            if common == start == len(cached) and self.last[i] is not None:
                tails.append(list(seq[start:]))
                skip.append(0)
                use_last.append(True)
            else:
                keep = min(common, start - 1)
                if keep < 0:
                    raise ValueError("cannot produce logits before the first token")
                if keep < len(cached):
                    self.source.truncate(i, keep)
                    del cached[keep:]
                    self.last[i] = None
                tails.append(list(seq[keep:]))
                skip.append(start - 1 - keep)
                use_last.append(False)
        compact(self.source)
        width = max(len(t) for t in tails)
        out: list[torch.Tensor] = []
        if width == 0:
            return [self.last[i][None, :] for i in range(b)]
        feed = torch.full((b, width), self.pad, dtype=torch.long)
        for i, t in enumerate(tails):
            if t:
                feed[i, : len(t)] = torch.tensor(t, dtype=torch.long)
        logits = self.source.step(feed)
        self.forward_calls += 1
        for i, t in enumerate(tails):
            n = len(t)
            part = logits[i, skip[i] : n] if n else logits[i, :0]
            if use_last[i]:
                part = torch.cat([self.last[i][None, :].to(logits.dtype), part], dim=0)
            out.append(part)
            self.cached[i].extend(t)
            if n:
                self.last[i] = logits[i, n - 1]
            if n < width:
                self.source.truncate(i, len(self.cached[i]))
        compact(self.source)
        return out


def compact(source: Any) -> None:
    """Drop cache columns that no row of a `ModelRunner` uses any more (after truncations at the
    end of every row): keeps attention over rolled-back drafts from growing."""
    if not isinstance(source, ModelRunner) or source.cache is None:
        return
    width = source.attention_mask.shape[1]
    used = max((c[-1] + 1 for c in source.cols if c), default=0)
    if used < width:
        source.cache.crop(used - width)
        source.attention_mask = source.attention_mask[:, :used]


class Drafter:
    """Base class: see the module docstring.  ``kind`` is ``"model"`` or ``"lookup"``."""

    kind = "lookup"
    name = "drafter"

    def begin(self, prompts: Sequence[Sequence[int]]) -> None:
        """Start a decoding call over ``prompts``."""

    def select(self, rows: Sequence[int]) -> None:
        """Rows ``rows`` remain (finished rows left the batch)."""

    def logits(self, seqs: Sequence[Sequence[int]]) -> torch.Tensor:
        """Model drafters: logits ``[batch, width]`` after each row's whole sequence."""
        raise NotImplementedError

    def propose(self, seq: Sequence[int], n: int) -> list[int]:
        """Lookup drafters: up to ``n`` guessed tokens after ``seq``."""
        raise NotImplementedError

    @property
    def forward_calls(self) -> int:
        return 0


class _ModelDrafter(Drafter):
    kind = "model"

    def __init__(self, source: LogitsSource, pad_token_id: int = 0):
        self.synced = SyncedSource(source, pad_token_id)

    def begin(self, prompts):
        self.synced.prefill(prompts)

    def select(self, rows):
        self.synced.select(rows)

    def logits(self, seqs):
        outs = self.synced.run(seqs, [len(s) for s in seqs])
        return torch.stack([o[-1] for o in outs])

    @property
    def forward_calls(self) -> int:
        return self.synced.forward_calls


class DraftModelDrafter(_ModelDrafter):
    """A separate (smaller) model sharing the target's tokenizer, with its own KV cache."""

    name = "draft-model"

    def __init__(self, model: Model | LogitsSource, target_vocab=None):
        if isinstance(model, Model):
            if target_vocab is not None and tuple(model.vocab.token_bytes) != tuple(target_vocab.token_bytes):
                from guided.errors import TokenizerMismatch

                raise TokenizerMismatch("the draft model's tokenizer differs from the target's")
            runner = ModelRunner(model)
            super().__init__(runner, runner.pad_token_id)
        else:
            super().__init__(model)


def early_exit_model(model: Model, num_layers: int) -> Model:
    """A view of ``model`` that runs only its first ``num_layers`` decoder layers, then the final
    norm and LM head: every weight is shared (nothing is copied)."""
    hf = model.hf
    inner = getattr(hf, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise UsageError(f"early exit needs a decoder with .model.layers; {type(hf).__name__} has none")
    total = len(layers)
    if not 1 <= num_layers <= total:
        raise UsageError(f"early-exit layers must be in [1, {total}], got {num_layers}")
    config = copy.deepcopy(hf.config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = list(config.layer_types)[:num_layers]
    new_inner = copy.copy(inner)
    new_inner._modules = dict(inner._modules)
    new_inner.layers = torch.nn.ModuleList(list(layers)[:num_layers])
    new_inner.config = config
    new_hf = copy.copy(hf)
    new_hf._modules = dict(hf._modules)
    new_hf.model = new_inner
    new_hf.config = config
    view = Model(hf=new_hf, tokenizer=model.tokenizer)
    if "vocab" in model.__dict__:  # share the (cached) vocabulary instead of rebuilding it
        view.__dict__["vocab"] = model.__dict__["vocab"]
    return view


class EarlyExitDrafter(_ModelDrafter):
    """Self-speculative drafting: the target's first ``num_layers`` layers + its LM head."""

    def __init__(self, model: Model, num_layers: int):
        self.num_layers = num_layers
        self.name = f"early-exit:{num_layers}"
        runner = ModelRunner(early_exit_model(model, num_layers))
        super().__init__(runner, runner.pad_token_id)


class PromptLookupDrafter(Drafter):
    """N-gram lookup: find the latest earlier occurrence of the sequence's last ``n`` tokens
    (``n`` from ``max_ngram`` down to ``min_ngram``) and propose what followed it.  Strong when
    the output copies from the input (extraction)."""

    kind = "lookup"
    name = "prompt-lookup"

    def __init__(self, max_ngram: int = 3, min_ngram: int = 1):
        if not 1 <= min_ngram <= max_ngram:
            raise UsageError("need 1 <= min_ngram <= max_ngram")
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram

    def propose(self, seq: Sequence[int], n: int) -> list[int]:
        seq = list(seq)
        length = len(seq)
        if n <= 0 or length < 2:
            return []
        for size in range(min(self.max_ngram, length - 1), self.min_ngram - 1, -1):
            tail = seq[length - size :]
            first = tail[0]
            # latest occurrence that ends before the tail itself and has a continuation
            for start in range(length - size - 1, -1, -1):
                if seq[start] == first and seq[start : start + size] == tail:
                    cont = seq[start + size : start + size + n]
                    if cont:
                        return cont
        return []


def make_drafter(draft: Any, model: Model | None = None) -> Drafter | None:
    """The drafter for ``generate(draft=...)``: ``None``; a `Drafter`; a `Model` (draft model);
    ``"early-exit:K"``; ``"prompt-lookup"`` or ``"prompt-lookup:N"`` (longest n-gram ``N``)."""
    if draft is None or isinstance(draft, Drafter):
        return draft
    if isinstance(draft, Model):
        return DraftModelDrafter(draft, model.vocab if model is not None else None)
    if isinstance(draft, str):
        name, _, arg = draft.partition(":")
        name = name.strip().lower().replace("_", "-")
        if arg and not arg.strip().isdigit():
            raise UsageError(f"draft={draft!r}: the number after ':' must be a positive integer")
        if name in ("early-exit", "earlyexit", "self"):
            if model is None:
                raise UsageError("early-exit drafting needs the target model")
            return EarlyExitDrafter(model, int(arg) if arg else max(1, len(model.hf.model.layers) // 4))
        if name in ("prompt-lookup", "ngram", "n-gram"):
            return PromptLookupDrafter(max_ngram=int(arg) if arg else 3)
    raise UsageError(
        f"unknown draft={draft!r}: use None, a guided Model sharing the tokenizer, 'early-exit:K' or 'prompt-lookup'"
    )
