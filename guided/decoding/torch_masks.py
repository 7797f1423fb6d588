"""Packed masks meet torch here, and only here: bitmask tensors, unpacked on the logits' device, applied.

Engines write packed int32 bitmasks (`guided.engine.bitmask`: 32 tokens per word) into numpy
arrays or CPU tensors; decoders and integrations turn them into bool masks on the model's device
and apply them to logits with the functions below.

>>> import numpy as np, torch
>>> from guided.engine.bitmask import pack
>>> words = pack(np.array([True, False, True]))
>>> apply_bitmask(torch.zeros(1, 3), torch.from_numpy(words[None])).tolist()
[[0.0, -inf, 0.0]]
>>> allocate_bitmask(2, 40).shape
torch.Size([2, 2])
"""

from __future__ import annotations

import torch

from guided.engine.bitmask import words_for

__all__ = ["allocate_bitmask", "apply_bitmask", "bitmask_to_bool"]


def allocate_bitmask(batch: int, vocab_size: int) -> torch.Tensor:
    """A zeroed ``[batch, ceil(vocab_size/32)]`` int32 CPU tensor for `Matcher.fill_bitmask`."""
    return torch.zeros((batch, words_for(vocab_size)), dtype=torch.int32)


_SHIFTS: dict[torch.device, torch.Tensor] = {}


def bitmask_to_bool(bitmask: torch.Tensor, size: int) -> torch.Tensor:
    """``[batch, words]`` int32 -> ``[batch, size]`` bool on the bitmask's device; bits past the words are False."""
    device = bitmask.device
    shifts = _SHIFTS.get(device)
    if shifts is None:
        shifts = _SHIFTS[device] = torch.arange(32, dtype=torch.int32, device=device)
    bits = (bitmask.unsqueeze(-1) >> shifts) & 1
    flat = bits.reshape(bitmask.shape[0], -1).bool()
    if flat.shape[1] >= size:
        return flat[:, :size]
    pad = torch.zeros((bitmask.shape[0], size - flat.shape[1]), dtype=torch.bool, device=device)
    return torch.cat([flat, pad], dim=1)


def apply_bitmask(logits: torch.Tensor, bitmask: torch.Tensor) -> torch.Tensor:
    """Set to -inf every logit whose bit is 0; logits wider than the mask (padded heads) are masked too."""
    mask = bitmask_to_bool(bitmask.to(logits.device, non_blocking=True), logits.shape[-1])
    return logits.masked_fill(~mask, float("-inf"))
