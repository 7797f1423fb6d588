"""End-to-end decoding speed with the real SmolLM2-135M-Instruct: unconstrained vs constrained.

For greedy, sampling and beam search, generates the same prompts with no constraint, a regex,
a JSON Schema and the shipped Lark JSON grammar, and prints a Markdown table per decoding step:
wall time, its slowdown against the unconstrained run of the same decoder, time in the forward
pass, mask time left on the critical path (masks the decoder computed or waited for) and mask
time spent in the forward pass's shadow (`guided.decoding.overlap`: the next step's masks
computed in background native threads while the model runs).  Each constrained configuration runs with
the overlap on and, for comparison, off.  Every configuration runs once to warm up (grammar
compilation, per-state mask caches) and then ``--repeats`` times, timed; medians are reported.

    .venv/bin/python benchmarks/e2e.py [--max-new-tokens 48] [--repeats 2] [--prompts 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import guided
from guided import compiler
from guided.decoding import GenerationStats, overlap

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


def run(model, kw: dict, max_new_tokens: int, prompts: list[str]) -> GenerationStats:
    stats = GenerationStats()
    for prompt in prompts:
        guided.generate(model, prompt, max_new_tokens=max_new_tokens, stats=stats, **kw)
    return stats


def per_step(stats: GenerationStats) -> dict:
    """Milliseconds per decoding step (prefill excluded): wall, forward, masks on the critical
    path, masks computed in the forward's shadow."""
    n = max(stats.steps, 1)
    return {
        "step": (stats.seconds - stats.prefill_seconds) / n * 1e3,
        "forward": (stats.forward_seconds - stats.prefill_seconds) / n * 1e3,
        "mask": stats.mask_seconds / n * 1e3,
        "shadow": stats.overlapped_mask_seconds / n * 1e3,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--prompts", type=int, default=len(PROMPTS), help="how many of the prompts to run")
    ap.add_argument("--no-overlap-rows", action="store_true",
                    help="skip the constrained runs with the overlap turned off")
    args = ap.parse_args(argv)
    prompts = PROMPTS[: args.prompts]
    t0 = time.time()
    model = guided.load_model()
    print(f"model: {model!r}; loaded in {time.time() - t0:.1f} s; torch threads {torch.get_num_threads()}",
          file=sys.stderr)
    rows = []
    for dname, dkw in DECODERS.items():
        base = None
        for cname, ckw in constraints().items():
            modes = [True] if cname == "none" or args.no_overlap_rows else [True, False]
            for shadowed in modes:
                label = cname if shadowed or cname == "none" else f"{cname} (overlap off)"
                if ckw is None:
                    rows.append((dname, label, None))
                    continue
                kw = {**dkw, **ckw}
                overlap.enabled = shadowed
                compiler._cache.clear()  # a fresh grammar: the first run's masks are computed as it goes
                try:
                    cold = per_step(run(model, kw, args.max_new_tokens, prompts))
                    runs = [run(model, kw, args.max_new_tokens, prompts) for _ in range(args.repeats)]
                except guided.GuidedError as e:
                    print(f"{dname}/{label}: {type(e).__name__}: {e}", file=sys.stderr)
                    rows.append((dname, label, None))
                    continue
                finally:
                    overlap.enabled = True
                steps = [per_step(r) for r in runs]
                med = {k: statistics.median(s[k] for s in steps) for k in steps[0]}
                toks = statistics.median(r.new_tokens for r in runs)
                if cname == "none":
                    base = med
                rows.append((dname, label, (toks, med, base, cold)))
                print(f"{dname:9} {label:28} {toks:5.0f} tok  {med['step']:6.2f} ms/step  forward {med['forward']:6.2f}"
                      f"  masks {med['mask']:.3f} (+{med['shadow']:.3f} in the shadow); cold: {cold['step']:6.2f} "
                      f"ms/step, masks {cold['mask']:.3f} (+{cold['shadow']:.3f})", file=sys.stderr)
    print()
    print(f"max_new_tokens={args.max_new_tokens}, {len(prompts)} prompt(s) one at a time, median of {args.repeats} "
          f"warm runs after one cold run (a freshly compiled grammar); torch threads {torch.get_num_threads()}; "
          "milliseconds per decoding step (a beam step advances every beam), prefill excluded. "
          "`rest` = step - forward (masks, sampling, bookkeeping); `rest vs unconstrained` = the extra rest time "
          "per step as a share of the unconstrained step (the forward's own noise left out); masks in the shadow = "
          "computed in background threads while the forward ran")
    print()
    print("| decoder | constraint | tokens | ms/step | vs unconstrained | forward | rest | rest vs unconstrained "
          "| masks on the path | masks in the shadow | cold: ms/step | cold: masks on the path | cold: in the shadow |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for dname, cname, r in rows:
        if r is None:
            print(f"| {dname} | {cname} |" + " n/a |" * 11)
            continue
        toks, med, base, cold = r
        rest = med["step"] - med["forward"]
        if cname == "none":
            rel = extra = "—"
        else:
            rel = f"{med['step'] / base['step'] - 1:+.1%}"
            extra = f"{(rest - (base['step'] - base['forward'])) / base['step']:+.2%}"
        print(f"| {dname} | {cname} | {toks:.0f} | {med['step']:.2f} | {rel} | {med['forward']:.2f} | {rest:.2f} | "
              f"{extra} | {med['mask']:.3f} | {med['shadow']:.3f} | {cold['step']:.2f} | {cold['mask']:.3f} | "
              f"{cold['shadow']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
