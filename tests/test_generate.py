"""The generate() API: constraints, return types, batches, n / best_of, beams, streaming, stats."""

from __future__ import annotations

import json
import re

import pytest

import guided
from guided.decoding import GenerationStats
from guided.generate import FrontendUnavailable, IncompleteOutput, resolve_constraint


def test_regex_and_choices_are_valid(tiny_model):
    for seed in range(3):
        out = guided.generate(tiny_model, "Year?", regex=r"(19|20)[0-9]{2}", temperature=1.0, seed=seed)
        assert re.fullmatch(r"(19|20)[0-9]{2}", out)
    choices = ["red", "green", "light blue", "a.b (c)"]
    for seed in range(4):
        assert guided.generate(tiny_model, "Pick", choices=choices, temperature=1.0, seed=seed) in choices


def test_chat_messages_and_batches(tiny_model):
    messages = [{"role": "system", "content": "Answer."}, {"role": "user", "content": "Number?"}]
    assert re.fullmatch(r"[0-9]{3}", guided.generate(tiny_model, messages, regex=r"[0-9]{3}"))
    outs = guided.generate(tiny_model, ["a", "bb bb", messages], regex=r"[a-z]{2,5}", temperature=1.0, seed=0)
    assert len(outs) == 3 and all(re.fullmatch(r"[a-z]{2,5}", o) for o in outs)


def test_n_best_of_and_score(tiny_model):
    outs = guided.generate(tiny_model, "x", regex=r"[a-z ]{1,30}\.", temperature=1.0, n=3, best_of=6, seed=1,
                           max_new_tokens=20)
    assert len(outs) == 3 and all(re.fullmatch(r"[a-z ]{1,30}\.", o) for o in outs)
    longest = guided.generate(tiny_model, "x", regex=r"[a-z ]{1,30}\.", temperature=1.0, best_of=6, seed=1,
                              score=len, max_new_tokens=20)
    assert len(longest) == max(len(o) for o in guided.generate(
        tiny_model, "x", regex=r"[a-z ]{1,30}\.", temperature=1.0, n=6, seed=1, max_new_tokens=20))


def test_beam_search_returns_n_valid(tiny_model):
    pattern = r'\{"k": [0-9]{1,3}\}'
    outs = guided.generate(tiny_model, "json", regex=pattern, num_beams=4, n=2, max_new_tokens=20)
    assert len(outs) == 2 and all(re.fullmatch(pattern, o) for o in outs)
    assert json.loads(outs[0])["k"] >= 0


def test_stream_matches_plain_call(tiny_model):
    kw = dict(regex=r"[a-z ]{3,40}\.", temperature=1.0, seed=5, max_new_tokens=25)
    chunks = list(guided.generate(tiny_model, "s", stream=True, **kw))
    assert len(chunks) > 1 and "".join(chunks) == guided.generate(tiny_model, "s", **kw)
    free = dict(temperature=1.0, seed=3, max_new_tokens=30, stop=["e"])
    text = guided.generate(tiny_model, "s", **free)
    assert "e" not in text
    assert "".join(guided.generate(tiny_model, "s", stream=True, **free)) == text


def test_stats_and_seed(tiny_model):
    stats = GenerationStats()
    a = guided.generate(tiny_model, "hello", temperature=1.0, seed=9, max_new_tokens=12, stats=stats)
    assert a == guided.generate(tiny_model, "hello", temperature=1.0, seed=9, max_new_tokens=12)
    assert stats.new_tokens >= 1 and stats.forward_seconds > 0 and stats.tokens_per_second > 0
    assert stats.prompt_tokens > 0 and "tok/s" in str(stats)


def test_budget_too_small_is_an_error_not_invalid_text(tiny_model):
    with pytest.raises(IncompleteOutput):
        guided.generate(tiny_model, "x", regex=r"[a-z]{300}", max_new_tokens=3)  # no 3 tokens spell 300 letters


def test_ban_and_reward_through_generate(tiny_model):
    for seed in range(3):
        out = guided.generate(tiny_model, "x", temperature=1.0, seed=seed, max_new_tokens=20, ban=["the", "a"],
                              ban_case_sensitive=False)
        assert guided.sampling.phrases.find_match(out, ("the", "a"), guided.sampling.PhraseOptions(case_sensitive=False)) is None
    calls = []

    def likes_e(prefixes, conts):
        calls.append(len(conts))
        return [c.count("e") for c in conts]

    out = guided.generate(tiny_model, "x", temperature=1.0, seed=0, max_new_tokens=10, reward=likes_e,
                          reward_weight=5.0, reward_top_k=8)
    plain = guided.generate(tiny_model, "x", temperature=1.0, seed=0, max_new_tokens=10)
    assert calls and max(calls) <= 8
    assert out.count("e") > plain.count("e")


def test_constraint_dispatch():
    spec, parse = resolve_constraint(regex="a+")
    assert spec == guided.Regex("a+") and parse("aa") == "aa"
    assert resolve_constraint()[0] is None
    with pytest.raises(TypeError):
        resolve_constraint(regex="a", choices=["b"])
    if not hasattr(guided, "Grammar"):
        with pytest.raises(FrontendUnavailable, match="Grammar"):
            resolve_constraint(grammar="start: 'a'")
    if not hasattr(guided, "JsonSchema"):
        with pytest.raises(FrontendUnavailable):
            resolve_constraint(json_schema={"type": "integer"})
        with pytest.raises(NotImplementedError):
            resolve_constraint(json_schema={"type": "integer"})


@pytest.mark.model
def test_real_model_end_to_end(smollm2_model):
    answer = guided.generate(smollm2_model, "Is the sky blue? Answer yes or no.", choices=["yes", "no"])
    assert answer in ("yes", "no")
    pattern = r'\{"name": "[A-Za-z ]{1,20}", "age": [0-9]{1,3}\}'
    stats = GenerationStats()
    text = guided.generate(smollm2_model, "Describe a person as JSON.", regex=pattern, max_new_tokens=24,
                           stats=stats)
    assert re.fullmatch(pattern, text) and isinstance(json.loads(text)["age"], int)
    assert stats.mask_seconds < stats.seconds


@pytest.mark.model
def test_real_model_extracts_the_person_at_small_budgets(smollm2_model):
    """The issue's new-user case with the real default model: the model's own answer survives
    every budget it fits in (budget-aware closing no longer empties it)."""
    from pydantic import BaseModel

    class P(BaseModel):
        name: str
        age: int

    prompt = ('Extract the person from this text as JSON: "My name is John Carpenter and I am 42 years old." '
              'Answer like {"name": "...", "age": N}.')
    for budget in (24, 30, 60, 64):
        stats = GenerationStats()
        out = guided.generate(smollm2_model, prompt, schema=P, max_new_tokens=budget, stats=stats)
        assert out == P(name="John Carpenter", age=42), (budget, out)
        assert "closed_early" not in stats.finish_reasons, (budget, stats.finish_reasons)
