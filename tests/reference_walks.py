"""Random walks checked against the reference recogniser, over a small vocabulary of pieces.

Each step every engine's mask must equal the reference's verdict on every token: a piece is
allowed iff the reference can read it from the current position and stay viable, the end-of-text
token iff the reference accepts the text so far.  Pieces spanning several lexemes (``b"1,"``,
``b"]],"``) make one token cross a bound, which is where the engines' counts go wrong first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

import guided
from guided.ir import CfgIR
from guided.ir.reference import Reference


def piece_vocabulary(pieces: Sequence[bytes]) -> guided.Vocabulary:
    """The pieces as tokens ``0 .. len(pieces) - 1``, then an end-of-text token."""
    return guided.Vocabulary.from_token_bytes(list(pieces) + [b"<eos>"], eos_token_ids=[len(pieces)])


def walk_with_reference(ir: CfgIR, pieces: Sequence[bytes], grammars: Sequence[Any], rng: random.Random,
                        walks: int, steps: int, what: Any = None) -> None:
    """Walk ``walks`` random paths of up to ``steps`` tokens through the grammars (each compiled
    for `piece_vocabulary` of ``pieces``), asserting at every step that each matcher's mask equals
    the reference recogniser's; ``what`` names the case in a failure."""
    ref = Reference(ir)
    eos = len(pieces)
    for walk in range(walks):
        matchers = [g.matcher() for g in grammars]
        pos = ref.start()
        for step in range(steps):
            expected = np.zeros(eos + 1, bool)
            for t, piece in enumerate(pieces):
                after = ref.walk(pos, piece)
                expected[t] = after is not None and ref.is_viable(after)
            expected[eos] = ref.accepts_end(pos)
            for m in matchers:
                assert np.array_equal(m.mask(), expected), (what, type(m).__name__, walk, step)
            allowed = np.flatnonzero(expected)
            if allowed.size == 0:
                break
            t = int(rng.choice(allowed))
            if t == eos:
                break
            for m in matchers:
                m.advance(t)
            pos = ref.walk(pos, pieces[t])
