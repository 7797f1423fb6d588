"""Logits processors: small pure functions ``[batch, vocab]`` logits -> new logits.

Each function returns a new tensor (its input is never modified), works on any device and
treats ``-inf`` as "not allowed": a masked token stays masked, and every truncation step keeps
at least the most likely remaining token, so once the grammar mask has been applied no
truncation step can leave a row without an allowed token.

Penalties (``repetition_penalty``, ``frequency_presence_penalty``, ``no_repeat_ngram_mask``)
follow Hugging Face and OpenAI; truncation samplers (``top_k``, ``top_p``, ``min_p``,
``typical``, ``epsilon``, ``eta``) follow Hugging Face's warpers (ties at the cut-off are kept).

>>> import torch
>>> probs = torch.tensor([[0.4, 0.3, 0.15, 0.1, 0.05]])
>>> kept = top_p(probs.log(), 0.8)
>>> torch.isfinite(kept).sum().item()   # 0.4 + 0.3 < 0.8 <= 0.4 + 0.3 + 0.15
3
>>> temperature(torch.tensor([[2.0, 1.0]]), 0.5).tolist()
[[4.0, 2.0]]
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import torch

NEG_INF = float("-inf")

__all__ = [
    "GREEDY_TEMPERATURE",
    "epsilon",
    "eta",
    "frequency_presence_penalty",
    "logit_bias",
    "min_p",
    "no_repeat_ngram_mask",
    "repetition_penalty",
    "temperature",
    "top_k",
    "top_p",
    "typical",
]

GREEDY_TEMPERATURE = 1e-5
"""Temperatures at or below this are greedy: only the most likely token(s) survive."""


def _keep(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    # torch.where, not masked_fill: on CPU masked_fill is ~400x slower for one 49k row here.
    return torch.where(keep, logits, torch.full((), NEG_INF, dtype=logits.dtype, device=logits.device))


def _probs(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), dim=-1)


def _sort_desc(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Descending sort along the last dim; numpy on CPU (torch.sort is ~100x slower there)."""
    if values.device.type == "cpu":
        arr = values.detach().numpy()
        idx = np.argsort(-arr, axis=-1, kind="stable")
        return torch.from_numpy(np.take_along_axis(arr, idx, axis=-1)), torch.from_numpy(idx)
    return torch.sort(values, dim=-1, descending=True, stable=True)


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide logits by ``t``: ``P(x) ∝ exp(logit(x)/t)``.

    ``t <= GREEDY_TEMPERATURE`` is greedy: every token but the most likely (and its exact ties)
    gets ``-inf``.  ``t = 1`` is the identity.

    >>> temperature(torch.tensor([[1.0, 3.0, 3.0]]), 0).tolist()
    [[-inf, 0.0, 0.0]]
    """
    if t < 0:
        raise ValueError(f"temperature must be >= 0, got {t}")
    if t <= GREEDY_TEMPERATURE:
        best = logits.max(dim=-1, keepdim=True).values
        return _keep(torch.zeros_like(logits), logits == best)
    if t == 1.0:
        return logits
    return logits / t


def top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` most likely tokens (ties with the ``k``-th are kept too).

    >>> top_k(torch.tensor([[1.0, 4.0, 3.0, 2.0]]), 2).tolist()
    [[-inf, 4.0, 3.0, -inf]]
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return _keep(logits, logits >= kth)


def top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches ``p``.

    A token is kept when the mass of the tokens strictly more likely than it is below ``p``;
    ``p >= 1`` keeps everything.

    >>> top_p(torch.tensor([[0.5, 0.3, 0.2]]).log(), 0.5).exp().tolist()
    [[0.5, 0.0, 0.0]]
    """
    if p >= 1.0:
        return logits
    if p <= 0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    probs = _probs(logits)
    sorted_p, _ = _sort_desc(probs)
    before = torch.cumsum(sorted_p.double(), dim=-1) - sorted_p.double()  # mass strictly before
    n_keep = (before < p).sum(dim=-1, keepdim=True).clamp(min=1)
    threshold = torch.gather(sorted_p, -1, (n_keep - 1).to(sorted_p.device)).to(probs.device)
    return _keep(logits, probs >= threshold)


def min_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep tokens whose probability is at least ``p`` times the top token's.

    >>> min_p(torch.tensor([[0.6, 0.3, 0.1]]).log(), 0.3).isfinite().tolist()
    [[True, True, False]]
    """
    if p <= 0:
        return logits
    probs = _probs(logits)
    top = probs.max(dim=-1, keepdim=True).values
    return _keep(logits, probs >= p * top)


def typical(logits: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical sampling (Meister et al.): keep the tokens whose surprisal is closest to
    the entropy ``H``, in order of ``|-log p - H|``, until their mass reaches ``mass``.

    >>> typical(torch.tensor([[0.4, 0.3, 0.2, 0.1]]).log(), 0.45).isfinite().tolist()
    [[False, True, True, False]]
    """
    if mass >= 1.0:
        return logits
    if mass <= 0:
        raise ValueError(f"typical_p must be in (0, 1], got {mass}")
    logp = torch.log_softmax(logits.float(), dim=-1)
    probs = logp.exp()
    entropy = -torch.nan_to_num(probs * logp).sum(dim=-1, keepdim=True)
    shifted = torch.where(torch.isfinite(logp), (-logp - entropy).abs(), torch.full_like(logp, math.inf))
    # order by ascending |surprisal - H|: sort the negation descending
    neg_sorted, order = _sort_desc(-shifted)
    sorted_p = torch.gather(probs, -1, order.to(probs.device))
    cum = torch.cumsum(sorted_p.double(), dim=-1)
    last = (cum < mass).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)
    cutoff = torch.gather(-neg_sorted.to(probs.device), -1, last.to(probs.device))
    return _keep(logits, shifted <= cutoff)


def epsilon(logits: torch.Tensor, eps: float) -> torch.Tensor:
    """Epsilon sampling (Hewitt et al.): drop tokens with probability below ``eps``; the most
    likely token is always kept.

    >>> epsilon(torch.tensor([[0.7, 0.25, 0.05]]).log(), 0.1).isfinite().tolist()
    [[True, True, False]]
    """
    if eps <= 0:
        return logits
    probs = _probs(logits)
    top = probs.max(dim=-1, keepdim=True).values
    return _keep(logits, (probs >= eps) | (probs >= top))


def eta(logits: torch.Tensor, eta_cutoff: float) -> torch.Tensor:
    """Eta sampling (Hewitt et al.): drop tokens below ``min(η, √η·exp(-H))`` where ``H`` is the
    entropy; the most likely token is always kept.

    >>> eta(torch.tensor([[0.9, 0.09, 0.01]]).log(), 0.05).isfinite().tolist()
    [[True, True, False]]
    """
    if eta_cutoff <= 0:
        return logits
    logp = torch.log_softmax(logits.float(), dim=-1)
    probs = logp.exp()
    entropy = -torch.nan_to_num(probs * logp).sum(dim=-1, keepdim=True)
    cut = torch.minimum(torch.full_like(entropy, eta_cutoff), math.sqrt(eta_cutoff) * torch.exp(-entropy))
    top = probs.max(dim=-1, keepdim=True).values
    return _keep(logits, (probs >= cut) | (probs >= top))


def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL / Hugging Face repetition penalty: for every token in ``seen`` (bool ``[batch, vocab]``),
    a positive logit is divided by ``penalty`` and a negative one multiplied by it.

    >>> repetition_penalty(torch.tensor([[2.0, -2.0, 2.0]]), torch.tensor([[True, True, False]]), 2.0).tolist()
    [[1.0, -4.0, 2.0]]
    """
    if penalty == 1.0:
        return logits
    if penalty <= 0:
        raise ValueError(f"repetition_penalty must be > 0, got {penalty}")
    scaled = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, scaled, logits)


def frequency_presence_penalty(
    logits: torch.Tensor, counts: torch.Tensor, frequency: float = 0.0, presence: float = 0.0
) -> torch.Tensor:
    """OpenAI penalties: ``logit - frequency·count - presence·[count > 0]``, where ``counts``
    (``[batch, vocab]``) counts each token in the generated text (the prompt is not counted).

    >>> frequency_presence_penalty(torch.zeros(1, 3), torch.tensor([[0.0, 1.0, 3.0]]), 0.5, 1.0).tolist()
    [[0.0, -1.5, -2.5]]
    """
    if frequency == 0.0 and presence == 0.0:
        return logits
    counts = counts.to(logits.dtype)
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


def no_repeat_ngram_mask(histories: Sequence[Sequence[int]], n: int, vocab_width: int) -> np.ndarray:
    """Bool ``[batch, vocab_width]``: True where the token would repeat an ``n``-gram of its row.

    Like Hugging Face's ``no_repeat_ngram_size``: the last ``n-1`` tokens, followed by the
    token, must not form an ``n``-gram that already occurs in the row's history.

    >>> no_repeat_ngram_mask([[5, 6, 7, 5, 6]], 3, 9)[0].nonzero()[0].tolist()
    [7]
    """
    banned = np.zeros((len(histories), vocab_width), dtype=bool)
    if n <= 0:
        return banned
    for row, hist in enumerate(histories):
        if len(hist) < n:
            continue
        h = list(hist)
        tail = tuple(h[len(h) - n + 1 :]) if n > 1 else ()
        for i in range(len(h) - n + 1):
            if tuple(h[i : i + n - 1]) == tail:
                t = h[i + n - 1]
                if 0 <= t < vocab_width:
                    banned[row, t] = True
    return banned


def logit_bias(logits: torch.Tensor, bias: torch.Tensor | Mapping[int, float]) -> torch.Tensor:
    """Add a per-token bias (a dense ``[vocab]`` tensor, or ``{token_id: bias}``).

    >>> logit_bias(torch.zeros(1, 3), {2: 5.0, 0: -1.0}).tolist()
    [[-1.0, 0.0, 5.0]]
    """
    if isinstance(bias, Mapping):
        if not bias:
            return logits
        dense = torch.zeros(logits.shape[-1], dtype=logits.dtype, device=logits.device)
        for token, value in bias.items():
            dense[int(token)] = float(value)
        bias = dense
    return logits + bias.to(device=logits.device, dtype=logits.dtype)
