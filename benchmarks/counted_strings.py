"""Compile time and peak memory of long bounded strings (issue 14's target: a ``maxLength: 100000``
string compiles in under 100 ms and 100 MB), each in a fresh process: "cold" as the first
compile of the process, "warm" after another counted string's (imports and the one-character
automaton, built once per process, are then paid).

Per schema: the IR (`JsonSchema.to_ir`), the engine against SmolLM2's vocabulary (token trie
built before timing), and the first mask; then the mean time of masks along a walk through the
string's content.  Peak memory is tracemalloc's peak over the timed part (Python and numpy
allocations) and the process's peak RSS (``ru_maxrss``, which includes the interpreter, torch-free
guided and the vocabulary).

    .venv/bin/python benchmarks/counted_strings.py
    GUIDED_ENGINE=python .venv/bin/python benchmarks/counted_strings.py
"""

from __future__ import annotations

import json
import subprocess
import sys

SCHEMAS = [
    {"type": "string", "maxLength": 100_000},
    {"type": "string", "minLength": 1_000, "maxLength": 100_000},
    {"type": "string", "minLength": 100_000},
    {"type": "string", "maxLength": 4_096},
    {"type": "string", "maxLength": 256},  # the longest still unrolled (native engine), for comparison
    {"type": "object", "properties": {"text": {"type": "string", "maxLength": 32_767}}, "required": ["text"]},
]

CHILD = r"""
import json, resource, sys, time, tracemalloc
import guided
from guided import models
tok = models.load_tokenizer()
vocab = guided.Vocabulary.from_tokenizer(tok)
from guided.engine.token_table import TokenTable
TokenTable.of(vocab)
schema = json.loads(sys.argv[1])
if sys.argv[2] == "warm":  # one-time costs first (imports, the one-character automaton): another bound
    guided.compile(guided.JsonSchema({"type": "string", "minLength": 7, "maxLength": 77_777}), vocab, cache=False).matcher().mask()
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()
t0, c0 = time.perf_counter(), time.process_time()
spec = guided.JsonSchema(schema)
ir = spec.to_ir()
t1 = time.perf_counter()
g = guided.compile(spec, vocab, cache=False)
m = g.matcher()
m.mask()
t2, c2 = time.perf_counter(), time.process_time()
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
ids = tok.encode(("" if schema.get("type") == "string" else '{"text": ') + '"' + "lorem ipsum dolor sit amet " * 8,
                 add_special_tokens=False)
t3 = time.perf_counter()
for t in ids:
    m.advance(t)
    m.mask()
t4 = time.perf_counter()
print(json.dumps({"ir_ms": 1e3 * (t1 - t0), "compile_ms": 1e3 * (t2 - t0), "compile_cpu_ms": 1e3 * (c2 - c0), "peak_mb": peak / 2 ** 20,
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_before_mb": rss0 / 1024,
                  "mask_us": 1e6 * (t4 - t3) / len(ids), "engine": type(g).__name__,
                  "counted": sum(getattr(t, "count", None) is not None for t in getattr(ir, "terminals", ()))}))
"""


def main() -> None:
    print("| schema | process | engine | counted terminals | IR ms | compile + first mask ms (CPU) | "
          "tracemalloc peak MB | peak RSS MB (before) | mask µs (walk) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for schema in SCHEMAS:
        for mode in ("cold", "warm"):
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(schema), mode], capture_output=True, text=True)
            if out.returncode:
                print(f"| `{json.dumps(schema)}` | {mode} | error: {out.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| `{json.dumps(schema)}` | {mode} | {r['engine']} | {r['counted']} | {r['ir_ms']:.1f} | "
                  f"{r['compile_ms']:.1f} ({r['compile_cpu_ms']:.1f}) | {r['peak_mb']:.1f} | "
                  f"{r['rss_mb']:.0f} ({r['rss_before_mb']:.0f}) | {r['mask_us']:.0f} |")


if __name__ == "__main__":
    main()
