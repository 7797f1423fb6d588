"""Decoders: beam search = exhaustive search on a fake model, KV cache = full recompute,
budget-aware closing, per-row matchers, seeds, stop strings, timeouts."""

from __future__ import annotations

import math
import re

import pytest
import torch

import guided
from guided.decoding import (
    Constraints,
    GenerationStats,
    ModelRunner,
    RowConstraints,
    beam_search,
    decode,
    normalized_score,
)
from guided.decoding.fake import TableModel
from guided.decoding.sampler import allowed_mask
from guided.sampling import LogitsPipeline, SamplingParams

GREEDY = SamplingParams(temperature=0)
TOY = guided.Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"<eos>"], eos_token_ids=[3])
EOS = 3


def exhaustive(model: TableModel, prompt, cons: Constraints, max_new: int, alpha: float, kind: str):
    """Every sequence the decoder could produce, with its masked, renormalised log-prob."""
    out = []
    pipe = LogitsPipeline(SamplingParams(), [prompt], model.width, torch.device("cpu"))

    def rec(seq, row: RowConstraints, logprob):
        remaining = max_new - len(seq)
        if remaining == 0:
            out.append((normalized_score(logprob, len(seq), alpha, kind), tuple(seq), row.accepts_eos()))
            return
        allowed = allowed_mask([row], [remaining], cons, model.width, torch.device("cpu"))
        logp = torch.log_softmax(pipe.masked(model.fn(tuple(prompt) + tuple(seq))[None], allowed), -1)[0]
        for t in range(model.width):
            lp = logp[t].item()
            if lp == -math.inf:
                continue
            if t == EOS:
                out.append((normalized_score(logprob + lp, len(seq), alpha, kind), tuple(seq), True))
                continue
            child = row.copy()
            child.advance(t)
            if child.is_finished():
                out.append((normalized_score(logprob + lp, len(seq) + 1, alpha, kind), tuple(seq) + (t,), True))
            else:
                rec(seq + [t], child, logprob + lp)

    rec([], cons.start(), 0.0)
    out.sort(key=lambda item: (not item[2], -item[0]))
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("alpha, kind", [(0.0, "average"), (1.0, "average"), (0.7, "gnmt"), (-0.5, "average")])
@pytest.mark.parametrize("pattern", [None, r"(a|b)+", r"ab?a*"])
def test_beam_search_equals_exhaustive_search(seed, alpha, kind, pattern):
    model = TableModel.random(width=4, seed=seed)
    grammar = guided.compile(guided.Regex(pattern), TOY) if pattern else None
    cons = Constraints.build(TOY, grammar=grammar)
    max_new = 4
    truth = exhaustive(model, [0], cons, max_new, alpha, kind)
    n = 5
    got = beam_search(
        model, [[0]], cons, num_beams=200, num_return=n, length_penalty=alpha, length_normalization=kind,
        early_stopping="never", max_new_tokens=max_new,
    )[0]
    assert [tuple(c.tokens) for c in got] == [seq for _, seq, _ in truth[:n]]
    for c, (score, _, _) in zip(got, truth):
        assert normalized_score(c.logprob, len(c.tokens), alpha, kind) == pytest.approx(score, abs=1e-5)


def test_small_beams_never_beat_exhaustive_and_are_valid():
    grammar = guided.compile(guided.Regex(r"(ab|b)a+"), TOY)
    cons = Constraints.build(TOY, grammar=grammar)
    for seed in range(10):
        model = TableModel.random(width=4, seed=seed)
        truth = exhaustive(model, [1], cons, 5, 1.0, "average")
        got = beam_search(model, [[1]], cons, num_beams=2, num_return=2, max_new_tokens=5)[0]
        assert got[0].logprob / max(len(got[0].tokens), 1) <= truth[0][0] + 1e-6
        for c in got:
            assert c.complete and re.fullmatch(r"(ab|b)a+", c.text)


def test_kv_cache_never_reruns_the_prompt():
    model = TableModel.random(width=4, seed=0)
    decode(model, [[0, 1, 2], [1]], Constraints.build(TOY), SamplingParams(), max_new_tokens=6, seed=0)
    assert model.calls[0] == 4  # prefill: the prompts once
    assert all(c <= 2 for c in model.calls[1:])  # then one token per running row


def test_cached_batched_greedy_equals_full_recompute(tiny_model):
    prompts = [[1, 2, 3, 4, 5], [7, 8], [9, 10, 11]]
    cons = Constraints.build(tiny_model.vocab)
    got = decode(ModelRunner(tiny_model), prompts, cons, GREEDY, max_new_tokens=8)
    allowed = allowed_mask([cons.start()], [None], cons, tiny_model.logits_width, torch.device("cpu"))[0]
    for prompt, c in zip(prompts, got):
        seq = list(prompt)
        ref = []
        with torch.inference_mode():
            for _ in range(8):
                logits = tiny_model.hf(input_ids=torch.tensor([seq])).logits[0, -1]
                tok = int(torch.where(allowed, logits, -math.inf).argmax())
                ref.append(tok)
                if tok in tiny_model.vocab.eos_token_ids:
                    break
                seq.append(tok)
        assert c.tokens == [t for t in ref if t not in tiny_model.vocab.eos_token_ids]


BUDGET_CASES = [
    (r"[a-z]{3,8}( [a-z]{3,8}){1,4}\.", 8),
    (r'\{"id": [0-9]{1,4}, "tags": \[("[a-z]{1,6}"(, "[a-z]{1,6}")*)?\]\}', 21),
    (r"-?[0-9]{1,6}(\.[0-9]{1,3})?", 1),
    (r"(yes|no|maybe)( because [a-z ]{1,40})?", 2),
]


@pytest.mark.parametrize("pattern, shortest", BUDGET_CASES)
def test_budget_aware_closing_always_parses(tiny_model, pattern, shortest):
    """Sampling a random model (an adversary): whatever max_new_tokens, once it is at least the
    shortest document's length in bytes, the output is a complete document."""
    grammar = guided.compile(guided.Regex(pattern), tiny_model.vocab)
    cons = Constraints.build(tiny_model.vocab, grammar=grammar)
    runner = ModelRunner(tiny_model)
    for budget in (shortest, shortest + 1, shortest + 3, shortest + 10):
        prompts = [[1, 2, 3 + i] for i in range(4)]
        for c in decode(runner, prompts, cons, SamplingParams(temperature=1.5), max_new_tokens=budget, seed=budget):
            assert c.complete, (budget, c.text)
            assert re.fullmatch(pattern, c.text), (budget, c.text)
            assert c.num_steps <= budget


def test_per_row_matchers_in_a_batch(tiny_model):
    vocab = tiny_model.vocab
    cons = Constraints.build(vocab)
    patterns = [r"[0-9]{2,4}", r"(red|green|blue)", r"[a-z]+@[a-z]+\.com"]
    rows = [RowConstraints(cons, guided.compile(guided.Regex(p), vocab).matcher(), None, None) for p in patterns]
    out = decode(
        ModelRunner(tiny_model), [[1, 2], [3, 4, 5, 6], [7]], cons, SamplingParams(), max_new_tokens=16, seed=3,
        row_constraints=rows,
    )
    for p, c in zip(patterns, out):
        assert re.fullmatch(p, c.text), (p, c.text)


def test_seeded_determinism(tiny_model):
    runner = ModelRunner(tiny_model)
    cons = Constraints.build(tiny_model.vocab)
    a = decode(runner, [[1, 2, 3]] * 2, cons, SamplingParams(temperature=1.0), max_new_tokens=10, seed=11)
    b = decode(runner, [[1, 2, 3]] * 2, cons, SamplingParams(temperature=1.0), max_new_tokens=10, seed=11)
    c = decode(runner, [[1, 2, 3]] * 2, cons, SamplingParams(temperature=1.0), max_new_tokens=10, seed=12)
    assert [x.tokens for x in a] == [x.tokens for x in b]
    assert [x.tokens for x in a] != [x.tokens for x in c]
    assert a[0].tokens != a[1].tokens  # rows draw independently


def test_stop_strings_and_stats():
    # a deterministic "model": always prefers "ab" then "a"
    vocab = TOY
    model = TableModel.from_probs([0.3, 0.1, 0.5, 0.1])
    cons = Constraints.build(vocab)
    stats = GenerationStats()
    out = decode(model, [[0]], cons, GREEDY, max_new_tokens=10, stop=["bab"], stats=stats)[0]
    assert out.text == "a" and out.finish_reason == "stop"  # "ab" + "ab" = "abab": cut before "bab"
    assert stats.new_tokens == 2 and stats.steps == 2 and stats.seconds > 0
    # under a grammar, a stop string only ends a complete document and stays in it
    g = guided.compile(guided.Regex(r"(ab)+"), vocab)
    out = decode(model, [[0]], Constraints.build(vocab, grammar=g), GREEDY, max_new_tokens=10, stop=["bab"])[0]
    assert out.text == "abab" and out.finish_reason == "stop"


def test_timeout_closes_documents(tiny_model):
    pattern = r"[a-z ]{1,200}\."
    cons = Constraints.build(tiny_model.vocab, grammar=guided.compile(guided.Regex(pattern), tiny_model.vocab))
    out = decode(ModelRunner(tiny_model), [[1, 2]], cons, SamplingParams(), max_new_tokens=500, timeout=0.0, seed=0)[0]
    assert re.fullmatch(pattern, out.text) and out.num_steps <= 3
    free = decode(ModelRunner(tiny_model), [[1, 2]], Constraints.build(tiny_model.vocab), SamplingParams(),
                  max_new_tokens=500, timeout=0.0, seed=0)[0]
    assert free.finish_reason == "timeout" and free.num_steps == 0


def test_constrained_beam_search_on_a_model_is_valid(tiny_model):
    pattern = r'\{"name": "[a-z]{1,8}", "age": [0-9]{1,3}\}'
    cons = Constraints.build(tiny_model.vocab, grammar=guided.compile(guided.Regex(pattern), tiny_model.vocab))
    for budget in (23, 40):  # the shortest document has 23 bytes
        out = beam_search(ModelRunner(tiny_model), [[1, 2, 3], [4]], cons, num_beams=3, num_return=3,
                          max_new_tokens=budget)
        for group in out:
            assert len(group) == 3
            for c in group:
                assert re.fullmatch(pattern, c.text) and c.complete, c.text
            scores = [c.score(1.0) for c in group]
            assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("run", ["decode", "beam"])
def test_logits_narrower_than_the_vocabulary_are_refused(run):
    from guided import TokenizerMismatch
    from guided.decoding import Constraints, beam_search, decode
    from guided.decoding.fake import TableModel

    vocab = guided.Vocabulary.from_token_bytes([b"a", b"b", b"c", b"<eos>"], eos_token_ids=[3])
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex("a+"), vocab))
    narrow = TableModel.uniform(2)
    with pytest.raises(TokenizerMismatch, match="logits have 2 entries"):
        if run == "decode":
            decode(narrow, [[0]], cons, guided.SamplingParams(temperature=0), max_new_tokens=2)
        else:
            beam_search(narrow, [[0]], cons, num_beams=2, max_new_tokens=2)
