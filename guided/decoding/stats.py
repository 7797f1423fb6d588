"""Per-call generation statistics: tokens, throughput and where the time went.

>>> s = GenerationStats(new_tokens=50, seconds=2.0, forward_seconds=1.5, mask_seconds=0.1)
>>> s.tokens_per_second, round(s.mask_share, 3)
(25.0, 0.05)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class GenerationStats:
    """Filled in by every decoder; pass one to `guided.generate(..., stats=...)` to read it.

    ``new_tokens`` counts the tokens chosen for every row (EOS included); ``mask_seconds`` is
    time the decoder spent on constraint masks (grammar, ban list, must-include, budget masks;
    waiting for masks computed during the forward pass included), ``forward_seconds`` time in
    the model, ``sampling_seconds`` the rest of the pipeline.  ``overlapped_mask_seconds``: mask
    time spent in background native threads while the model ran (`guided.decoding.overlap`), off the
    critical path where it fits inside the forward pass.
    ``finish_reasons`` counts how the rows ended (``"eos"``, ``"length"``, ``"stop"``,
    ``"timeout"``, and ``"closed_early"``: the token budget made the decoder close the document
    sooner than the model would have, see `guided.decoding.constraints`).
    """

    prompt_tokens: int = 0
    new_tokens: int = 0
    steps: int = 0
    rows: int = 0
    seconds: float = 0.0
    forward_seconds: float = 0.0
    prefill_seconds: float = 0.0
    mask_seconds: float = 0.0
    sampling_seconds: float = 0.0
    overlapped_mask_seconds: float = 0.0
    finish_reasons: dict[str, int] = field(default_factory=dict)

    def count_finishes(self, completions) -> None:
        """Add the ``finish_reason`` of each finished completion to `finish_reasons`."""
        for c in completions:
            self.finish_reasons[c.finish_reason] = self.finish_reasons.get(c.finish_reason, 0) + 1

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def decode_ms_per_token(self) -> float:
        """Wall time per generated token after the prompt was processed (prefill excluded)."""
        return (self.seconds - self.prefill_seconds) / self.new_tokens * 1e3 if self.new_tokens else 0.0

    @property
    def mask_share(self) -> float:
        """Fraction of the wall time spent computing masks."""
        return self.mask_seconds / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["tokens_per_second"] = self.tokens_per_second
        d["mask_share"] = self.mask_share
        d["decode_ms_per_token"] = self.decode_ms_per_token
        return d

    def __str__(self) -> str:
        return (
            f"{self.new_tokens} tokens in {self.seconds:.2f} s ({self.tokens_per_second:.1f} tok/s); "
            f"forward {self.forward_seconds:.2f} s, masks {self.mask_seconds * 1e3:.1f} ms "
            f"({self.mask_share:.1%}), sampling {self.sampling_seconds * 1e3:.1f} ms"
            + (f", masks during the forward {self.overlapped_mask_seconds * 1e3:.1f} ms"
               if self.overlapped_mask_seconds else "")
        )
