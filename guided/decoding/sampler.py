"""Greedy and sampling decoders: batched, KV-cached, constrained per row, budget-aware.

`iter_decode` runs the loop and yields the tokens chosen at every step (for streaming);
`decode` runs it to the end.  Each step: masks for every running row (grammar ∧ ban list ∧
must-include, budget-aware), the `LogitsPipeline`, the pick (with vetoes), matcher advances,
stop checks; finished rows leave the batch (their cache rows are dropped).

Stop conditions: EOS; the grammar ending (only EOS could follow: stopped without another
forward pass); ``max_new_tokens``; a stop string; the ``timeout`` (wall clock, seconds: rows
without a grammar stop at once, rows inside a document are closed by the shortest way the
budget masks know, so they still parse).

Under a constraint a stop string ends a row only where the text is a complete document, and
stays in the text (so the output is still valid); without one the text is cut before it.

>>> import guided, torch
>>> from guided.decoding import Constraints, decode
>>> from guided.decoding.fake import TableModel
>>> vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"<eos>"], eos_token_ids=[2])
>>> model = TableModel.uniform(3)
>>> cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex("ab|ba"), vocab))
>>> out = decode(model, [[0]], cons, guided.sampling.SamplingParams(), max_new_tokens=5, seed=0)
>>> out[0].text in ("ab", "ba"), out[0].finish_reason
(True, 'eos')
"""

from __future__ import annotations

import codecs
import time
from dataclasses import dataclass, field
from typing import Callable, Generator, Sequence

import numpy as np
import torch

from guided.decoding.constraints import CLOSING_CHECK_TOKENS, Constraints, NoAllowedToken, RowConstraints
from guided.decoding.overlap import MaskPrefetch, next_logits
from guided.decoding.runner import LogitsSource
from guided.decoding.stats import GenerationStats
from guided.decoding.torch_masks import bitmask_to_bool
from guided.sampling.pipeline import LogitsPipeline, SamplingParams
from guided.sampling.processors import NEG_INF

__all__ = ["Completion", "decode", "iter_decode", "make_generator", "allowed_mask"]

MAX_VETOES = 256


@dataclass
class Completion:
    """One generated sequence."""

    row: int
    """Index of its prompt."""
    tokens: list[int] = field(default_factory=list)
    """Generated token ids, EOS excluded (a text cut at a stop string may end before them)."""
    text: str = ""
    finish_reason: str = ""
    """``"eos"``, ``"length"``, ``"stop"`` (stop string), ``"timeout"`` (the ``timeout`` ran out:
    the row stopped, or was closed by the shortest way under a constraint), or ``"closed_early"``:
    the document is complete, but the token budget refused the model's most likely token (under
    the constraints alone) at some step, so it was closed sooner than the model would have."""
    logprob: float = 0.0
    """Sum of the chosen tokens' log-probabilities after penalties and masks (EOS included)."""
    complete: bool = True
    """The constraints accept the text as a finished document."""
    num_steps: int = 0
    """Tokens chosen, EOS included (the length used for normalised scores)."""
    missing: list[str] = field(default_factory=list)
    """Must-include phrases that did not make it into the text (the budget ran out)."""
    closed_early: bool = False
    """The budget refused the model's most likely token at some step (see ``finish_reason``)."""

    def score(self, length_penalty: float = 1.0) -> float:
        """``logprob / len^α``."""
        return self.logprob / max(self.num_steps, 1) ** length_penalty


def make_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A seeded generator on ``device`` (``None`` without a seed: torch's global RNG)."""
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(int(seed))
    return g


def allowed_mask(
    rows: Sequence[RowConstraints],
    remaining: Sequence[int | None],
    cons: Constraints,
    width: int,
    device: torch.device,
    dead: list[int] | None = None,
) -> torch.Tensor:
    """Bool ``[len(rows), width]`` on ``device``: each row's allowed tokens (ids past the
    vocabulary are never allowed).  A row with none raises `NoAllowedToken`, or is appended to
    ``dead`` (and left all False) when a list is given."""
    words = np.zeros((len(rows), cons.words), dtype=np.int32)
    for i, (row, rem) in enumerate(zip(rows, remaining)):
        try:
            row.fill(words[i], rem)
        except NoAllowedToken:
            if dead is None:
                raise
            words[i] = 0
            dead.append(i)
    return _to_bool(words, cons, width, device)


class _Row:
    __slots__ = ("index", "prompt", "cons", "completion", "data", "budget", "logps", "forbidden", "refeed", "backtracks")

    def __init__(self, index: int, prompt: Sequence[int], cons: RowConstraints):
        self.index = index
        self.prompt = list(prompt)
        self.cons = cons
        self.completion = Completion(row=index)
        self.data = bytearray()
        self.budget: int | None = None  # a tighter token budget (set on timeout)
        self.logps: list[float] = []
        self.forbidden: dict[int, set[int]] = {}  # depth -> tokens that led into dead ends
        self.refeed: int | None = None  # token to feed again after a backtrack (no pick this step)
        self.backtracks = 0

    def remaining(self, max_new_tokens: int) -> int:
        left = max_new_tokens - len(self.completion.tokens)
        return left if self.budget is None else min(left, self.budget)


def _mask_rows(rows: Sequence[_Row], budgets: Sequence[int], cons: Constraints, width: int, device: torch.device):
    """Allowed tokens of each row (minus its dead-end tokens); rows left with none are listed."""
    words = np.zeros((len(rows), cons.words), dtype=np.int32)
    dead = []
    for i, (r, rem) in enumerate(zip(rows, budgets)):
        if r.refeed is not None:
            words[i] = cons.base_words
            continue
        try:
            r.cons.fill(words[i], rem)
        except NoAllowedToken:
            dead.append(i)
            continue
        banned = r.forbidden.get(len(r.completion.tokens))
        if banned:
            unsigned = words.view(np.uint32)
            for t in banned:
                unsigned[i, t >> 5] &= np.uint32(0xFFFFFFFF ^ (1 << (t & 31)))
            if not words[i].any():
                dead.append(i)
    return _to_bool(words, cons, width, device), dead


def _to_bool(words: np.ndarray, cons: Constraints, width: int, device: torch.device) -> torch.Tensor:
    if device.type == "cpu":
        size = min(cons.vocab.size, width)
        bools = np.zeros((words.shape[0], width), dtype=bool)
        bools[:, :size] = np.unpackbits(words.view(np.uint8), axis=1, count=size, bitorder="little").view(bool)
        return torch.from_numpy(bools)
    mask = bitmask_to_bool(torch.from_numpy(words).to(device, non_blocking=True), width)
    if width > cons.vocab.size:
        mask[:, cons.vocab.size :] = False
    return mask


MAX_BACKTRACKS = 256


def _backtrack(r: _Row, vocab, source: LogitsSource, pipe: LogitsPipeline, slot: int, why: str) -> None:
    """Undo the row's last token (it led into a dead end), forbid it at that depth and arrange
    for the logits before it to be recomputed: the cache rows of the undone token and of the
    token before it are hidden and the token before it is fed again."""
    c = r.completion
    r.backtracks += 1
    if not c.tokens or r.backtracks > MAX_BACKTRACKS:
        raise NoAllowedToken(why)
    tok = c.tokens.pop()
    r.forbidden.setdefault(len(c.tokens), set()).add(tok)
    for depth in [d for d in r.forbidden if d > len(c.tokens)]:
        del r.forbidden[depth]
    r.cons.rollback(1)
    del r.data[len(r.data) - len(vocab.token_bytes[tok]) :]
    c.logprob -= r.logps.pop()
    c.num_steps -= 1
    if r.budget is not None:
        r.budget += 1
    seq = r.prompt + c.tokens
    source.truncate(slot, len(seq) - 1)
    pipe.rewind(slot, r.prompt, c.tokens)
    r.refeed = seq[-1]


def iter_decode(
    source: LogitsSource,
    prompts: Sequence[Sequence[int]],
    constraints: Constraints,
    params: SamplingParams = SamplingParams(),
    *,
    max_new_tokens: int = 256,
    stop: Sequence[str] = (),
    timeout: float | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    stats: GenerationStats | None = None,
    row_constraints: Sequence[RowConstraints] | None = None,
    progress: Callable[[int], None] | None = None,
) -> Generator[list[tuple[int, int]], None, list[Completion]]:
    """Decode every prompt; yield ``[(prompt_index, token_id), ...]`` after each step and return
    the `Completion` of each prompt (in prompt order).  See the module docstring.

    A row that reaches a dead end (possible only when a ban list or must-include phrases meet a
    grammar: their intersection is not checked ahead) backtracks: its last token is undone and
    forbidden there, and the step is retried from the logits before it.
    """
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    stats = stats if stats is not None else GenerationStats()
    t0 = time.perf_counter()
    fwd0 = getattr(source, "forward_seconds", 0.0)
    vocab = constraints.vocab
    eos = vocab.eos_token_ids
    stop_bytes = [s.encode("utf-8") for s in stop if s]
    longest_stop = max((len(s) for s in stop_bytes), default=0)
    rows = [
        _Row(i, prompts[i], row_constraints[i] if row_constraints is not None else constraints.start())
        for i in range(len(prompts))
    ]
    stats.rows += len(rows)
    stats.prompt_tokens += sum(len(p) for p in prompts)

    logits = prefill(source, prompts, vocab, stats)
    width, device = logits.shape[-1], logits.device
    if generator is None:
        generator = make_generator(seed, device if device.type == "cuda" else torch.device("cpu"))
    pipe = LogitsPipeline(params, prompts, width, device, token_text=_token_text(vocab))
    running = list(rows)
    base_allowed = None
    constrained = constraints.any or row_constraints is not None
    needs_veto = any(r.cons.grammar is not None and (r.cons.must is not None or r.cons.ban is not None)
                     and not r.cons.cons.planned for r in rows)
    decoders = {r.index: codecs.getincrementaldecoder("utf-8")("replace") for r in rows} if params.reward else {}
    prefixes = {r.index: "" for r in rows}
    max_steps = 4 * max_new_tokens + 64
    prefetch = MaskPrefetch(threads=1 if device.type == "cpu" else None) if constrained else None

    for step in range(max_steps):
        if timeout is not None and time.perf_counter() - t0 > timeout:
            for r in running:
                if r.budget is None:
                    r.budget = r.cons.closing_budget(r.remaining(max_new_tokens))
                    if r.budget == 0:
                        r.completion.finish_reason = "timeout"
            keep = [i for i, r in enumerate(running) if r.budget != 0 or r.refeed is not None]
            if len(keep) != len(running):
                running = [running[i] for i in keep]
                if not running:
                    break
                source.select(keep)
                pipe.select(keep)
                logits = logits[torch.tensor(keep, device=logits.device)]

        # -- masks ------------------------------------------------------------------------
        tm = time.perf_counter()
        budgets = [r.remaining(max_new_tokens) for r in running]
        dead: list[int] = []
        if constrained:
            allowed, dead = _mask_rows(running, budgets, constraints, width, device)
        else:
            if base_allowed is None:
                base_allowed = allowed_mask([constraints.start()], [None], constraints, width, device)
            allowed = base_allowed.expand(len(running), width)
        ts = time.perf_counter()
        stats.mask_seconds += ts - tm

        # -- pipeline and pick ------------------------------------------------------------
        if dead:
            allowed = allowed.clone()
            allowed[dead, :] = True  # placeholder rows: their pick is discarded below
        masked = pipe.masked(logits, allowed)
        x = pipe.warped(masked)
        if params.reward is not None:
            x = pipe.reweighted(x, [prefixes[r.index] for r in running])
        tokens = pipe.pick(x, generator).tolist()
        dead_set = set(dead)
        if needs_veto:
            tv = time.perf_counter()
            for i, r in enumerate(running):
                if i in dead_set or r.refeed is not None:
                    continue
                tries = 0
                while r.cons.vetoes(tokens[i], budgets[i]):
                    tries += 1
                    x[i, tokens[i]] = NEG_INF
                    masked[i, tokens[i]] = NEG_INF
                    if tries > MAX_VETOES or not bool(torch.isfinite(x[i]).any()):
                        dead_set.add(i)
                        break
                    tokens[i] = int(pipe.pick(x[i : i + 1], generator)[0])
            stats.mask_seconds += time.perf_counter() - tv
        if constrained:
            tv = time.perf_counter()
            for i, r in enumerate(running):
                if i not in dead_set and r.refeed is None and r.cons.overruns_budget(tokens[i], budgets[i]):
                    tokens[i] = _pick_within_budget(r, tokens[i], budgets[i], x[i : i + 1], masked[i], pipe, generator)
            stats.mask_seconds += time.perf_counter() - tv
        _note_budget_refusals(running, logits, allowed, width)
        chosen = torch.tensor(tokens, device=masked.device)[:, None]
        logp = (masked.gather(-1, chosen) - torch.logsumexp(masked, dim=-1, keepdim=True)).squeeze(-1).tolist()

        # -- advance ----------------------------------------------------------------------
        tm = time.perf_counter()
        events = []
        still = []
        feed = []
        for i, r in enumerate(running):
            if r.refeed is not None:
                feed.append(r.refeed)
                r.refeed = None
                still.append(i)
                continue
            if i in dead_set:
                missing = r.cons.missing_phrases()
                why = (
                    f"no token satisfies every constraint (must-include phrases missing: {missing!r})"
                    if missing else "no token satisfies every constraint: the ban list conflicts with the grammar"
                )
                if not r.cons.grammar and missing and r.remaining(max_new_tokens) <= 1:
                    raise NoAllowedToken(
                        f"the must-include phrases {missing!r} could not all be written within the token budget "
                        "(raise max_new_tokens)"
                    )
                _backtrack(r, vocab, source, pipe, i, why + " and backtracking found no way out")
                feed.append(r.refeed)
                r.refeed = None
                still.append(i)
                continue
            tok = tokens[i]
            c = r.completion
            c.num_steps += 1
            c.logprob += logp[i]
            r.logps.append(logp[i])
            r.cons.advance(tok)
            events.append((r.index, tok))
            if r.budget is not None:
                r.budget -= 1
            if tok in eos:
                c.finish_reason = "eos" if r.budget is None else "timeout"
                continue
            c.tokens.append(tok)
            before = len(r.data)
            r.data += vocab.token_bytes[tok]
            if decoders:
                prefixes[r.index] += decoders[r.index].decode(vocab.token_bytes[tok])
            if r.cons.is_finished():
                c.finish_reason = "eos" if r.budget is None else "timeout"
                continue
            if stop_bytes:
                cut = _find_stop(r.data, stop_bytes, max(0, before - longest_stop + 1))
                if cut is not None:
                    if r.cons.grammar is None:
                        c.finish_reason = "stop"
                        r.data = r.data[:cut]
                        continue
                    if r.cons.accepts_eos():
                        c.finish_reason = "stop"
                        continue
            if r.budget is not None and r.budget <= 0:
                c.finish_reason = "timeout"
                continue
            if r.remaining(max_new_tokens) <= 0:
                c.finish_reason = "length"
                continue
            pipe.update_row(i, tok)
            feed.append(tok)
            still.append(i)
        stats.mask_seconds += time.perf_counter() - tm
        stats.sampling_seconds += tm - ts
        stats.steps += 1
        stats.new_tokens += len(events)
        if progress is not None:
            progress(len(events))
        if events:
            yield events
        if not still:
            running = []
            break
        if len(still) != len(running):
            source.select(still)
            pipe.select(still)
        running = [running[i] for i in still]
        logits = next_logits(source, feed, prefetch, [m for r in running for m in r.cons.matchers()], stats)
    else:
        raise NoAllowedToken("decoding did not finish: too many backtracking steps")

    for r in running:
        r.completion.finish_reason = r.completion.finish_reason or "length"
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
    stats.seconds += time.perf_counter() - t0
    stats.forward_seconds += getattr(source, "forward_seconds", 0.0) - fwd0
    return out


def _pick_within_budget(r, token: int, remaining: int, x: torch.Tensor, masked: torch.Tensor, pipe, generator,
                        cons=None) -> int:
    """Pick again for a row whose ``token`` overruns the budget (`RowConstraints.overruns_budget`):
    up to ``CLOSING_CHECK_TOKENS`` draws without the refused tokens, then the first token of the
    shortest known completion.  The document is then shortened to fit: ``closed_early``.
    ``cons``: the row's constraints where the pick is (speculative decoding picks ahead of
    them); the row's own by default."""
    cons = r.cons if cons is None else cons
    r.completion.closed_early = True
    x = x.clone()  # (the row's log-probabilities stay those of its masks)
    for _ in range(CLOSING_CHECK_TOKENS):
        x[0, token] = NEG_INF
        if not bool(torch.isfinite(x[0]).any()):
            break
        token = int(pipe.pick(x, generator)[0])
        if not cons.overruns_budget(token, remaining):
            return token
    closing = [int(t) for t in cons.grammar.closing_tokens() if bool(torch.isfinite(masked[int(t)]))]
    return closing[0] if closing else token


def _note_budget_refusals(running, logits: torch.Tensor, allowed: torch.Tensor, width: int) -> None:
    """Mark the rows whose budget mask refused the model's most likely token (under the
    constraints alone) at this step: their documents are being closed early."""
    for i, r in enumerate(running):
        before = r.cons.restricted
        if before is None or r.completion.closed_early or r.refeed is not None:
            continue
        size = min(r.cons.cons.vocab.size, width)
        plain = np.unpackbits(before.view(np.uint8), count=size, bitorder="little").astype(bool)
        scores = logits[i, :size].float().cpu().numpy()
        top = int(np.flatnonzero(plain)[np.argmax(scores[plain])]) if plain.any() else -1
        if top >= 0 and not bool(allowed[i, top]):
            r.completion.closed_early = True


def decode(source: LogitsSource, prompts, constraints, params: SamplingParams = SamplingParams(), **kw) -> list[Completion]:
    """Run `iter_decode` to the end and return the completions."""
    gen = iter_decode(source, prompts, constraints, params, **kw)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value


def _find_stop(data: bytearray, stops: list[bytes], start: int) -> int | None:
    best = None
    for s in stops:
        i = data.find(s, start)
        if i >= 0 and (best is None or i < best):
            best = i
    return best


def prefill(source: LogitsSource, prompts: Sequence[Sequence[int]], vocab, stats: GenerationStats) -> torch.Tensor:
    """Run the prompts once (timed into ``stats``); refuse logits narrower than the vocabulary."""
    tp = time.perf_counter()
    logits = source.prefill(prompts)
    stats.prefill_seconds += time.perf_counter() - tp
    if logits.shape[-1] < vocab.size:
        from guided.errors import TokenizerMismatch

        raise TokenizerMismatch(
            f"the model's logits have {logits.shape[-1]} entries but the vocabulary has {vocab.size} tokens"
        )
    return logits


def _token_text(vocab):
    def text(token_id: int) -> str:
        return vocab.token_bytes[token_id].decode("utf-8", errors="replace") if 0 <= token_id < vocab.size else ""

    return text
