"""Masks in the forward pass's shadow: a decoder's next masks computed while the model runs.

A decoder knows the matcher states of its next step as soon as it has advanced them, before it
asks the model for the next logits: the masks need only those states, the forward pass only the
tokens.  `MaskPrefetch.start` hands the native matchers of the running rows to background
threads of the native core, which compute their masks; `MaskPrefetch.wait` joins them once the
forward pass has returned.  The decoder then asks for its masks exactly as it would have, and
each native matcher finds its mask already computed (it keeps its current mask): the same bits,
by construction.  The background threads are native and never take the GIL, so they never
interrupt the decoder's thread while it drives torch (a Python worker thread would: each GIL
hand-off costs a wake-up, measured at ~1.8 ms a step on the loaded 2-core machine, more than
the masks it hid).

The matchers belong to the background threads between `start` and `wait`; the decoders call
nothing but the model in between.  Matchers of the Python engines are not prefetched (they
would hold the GIL against the forward pass): with them the decoder computes its masks in its
own thread, as without overlap.  Budget masks (the last ``budget_window`` tokens) and the ban-list and
must-include intersections stay in the decoder's thread too; they are cheap next to the masks.

``GUIDED_MASK_OVERLAP=0`` in the environment, or `enabled` set to False, turns it off (the
benchmarks compare both).

>>> import guided
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"<eos>"], eos_token_ids=[2])
>>> m = guided.compile(guided.Regex("ab"), vocab).matcher()
>>> prefetch = MaskPrefetch(threads=1)
>>> prefetch.start([m]); (prefetch.wait() >= 0.0), m.mask().tolist()
(True, [True, False, False])
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import torch

from guided.engine import native
from guided.engine.matcher import Matcher

if TYPE_CHECKING:
    from guided.decoding.runner import LogitsSource
    from guided.decoding.stats import GenerationStats

__all__ = ["MaskPrefetch", "enabled", "next_logits"]

enabled: bool = os.environ.get("GUIDED_MASK_OVERLAP", "1") != "0"
"""Whether the decoders compute their next masks during the forward pass."""

class MaskPrefetch:
    """One decoder's prefetching of its next masks (see the module docstring).

    ``threads``: background native threads computing the masks (``None``: one per core); a
    decoder whose model runs on the CPU passes 1, leaving the other cores to torch.
    """

    def __init__(self, threads: int | None = None):
        self.threads = threads if threads is not None else (os.cpu_count() or 1)
        self.active = enabled and native.available()
        self.seconds = 0.0  # background time: masks computed while the model ran
        self.wait_seconds = 0.0  # time the decoder waited for them after the forward pass
        self._job: Any = None

    def start(self, matchers: Iterable[Matcher | None]) -> None:
        """Begin computing the masks of ``matchers``' native ones (``None`` entries skipped)."""
        if not self.active:
            return
        assert self._job is None, "wait() for the previous prefetch first"
        todo = [m._m for m in matchers if isinstance(m, native.NativeMatcher)]
        if todo:
            self._job = native._require().fill_in_background(todo, self.threads)

    def wait(self) -> float:
        """Join the background threads; the seconds they ran (0 when nothing was prefetched)."""
        job, self._job = self._job, None
        if job is None:
            return 0.0
        start = time.perf_counter()
        ran = job.join()
        self.wait_seconds += time.perf_counter() - start
        self.seconds += ran
        return ran

def next_logits(source: "LogitsSource", tokens: Sequence[int], prefetch: MaskPrefetch | None,
                matchers: Iterable[Matcher], stats: "GenerationStats") -> torch.Tensor:
    """The logits ``[rows, width]`` after feeding ``tokens`` (one a row); ``matchers``' next masks
    are computed meanwhile (``prefetch`` None: not).  Time waited for them counts as mask time."""
    if prefetch is not None:
        prefetch.start(matchers)
    try:
        return source.step(torch.tensor(list(tokens), dtype=torch.long)[:, None])[:, -1, :]
    finally:
        if prefetch is not None:
            waited = prefetch.wait_seconds
            stats.overlapped_mask_seconds += prefetch.wait()
            stats.mask_seconds += prefetch.wait_seconds - waited
