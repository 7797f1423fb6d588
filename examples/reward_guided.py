"""Reward-guided decoding: steer SmolLM2 towards cheerful words with a keyword scorer.

``reward(prefixes, continuations)`` scores the top candidate tokens of every row in one batched
call; the sampler then draws from ``P'(x) ∝ P(x)·exp(λ·r(prefix, x))``.  Any scorer works the
same way: a small sentiment classifier would score ``prefix + continuation`` instead.

    .venv/bin/python examples/reward_guided.py
"""

from __future__ import annotations

import guided

CHEERFUL = ("happy", "joy", "sun", "bright", "smile", "love", "wonder", "warm", "laugh", "delight")


def keyword_reward(prefixes: list[str], continuations: list[str]) -> list[float]:
    """1 for a token that starts or continues a cheerful word, else 0."""
    scores = []
    for prefix, cont in zip(prefixes, continuations):
        words = (prefix + cont).split()
        last = words[-1].lower().strip(".,!?") if words and cont.strip() else ""
        scores.append(1.0 if last and any(w.startswith(last) or last.startswith(w) for w in CHEERFUL) and len(last) >= 3 else 0.0)
    return scores


def main() -> None:
    model = guided.load_model()
    prompt = "Write one sentence about a morning walk."
    for weight in (0.0, 4.0):
        text = guided.generate(
            model, prompt, temperature=0.9, seed=1, max_new_tokens=40,
            reward=keyword_reward if weight else None, reward_weight=weight, reward_top_k=16,
        )
        print(f"λ={weight}: {text!r}")


if __name__ == "__main__":
    main()
