"""Constrained speculative decoding and lossless jump-forward (`speculative_decode`).

Each round, for every running row:

1. **draft**: on a *copy* of the row's constraints (matcher copies are O(1)), propose up to
   γ tokens one position at a time.  At every position the exact constraint mask is computed
   (budget-aware, like plain decoding) and recorded; the proposal is

   - the grammar's **forced bytes** (jump-forward), canonically tokenized, when the grammar
     forces the next bytes (point-mass proposal; does not count against γ);
   - else the drafter's: a *model drafter* (draft model, early exit) is masked with the same
     constraint mask and run through its *own* `LogitsPipeline` with the call's sampling
     parameters, then sampled (greedy: argmax); a *lookup drafter* (prompt lookup) proposes
     tokens, which are kept only while the mask allows them (point-mass proposal);

   drafting stops at EOS, when the grammar ends, at the budget, or when nothing is proposed;
2. **verify**: the target scores all positions (the uncached last token + every draft token)
   in one KV-cached forward pass (`SyncedSource.run`: rows padded to the longest draft);
   the target's logits at each position go through the target's pipeline with the recorded
   masks: exactly the distribution plain constrained decoding would sample from there;
3. **accept** (standard speculative sampling): draft token ``t`` drawn from ``q`` is kept with
   probability ``min(1, p(t)/q(t))``; at the first rejection a token is drawn from
   ``normalise(max(0, p - q))`` and the round ends; when all are kept, one more token is drawn
   from ``p`` at the next position.  ``p`` and ``q`` are the *processed and masked*
   distributions of target and drafter, so the output has exactly the distribution of plain
   constrained sampling from the target.  Greedy: a draft token is kept iff it is the target's
   argmax, and the first mismatch is replaced by the argmax: token for token plain greedy;
4. **commit** the kept tokens to the row's real constraints (EOS, end of grammar, stop strings
   and the length limit are checked token by token, as in plain decoding); the target's and
   the drafter's caches roll back the rejected suffix lazily (by common prefix: the next
   round's pass starts from the longest prefix each cache still holds, and columns no row
   uses are cropped); the drafts' matcher copies are simply dropped.

With a model drafter, the draft model's forward pass at each position runs while the native
core computes the masks of that position (`guided.decoding.overlap`): which rows ask the model
depends on their states, not on their masks, so the masks move into the draft pass's shadow
without changing a token (`GenerationStats.overlapped_mask_seconds`).  The target's verifying
pass has nothing to overlap: every mask of the round is computed before it, and the next
round's first state is known only once it has returned.

The first token comes from the prompt's logits without a draft, so every target pass yields at
least one token and speculative decoding never needs more target passes than plain decoding.

γ adapts per row: +2 after a round where every drafter token was kept, −1 otherwise.

Jump-forward is *verified* here: the forced span is tokenized canonically (the model's own
tokenizer on the span; round-trip checked) and drafted, and the target checks it like any
draft, in the same single pass.  Where the canonical tokens split a token the model prefers
(the forced span ends inside it, e.g. ``": "`` + a free value), the target rejects the split
token and picks its own, longer one at that position, with no extra pass; so forced spans never
change the output (greedy output identical, sampling distribution exact), unlike unverified
jump-forward which appends the span whatever the model thinks of its tokenization.

Not supported here (`guided.generate` falls back to plain decoding): beam search, streaming,
``reward=``, ``timeout=``, and ban lists or must-include phrases combined with a grammar (their
dead-end handling needs backtracking).

>>> import guided
>>> from guided.decoding import Constraints
>>> from guided.decoding.fake import TableModel
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"<eos>"], eos_token_ids=[3])
>>> cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex("(ab)+"), vocab))
>>> stats = SpeculativeStats()
>>> out = speculative_decode(TableModel.from_probs([0.4, 0.3, 0.2, 0.1]), [[0]], cons,
...                          guided.sampling.SamplingParams(temperature=0), jump_forward=True,
...                          max_new_tokens=6, stats=stats)
>>> out[0].text, out[0].finish_reason
('ababab', 'length')
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from guided.decoding.constraints import Constraints, RowConstraints
from guided.decoding.drafters import Drafter, SyncedSource, make_drafter
from guided.decoding.overlap import MaskPrefetch
from guided.decoding.runner import LogitsSource
from guided.decoding.sampler import (
    Completion,
    _find_stop,
    _pick_within_budget,
    _to_bool,
    _token_text,
    make_generator,
    prefill,
)
from guided.decoding.stats import GenerationStats
from guided.sampling.pipeline import LogitsPipeline, SamplingParams, sample

__all__ = ["ForcedTokenizer", "SpeculativeStats", "speculative_decode", "supports"]

DEFAULT_GAMMA = 4
MAX_GAMMA = 16
MAX_DRAFT = 64


@dataclass
class SpeculativeStats(GenerationStats):
    """`GenerationStats` plus the speculative counters (pass one to ``generate(stats=...)``).

    ``drafted``/``accepted``: drafter tokens proposed / kept; ``forced_drafted`` /
    ``forced_accepted``: the same for jump-forward tokens; ``target_forwards``: forward passes
    of the target (prefill included); ``plain_forwards``: what plain decoding would have needed
    for the same output (one pass per token of the longest row); ``draft_forwards``: passes of a
    model drafter.
    """

    drafted: int = 0
    accepted: int = 0
    forced_drafted: int = 0
    forced_accepted: int = 0
    rounds: int = 0
    target_forwards: int = 0
    plain_forwards: int = 0
    draft_forwards: int = 0
    draft_seconds: float = 0.0

    @property
    def acceptance_rate(self) -> float:
        """Kept / proposed, drafter and jump-forward tokens together."""
        n = self.drafted + self.forced_drafted
        return (self.accepted + self.forced_accepted) / n if n else 0.0

    @property
    def forward_passes_saved(self) -> int:
        return self.plain_forwards - self.target_forwards

    @property
    def tokens_per_forward(self) -> float:
        return self.new_tokens / self.target_forwards if self.target_forwards else 0.0

    def as_dict(self) -> dict:
        d = super().as_dict()
        d.update(
            acceptance_rate=self.acceptance_rate,
            forward_passes_saved=self.forward_passes_saved,
            tokens_per_forward=self.tokens_per_forward,
        )
        return d


class ForcedTokenizer:
    """Forced bytes -> token ids, as the model's tokenizer would write them (canonical).

    Uses ``tokenizer.encode`` on the longest UTF-8-complete prefix of the bytes and checks the
    tokens spell exactly those bytes; otherwise (or without a tokenizer) greedy longest match
    over the vocabulary.  Results are cached per byte string."""

    def __init__(self, vocab, tokenizer: Any = None):
        self.vocab = vocab
        self.tokenizer = tokenizer
        self._cache: dict[bytes, tuple[int, ...]] = {}
        self._table: dict[bytes, int] | None = None
        self._longest = 1

    def _greedy(self, data: bytes) -> list[int]:
        if self._table is None:
            eos = set(self.vocab.eos_token_ids)
            table: dict[bytes, int] = {}
            for i, b in enumerate(self.vocab.token_bytes):
                if b and i not in eos and b not in table:
                    table[b] = i
            self._table = table
            self._longest = max((len(b) for b in table), default=1)
        out, pos = [], 0
        while pos < len(data):
            for n in range(min(self._longest, len(data) - pos), 0, -1):
                t = self._table.get(data[pos : pos + n])
                if t is not None:
                    out.append(t)
                    pos += n
                    break
            else:
                break
        return out

    def __call__(self, data: bytes) -> tuple[int, ...]:
        hit = self._cache.get(data)
        if hit is not None:
            return hit
        text = None
        cut = len(data)
        while cut > 0 and text is None:
            try:
                text = data[:cut].decode("utf-8")
            except UnicodeDecodeError:
                cut -= 1
        ids: list[int] = []
        if text:
            valid = data[:cut]
            if self.tokenizer is not None:
                try:
                    ids = [int(i) for i in self.tokenizer.encode(text, add_special_tokens=False)]
                except Exception:  # pragma: no cover - exotic tokenizers
                    ids = []
                tb = self.vocab.token_bytes
                if not ids or any(not 0 <= i < len(tb) for i in ids) or b"".join(tb[i] for i in ids) != valid:
                    ids = []
            if not ids:
                ids = self._greedy(valid)
        out = tuple(ids)
        self._cache[data] = out
        return out


def supports(params: SamplingParams, constraints: Constraints, timeout: float | None = None) -> bool:
    """True when `speculative_decode` handles this call (else use plain decoding)."""
    if params.reward is not None or timeout is not None:
        return False
    if constraints.grammar is not None and (constraints.ban is not None or constraints.must is not None):
        return False
    return True


class _Row:
    __slots__ = ("index", "prompt", "cons", "completion", "data", "gamma")

    def __init__(self, index: int, prompt: Sequence[int], cons: RowConstraints, gamma: int):
        self.index = index
        self.prompt = list(prompt)
        self.cons = cons
        self.completion = Completion(row=index)
        self.data = bytearray()
        self.gamma = gamma

    def remaining(self, max_new_tokens: int) -> int:
        return max_new_tokens - len(self.completion.tokens)

    @property
    def seq(self) -> list[int]:
        return self.prompt + self.completion.tokens


def _budget_refused_top(plain_words: np.ndarray, words: np.ndarray, logits: torch.Tensor, size: int) -> bool:
    """Did the budget refuse the most likely token the constraints alone allowed (see the sampler)?"""
    plain = np.unpackbits(plain_words.view(np.uint8), count=size, bitorder="little").astype(bool)
    if not plain.any():
        return False
    scores = logits[:size].float().cpu().numpy()
    top = int(np.flatnonzero(plain)[np.argmax(scores[plain])])
    return not _allowed(words, top)


def _within_budget(r: _Row, chosen: list[int], max_new_tokens: int, x: torch.Tensor, masked: torch.Tensor,
                   pipe: LogitsPipeline, generator) -> list[int]:
    """``chosen`` up to the first token that would leave no known completion in the budget
    (`RowConstraints.overruns_budget`), which is picked again as the sampler does; the tokens
    after it were drafted after the refused one and are dropped."""
    if r.cons.grammar is None:
        return chosen
    cons = None
    for j, t in enumerate(chosen):
        remaining = r.remaining(max_new_tokens) - j
        if remaining <= 0:
            return chosen[:j]
        probe = cons if cons is not None else r.cons
        if probe.overruns_budget(t, remaining):
            fixed = _pick_within_budget(r, t, remaining, x[j : j + 1], masked[j], pipe, generator, probe)
            return chosen[:j] + [fixed]
        if j + 1 < len(chosen):
            cons = (cons if cons is not None else r.cons.copy())
            cons.advance(t)
    return chosen


def _allowed(words: np.ndarray, t: int) -> bool:
    if t < 0 or (t >> 5) >= words.shape[0]:
        return False
    return bool((int(words.view(np.uint32)[t >> 5]) >> (t & 31)) & 1)


def _stateful(pipe: LogitsPipeline) -> bool:
    return pipe.counts is not None or pipe.seen is not None or bool(pipe.histories)


def _fit(logits: torch.Tensor, width: int) -> torch.Tensor:
    if logits.shape[-1] == width:
        return logits
    if logits.shape[-1] > width:
        return logits[..., :width]
    pad = torch.full((*logits.shape[:-1], width - logits.shape[-1]), float("-inf"), dtype=logits.dtype, device=logits.device)
    return torch.cat([logits, pad], dim=-1)


def speculative_decode(
    source: LogitsSource,
    prompts: Sequence[Sequence[int]],
    constraints: Constraints,
    params: SamplingParams = SamplingParams(),
    *,
    drafter: Drafter | Any = None,
    jump_forward: bool = True,
    tokenize: Callable[[bytes], Sequence[int]] | None = None,
    max_new_tokens: int = 256,
    stop: Sequence[str] = (),
    seed: int | None = None,
    generator: torch.Generator | None = None,
    stats: GenerationStats | None = None,
    gamma: int = DEFAULT_GAMMA,
    max_gamma: int = MAX_GAMMA,
    max_draft: int = MAX_DRAFT,
    pad_token_id: int | None = None,
) -> list[Completion]:
    """Decode every prompt speculatively; returns one `Completion` per prompt, with the output
    (greedy) or output distribution (sampling) of `guided.decoding.decode`.  See the module
    docstring.  ``drafter``: a `Drafter` (or anything `make_drafter` takes), or ``None`` for
    jump-forward only; ``tokenize``: forced bytes -> canonical token ids (default: greedy
    longest match over the vocabulary; `generate` passes the model's tokenizer)."""
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    if not supports(params, constraints):
        raise ValueError("speculative decoding does not support reward= or ban/must-include phrases with a grammar")
    drafter = make_drafter(drafter)
    stats = stats if stats is not None else GenerationStats()
    spec = stats if isinstance(stats, SpeculativeStats) else SpeculativeStats()
    t0 = time.perf_counter()
    fwd0 = getattr(source, "forward_seconds", 0.0)
    vocab = constraints.vocab
    eos = set(vocab.eos_token_ids)
    if tokenize is None and jump_forward:
        tokenize = ForcedTokenizer(vocab)
    stop_bytes = [s.encode("utf-8") for s in stop if s]
    longest_stop = max((len(s) for s in stop_bytes), default=0)
    rows = [_Row(i, prompts[i], constraints.start(), gamma) for i in range(len(prompts))]
    stats.rows += len(rows)
    stats.prompt_tokens += sum(len(p) for p in prompts)

    if pad_token_id is None:
        pad_token_id = getattr(source, "pad_token_id", 0)
    target = SyncedSource(source, pad_token_id)
    first_logits = prefill(target, prompts, vocab, stats)
    width, device = first_logits.shape[-1], first_logits.device
    if generator is None:
        generator = make_generator(seed, device if device.type == "cuda" else torch.device("cpu"))
    text = _token_text(vocab)
    tpipe = LogitsPipeline(params, prompts, width, device, token_text=text)
    t_stateful = _stateful(tpipe)
    dpipe = None
    if drafter is not None:
        td = time.perf_counter()
        drafter.begin(prompts)
        spec.draft_seconds += time.perf_counter() - td
        if drafter.kind == "model":
            dpipe = LogitsPipeline(params, prompts, width, device, token_text=text)
    d_stateful = dpipe is not None and _stateful(dpipe)
    greedy = params.greedy
    rand_device = generator.device if generator is not None else torch.device("cpu")
    running = list(rows)
    prefetch = MaskPrefetch(threads=1 if device.type == "cpu" else None)
    first_round = True  # the prompt's logits are known: take the first token without drafting

    while running:
        b = len(running)
        spec.rounds += 1
        # -- 1. draft ---------------------------------------------------------------------
        tm = time.perf_counter()
        seqs = [r.seq for r in running]
        mcs = [r.cons.copy() for r in running]
        drafts: list[list[int]] = [[] for _ in range(b)]
        qs: list[list[torch.Tensor | None]] = [[] for _ in range(b)]
        kinds: list[list[str]] = [[] for _ in range(b)]
        words: list[list[np.ndarray]] = [[] for _ in range(b)]
        restricted: list[list[np.ndarray | None]] = [[] for _ in range(b)]  # before the budget cut
        terminal = [False] * b
        n_draft = [0] * b
        forced_q: list[deque] = [deque() for _ in range(b)]
        lookup_q: list[deque] = [deque() for _ in range(b)]
        if d_stateful:
            for i, r in enumerate(running):
                dpipe.rewind(i, r.prompt, r.completion.tokens)
        active = list(range(b))
        j = 0
        draft_time = 0.0

        def push(i: int, t: int, xq: torch.Tensor | None, kind: str) -> bool:
            drafts[i].append(int(t))
            qs[i].append(xq)
            kinds[i].append(kind)
            mcs[i].advance(int(t))
            if kind == "d":
                n_draft[i] += 1
            if d_stateful:
                dpipe.update_row(i, int(t))
            if t in eos or mcs[i].is_finished():
                terminal[i] = True
                return False
            return True

        while active:
            still, need = [], []
            # Which rows draft here, and which of them ask the draft model, follows from their
            # states alone (forced bytes, counts), not from their masks: so the draft model's
            # forward pass runs while the native core computes those masks.
            drafting = set()
            for i in active:
                if running[i].remaining(max_new_tokens) - j <= 1 or j >= max_draft or first_round:
                    continue
                drafting.add(i)
                if jump_forward and not forced_q[i] and mcs[i].grammar is not None:
                    fb = mcs[i].grammar.forced_bytes()
                    if fb:
                        forced_q[i].extend(tokenize(fb))
            asks_model = drafter is not None and drafter.kind == "model" and any(
                not forced_q[i] and n_draft[i] < running[i].gamma for i in drafting)
            draft_logits = None
            if asks_model:
                prefetch.start(m for i in active for m in mcs[i].matchers())
                td = time.perf_counter()
                draft_logits = _fit(drafter.logits([seqs[k] + drafts[k] for k in range(b)]).float(), width)
                draft_time += time.perf_counter() - td
                stats.overlapped_mask_seconds += prefetch.wait()
            for i in active:
                r = running[i]
                rem = r.remaining(max_new_tokens) - j
                w = np.zeros(constraints.words, dtype=np.int32)
                mcs[i].fill(w, rem)
                words[i].append(w)
                restricted[i].append(mcs[i].restricted)
                if i not in drafting:
                    continue
                t = None
                kind = "f"
                if forced_q[i]:
                    t = forced_q[i].popleft()
                    if lookup_q[i] and lookup_q[i][0] == t:
                        lookup_q[i].popleft()
                    else:
                        lookup_q[i].clear()
                elif drafter is not None and n_draft[i] < r.gamma:
                    kind = "d"
                    if drafter.kind == "lookup":
                        if not lookup_q[i]:
                            lookup_q[i].extend(drafter.propose(seqs[i] + drafts[i], r.gamma - n_draft[i]))
                        if lookup_q[i]:
                            t = lookup_q[i].popleft()
                    else:
                        need.append(i)
                        continue
                if t is None or not _allowed(w, t):
                    forced_q[i].clear()
                    lookup_q[i].clear()
                    continue
                if push(i, t, None, kind):
                    still.append(i)
            if need:
                assert draft_logits is not None  # the rows that ask the model were foreseen above
                td = time.perf_counter()
                logits = draft_logits
                allowed = torch.ones((b, width), dtype=torch.bool, device=logits.device)
                allowed[need] = _to_bool(np.stack([words[i][-1] for i in need]), constraints, width, logits.device)
                xq = dpipe.warped(dpipe.masked(logits, allowed))
                picks = dpipe.pick(xq[need], generator).tolist()
                draft_time += time.perf_counter() - td
                for i, t in zip(need, picks):
                    if push(i, t, xq[i] if not greedy else None, "d"):
                        still.append(i)
            active = sorted(still)
            j += 1
        spec.draft_seconds += draft_time
        stats.mask_seconds += time.perf_counter() - tm - draft_time

        # -- 2. verify: one target pass over every row's draft -----------------------------
        outs = target.run([seqs[i] + drafts[i] for i in range(b)], [len(s) for s in seqs])
        ts = time.perf_counter()
        npos = [len(w) for w in words]
        if t_stateful:
            for i, r in enumerate(running):
                tpipe.rewind(i, r.prompt, r.completion.tokens)
            masked_rows: list[list[torch.Tensor]] = [[] for _ in range(b)]
            x_rows: list[list[torch.Tensor]] = [[] for _ in range(b)]
            for j in range(max(npos)):
                lj = torch.stack([outs[i][min(j, len(outs[i]) - 1)] for i in range(b)]).float()
                wj = np.stack([words[i][j] if j < npos[i] else constraints.base_words for i in range(b)])
                m = tpipe.masked(lj, _to_bool(wj, constraints, width, lj.device))
                x = tpipe.warped(m)
                for i in range(b):
                    if j < npos[i]:
                        masked_rows[i].append(m[i])
                        x_rows[i].append(x[i])
                    if j < len(drafts[i]):
                        tpipe.update_row(i, drafts[i][j])
            masked_list = [torch.stack(v) for v in masked_rows]
            x_list = [torch.stack(v) for v in x_rows]
        else:
            flat = torch.cat([outs[i][: npos[i]] for i in range(b)]).float()
            allowed = _to_bool(np.stack([w for ws in words for w in ws]), constraints, width, flat.device)
            m = tpipe.masked(flat, allowed)
            x = tpipe.warped(m)
            masked_list = list(torch.split(m, npos))
            x_list = list(torch.split(x, npos))

        # -- 3. accept ----------------------------------------------------------------------
        keep_tokens: list[list[int]] = []
        for i in range(b):
            x, d = x_list[i], drafts[i]
            chosen: list[int] = []
            if greedy:
                best = x.argmax(dim=-1).tolist()
                for j, t in enumerate(d):
                    if best[j] != t:
                        chosen.append(best[j])
                        break
                    chosen.append(t)
                else:
                    if len(d) < npos[i]:
                        chosen.append(best[len(d)])
            else:
                rejected = False
                for j, t in enumerate(d):
                    p = torch.softmax(x[j].double(), dim=-1)
                    qx = qs[i][j]
                    if qx is None:
                        ratio = float(p[t])
                    else:
                        q = torch.softmax(qx.double(), dim=-1)
                        ratio = float(p[t] / q[t]) if float(q[t]) > 0 else 0.0
                    u = float(torch.rand((), generator=generator, dtype=torch.float64, device=rand_device))
                    if u < min(1.0, ratio):
                        chosen.append(t)
                        continue
                    if qx is None:
                        residual = p.clone()
                        residual[t] = 0.0
                    else:
                        residual = (p - q).clamp_(min=0.0)
                    if not float(residual.sum()) > 0:
                        residual = p
                    chosen.append(int(sample(residual.log()[None, :], generator)[0]))
                    rejected = True
                    break
                if not rejected and len(d) < npos[i]:
                    chosen.append(int(sample(x[len(d)][None, :], generator)[0]))
            chosen = _within_budget(running[i], chosen, max_new_tokens, x, masked_list[i], tpipe, generator)
            keep_tokens.append(chosen)
            kept = 0
            for j, t in enumerate(chosen):
                if j < len(d) and d[j] == t:
                    kept += 1
                else:
                    break
            drafter_kept = sum(1 for k in kinds[i][:kept] if k == "d")
            forced_kept = kept - drafter_kept
            spec.drafted += n_draft[i]
            spec.accepted += drafter_kept
            spec.forced_drafted += len(d) - n_draft[i]
            spec.forced_accepted += forced_kept
            r = running[i]
            if n_draft[i]:
                r.gamma = min(max_gamma, r.gamma + 2) if drafter_kept == n_draft[i] else max(1, r.gamma - 1)
        stats.sampling_seconds += time.perf_counter() - ts

        # -- 4. commit ----------------------------------------------------------------------
        tm = time.perf_counter()
        still = []
        for i, r in enumerate(running):
            c = r.completion
            done = False
            for j, tok in enumerate(keep_tokens[i]):
                mrow = masked_list[i][j]
                if restricted[i][j] is not None and not c.closed_early:
                    c.closed_early = _budget_refused_top(restricted[i][j], words[i][j], outs[i][j], vocab.size)
                lp = float(mrow[tok] - torch.logsumexp(mrow, dim=-1))
                c.num_steps += 1
                c.logprob += lp
                r.cons.advance(tok)
                stats.new_tokens += 1
                if tok in eos:
                    c.finish_reason, done = "eos", True
                    break
                c.tokens.append(tok)
                before = len(r.data)
                r.data += vocab.token_bytes[tok]
                if r.cons.is_finished():
                    c.finish_reason, done = "eos", True
                    break
                if stop_bytes:
                    cut = _find_stop(r.data, stop_bytes, max(0, before - longest_stop + 1))
                    if cut is not None:
                        if r.cons.grammar is None:
                            c.finish_reason, done = "stop", True
                            r.data = r.data[:cut]
                            break
                        if r.cons.accepts_eos():
                            c.finish_reason, done = "stop", True
                            break
                if r.remaining(max_new_tokens) <= 0:
                    c.finish_reason, done = "length", True
                    break
            if not done:
                still.append(i)
        stats.mask_seconds += time.perf_counter() - tm
        stats.steps += 1
        if len(still) != b:
            if still:
                target.select(still)
                tpipe.select(still)
                if drafter is not None:
                    drafter.select(still)
                if dpipe is not None:
                    dpipe.select(still)
        running = [running[i] for i in still]
        first_round = False

    out = []
    for r in rows:
        c = r.completion
        c.text = bytes(r.data).decode("utf-8", errors="replace")
        c.complete = r.cons.accepts_eos() or r.cons.is_finished()
        c.missing = r.cons.missing_phrases()
        if c.closed_early and c.complete and c.finish_reason in ("eos", "length"):
            c.finish_reason = "closed_early"
        out.append(c)
    stats.count_finishes(out)
    spec.target_forwards += target.forward_calls
    spec.plain_forwards += max((c.num_steps for c in out), default=0)
    if drafter is not None:
        spec.draft_forwards += drafter.forward_calls
    stats.seconds += time.perf_counter() - t0
    stats.forward_seconds += getattr(source, "forward_seconds", 0.0) - fwd0
    return out
