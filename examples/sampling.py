"""The sampling pipeline on SmolLM2: the same constrained prompt under several sampling settings,
a ban list, must-include phrases and beam search; every output is validated.

    .venv/bin/python examples/sampling.py
"""

from __future__ import annotations

import re

import guided
from guided.decoding import GenerationStats

PATTERN = r"[A-Z][a-z]+( [a-z]+){3,12}\."


def main() -> None:
    model = guided.load_model()
    prompt = "Describe the sea in one short sentence."
    settings = {
        "greedy": dict(),
        "T=0.8 top-p 0.9": dict(temperature=0.8, top_p=0.9, seed=0),
        "min-p 0.1 + repetition 1.3": dict(temperature=1.0, min_p=0.1, repetition_penalty=1.3, seed=0),
        "ban 'blue', 'water'": dict(temperature=0.7, seed=0, ban=["blue", "water"]),
        "must include 'silver'": dict(temperature=0.7, seed=0, must_include=["silver"]),
        "beam search (4)": dict(num_beams=4),
    }
    for name, kw in settings.items():
        stats = GenerationStats()
        text = guided.generate(model, prompt, regex=PATTERN, max_new_tokens=30, stats=stats, **kw)
        assert re.fullmatch(PATTERN, text)
        print(f"{name:28} {text!r}\n{'':28} {stats}")


if __name__ == "__main__":
    main()
