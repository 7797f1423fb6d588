"""Beam search with a matcher per beam, renormalised masked scores and length normalisation.

Every beam carries its own `RowConstraints` (grammar, ban list, must-include); a child beam is
its parent's matchers ``copy()``-ed and advanced, so reordering can never desynchronise a
matcher (the bug that makes most peers' grammar processors unusable with beams).  Scores are
sums of log-probabilities of the *masked, renormalised* distributions (penalties, bias, masks,
then ``log_softmax``), so a forced token costs nothing.  Budget-aware closing applies to every
beam: under a grammar, every returned beam is a complete document.

Finished hypotheses are ranked by ``logprob / len^α`` (``length_normalization="average"``,
Hugging Face's ``length_penalty``) or by ``logprob / ((5 + len) / 6)^α`` (``"gnmt"``, Wu et al.
2016), ``len`` being the number of generated tokens without EOS.  ``early_stopping``: ``True``
stops a prompt once ``num_beams`` hypotheses are finished; ``False`` (default) also stops when
no running beam can beat the worst kept hypothesis at its current length (HF's heuristic);
``"never"`` only stops when no running beam can beat it at any length (exact).

>>> import guided
>>> from guided.decoding import Constraints, beam_search
>>> from guided.decoding.fake import TableModel
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"<eos>"], eos_token_ids=[2])
>>> model = TableModel.from_probs([0.5, 0.3, 0.2])
>>> best = beam_search(model, [[0]], Constraints.build(vocab), num_beams=2, num_return=2, max_new_tokens=2)
>>> [c.text for c in best[0]]
['aa', 'ab']
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from guided.decoding.constraints import Constraints, RowConstraints
from guided.decoding.overlap import MaskPrefetch, next_logits
from guided.decoding.runner import LogitsSource
from guided.decoding.sampler import Completion, _token_text, allowed_mask, prefill
from guided.decoding.stats import GenerationStats
from guided.errors import UsageError
from guided.sampling.pipeline import LogitsPipeline, SamplingParams

__all__ = ["beam_search", "normalized_score"]


def _budget_refused_top(restricted: np.ndarray, logits: torch.Tensor, allowed: torch.Tensor, size: int) -> bool:
    """Did the budget refuse the most likely token the constraints alone allowed (``restricted``:
    the mask before budget-aware closing; ``allowed``: the mask used)?"""
    plain = np.unpackbits(restricted.view(np.uint8), count=size, bitorder="little").astype(bool)
    if not plain.any():
        return False
    scores = logits[:size].float().cpu().numpy()
    top = int(np.flatnonzero(plain)[np.argmax(scores[plain])])
    return not bool(allowed[top])


def normalized_score(logprob: float, length: int, alpha: float = 1.0, kind: str = "average") -> float:
    """``logprob / len^α`` (``"average"``) or ``logprob / ((5 + len)/6)^α`` (``"gnmt"``).

    >>> normalized_score(-6.0, 3, 1.0), normalized_score(-6.0, 7, 1.0, "gnmt")
    (-2.0, -3.0)
    """
    if kind == "average":
        return logprob / (max(length, 1) ** alpha)
    if kind == "gnmt":
        return logprob / (((5 + length) / 6) ** alpha)
    raise UsageError(f"length_normalization must be 'average' or 'gnmt', got {kind!r}")


@dataclass
class _Beam:
    prompt: int
    cons: RowConstraints
    tokens: tuple[int, ...]
    logprob: float
    data: bytes
    closed_early: bool = False  # the budget refused the top token at some step (see the sampler)


class _Hypotheses:
    """The best ``n`` finished hypotheses of one prompt."""

    def __init__(self, n: int):
        self.n = n
        self.items: list[tuple[float, Completion]] = []

    def add(self, score: float, completion: Completion) -> None:
        self.items.append((score, completion))
        self.items.sort(key=lambda item: (not item[1].complete, -item[0]))
        del self.items[self.n :]

    def worst(self) -> float:
        return self.items[-1][0] if len(self.items) >= self.n else -math.inf

    def full(self) -> bool:
        return len(self.items) >= self.n


def beam_search(
    source: LogitsSource,
    prompts: Sequence[Sequence[int]],
    constraints: Constraints,
    params: SamplingParams = SamplingParams(),
    *,
    num_beams: int = 4,
    num_return: int = 1,
    length_penalty: float = 1.0,
    length_normalization: str = "average",
    early_stopping: bool | str = False,
    max_new_tokens: int = 256,
    timeout: float | None = None,
    stats: GenerationStats | None = None,
) -> list[list[Completion]]:
    """The ``num_return`` best hypotheses of each prompt, best first (see the module docstring).

    ``params`` contributes its penalties, logit bias and reward (temperature and truncation do
    not apply to beam search).  Each `Completion` has ``logprob`` (the sum) and its normalised
    score is ``completion.score`` under the same ``length_penalty``.
    """
    if num_beams < 1 or not 1 <= num_return <= num_beams:
        raise UsageError("need num_beams >= 1 and 1 <= n <= num_beams")
    if early_stopping not in (True, False, "never"):
        raise UsageError("early_stopping must be True, False or 'never'")
    normalized_score(0.0, 1, length_penalty, length_normalization)  # validate
    stats = stats if stats is not None else GenerationStats()
    t0 = time.perf_counter()
    fwd0 = getattr(source, "forward_seconds", 0.0)
    vocab = constraints.vocab
    eos = vocab.eos_token_ids
    stats.rows += len(prompts)
    stats.prompt_tokens += sum(len(p) for p in prompts)

    logits = prefill(source, prompts, vocab, stats)
    width, device = logits.shape[-1], logits.device
    pipe = LogitsPipeline(params, prompts, width, device, token_text=_token_text(vocab))
    beams = [_Beam(i, constraints.start(), (), 0.0, b"") for i in range(len(prompts))]
    hyps = [_Hypotheses(num_beams) for _ in prompts]
    done = [False] * len(prompts)
    prefetch = MaskPrefetch(threads=1 if device.type == "cpu" else None) if constraints.any else None

    def finish(beam: _Beam, logprob: float, reason: str) -> None:
        c = Completion(
            row=beam.prompt,
            tokens=list(beam.tokens),
            text=beam.data.decode("utf-8", errors="replace"),
            finish_reason=reason,
            logprob=logprob,
            complete=beam.cons.accepts_eos() or beam.cons.is_finished(),
            num_steps=len(beam.tokens) + (reason == "eos" and not beam.cons.is_finished()),
            closed_early=beam.closed_early and (beam.cons.accepts_eos() or beam.cons.is_finished()),
        )
        if c.closed_early and c.finish_reason in ("eos", "length"):
            c.finish_reason = "closed_early"
        score = normalized_score(logprob, len(beam.tokens), length_penalty, length_normalization)
        hyps[beam.prompt].add(score, c)

    step = 0
    for step in range(max_new_tokens):
        remaining = max_new_tokens - step
        tm = time.perf_counter()
        dead: list[int] = []
        allowed = allowed_mask([b.cons for b in beams], [remaining] * len(beams), constraints, width, device, dead)
        for i, b in enumerate(beams):
            if b.cons.restricted is not None and not b.closed_early:
                b.closed_early = _budget_refused_top(b.cons.restricted, logits[i], allowed[i], vocab.size)
        ts = time.perf_counter()
        stats.mask_seconds += ts - tm
        if dead:  # beams in a dead end (ban list / must-include against the grammar) just die
            allowed[dead, :] = True
        x = pipe.masked(logits, allowed)
        if params.reward is not None:
            x = pipe.reweighted(x, [b.data.decode("utf-8", "replace") for b in beams])
        logp = torch.log_softmax(x, dim=-1)
        totals = logp + torch.tensor([b.logprob for b in beams], device=logp.device)[:, None]
        if dead:
            totals[dead, :] = -math.inf
        stats.steps += 1
        stats.new_tokens += len(beams)

        new_beams: list[_Beam] = []
        parents: list[int] = []
        new_tokens: list[int] = []
        by_prompt: dict[int, list[int]] = {}
        for i, b in enumerate(beams):
            by_prompt.setdefault(b.prompt, []).append(i)
        for prompt, rows in by_prompt.items():
            if done[prompt]:
                continue
            flat = totals[rows].reshape(-1)
            k = min(2 * num_beams, flat.numel())
            values, idx = torch.topk(flat, k)
            kept = 0
            overran: list[tuple[float, int]] = []  # (score, parent) of candidates the budget refused
            for rank, (value, j) in enumerate(zip(values.tolist(), idx.tolist())):
                if value == -math.inf or kept >= num_beams:
                    break
                parent = rows[j // width]
                token = j % width
                pb = beams[parent]
                if pb.cons.vetoes(token, remaining):
                    continue
                if pb.cons.overruns_budget(token, remaining):
                    overran.append((value, parent))
                    continue
                if overran and overran[0][0] >= value:  # a better candidate was refused: closed early
                    pb.closed_early = True
                if token in eos:
                    if rank < num_beams:
                        finish(pb, value, "eos")
                    continue
                cons = pb.cons.copy()
                cons.advance(token)
                child = _Beam(prompt, cons, pb.tokens + (token,), value, pb.data + vocab.token_bytes[token],
                              pb.closed_early)
                if cons.is_finished():
                    if rank < num_beams:
                        finish(child, value, "eos")
                    continue
                new_beams.append(child)
                parents.append(parent)
                new_tokens.append(token)
                kept += 1
            if not kept and overran:
                # Every candidate would leave no known completion in the budget: the best of the
                # refused beams follows its shortest known completion instead (as the sampler does).
                value, parent = overran[0]
                pb = beams[parent]
                closing = [int(t) for t in pb.cons.grammar.closing_tokens()
                           if math.isfinite(float(totals[parent, int(t)]))]
                if closing:
                    token = max(closing, key=lambda t: float(totals[parent, t]))
                    cons = pb.cons.copy()
                    cons.advance(token)
                    child = _Beam(prompt, cons, pb.tokens + (token,), float(totals[parent, token]),
                                  pb.data + vocab.token_bytes[token], True)
                    if cons.is_finished():
                        finish(child, child.logprob, "eos")
                    else:
                        new_beams.append(child)
                        parents.append(parent)
                        new_tokens.append(token)
            # stopping
            h = hyps[prompt]
            live = [b.logprob for b in new_beams if b.prompt == prompt]
            if not live:
                done[prompt] = True
            elif h.full():
                if early_stopping is True:
                    done[prompt] = True
                else:
                    best = max(live)
                    cur = step + 1
                    if early_stopping == "never" and length_penalty > 0:
                        length = max_new_tokens if length_normalization == "average" else max_new_tokens
                    else:
                        length = cur
                    if h.worst() >= normalized_score(best, length, length_penalty, length_normalization):
                        done[prompt] = True
        stats.sampling_seconds += time.perf_counter() - ts
        keep = [i for i, b in enumerate(new_beams) if not done[b.prompt]]
        beams = [new_beams[i] for i in keep]
        parents = [parents[i] for i in keep]
        new_tokens = [new_tokens[i] for i in keep]
        if not beams or step == max_new_tokens - 1 or (timeout is not None and time.perf_counter() - t0 > timeout):
            break
        source.select(parents)
        pipe.select(parents)
        pipe.update(new_tokens)
        logits = next_logits(source, new_tokens, prefetch, [m for b in beams for m in b.cons.matchers()], stats)

    timed_out = timeout is not None and time.perf_counter() - t0 > timeout
    for b in beams:  # out of budget (or time): the running beams are candidates too
        finish(b, b.logprob, "timeout" if timed_out else "length")
    stats.seconds += time.perf_counter() - t0
    stats.forward_seconds += getattr(source, "forward_seconds", 0.0) - fwd0
    results = [[c for _, c in h.items[:num_return]] for h in hyps]
    stats.count_finishes(c for group in results for c in group)
    return results
