"""Time between masks (advance one token, then its mask) along arrays checked at run time beside
the CFG, on the native core and the Python engine: item counts (`guided.ir.ItemCounts`), or with
``--unique`` unique items (`guided.ir.UniqueItems`).

The document ``[1, 2, ..., 300]`` (SmolLM2's tokenizer) under ``minItems: 300, maxItems: 300``;
with ``--unique``, the same under ``uniqueItems`` and 100 objects ``{"id": i, "tag": "t<i>"}``
under ``uniqueItems``.  Each engine compiled fresh (cold mask caches), then the same walk again on
the same grammar (warm).

    .venv/bin/python benchmarks/item_counts.py [--unique] [--repeat N]

``--repeat N`` walks N times (cold: each on a freshly compiled grammar) and keeps each step's
fastest time: on a shared machine the slowest steps of one walk are mostly preemption.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import guided  # noqa: E402
from guided import models  # noqa: E402
from timing import fmt, gc_paused, pct, perf_ns  # noqa: E402

SCHEMA = {"type": "array", "items": {"type": "integer"}, "minItems": 300, "maxItems": 300}
UNIQUE = [
    ({"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
     "[" + ", ".join(str(i) for i in range(1, 301)) + "]"),
    ({"type": "array", "uniqueItems": True, "items": {
        "type": "object", "properties": {"id": {"type": "integer"}, "tag": {"type": "string"}}, "required": ["id"]}},
     "[" + ", ".join(f'{{"id": {i}, "tag": "t{i}"}}' for i in range(100)) + "]"),
]


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
    cases = UNIQUE if "--unique" in sys.argv else [(SCHEMA, "[" + ", ".join(str(i) for i in range(1, 301)) + "]")]
    for schema, text in cases:
        ids = tok.encode(text, add_special_tokens=False)
        print(f"{len(ids)} tokens, schema {schema}")
        print(f"{'engine':8} {'pass':5} {'median µs':>10} {'p99 µs':>8} {'max µs':>8}")
        repeat = int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 1
        for engine in ("native", "python"):
            cold: list[int] | None = None
            warm: list[int] | None = None
            for _ in range(repeat):
                g = guided.compile(guided.JsonSchema(schema), vocab, engine=engine, cache=False)
                assert getattr(g, "engine", "python") == engine, (engine, type(g))
                first, second = walk(g, ids), walk(g, ids)
                cold = first if cold is None else [min(a, b) for a, b in zip(cold, first)]
                warm = second if warm is None else [min(a, b) for a, b in zip(warm, second)]
            for label, times in (("cold", cold), ("warm", warm)):
                assert times is not None
                print(f"{engine:8} {label:5} {fmt(pct(times, 50)):>10} {fmt(pct(times, 99)):>8} "
                      f"{fmt(pct(times, 100)):>8}")


if __name__ == "__main__":
    main()
