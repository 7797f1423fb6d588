"""details=True: the output with how it ended (guided.Generation).

Run: python examples/generation_details.py   (the default SmolLM2 model; GUIDED_EXAMPLE_RANDOM=1 for a
tiny random model, which is what the test suite runs)
"""

from __future__ import annotations

import os

from pydantic import BaseModel

import guided


class Person(BaseModel):
    name: str
    age: int


def main() -> None:
    model = guided.models.random_model(seed=0) if os.environ.get("GUIDED_EXAMPLE_RANDOM") else guided.load_model()
    prompt = ('Extract the person as JSON: "My name is Ada Lovelace and I am 36 years old." '
              'Answer like {"name": "...", "age": N}.')
    g = guided.generate(model, prompt, schema=Person, max_new_tokens=120, details=True)
    print("value:", repr(g.value))                  # the validated Person, as without details=True
    print("text:", g.text)                          # the raw output
    print("finish_reason:", g.finish_reason)        # "stop", "length", "closed_early" or "timeout"
    print("tokens:", g.prompt_tokens, "+", g.completion_tokens, "=", g.total_tokens)
    # a budget too small for the model's own answer: budget-aware closing ends the document early
    short = guided.generate(model, prompt, schema=Person, max_new_tokens=24, details=True)
    print("24 tokens:", repr(short.value), short.finish_reason)
    free = guided.generate(model, "Tell me a story.", max_new_tokens=8, details=True)
    print("free text cut at 8 tokens:", repr(free.text), free.finish_reason)


if __name__ == "__main__":
    main()
