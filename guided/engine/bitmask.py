"""Packed token masks: 32 tokens per int32 word, bit ``i`` of word ``w`` is token ``32*w + i``.

This is the layout XGrammar and llguidance use, so batches of masks can be built on the CPU
and applied to logits on any device in one vectorised step.

>>> import numpy as np, torch
>>> words = pack(np.array([True, False, True] + [False] * 30))
>>> words.tolist(), unpack(words, 3).tolist()
([5, 0], [True, False, True])
>>> apply_bitmask(torch.zeros(1, 3), torch.from_numpy(words[None])).tolist()
[[0.0, -inf, 0.0]]
"""

from __future__ import annotations

import numpy as np
import torch


def words_for(vocab_size: int) -> int:
    """Number of int32 words holding ``vocab_size`` bits."""
    return (vocab_size + 31) // 32


def pack(allowed: np.ndarray) -> np.ndarray:
    """Bool array -> packed int32 words (little-endian bit order)."""
    n = words_for(len(allowed))
    padded = np.zeros(n * 32, dtype=bool)
    padded[: len(allowed)] = allowed
    return np.packbits(padded, bitorder="little").view("<i4")


def unpack(words: np.ndarray, size: int) -> np.ndarray:
    """Packed int32 words -> bool array of ``size`` entries."""
    return np.unpackbits(words.view(np.uint8), bitorder="little", count=size).view(bool)


def set_bits(words: np.ndarray, ids: np.ndarray) -> None:
    """Allow the tokens ``ids`` (int64, repeats fine) in packed ``words``, in place."""
    if ids.size:
        np.bitwise_or.at(words.view(np.uint32), ids >> 5, np.uint32(1) << (ids & 31).astype(np.uint32))


def clear_bits(words: np.ndarray, ids: np.ndarray) -> None:
    """Forbid the tokens ``ids`` (int64, repeats fine) in packed ``words``, in place."""
    if ids.size:
        np.bitwise_and.at(words.view(np.uint32), ids >> 5, ~(np.uint32(1) << (ids & 31).astype(np.uint32)))


def write_row(bitmask, row: int, words: np.ndarray) -> None:
    """Write packed ``words`` into row ``row`` of a bitmask (torch CPU tensor or numpy), zeroing the rest."""
    target = bitmask.numpy() if isinstance(bitmask, torch.Tensor) else bitmask
    n = words.size
    target[row, :n] = words
    if target.shape[1] > n:
        target[row, n:] = 0


def allocate_bitmask(batch: int, vocab_size: int) -> torch.Tensor:
    """A zeroed ``[batch, ceil(vocab_size/32)]`` int32 tensor for `Matcher.fill_bitmask`."""
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
