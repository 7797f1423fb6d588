"""A stand-in for a serving engine's persistent batch, driving row matchers as vLLM's InputBatch does.

vLLM keeps running requests in a batch of rows.  Each step it removes finished or preempted
requests (their rows become holes), adds new or resumed requests into the lowest holes first
(else at the end), may swap two rows (reordering) and condenses the batch by moving the last
rows into the holes; it reports that as ``(removed, added, moved)``, to be processed in that
order, and hands each added request's live list of generated tokens, to which it appends every
sampled token (a ``-1`` placeholder first under async scheduling, filled in before sampling).

`FakeBatch` does the same with random choices from a seeded generator, and `oracle_words`
computes what a row's mask must be from scratch (a fresh matcher over the row's tokens), so a
test can check any batch-tracking code against it step by step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import guided
from guided.engine.bitmask import words_for

SWAP, MOVE = "swap", "move"


@dataclass(eq=False)
class Request:
    args: dict[str, Any] | None
    max_tokens: int
    output: list[int] = field(default_factory=list)
    finished: bool = False


class FakeBatch:
    """Rows of requests; `step_update` returns and clears what changed since the last call."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.slots: list[Request | None] = []
        self._removed: list[int] = []
        self._added: list[tuple[int, Request]] = []
        self._moved: list[tuple[int, int, str]] = []

    def live(self) -> list[tuple[int, Request]]:
        return [(i, r) for i, r in enumerate(self.slots) if r is not None]

    def add(self, request: Request) -> int:
        if self._removed:
            index = min(self._removed)
            self._removed.remove(index)
        else:
            index = len(self.slots)
            self.slots.append(None)
        self.slots[index] = request
        self._added.append((index, request))
        return index

    def remove(self, index: int) -> Request:
        request = self.slots[index]
        self.slots[index] = None
        self._added = [(i, r) for i, r in self._added if i != index]
        self._removed.append(index)
        return request

    def swap(self, a: int, b: int) -> None:
        self.slots[a], self.slots[b] = self.slots[b], self.slots[a]
        self._moved.append((a, b, SWAP))

    def condense(self) -> None:
        """Move the last requests into the holes, as vLLM does before running a step."""
        holes = sorted(i for i in self._removed if i < len(self.slots))
        for hole in holes:
            last = len(self.slots) - 1
            while last > hole and self.slots[last] is None:
                last -= 1
            if last <= hole:
                break
            self.slots[hole] = self.slots[last]
            self.slots[last] = None
            self._moved.append((last, hole, MOVE))
        while self.slots and self.slots[-1] is None:
            self.slots.pop()

    def step_update(self) -> tuple[list[int], list[tuple[int, Request]], list[tuple[int, int, str]]]:
        self.condense()
        update = (sorted(self._removed, reverse=True), list(self._added), list(self._moved))
        self._removed, self._added, self._moved = [], [], []
        return update


def oracle_words(grammar, output: list[int]) -> np.ndarray:
    """The mask a row with ``output`` must get: a fresh matcher advanced over its real tokens."""
    matcher = grammar.matcher()
    for token in output:
        if token < 0:
            break
        matcher.advance(token)
    words = np.zeros((1, words_for(grammar.vocab.size)), dtype=np.int32)
    matcher.fill_bitmask(words, 0)
    return words[0]


def pick_allowed(rng: random.Random, words: np.ndarray, size: int) -> int:
    allowed = np.flatnonzero(np.unpackbits(words.view(np.uint8), bitorder="little")[:size])
    assert allowed.size, "a row had no allowed token"
    return int(rng.choice(allowed.tolist()))


def small_vocab() -> guided.Vocabulary:
    """Printable ASCII one byte a token, a few longer tokens, and EOS last."""
    tokens = [bytes([b]) for b in range(32, 127)] + [b"\n", b'{"', b'":', b'",', b"true", b"false", b"ab", b"  "]
    return guided.Vocabulary.from_token_bytes(tokens + [b"<eos>"], eos_token_ids=[len(tokens)])
