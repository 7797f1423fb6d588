"""reasoning=: free thought inside think markers first (a token budget forces the end marker), then the constraint."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydantic import BaseModel

import guided
from guided.engine.reasoning import ThoughtBudget
from guided.errors import UsageError
from guided.frontends.reasoning import Reasoning
from guided.testing import ByteTokenizer, ScriptedModel

THINK = ("<think>", "</think>")


class City(BaseModel):
    name: str
    population: int


ANSWER = '{"name": "Paris", "population": 2100000}'


def test_thought_then_answer():
    script = "<think>The capital of France is Paris.</think>\n\n" + ANSWER
    g = guided.generate(ScriptedModel([script]), "q", schema=City, reasoning=THINK, details=True)
    assert g.text == script and g.reasoning == "The capital of France is Paris."
    assert g.value == City(name="Paris", population=2100000) and g.finish_reason == "stop"
    assert g.reasoning_tokens == len(script.split("\n\n")[0])  # one token per byte
    # without details: the answer alone, as without reasoning
    assert guided.generate(ScriptedModel([script]), "q", schema=City, reasoning=THINK) == g.value


def test_the_constraint_applies_after_the_thought_only():
    script = "<think>It is {not json} and </thin k> goes on</think>yes"
    out = guided.generate(ScriptedModel([script]), "q", choices=["yes", "no"], reasoning=THINK, details=True)
    assert out.value == "yes" and out.reasoning == "It is {not json} and </thin k> goes on"
    # the model must open the thought: an answer without it is not in the language
    with_no_thought = guided.generate(ScriptedModel(["yes"]), "q", choices=["yes", "no"], reasoning=THINK,
                                      max_new_tokens=40, details=True)
    assert with_no_thought.text.startswith("<think>")


@pytest.mark.parametrize("budget", [0, 1, 5, 12])
def test_budget_runs_out_and_the_end_marker_is_forced(budget):
    script = "<think>" + "I keep thinking about it. " * 10 + "</think>" + ANSWER
    g = guided.generate(ScriptedModel([script]), "q", schema=City, reasoning=THINK, max_reasoning_tokens=budget,
                        max_new_tokens=200, details=True)
    thought_tokens = budget  # ByteTokenizer: the thought (its start marker included) is cut after `budget` bytes
    assert g.text.startswith(script[:thought_tokens])
    closed = g.text[: g.text.index("</think>") + len("</think>")]
    assert len(closed) <= max(thought_tokens, len("<think>")) + len("</think>")
    assert g.reasoning_tokens == len(closed)
    City.model_validate_json(g.text[len(closed):])
    assert g.value == City.model_validate_json(g.text[len(closed):])


def test_budget_is_not_forced_when_the_thought_ends_in_time():
    script = "<think>short</think>" + ANSWER
    g = guided.generate(ScriptedModel([script]), "q", schema=City, reasoning=THINK, max_reasoning_tokens=100,
                        details=True)
    assert g.text == script and g.reasoning == "short"


@pytest.mark.parametrize("decoding", [
    {"temperature": 1.0, "seed": 0}, {"temperature": 0.7, "top_p": 0.9, "seed": 1},
    {"num_beams": 3}, {"draft": "prompt-lookup"}, {"draft": "prompt-lookup", "temperature": 1.0, "seed": 2},
])
def test_with_sampling_beams_and_speculative_drafting(decoding):
    script = "<think>" + "hmm " * 20 + "</think>" + ANSWER
    for budget in (6, 30):
        g = guided.generate(ScriptedModel([script], seed=budget), "q", schema=City, reasoning=THINK,
                            max_reasoning_tokens=budget, max_new_tokens=160, details=True, **decoding)
        assert g.text.startswith("<think>") and "</think>" in g.text
        end = g.text.index("</think>")
        assert len(g.text[:end].encode()) <= budget or end <= len("<think>")  # budget respected (1 byte a token)
        assert isinstance(g.value, City)


def test_prompts_that_open_the_thought():
    class Opening(ByteTokenizer):
        chat_template = "{{ messages }} <think>"

        def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=True, **_):
            text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: <think>\n"
            return list(text.encode()) if tokenize else text

    model = ScriptedModel(["Paris it is.</think>" + ANSWER], tokenizer=Opening())
    g = guided.generate(model, "q", schema=City, reasoning=True, details=True)
    assert g.text == "Paris it is.</think>" + ANSWER and g.reasoning == "Paris it is."
    assert g.value.name == "Paris"


def test_markers_from_the_chat_template_or_explicit():
    class Thinking(ByteTokenizer):
        chat_template = "{% if thinking %}<thinking>...</thinking>{% endif %}"

    model = ScriptedModel(["<thinking>ok</thinking>no"], tokenizer=Thinking())
    g = guided.generate(model, "q", choices=["yes", "no"], reasoning=True, chat=False, details=True)
    assert g.reasoning == "ok" and g.value == "no"
    with pytest.raises(UsageError, match="no think markers"):
        guided.generate(ScriptedModel(["x"]), "q", reasoning=True)
    g = guided.generate(ScriptedModel(["[[plan]]a[[/plan]]b"]), "q", regex="b", reasoning=("[[plan]]", "[[/plan]]"),
                        details=True)
    assert g.reasoning == "a" and g.value == "b"


def test_markers_from_the_tokenizers_added_tokens():
    """A tokenizer that declares the markers as added tokens (Qwen3, DeepSeek-R1) needs no template."""
    class Added(ByteTokenizer):
        def get_added_vocab(self):
            return {"<think>": 257, "</think>": 258}

    model = ScriptedModel(["<think>two options</think>yes"], tokenizer=Added())
    g = guided.generate(model, "q", choices=["yes", "no"], reasoning=True, chat=False, details=True)
    assert g.reasoning == "two options" and g.value == "yes"


def test_free_text_answer_after_the_thought():
    g = guided.generate(ScriptedModel(["<think>greet</think>Hello there."]), "q", reasoning=THINK, details=True)
    assert g.reasoning == "greet" and g.value == "Hello there."


def test_tools_after_the_thought():
    tools = [{"type": "function", "function": {"name": "get", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
    script = '<think>I need to look it up.</think>\n<tool_call>{"name": "get", "arguments": {"q": "x"}}</tool_call>'
    g = guided.generate(ScriptedModel([script]), "q", tools=tools, tool_choice="required", reasoning=THINK,
                        details=True)
    assert g.reasoning == "I need to look it up." and g.value == [guided.ToolCall("get", {"q": "x"})]


@pytest.mark.parametrize("kwargs,match", [
    ({"reasoning": "yes"}, "reasoning="),
    ({"reasoning": ("<think>",)}, "reasoning="),
    ({"reasoning": ("<t>", "")}, "reasoning="),
    ({"max_reasoning_tokens": 5}, "max_reasoning_tokens= needs reasoning="),
    ({"reasoning": THINK, "max_reasoning_tokens": -1}, "max_reasoning_tokens="),
])
def test_reasoning_arguments_are_checked(kwargs, match):
    with pytest.raises(UsageError, match=match):
        guided.generate(ScriptedModel(["x"]), "q", **kwargs)


def test_budget_matcher_follows_the_protocol(smollm2_vocab):
    """Random walks with rollbacks and copies: the wrapper's masks match a fresh matcher fed the
    same tokens, the thought never exceeds its budget, and forced bytes are what comes next."""
    spec = Reasoning(guided.JsonSchema({"type": "object", "properties": {"a": {"type": "integer"}}}), *THINK,
                     max_tokens=6)
    grammar = guided.compile(spec, smollm2_vocab)
    assert isinstance(grammar, ThoughtBudget)
    rng = random.Random(0)
    for _ in range(4):
        m = grammar.matcher()
        tokens = []
        for step in range(40):
            allowed = np.flatnonzero(m.mask())
            if allowed.size == 0:
                break
            t = int(rng.choice(allowed))
            if t in smollm2_vocab.eos_token_ids:
                break
            forced = m.forced_bytes()
            m.advance(t)
            tokens.append(t)
            data = smollm2_vocab.token_bytes[t]
            assert forced.startswith(data) or data.startswith(forced)
            if rng.random() < 0.2:
                m.rollback(1)
                tokens.pop()
            fresh = grammar.matcher()
            for u in tokens:
                fresh.advance(u)
            assert (fresh.mask() == m.mask()).all()
            assert (m.copy().mask() == m.mask()).all()
        text = b"".join(smollm2_vocab.token_bytes[t] for t in tokens)
        if b"</think>" in text:
            thought_tokens = next(i for i in range(len(tokens) + 1)
                                  if b"</think>" in b"".join(smollm2_vocab.token_bytes[t] for t in tokens[:i]))
            assert thought_tokens <= 6 + len("</think>")


@pytest.mark.model
def test_real_model_thinks_then_answers(smollm2_model):
    g = guided.generate(smollm2_model, "Which city is the capital of France? Think first.", schema=City,
                        reasoning=THINK, max_reasoning_tokens=16, max_new_tokens=80, details=True)
    assert g.text.startswith("<think>") and g.reasoning is not None
    assert g.reasoning_tokens <= 16 + len(smollm2_model.tokenizer.encode("</think>"))
    assert isinstance(g.value, City)
