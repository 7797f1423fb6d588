"""Time between masks (advance one token, then its mask) along a 300-item array whose bounds are
counted at run time (`guided.ir.ItemCounts`), on the native core and the Python engine.

The document ``[1, 2, ..., 300]`` (SmolLM2's tokenizer) under ``minItems: 300, maxItems: 300``,
each engine compiled fresh (cold mask caches), then the same walk again on the same grammar (warm).

    .venv/bin/python benchmarks/item_counts.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guided  # noqa: E402
from guided import models  # noqa: E402
from timing import fmt, gc_paused, pct, perf_ns  # noqa: E402

SCHEMA = {"type": "array", "items": {"type": "integer"}, "minItems": 300, "maxItems": 300}


def walk(grammar, ids: list[int]) -> list[int]:
    m = grammar.matcher()
    m.mask()
    times = []
    with gc_paused():
        for t in ids:
            t0 = perf_ns()
            m.advance(t)
            m.mask()
            times.append(perf_ns() - t0)
    assert m.accepts_eos()
    return times


def main() -> None:
    tok = models.load_tokenizer()
    vocab = guided.Vocabulary.from_tokenizer(tok)
    text = "[" + ", ".join(str(i) for i in range(1, 301)) + "]"
    ids = tok.encode(text, add_special_tokens=False)
    print(f"{len(ids)} tokens, schema {SCHEMA}")
    print(f"{'engine':8} {'pass':5} {'median µs':>10} {'p99 µs':>8} {'max µs':>8}")
    for engine in ("native", "python"):
        g = guided.compile(guided.JsonSchema(SCHEMA), vocab, engine=engine, cache=False)
        assert getattr(g, "engine", "python") == engine, (engine, type(g))
        for label in ("cold", "warm"):
            times = walk(g, ids)
            print(f"{engine:8} {label:5} {fmt(pct(times, 50)):>10} {fmt(pct(times, 99)):>8} {fmt(pct(times, 100)):>8}")


if __name__ == "__main__":
    main()
