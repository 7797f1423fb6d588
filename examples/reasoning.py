"""Reasoning first, then the constraint: reasoning= and max_reasoning_tokens=.

Run: python examples/reasoning.py   (the default SmolLM2 model; GUIDED_EXAMPLE_RANDOM=1 for a tiny random
model, which is what the test suite runs)
"""

from __future__ import annotations

import os

from pydantic import BaseModel

import guided


class Answer(BaseModel):
    city: str
    country: str


def main() -> None:
    model = guided.models.random_model(seed=0) if os.environ.get("GUIDED_EXAMPLE_RANDOM") else guided.load_model()
    messages = [{"role": "system", "content": "Think step by step inside <think>...</think>, then answer in JSON."},
                {"role": "user", "content": "Which city is the capital of Italy?"}]
    # SmolLM2's chat template declares no think markers, so they are given here; reasoning=True
    # takes them from the tokenizer or chat template of models that have them (Qwen3, DeepSeek-R1)
    g = guided.generate(model, messages, schema=Answer, reasoning=("<think>", "</think>"), max_reasoning_tokens=40,
                        max_new_tokens=120, details=True)
    print("reasoning:", repr(g.reasoning))          # the free thought, at most 40 tokens
    print("answer:", repr(g.value))                 # the constraint applies after </think>
    print("tokens:", g.reasoning_tokens, "thinking,", g.completion_tokens, "in all;", g.finish_reason)
    # the same with sampling and beams (speculative drafting too: draft="prompt-lookup")
    sampled = guided.generate(model, messages, choices=["Rome", "Milan"], reasoning=("<think>", "</think>"),
                              max_reasoning_tokens=20, temperature=0.8, seed=0)
    beams = guided.generate(model, messages, choices=["Rome", "Milan"], reasoning=("<think>", "</think>"),
                            max_reasoning_tokens=20, num_beams=2)
    print("sampled:", sampled, "beams:", beams)


if __name__ == "__main__":
    main()
