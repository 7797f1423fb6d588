"""Processors against exact math and Hugging Face's own processors; seeded sampling frequencies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import transformers.generation.logits_process as hf
from hypothesis import given, settings, strategies as st

from guided.sampling import LogitsPipeline, SamplingParams, processors as P, sample

CPU = torch.device("cpu")


def logits_of(probs):
    return torch.tensor([probs], dtype=torch.float32).log()


def kept(x: torch.Tensor) -> list[bool]:
    return torch.isfinite(x)[0].tolist()


def chi2_critical(df: int, z: float = 3.29) -> float:
    """Wilson-Hilferty upper quantile of chi-square (z=3.29: p ~ 0.0005)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def chi2(counts: np.ndarray, expected_p: np.ndarray) -> float:
    n = counts.sum()
    exp = expected_p * n
    nz = exp > 0
    assert counts[~nz].sum() == 0, "sampled a token of probability 0"
    return float(((counts[nz] - exp[nz]) ** 2 / exp[nz]).sum())


# -- exact math on toy logits ----------------------------------------------------------------


def test_top_p_worked_example_keeps_three():
    x = P.top_p(logits_of([0.4, 0.3, 0.15, 0.1, 0.05]), 0.8)
    assert kept(x) == [True, True, True, False, False]
    # exactly reaching p stops there: 0.4 + 0.3 + 0.15 = 0.85 >= 0.85
    assert kept(P.top_p(logits_of([0.4, 0.3, 0.15, 0.1, 0.05]), 0.7)) == [True, True, False, False, False]
    assert kept(P.top_p(logits_of([0.4, 0.3, 0.15, 0.1, 0.05]), 1.0)) == [True] * 5


@pytest.mark.parametrize(
    "t, expected",
    [
        (1.0, [0.0900306, 0.2447285, 0.6652410]),
        (0.5, [0.0158762, 0.1173104, 0.8668133]),
        (2.0, [0.1863237, 0.3071959, 0.5064804]),
        (100.0, [0.3300056, 0.3333222, 0.3366722]),
    ],
)
def test_temperature_table(t, expected):
    probs = torch.softmax(P.temperature(torch.tensor([[1.0, 2.0, 3.0]]), t), -1)[0]
    assert probs.tolist() == pytest.approx(expected, abs=1e-5)


def test_temperature_zero_is_greedy():
    x = P.temperature(torch.tensor([[1.0, 3.0, 2.0]]), 0.0)
    assert kept(x) == [False, True, False]
    params = SamplingParams(temperature=0)
    pipe = LogitsPipeline(params, [[0]], 3, CPU)
    for seed in range(5):
        g = torch.Generator().manual_seed(seed)
        assert pipe.pick(pipe.scores(torch.tensor([[1.0, 3.0, 2.0]]), None), g).item() == 1


def test_top_k_min_p_epsilon_eta_exact():
    probs = [0.5, 0.25, 0.15, 0.07, 0.03]
    assert kept(P.top_k(logits_of(probs), 2)) == [True, True, False, False, False]
    assert kept(P.min_p(logits_of(probs), 0.3)) == [True, True, True, False, False]  # >= 0.15
    assert kept(P.epsilon(logits_of(probs), 0.1)) == [True, True, True, False, False]
    h = -sum(p * math.log(p) for p in probs)
    cut = min(0.1, math.sqrt(0.1) * math.exp(-h))  # 0.0734...
    assert kept(P.eta(logits_of(probs), 0.1)) == [p >= cut for p in probs]
    # epsilon and eta never drop the top token
    assert kept(P.epsilon(logits_of([0.3, 0.3, 0.4]), 0.9)) == [False, False, True]


def test_typical_exact():
    probs = np.array([0.4, 0.3, 0.2, 0.1])
    h = -(probs * np.log(probs)).sum()
    dev = np.abs(-np.log(probs) - h)  # order: 0.3, 0.2, 0.4, 0.1
    assert list(np.argsort(dev)) == [1, 2, 0, 3]
    assert kept(P.typical(logits_of(list(probs)), 0.45)) == [False, True, True, False]
    assert kept(P.typical(logits_of(list(probs)), 0.6)) == [True, True, True, False]


def test_penalties_exact():
    x = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    seen = torch.tensor([[True, True, False, False]])
    assert P.repetition_penalty(x, seen, 2.0).tolist() == [[1.0, -4.0, 1.0, 0.5]]
    counts = torch.tensor([[0.0, 2.0, 1.0, 0.0]])
    assert P.frequency_presence_penalty(x, counts, 0.5, 0.25).tolist() == [[2.0, -3.25, 0.25, 0.5]]
    assert P.logit_bias(x, {3: 10.0}).tolist() == [[2.0, -2.0, 1.0, 10.5]]
    banned = P.no_repeat_ngram_mask([[1, 2, 3, 1, 2], [1, 2]], 3, 5)
    assert banned[0].tolist() == [False, False, False, True, False] and not banned[1].any()


# -- agreement with Hugging Face's processors on random logits --------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_same_as_hugging_face(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 200, generator=g) * 3
    ids = torch.randint(0, 200, (3, 12), generator=g)
    cases = [
        (P.top_k(x, 7), hf.TopKLogitsWarper(7)(ids, x.clone())),
        (P.top_p(x, 0.7), hf.TopPLogitsWarper(0.7)(ids, x.clone())),
        (P.min_p(x, 0.1), hf.MinPLogitsWarper(0.1)(ids, x.clone())),
        (P.typical(x, 0.6), hf.TypicalLogitsWarper(0.6)(ids, x.clone())),
        (P.epsilon(x, 0.01), hf.EpsilonLogitsWarper(0.01)(ids, x.clone())),
        (P.eta(x, 0.01), hf.EtaLogitsWarper(0.01, device="cpu")(ids, x.clone())),
        (P.temperature(x, 0.7), hf.TemperatureLogitsWarper(0.7)(ids, x.clone())),
    ]
    for ours, theirs in cases:
        assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
        fin = torch.isfinite(ours)
        assert torch.allclose(ours[fin], theirs[fin])
    seen = torch.zeros(3, 200, dtype=torch.bool)
    seen.scatter_(1, ids, True)
    assert torch.allclose(P.repetition_penalty(x, seen, 1.3), hf.RepetitionPenaltyLogitsProcessor(1.3)(ids, x.clone()))
    theirs = hf.NoRepeatNGramLogitsProcessor(2)(ids, x.clone())
    banned = torch.from_numpy(P.no_repeat_ngram_mask(ids.tolist(), 2, 200))
    assert torch.equal(banned, torch.isinf(theirs) & torch.isfinite(x))


# -- the pipeline can never empty an allowed set -------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    top_k=st.integers(0, 20),
    top_p=st.floats(0.01, 1.0),
    min_p=st.floats(0.0, 1.0),
    typical_p=st.floats(0.01, 1.0),
    eps=st.floats(0.0, 0.5),
    eta=st.floats(0.0, 0.5),
    temp=st.floats(0.0, 3.0),
    n_allowed=st.integers(1, 30),
)
def test_truncation_never_removes_every_allowed_token(seed, top_k, top_p, min_p, typical_p, eps, eta, temp, n_allowed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 64, generator=g) * 5
    allowed = torch.zeros(2, 64, dtype=torch.bool)
    allowed[:, torch.randperm(64, generator=g)[:n_allowed]] = True
    params = SamplingParams(
        temperature=temp, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p, epsilon=eps, eta=eta,
        repetition_penalty=1.2, no_repeat_ngram_size=2, logit_bias={3: -math.inf},
    )
    pipe = LogitsPipeline(params, [[1, 2, 1], [5, 5, 5]], 64, CPU)
    s = pipe.scores(x, allowed)
    fin = torch.isfinite(s)
    assert fin.any(dim=-1).all()
    assert not (fin & ~allowed).any()
    tok = pipe.pick(s, g)
    assert allowed[torch.arange(2), tok].all()


# -- seeded sampling matches the expected distribution ------------------------------------------


def empirical(x: torch.Tensor, n: int = 20_000, seed: int = 0) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    toks = sample(x.expand(n, -1).contiguous(), g)
    return np.bincount(toks.numpy(), minlength=x.shape[-1])


@pytest.mark.parametrize(
    "params, expected",
    [
        (SamplingParams(), [0.4, 0.3, 0.15, 0.1, 0.05]),
        (SamplingParams(top_p=0.8), [0.4 / 0.85, 0.3 / 0.85, 0.15 / 0.85, 0, 0]),
        (SamplingParams(top_k=2), [4 / 7, 3 / 7, 0, 0, 0]),
        (SamplingParams(temperature=0.5), list(np.array([0.4, 0.3, 0.15, 0.1, 0.05]) ** 2 / 0.285)),
    ],
)
def test_sampled_frequencies_chi_square(params, expected):
    pipe = LogitsPipeline(params, [[]], 5, CPU)
    x = pipe.scores(logits_of([0.4, 0.3, 0.15, 0.1, 0.05]), None)
    counts = empirical(x)
    exp = np.array(expected)
    df = int((exp > 0).sum()) - 1
    assert chi2(counts, exp) < chi2_critical(df)


def test_sampling_under_mask_is_renormalised():
    allowed = torch.tensor([[False, True, True, False, True]])
    pipe = LogitsPipeline(SamplingParams(), [[]], 5, CPU)
    x = pipe.scores(logits_of([0.4, 0.3, 0.15, 0.1, 0.05]), allowed)
    exp = np.array([0, 0.3, 0.15, 0, 0.05]) / 0.5
    assert chi2(empirical(x), exp) < chi2_critical(2)


def test_seeded_sampling_is_reproducible():
    x = torch.randn(4, 1000)
    a = sample(x, torch.Generator().manual_seed(7))
    b = sample(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_reward_reweighting_exact():
    # uniform over 4 tokens; r = 1 for token 0 ("good"), λ = ln 3 -> P(0) = 3/6, others 1/6
    seen = []

    def reward(prefixes, conts):
        seen.append(len(conts))
        return [1.0 if c == "good" else 0.0 for c in conts]

    names = ["good", "b", "c", "d"]
    params = SamplingParams(reward=reward, reward_weight=math.log(3), reward_top_k=4)
    pipe = LogitsPipeline(params, [[]], 4, CPU, token_text=lambda t: names[t])
    x = pipe.reweighted(pipe.scores(torch.zeros(1, 4), None), [""])
    assert torch.softmax(x, -1)[0].tolist() == pytest.approx([0.5, 1 / 6, 1 / 6, 1 / 6])
    assert seen == [4]
    assert chi2(empirical(x), np.array([0.5, 1 / 6, 1 / 6, 1 / 6])) < chi2_critical(3)
    # only the top candidates are scored; the others are dropped
    pipe2 = LogitsPipeline(SamplingParams(reward=reward, reward_top_k=2), [[]], 4, CPU, token_text=lambda t: names[t])
    y = pipe2.reweighted(torch.tensor([[0.0, 3.0, 2.0, 1.0]]), [""])
    assert kept(y) == [False, True, True, False]


def test_params_validation():
    with pytest.raises(ValueError):
        SamplingParams(top_p=0)
    with pytest.raises(ValueError):
        SamplingParams(temperature=-1)
