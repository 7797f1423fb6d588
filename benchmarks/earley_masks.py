"""Mask time of grammars parsed by Earley (`guided.ir.cfg` rule 10) beside an LALR(1) grammar, on
SmolLM2's vocabulary, on the Python engine and the native core.

Each grammar's text is tokenized once (the longest allowed token that spells the text next, on the
Python engine), then walked token by token with each engine: every mask on the way is timed
(``fill_bitmask`` into a packed int32 row: TBM, time between masks' worth of work), on a freshly
compiled grammar per repetition (cold: every configuration's mask computed the first time) and
again on the same grammar (warm: cached).  TTFM is the time from ``guided.compile`` (``cache=False``;
the vocabulary's token table built beforehand) to the first mask filled.  Medians and p99 over
all repetitions.

    .venv/bin/python benchmarks/earley_masks.py                       # both engines, 10 repetitions
    .venv/bin/python benchmarks/earley_masks.py --engine native --repeat 20
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np

import guided
from guided import models

TEXT = "(12 + 3) * 45 + (6 * (7 + 8)) * 9 + 10"
# name -> (grammar, Grammar(parser=...), text)
GRAMMARS = {
    "ambiguous expressions": ('start: e\ne: e "+" e | e "*" e | "(" e ")" | NUM\nNUM: /[0-9]+/\n%ignore " "',
                              "auto", TEXT),
    "shipped arithmetic": ("arithmetic", "auto", TEXT),
    "statements, ambiguous '-'": ('start: stmt+\nstmt: NAME "=" expr ";" | expr ";"\n'
                                  'expr: NAME | NUM | expr "-" expr\nNAME: /[a-c]+/\nNUM: /[0-9]+/\n%ignore " "',
                                  "auto", "a = b - 1 - c; b = 2; c - a - 33; a = 1 - 2 - 3 - 4;"),
    # LALR(1) itself; parsed by Earley here for Leo's completion along 400-byte runs
    "right recursion": ('start: "a" start | b\nb: "b" | "(" start ")" b', "earley", "a" * 400 + "(" + "a" * 400 + "b)b"),
}


def tokenize(spec, vocab, text: str) -> list[int]:
    """The walk: at each step the longest allowed token that spells the text next."""
    m = guided.compile(spec, vocab, engine="python", cache=False).matcher()
    data, pos, ids = text.encode(), 0, []
    while pos < len(data):
        allowed = m.mask().nonzero()[0].tolist()
        token = max((t for t in allowed if data.startswith(vocab.token_bytes[t], pos)),
                    key=lambda t: len(vocab.token_bytes[t]))
        m.advance(token)
        ids.append(token)
        pos += len(vocab.token_bytes[token])
    assert m.accepts_eos()
    return ids


def walk(grammar, ids: list[int], row: np.ndarray, first: list[float] | None = None,
         start: float | None = None) -> list[float]:
    """Seconds per mask along ``ids`` (the mask after the last token included)."""
    m = grammar.matcher()
    times = []
    for k in range(len(ids) + 1):
        t0 = time.perf_counter()
        m.fill_bitmask(row, 0)
        t1 = time.perf_counter()
        times.append(t1 - t0)
        if k == 0 and first is not None and start is not None:
            first.append(t1 - start)
        if k < len(ids):
            m.advance(ids[k])
    return times


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=["python", "native", "both"], default="both")
    ap.add_argument("--repeat", type=int, default=10, help="fresh compiles per grammar and engine (cold walks)")
    args = ap.parse_args()
    engines = ["python", "native"] if args.engine == "both" else [args.engine]
    vocab = guided.Vocabulary.from_tokenizer(models.load_tokenizer())
    for engine in engines:  # the token table and the engines' per-vocabulary data, built once
        guided.compile(guided.Regex("a"), vocab, engine=engine, cache=False).matcher().mask()
    row = np.zeros((1, (vocab.size + 31) // 32), np.int32)
    print("| grammar | engine | masks | TTFM ms p50 / p99 | TBM cold ms p50 / p99 / mean | TBM warm ms p50 / p99 |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (source, parser, text) in GRAMMARS.items():
        spec = guided.Grammar(source, parser=parser)
        ids = tokenize(spec, vocab, text)
        for engine in engines:
            cold: list[float] = []
            warm: list[float] = []
            ttfm: list[float] = []
            earley = None
            for _ in range(args.repeat):
                gc.collect()
                gc.disable()
                try:
                    start = time.perf_counter()
                    grammar = guided.compile(spec, vocab, engine=engine, cache=False)
                    cold += walk(grammar, ids, row, ttfm, start)
                    warm += walk(grammar, ids, row)
                finally:
                    gc.enable()
                earley = grammar.ir.earley
                assert grammar.engine == engine
                del grammar  # freed here, not inside the next repetition's TTFM
            ms = 1000
            print(f"| {name} ({'Earley' if earley else 'LALR(1)'}) | {engine} | {len(ids) + 1} | "
                  f"{ms * statistics.median(ttfm):.2f} / {ms * pct(ttfm, 0.99):.2f} | "
                  f"{ms * statistics.median(cold):.3f} / {ms * pct(cold, 0.99):.3f} / {ms * statistics.mean(cold):.3f} | "
                  f"{ms * statistics.median(warm):.4f} / {ms * pct(warm, 0.99):.4f} |", flush=True)


if __name__ == "__main__":
    main()
