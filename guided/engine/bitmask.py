"""Packed token masks: 32 tokens per int32 word, bit ``i`` of word ``w`` is token ``32*w + i``.

This is the layout vLLM, XGrammar and llguidance use, so batches of masks can be built on the
CPU and applied to logits on any device in one vectorised step (`guided.decoding.torch_masks`).

>>> import numpy as np
>>> words = pack(np.array([True, False, True] + [False] * 30))
>>> words.tolist(), unpack(words, 3).tolist()
([5, 0], [True, False, True])
>>> bitmask = allocate_bitmask(2, 33); write_row(bitmask, 1, words); bitmask.tolist()
[[0, 0], [5, 0]]
"""

from __future__ import annotations

import numpy as np


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
    """Write packed ``words`` into row ``row`` of a bitmask, zeroing the rest of the row.

    ``bitmask`` is a numpy array, or a CPU array that views as one without a copy: a CPU torch
    tensor is read through its ``numpy()`` (the engine never imports torch), anything else
    through ``np.asarray``.
    """
    if isinstance(bitmask, np.ndarray):
        target = bitmask
    else:  # ``Tensor.numpy()`` is twice as fast as ``np.asarray(tensor)``: this runs at every mask
        target = bitmask.numpy() if hasattr(bitmask, "numpy") else np.asarray(bitmask)
    n = words.size
    target[row, :n] = words
    if target.shape[1] > n:
        target[row, n:] = 0


def allocate_bitmask(batch: int, vocab_size: int) -> np.ndarray:
    """A zeroed ``[batch, ceil(vocab_size/32)]`` int32 array for `Matcher.fill_bitmask`."""
    return np.zeros((batch, words_for(vocab_size)), dtype=np.int32)
