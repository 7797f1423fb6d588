"""End-to-end decoding speed with the real SmolLM2-135M-Instruct: unconstrained vs constrained.

For greedy, sampling and beam search, generates the same prompts with no constraint, a regex,
a JSON Schema (when `guided.JsonSchema` exists) and the shipped Lark JSON grammar, and prints a
Markdown table of tokens/s, the slowdown against the unconstrained run of the same decoder and
the share of wall time spent computing masks.  Every configuration runs once to warm up (grammar
compilation, per-state mask caches) and then ``--repeats`` times, timed; medians are reported.

    .venv/bin/python benchmarks/e2e.py [--max-new-tokens 48] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import guided
from guided.decoding import GenerationStats

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 24},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
REGEX = r'\{"name": "[A-Za-z ]{1,24}", "age": [0-9]{1,3}, "city": "[A-Za-z ]{1,24}"\}'
PROMPTS = [
    "Describe a fictional person as a JSON object with name, age and city.",
    "Give me a JSON record for a customer: name, age, city.",
]
DECODERS = {
    "greedy": dict(temperature=0.0),
    "sampling": dict(temperature=0.8, top_p=0.95, seed=0),
    "beam(3)": dict(num_beams=3),
}


def constraints() -> dict:
    out = {"none": {}, "regex": {"regex": REGEX}}
    out["json_schema"] = {"json_schema": SCHEMA} if hasattr(guided, "JsonSchema") else None
    out["lark json"] = {"grammar": "json"} if hasattr(guided, "Grammar") else None
    return out


def run(model, kw: dict, max_new_tokens: int) -> GenerationStats:
    stats = GenerationStats()
    for prompt in PROMPTS:
        guided.generate(model, prompt, max_new_tokens=max_new_tokens, stats=stats, **kw)
    return stats


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    t0 = time.time()
    model = guided.load_model()
    print(f"model: {model!r}; loaded in {time.time() - t0:.1f} s", file=sys.stderr)
    rows = []
    for dname, dkw in DECODERS.items():
        base = None
        for cname, ckw in constraints().items():
            if ckw is None:
                rows.append((dname, cname, None))
                continue
            kw = {**dkw, **ckw}
            try:
                run(model, kw, args.max_new_tokens)  # warm-up: compile, fill mask caches
                runs = [run(model, kw, args.max_new_tokens) for _ in range(args.repeats)]
            except guided.GuidedError as e:
                print(f"{dname}/{cname}: {type(e).__name__}: {e}", file=sys.stderr)
                rows.append((dname, cname, None))
                continue
            tps = statistics.median(r.tokens_per_second for r in runs)
            share = statistics.median(r.mask_share for r in runs)
            toks = statistics.median(r.new_tokens for r in runs)
            per_tok_ms = statistics.median(r.decode_ms_per_token for r in runs)
            if cname == "none":
                base = per_tok_ms
            slow = (per_tok_ms / base - 1) if base else None
            rows.append((dname, cname, (toks, tps, per_tok_ms, slow, share)))
            print(f"{dname:9} {cname:12} {toks:5.0f} tok  {tps:6.1f} tok/s  mask {share:.1%}", file=sys.stderr)
    print()
    print(f"max_new_tokens={args.max_new_tokens}, {len(PROMPTS)} prompts, median of {args.repeats} warm runs; "
          "tokens counted over all rows (beams included); ms/token excludes the prompt's prefill")
    print()
    print("| decoder | constraint | tokens | tokens/s | ms/token | vs unconstrained | time in masks |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for dname, cname, r in rows:
        if r is None:
            print(f"| {dname} | {cname} | n/a | n/a | n/a | n/a | n/a |")
            continue
        toks, tps, ms, slow, share = r
        rel = "—" if cname == "none" else (f"{slow:+.1%}" if slow is not None else "n/a")
        print(f"| {dname} | {cname} | {toks:.0f} | {tps:.1f} | {ms:.1f} | {rel} | {share:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
