"""Speculative decoding and jump-forward on the real SmolLM2-135M: passes and tokens/s.

For schema-shaped tasks (extraction from a given text, tool calls, form filling) it decodes
greedily with plain constrained decoding and with each drafter, checks that every output is
identical to the plain one, and reports per method: generated tokens, target forward passes
(exact), passes per token, median wall time over ``--repeat`` runs, tokens/s and the speedup
over plain decoding.

Regex-shaped JSON (fixed keys, no optional whitespace) is where jump-forward shines: the keys,
quotes, colons and commas are forced bytes.  The Lark ``json`` / ``tool_call`` grammars
``%ignore`` whitespace, so between JSON tokens nothing is forced (a space may always come):
jump-forward has nothing to draft there and only the other drafters help.

    .venv/bin/python benchmarks/speculative.py                 # every task, 3 repeats
    .venv/bin/python benchmarks/speculative.py --repeat 1 --tasks extraction
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

import guided
from guided.decoding.speculative import SpeculativeStats

PEOPLE = [
    "Maria Gonzalez, 34, moved to Valencia last spring to work as a nurse at the city hospital.",
    "Our new hire is Tom Becker, aged 27, a software engineer relocating from Hamburg.",
    "Dr. Aiko Tanaka (52) is a marine biologist based in Osaka who studies coral reefs.",
    "Samuel Okafor, a 45-year-old teacher, has lived in Lagos all his life.",
]
PERSON_RX = r'\{"name": "[^"]{1,40}", "age": [0-9]{1,3}, "city": "[^"]{1,40}", "job": "[^"]{1,40}"\}'

ORDERS = [
    "Order #4471 from Jane Doe: 3 x blue ceramic mug, ship to 12 Elm Street, Springfield, by express.",
    "Please send 10 packs of AA batteries to Carlos Ruiz at 88 Ocean Drive, Miami. Standard shipping is fine.",
]
ORDER_RX = (
    r'\{"order_id": "[0-9]{1,8}", "customer": "[^"]{1,40}", "quantity": [0-9]{1,3}, '
    r'"item": "[^"]{1,60}", "address": "[^"]{1,80}", "shipping": "(express|standard)"\}'
)

TOOL_REQUESTS = [
    "What's the weather like in Copenhagen right now? Use celsius.",
    "Email bob@example.com with the subject Quarterly report and say the numbers are ready.",
]
TOOL_RX = (
    r'\{"name": "get_weather", "arguments": \{"city": "[^"]{1,40}", "unit": "(celsius|fahrenheit)"\}\}'
    r'|\{"name": "send_email", "arguments": \{"to": "[^"]{1,60}", "subject": "[^"]{1,60}", "body": "[^"]{1,120}"\}\}'
)

FORM = [
    "Register me for the conference: I'm Priya Natarajan, priya.n@example.org, phone 555-0142, "
    "vegetarian meal, I need a hotel room for 2 nights.",
]
FORM_RX = (
    r'\{"full_name": "[^"]{1,40}", "email": "[^"]{1,60}", "phone": "[0-9-]{1,20}", '
    r'"meal": "(standard|vegetarian|vegan)", "hotel": (true|false), "nights": [0-9]{1,2}\}'
)


def tasks(selected: set[str]):
    out = []
    if "extraction" in selected:
        for t in PEOPLE:
            out.append(("extraction", f"Extract the person as JSON.\nText: {t}\nJSON:", dict(regex=PERSON_RX)))
        for t in ORDERS:
            out.append(("extraction", f"Extract the order as JSON.\nText: {t}\nJSON:", dict(regex=ORDER_RX)))
    if "tool" in selected:
        for t in TOOL_REQUESTS:
            out.append(("tool call", f"Call the right tool for this request.\nRequest: {t}\nTool call:", dict(regex=TOOL_RX)))
    if "form" in selected:
        for t in FORM:
            out.append(("form filling", f"Fill in the registration form as JSON.\nMessage: {t}\nForm:", dict(regex=FORM_RX)))
    if "lark" in selected:
        out.append(("extraction (Lark json)", f"Extract the person as JSON.\nText: {PEOPLE[0]}\nJSON:", dict(grammar="json")))
        out.append(("tool call (Lark tool_call)", f"Call a tool.\nRequest: {TOOL_REQUESTS[0]}\n", dict(grammar="tool_call")))
    if "schema" in selected and getattr(guided, "JsonSchema", None) is not None:
        schema = {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}, "city": {"type": "string"}},
            "required": ["name", "age", "city"],
        }
        for t in PEOPLE[:2]:
            out.append(("extraction (JSON Schema)", f"Extract the person as JSON.\nText: {t}\nJSON:", dict(json_schema=schema)))
    return out


def run_one(model, prompt, spec, draft, jump_forward, max_new_tokens):
    stats = SpeculativeStats()
    t0 = time.perf_counter()
    out = guided.generate(
        model, prompt, max_new_tokens=max_new_tokens, draft=draft, jump_forward=jump_forward, stats=stats, **spec
    )
    return out, time.perf_counter() - t0, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=120)
    ap.add_argument("--tasks", default="extraction,tool,form,lark,schema")
    ap.add_argument("--early-exit", default="8", help="comma-separated layer counts for early-exit drafters")
    args = ap.parse_args()

    model = guided.models.load_model()
    methods = [("plain", None, False), ("jump-forward", None, True), ("prompt-lookup", "prompt-lookup", False),
               ("prompt-lookup + jump-forward", "prompt-lookup", True)]
    for k in [s for s in args.early_exit.split(",") if s]:
        methods.append((f"early-exit:{k} + jump-forward", f"early-exit:{k}", True))
    items = tasks(set(args.tasks.split(",")))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# Speculative decoding and jump-forward, {model!r}")
    print(f"\ntorch threads {torch.get_num_threads()}, load average at start {load:.2f}, "
          f"{len(items)} prompts, {args.repeat} repeats (median wall time), greedy, max_new_tokens={args.max_new_tokens}\n")

    # warm up (compile grammars, first-call overheads)
    for _, prompt, spec in items:
        try:
            guided.generate(model, prompt, max_new_tokens=4, **spec)
        except guided.GuidedError:
            pass  # too short to finish: only the warm-up matters

    groups: dict[str, list] = {}
    for kind, prompt, spec in items:
        groups.setdefault(kind, []).append((prompt, spec))

    rows = []
    for kind, group in groups.items():
        reference = {}
        for name, draft, jf in methods:
            tokens = passes = plain_passes = 0
            drafted = accepted = 0
            seconds = 0.0
            identical = True
            for gi, (prompt, spec) in enumerate(group):
                times = []
                for _ in range(args.repeat):
                    out, dt, stats = run_one(model, prompt, spec, draft, jf, args.max_new_tokens)
                    times.append(dt)
                if name == "plain":
                    reference[gi] = out
                identical &= out == reference[gi]
                seconds += statistics.median(times)
                tokens += stats.new_tokens
                passes += stats.target_forwards if name != "plain" else stats.steps
                plain_passes += stats.plain_forwards if name != "plain" else stats.steps
                drafted += stats.drafted + stats.forced_drafted
                accepted += stats.accepted + stats.forced_accepted
            rows.append((kind, name, tokens, passes, seconds, identical, drafted, accepted))
            print(f"  {kind:28s} {name:34s} {tokens:4d} tok {passes:4d} passes {seconds:6.2f} s  same={identical}",
                  file=sys.stderr, flush=True)

    print("| task | method | tokens | target passes | passes/token | fewer passes | median s | tok/s | speedup | accepted/drafted | output = plain |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    base = {}
    for kind, name, tokens, passes, seconds, identical, drafted, accepted in rows:
        if name == "plain":
            base[kind] = (passes, seconds)
        bp, bs = base[kind]
        rate = f"{accepted}/{drafted}" if drafted else "-"
        print(f"| {kind} | {name} | {tokens} | {passes} | {passes / max(tokens, 1):.2f} | {bp / max(passes, 1):.2f}x | "
              f"{seconds:.2f} | {tokens / seconds:.1f} | {bs / seconds:.2f}x | {rate} | {'yes' if identical else 'NO'} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nload average at end {load:.2f}")


if __name__ == "__main__":
    main()
