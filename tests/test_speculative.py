"""Constrained speculative decoding and jump-forward: greedy equivalence, exact sampling
distribution, rollback of matchers and caches, drafters, stats and the generate() API."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest
import torch

import guided
from guided.decoding import Constraints, ModelRunner, decode
from guided.decoding.drafters import (
    DraftModelDrafter,
    Drafter,
    EarlyExitDrafter,
    PromptLookupDrafter,
    SyncedSource,
    early_exit_model,
    make_drafter,
)
from guided.decoding.fake import TableModel
from guided.decoding.speculative import ForcedTokenizer, SpeculativeStats, speculative_decode
from guided.sampling import SamplingParams

GREEDY = SamplingParams(temperature=0)

# -- helpers ----------------------------------------------------------------------------------


def chi2_critical(df: int, z: float = 3.29) -> float:
    """Wilson-Hilferty upper quantile of chi-square (z=3.29: p ~ 0.0005)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def memo_table(width: int, seed: int, scale: float = 2.0) -> TableModel:
    """`TableModel.random` with memoised rows (fast for big sampling batches)."""
    cache: dict = {}

    def fn(seq):
        hit = cache.get(seq)
        if hit is None:
            g = torch.Generator().manual_seed(zlib.crc32(repr((seed, seq)).encode()))
            hit = cache[seq] = torch.randn(width, generator=g) * scale
        return hit

    return TableModel(fn, width)


class RandomLookup(Drafter):
    """A deliberately bad lookup drafter: random tokens (mostly rejected, exercises rollback)."""

    kind = "lookup"

    def __init__(self, width: int, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.width = width

    def propose(self, seq, n):
        return [int(t) for t in self.rng.integers(0, self.width, size=n)]


TOY = [b"a", b"b", b"ab", b"c", b"{", b"}", b'"', b":", b" ", b",", b"<eos>"]
TOY_PATTERNS = [r"(ab|c)+", r'\{"a": (b|c)+\}', r"a*b?c{0,3}", r'\{"ab": "c+", "b": a\}', r"(a|b)(a|b|c)*"]


def toy_vocab():
    return guided.Vocabulary.from_token_bytes(TOY, eos_token_ids=[len(TOY) - 1])


def drafters_for(width: int, seed: int):
    return [
        None,
        PromptLookupDrafter(max_ngram=2),
        RandomLookup(width, seed),
        DraftModelDrafter(memo_table(width, seed + 100)),
    ]


# -- greedy equivalence -----------------------------------------------------------------------


@pytest.mark.parametrize("pattern", TOY_PATTERNS)
@pytest.mark.parametrize("seed", range(4))
def test_greedy_equals_plain_on_table_models(pattern, seed):
    vocab = toy_vocab()
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex(pattern), vocab))
    prompts = [[0, 1], [3], [4, 6, 0, 7]]
    for max_new in (3, 12):
        plain = decode(memo_table(len(TOY), seed), prompts, cons, GREEDY, max_new_tokens=max_new)
        for drafter in drafters_for(len(TOY), seed):
            for jf in (False, True):
                stats = SpeculativeStats()
                out = speculative_decode(
                    memo_table(len(TOY), seed), prompts, cons, GREEDY, drafter=drafter, jump_forward=jf,
                    max_new_tokens=max_new, stats=stats,
                )
                for a, b in zip(out, plain):
                    assert (a.tokens, a.text, a.finish_reason, a.complete) == (b.tokens, b.text, b.finish_reason, b.complete)
                    assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
                assert stats.target_forwards <= stats.plain_forwards


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=0, repetition_penalty=1.5),
        SamplingParams(temperature=0, no_repeat_ngram_size=2, frequency_penalty=0.5),
        SamplingParams(temperature=0, logit_bias={1: 2.0}),
    ],
)
def test_greedy_equals_plain_with_stateful_penalties(params):
    vocab = toy_vocab()
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex(r"(a|b|c|ab)+"), vocab))
    prompts = [[0, 1, 0], [3, 3]]
    plain = decode(memo_table(len(TOY), 7), prompts, cons, params, max_new_tokens=10)
    for drafter in drafters_for(len(TOY), 7):
        out = speculative_decode(memo_table(len(TOY), 7), prompts, cons, params, drafter=drafter, max_new_tokens=10)
        assert [c.tokens for c in out] == [c.tokens for c in plain]


def test_greedy_free_text_and_stop_strings():
    vocab = toy_vocab()
    cons = Constraints.build(vocab)
    for stop in ((), ("c",), ("ab",)):
        plain = decode(memo_table(len(TOY), 3), [[0], [1, 2]], cons, GREEDY, max_new_tokens=15, stop=stop)
        out = speculative_decode(
            memo_table(len(TOY), 3), [[0], [1, 2]], cons, GREEDY, drafter=PromptLookupDrafter(), max_new_tokens=15, stop=stop
        )
        assert [(c.tokens, c.text, c.finish_reason) for c in out] == [(c.tokens, c.text, c.finish_reason) for c in plain]


JSONISH = r'\{"name": "[^"]{1,12}", "age": [0-9]{1,3}, "city": "[a-z ]{1,12}"\}'


@pytest.fixture(scope="module")
def tiny_draft_model():
    return guided.models.random_model(num_layers=1, seed=1)


@pytest.mark.parametrize("spec", [dict(regex=JSONISH), dict(grammar="tool_call"), dict(choices=["alpha beta", "alpha gamma", "delta"])])
def test_greedy_equals_plain_on_a_tiny_model(tiny_model, tiny_draft_model, spec):
    prompts = ["Bob Stone, 42, lives in rome. As JSON:", "call the weather tool for paris"]
    plain = guided.generate(tiny_model, prompts, max_new_tokens=40, **spec)
    for draft in ("prompt-lookup", "early-exit:1", tiny_draft_model, None):
        stats = SpeculativeStats()
        out = guided.generate(tiny_model, prompts, max_new_tokens=40, draft=draft, jump_forward=True, stats=stats, **spec)
        assert out == plain, draft
        assert stats.target_forwards <= stats.plain_forwards


def test_jump_forward_saves_passes_when_the_model_follows_the_grammar():
    """A model that always agrees with canonical tokens: a fully forced document costs one
    prefill plus one verifying pass."""
    vocab = toy_vocab()
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex(r'\{"ab": "c", "b": a\}'), vocab))
    tok = ForcedTokenizer(vocab)
    ids = list(tok(b'{"ab": "c", "b": a}'))

    def fn(seq):
        done = len(seq) - 1
        logits = torch.zeros(len(TOY))
        logits[ids[done] if done < len(ids) else len(TOY) - 1] = 5.0
        return logits

    model = TableModel(fn, len(TOY))
    stats = SpeculativeStats()
    out = speculative_decode(model, [[0]], cons, GREEDY, jump_forward=True, max_new_tokens=30, stats=stats)
    plain = decode(TableModel(fn, len(TOY)), [[0]], cons, GREEDY, max_new_tokens=30)
    assert out[0].tokens == plain[0].tokens == ids
    assert stats.target_forwards == 2 and stats.plain_forwards == len(ids)
    assert model.calls == [1, len(ids)]  # prompt; then the first token and the forced rest in one pass
    assert stats.forced_accepted == len(ids) - 1


# -- sampling: exact distribution ---------------------------------------------------------


def exact_distribution(model_fn, prompt, cons, params, max_new):
    """Probability of every output of plain constrained sampling, by enumeration."""
    from guided.sampling.pipeline import LogitsPipeline
    from guided.decoding.sampler import _to_bool

    width = len(TOY)
    out: dict = {}

    def walk(row, tokens, prob):
        pipe = LogitsPipeline(params, [prompt], width, torch.device("cpu"))
        pipe.rewind(0, prompt, tokens)
        words = np.zeros((1, cons.words), dtype=np.int32)
        row.fill(words[0], max_new - len(tokens))
        x = pipe.warped(pipe.masked(model_fn(tuple(prompt + tokens))[None, :], _to_bool(words, cons, width, torch.device("cpu"))))
        p = torch.softmax(x[0].double(), -1)
        for t in torch.nonzero(p > 0).flatten().tolist():
            nxt = row.copy()
            nxt.advance(t)
            q = prob * float(p[t])
            if t in cons.vocab.eos_token_ids:
                key = tuple(tokens)
            elif nxt.is_finished() or len(tokens) + 1 >= max_new:
                key = tuple(tokens + [t])
            else:
                walk(nxt, tokens + [t], q)
                continue
            out[key] = out.get(key, 0.0) + q

    walk(cons.start(), [], 1.0)
    return out


@pytest.mark.parametrize(
    "params",
    [SamplingParams(), SamplingParams(temperature=0.7, top_k=4), SamplingParams(top_p=0.9, repetition_penalty=1.3)],
    ids=["plain", "temp-topk", "topp-penalty"],
)
@pytest.mark.parametrize("which", ["draft-model", "lookup", "jump-forward"])
def test_sampling_distribution_matches_plain(params, which):
    vocab = toy_vocab()
    pattern = r'(a|b|ab){1,3}c?' if which != "jump-forward" else r'\{"a": (b|c)(ab|"b")?\}'
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex(pattern), vocab))
    target = memo_table(len(TOY), 11, scale=1.5)
    prompt = [0, 1, 0, 2]
    max_new = 5 if which != "jump-forward" else 10
    exact = exact_distribution(target.fn, prompt, cons, params, max_new)
    drafter = {
        "draft-model": DraftModelDrafter(memo_table(len(TOY), 12, scale=1.5)),
        "lookup": PromptLookupDrafter(max_ngram=2),
        "jump-forward": None,
    }[which]
    n = 2000
    stats = SpeculativeStats()
    out = speculative_decode(
        target, [prompt] * n, cons, params, drafter=drafter, jump_forward=True, max_new_tokens=max_new, seed=1234,
        stats=stats,
    )
    counts: dict = {}
    for c in out:
        assert c.complete
        counts[tuple(c.tokens)] = counts.get(tuple(c.tokens), 0) + 1
    assert set(counts) <= set(exact)
    keys = sorted(exact, key=lambda k: -exact[k])
    # pool rare outcomes so every expected count is >= 5
    obs, exp, rest_o, rest_e = [], [], 0, 0.0
    for k in keys:
        e = exact[k] * n
        if e >= 5:
            obs.append(counts.get(k, 0))
            exp.append(e)
        else:
            rest_o += counts.get(k, 0)
            rest_e += e
    if rest_e > 0:
        obs.append(rest_o)
        exp.append(rest_e)
    chi = sum((o - e) ** 2 / e for o, e in zip(obs, exp))
    assert len(obs) >= 3
    assert chi < chi2_critical(len(obs) - 1), (chi, len(obs))
    assert stats.drafted + stats.forced_drafted > 0 and 0 < stats.accepted + stats.forced_accepted


# -- rollback: matchers and caches -----------------------------------------------------------


def test_rows_constraints_equal_a_fresh_matcher_over_the_accepted_prefix(tiny_model):
    vocab = tiny_model.vocab
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex(JSONISH), vocab))
    started = []
    real_start = cons.start

    def start():
        row = real_start()
        started.append(row)
        return row

    cons.start = start
    prompts = [tiny_model.tokenizer("Ann Lee, 7, oslo")["input_ids"], [5, 6, 7]]
    out = speculative_decode(
        ModelRunner(tiny_model), prompts, cons, GREEDY, drafter=RandomLookup(vocab.size), jump_forward=True,
        max_new_tokens=12,
    )
    for row, c in zip(started, out):
        fresh = real_start()
        for t in c.tokens:
            fresh.advance(t)
        if c.finish_reason == "eos" and not fresh.is_finished():
            fresh.advance(min(vocab.eos_token_ids))
        assert np.array_equal(row.grammar.mask(), fresh.grammar.mask())
        assert row.accepts_eos() == fresh.accepts_eos() and row.grammar.num_tokens == fresh.grammar.num_tokens
        assert row.grammar.forced_bytes() == fresh.grammar.forced_bytes()


def _row_cache(runner: ModelRunner, row: int):
    cols = torch.tensor(runner.cols[row])
    layers = runner.cache.layers
    return [(l.keys[row][:, cols], l.values[row][:, cols]) for l in layers]


def test_synced_cache_rollback_equals_a_fresh_prefill(tiny_model):
    prompt_a, prompt_b = [1, 2, 3, 4, 5], [9, 8]
    runner = ModelRunner(tiny_model)
    synced = SyncedSource(runner)
    synced.prefill([prompt_a, prompt_b])
    # a round of drafts: row 0 drafts 5 tokens, row 1 drafts 2
    draft_a, draft_b = [10, 11, 12, 13, 14], [20, 21]
    outs = synced.run([prompt_a + draft_a, prompt_b + draft_b], [5, 2])
    assert [o.shape[0] for o in outs] == [6, 3]
    # row 0 keeps 2 drafts and a correction, row 1 keeps nothing but a correction
    seq_a, seq_b = prompt_a + draft_a[:2] + [30], prompt_b + [31]
    outs = synced.run([seq_a + [40], seq_b + [41, 42]], [len(seq_a), len(seq_b)])
    for row, seq, out in ((0, seq_a + [40], outs[0]), (1, seq_b + [41, 42], outs[1])):
        fresh = ModelRunner(tiny_model)
        full = fresh.prefill([seq])
        for got, want in zip(_row_cache(runner, row), _row_cache(fresh, 0)):
            assert got[0].shape == want[0].shape
            assert torch.allclose(got[0], want[0], atol=1e-4) and torch.allclose(got[1], want[1], atol=1e-4)
        assert torch.allclose(out[-1], full[0], atol=1e-3)
    # a single row crops rejected columns away entirely
    runner1 = ModelRunner(tiny_model)
    s1 = SyncedSource(runner1)
    s1.prefill([prompt_a])
    s1.run([prompt_a + draft_a], [5])
    s1.run([prompt_a + [10, 99]], [7])
    fresh = ModelRunner(tiny_model)
    fresh.prefill([prompt_a + [10, 99]])
    assert runner1.attention_mask.shape == fresh.attention_mask.shape
    for got, want in zip(runner1.cache.layers, fresh.cache.layers):
        assert torch.allclose(got.keys, want.keys, atol=1e-4) and torch.allclose(got.values, want.values, atol=1e-4)


# -- drafters ------------------------------------------------------------------------------


def test_prompt_lookup_proposals():
    d = PromptLookupDrafter(max_ngram=3)
    assert d.propose([1, 2, 3, 4, 5, 9, 2, 3], 2) == [4, 5]
    assert d.propose([1, 2, 3], 5) == []
    assert d.propose([7, 1, 7, 2, 7], 1) == [2]  # the latest earlier occurrence
    assert d.propose([1, 2], 0) == []


def test_early_exit_view_shares_weights_and_leaves_the_model_alone(tiny_model):
    view = early_exit_model(tiny_model, 1)
    assert len(view.hf.model.layers) == 1 and len(tiny_model.hf.model.layers) == 2
    assert view.hf.lm_head.weight is tiny_model.hf.lm_head.weight
    assert view.hf.model.layers[0] is tiny_model.hf.model.layers[0]
    assert tiny_model.hf.config.num_hidden_layers == 2
    with pytest.raises(ValueError):
        early_exit_model(tiny_model, 3)
    # the full model still gives the same logits as before
    r1, r2 = ModelRunner(tiny_model), ModelRunner(guided.models.random_model(num_layers=2, seed=0))
    assert torch.allclose(r1.prefill([[1, 2, 3]]), r2.prefill([[1, 2, 3]]), atol=1e-5)
    assert isinstance(make_drafter("early-exit:1", tiny_model), EarlyExitDrafter)
    assert isinstance(make_drafter("prompt-lookup:4", tiny_model), PromptLookupDrafter)
    with pytest.raises(ValueError):
        make_drafter("medusa", tiny_model)


def test_forced_tokenizer_is_canonical(smollm2_tokenizer, smollm2_vocab):
    tok = ForcedTokenizer(smollm2_vocab, smollm2_tokenizer)
    for text in ['{"name": "', '", "age": ', ', "city": "', '"}', "<call>"]:
        assert list(tok(text.encode())) == smollm2_tokenizer.encode(text, add_special_tokens=False)
    ids = tok("é".encode()[:1] + b"")  # an incomplete UTF-8 character: nothing to force yet
    assert ids == ()
    greedy = ForcedTokenizer(smollm2_vocab)
    assert b"".join(smollm2_vocab.token_bytes[i] for i in greedy(b'", "age": ')) == b'", "age": '


# -- generate() API ---------------------------------------------------------------------------


def test_generate_api_and_fallbacks(tiny_model):
    plain = guided.generate(tiny_model, "x", regex=JSONISH, max_new_tokens=40)
    stats = SpeculativeStats()
    assert guided.generate(tiny_model, "x", regex=JSONISH, max_new_tokens=40, jump_forward=True, stats=stats) == plain
    assert stats.forced_drafted > 0 and stats.target_forwards < stats.plain_forwards
    assert stats.forward_passes_saved == stats.plain_forwards - stats.target_forwards > 0
    assert 0 < stats.acceptance_rate <= 1
    # plain GenerationStats still work; n > 1 and sampling work; unsupported options fall back
    guided.generate(tiny_model, "x", regex=JSONISH, max_new_tokens=40, draft="prompt-lookup", stats=guided.decoding.GenerationStats())
    outs = guided.generate(tiny_model, "x", regex=JSONISH, max_new_tokens=40, draft="prompt-lookup", temperature=1.0, n=2, seed=0)
    assert len(outs) == 2
    reward = lambda prefixes, conts: [0.0] * len(conts)
    assert guided.generate(tiny_model, "x", regex=JSONISH, max_new_tokens=40, draft="prompt-lookup", reward=reward) == plain
    with pytest.raises(ValueError):
        guided.generate(tiny_model, "x", regex=JSONISH, draft="bogus")


def test_sampling_is_reproducible_with_a_seed(tiny_model):
    kw = dict(regex=JSONISH, max_new_tokens=40, temperature=1.0, seed=3, draft="early-exit:1")
    assert guided.generate(tiny_model, "x", **kw) == guided.generate(tiny_model, "x", **kw)


@pytest.mark.model
def test_real_model_extraction_greedy_equivalence_and_savings(smollm2_model):
    text = "Maria Gonzalez, 34, moved to Valencia last spring to work as a nurse."
    prompt = f"Extract the person as JSON.\nText: {text}\nJSON:"
    rx = r'\{"name": "[^"]{1,40}", "age": [0-9]{1,3}, "city": "[^"]{1,40}", "job": "[^"]{1,40}"\}'
    plain = guided.generate(smollm2_model, prompt, regex=rx, max_new_tokens=60)
    stats = SpeculativeStats()
    fast = guided.generate(smollm2_model, prompt, regex=rx, max_new_tokens=60, draft="prompt-lookup", stats=stats)
    assert fast == plain
    assert stats.plain_forwards >= 2 * stats.target_forwards


def test_forced_span_boundary_follows_the_models_tokenization():
    """The grammar forces ``a``; the model prefers the longer token ``ab`` that crosses the end
    of the forced span.  Verified jump-forward lets the target re-tokenize the boundary: the
    output is ``ab`` as one token, exactly as plain decoding writes it (unverified forcing would
    have appended ``a`` + ``b``)."""
    vocab = toy_vocab()
    cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex(r"ca(b|c)c"), vocab))
    after_c = cons.start()
    after_c.advance(3)
    assert after_c.grammar.forced_bytes() == b"a"
    logits = torch.zeros(len(TOY))
    logits[2] = 3.0  # "ab"
    model = TableModel.fixed(logits)
    stats = SpeculativeStats()
    out = speculative_decode(model, [[3], [3]], cons, GREEDY, jump_forward=True, max_new_tokens=5, stats=stats)
    plain = decode(TableModel.fixed(logits), [[3]], cons, GREEDY, max_new_tokens=5)
    assert out[0].tokens == out[1].tokens == plain[0].tokens == [3, 2, 3]
    assert out[0].text == "cabc"
    assert (stats.forced_drafted, stats.forced_accepted) == (4, 2)  # "a" rejected (twice), the final "c" kept
