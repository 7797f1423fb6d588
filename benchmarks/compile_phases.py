"""Where the time to first mask goes: JSON Schema compilation over the shared MaskBench cases, by phase.

Each case is compiled from scratch (no in-memory or on-disk cache) in this process and its first
mask computed; the time is split among phases by wrapping their entry points with a timer that
charges each moment to the innermost phase running (a phase called from inside another is taken
out of the outer one).  Phases:

- **automaton operations**: determinisation, minimisation, trimming and products of byte DFAs
  (`guided.ir.dfa`, `guided.ir.dfa_ops`), the compiled kernels included where they are lent;
- **terminal automata**: the rest of building terminals (`guided.frontends.jsonschema.terminals`:
  string, number, pattern and format automata, regex parsing);
- **LALR(1) tables** (`guided.ir.lalr.lalr_tables`);
- **engine setup** (`guided.compiler.engine_for`: the native grammar, its DFAs copied in);
- **first mask**;
- **schema algebra and rules**: what is left of `JsonSchema(...).to_ir()` (normalisation,
  `$ref`/`allOf`/`anyOf`, rule emission).

Prints per phase: total seconds, share, and the median and p99 over cases of the phase's time.
Timers cost a few microseconds per call; `--clock cpu` reads process time.

    .venv/bin/python benchmarks/compile_phases.py                  # 300-case stratified sample
    .venv/bin/python benchmarks/compile_phases.py --sample 0       # every case
    GUIDED_IR_KERNELS=numpy .venv/bin/python benchmarks/compile_phases.py   # without the compiled kernels
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np

os.environ.setdefault("GUIDED_IR_CACHE", "0")

import guided  # noqa: E402
from guided import compiler, models  # noqa: E402
from guided.frontends.jsonschema import rules, terminals  # noqa: E402
from guided.ir import dfa, dfa_ops  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "maskbench"
PHASES = ["schema algebra and rules", "terminal automata", "automaton operations", "LALR(1) tables", "engine setup",
          "first mask"]


class PhaseClock:
    """Charges elapsed time to the innermost running phase."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.stack: list[str] = []
        self.totals: dict[str, float] = {}
        self.mark = clock()

    def _switch(self) -> None:
        now = self.clock()
        if self.stack:
            self.totals[self.stack[-1]] = self.totals.get(self.stack[-1], 0.0) + now - self.mark
        self.mark = now

    def wrap(self, phase: str, fn):
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            self._switch()
            self.stack.append(phase)
            try:
                return fn(*args, **kwargs)
            finally:
                self._switch()
                self.stack.pop()
        return timed

    def patch(self, owner, name: str, phase: str) -> None:
        setattr(owner, name, self.wrap(phase, getattr(owner, name)))

    def take(self) -> dict[str, float]:
        out, self.totals = self.totals, {}
        return out


def stratified(paths: list[pathlib.Path], count: int) -> list[pathlib.Path]:
    if count <= 0 or count >= len(paths):
        return paths
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=300, help="cases, evenly spread (0: all)")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    args = ap.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    tokenizer = models.load_tokenizer()
    vocab = guided.Vocabulary.from_tokenizer(tokenizer)
    pc = PhaseClock(clock)
    originals = {name: getattr(dfa, name) for name in ("determinize", "minimize", "trim")}
    originals["_product"] = dfa_ops._product
    wrapped = {name: pc.wrap("automaton operations", fn) for name, fn in originals.items()}
    # Modules that imported these functions hold their own references: replace those too.
    for module in [m for name, m in sys.modules.items() if name.startswith("guided") and m is not None]:
        for name, fn in originals.items():
            if getattr(module, name, None) is fn:
                setattr(module, name, wrapped[name])
    pc.patch(terminals.Terminals, "bare", "terminal automata")
    pc.patch(rules, "lalr_tables", "LALR(1) tables")
    pc.patch(compiler, "engine_for", "engine setup")
    paths = stratified(sorted(DATA.glob("*.json")), args.sample)
    per_case: list[dict[str, float]] = []
    refused = 0
    words = np.zeros((1, (vocab.size + 31) // 32), np.int32)
    first_mask = pc.wrap("first mask", lambda m: m.fill_bitmask(words, 0))
    algebra = PHASES[0]
    for path in paths:
        schema = json.loads(path.read_text())["schema"]
        pc.take()
        pc.stack = [algebra]
        pc.mark = clock()
        try:
            grammar = compiler.compile(guided.JsonSchema(schema), vocab, cache=False)
            first_mask(grammar.matcher())
        except guided.GuidedError:
            refused += 1
        pc._switch()
        pc.stack = []
        per_case.append(pc.take())
    totals = {p: sum(c.get(p, 0.0) for c in per_case) for p in PHASES}
    grand = sum(totals.values()) or 1.0
    kernels = "numpy" if dfa.CompiledKernels.trim is None else "compiled (native core)"
    print(f"{len(paths)} MaskBench cases ({refused} refused), SmolLM2 vocabulary, {args.clock} clock, "
          f"automaton kernels: {kernels}; compile + first mask from scratch")
    print()
    print("| phase | total s | share | median ms | p99 ms |")
    print("|---|---:|---:|---:|---:|")
    for p in sorted(PHASES, key=lambda p: -totals[p]):
        times = sorted(c.get(p, 0.0) for c in per_case)
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))]
        print(f"| {p} | {totals[p]:.2f} | {totals[p] / grand:.0%} | {statistics.median(times) * 1e3:.2f} | "
              f"{p99 * 1e3:.1f} |")
    case_totals = sorted(sum(c.values()) for c in per_case)
    print(f"| **all** | {grand:.2f} | 100% | {statistics.median(case_totals) * 1e3:.2f} | "
          f"{case_totals[min(len(case_totals) - 1, int(0.99 * len(case_totals)))] * 1e3:.1f} |")


if __name__ == "__main__":
    main()
