"""`TableModel`: a fake `LogitsSource` whose next-token logits are a function of the whole prefix.

For exact tests of decoders (beam search against exhaustive search, sampling frequencies)
without a neural network: the logits after a sequence are ``fn(tuple_of_ids)``.

>>> m = TableModel.random(width=4, seed=1)
>>> a = m.prefill([[0, 1]]); b = m.prefill([[0, 1]])
>>> bool((a == b).all()), a.shape
(True, torch.Size([1, 4]))
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import torch

__all__ = ["TableModel"]


class TableModel:
    """Logits ``fn(sequence)`` for each row; `step`/`select` keep the sequences as a cache would."""

    def __init__(self, fn: Callable[[tuple[int, ...]], torch.Tensor], width: int, constant: torch.Tensor | None = None):
        self.fn = fn
        self.width = width
        self.constant = constant
        self.seqs: list[tuple[int, ...]] = []
        self.forward_seconds = 0.0
        self.calls: list[int] = []  # tokens fed per call, prefill included (for tests)

    @classmethod
    def uniform(cls, width: int) -> "TableModel":
        return cls.fixed(torch.zeros(width))

    @classmethod
    def fixed(cls, logits: torch.Tensor) -> "TableModel":
        """The same logits after every prefix (cheap for big batches)."""
        logits = logits.float()
        return cls(lambda seq: logits, logits.shape[-1], constant=logits)

    @classmethod
    def random(cls, width: int, seed: int = 0, scale: float = 2.0) -> "TableModel":
        """Pseudo-random logits, a fixed function of (seed, prefix)."""

        def fn(seq: tuple[int, ...]) -> torch.Tensor:
            key = zlib.crc32(repr((seed, seq)).encode())
            g = torch.Generator().manual_seed(key)
            return torch.randn(width, generator=g) * scale

        return cls(fn, width)

    @classmethod
    def from_probs(cls, probs: Sequence[float]) -> "TableModel":
        """The same next-token distribution after every prefix."""
        return cls.fixed(torch.tensor(list(probs), dtype=torch.float32).log())

    def _logits(self) -> torch.Tensor:
        if self.constant is not None:
            return self.constant.expand(len(self.seqs), -1)
        return torch.stack([self.fn(s).float() for s in self.seqs])

    def prefill(self, prompts: Sequence[Sequence[int]]) -> torch.Tensor:
        self.seqs = [tuple(int(t) for t in p) for p in prompts]
        self.calls.append(sum(len(p) for p in prompts))
        return self._logits()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() == 1:
            tokens = tokens[:, None]
        self.calls.append(int(tokens.numel()))
        out = []
        for k in range(tokens.shape[1]):
            self.seqs = [s + (int(t),) for s, t in zip(self.seqs, tokens[:, k].tolist())]
            out.append(self._logits())
        return torch.stack(out, dim=1)

    def select(self, rows: Sequence[int]) -> None:
        self.seqs = [self.seqs[i] for i in rows]

    def truncate(self, row: int, length: int) -> None:
        self.seqs[row] = self.seqs[row][:length]
