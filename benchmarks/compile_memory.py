"""Peak memory of compiling: each shared MaskBench case, and the large-bound cases issue 14 names.

Each case compiles from scratch (no in-memory or on-disk cache) and computes its first mask in a
child process forked from a parent that has already loaded guided, the tokenizer and the
vocabulary.  A case's figure is the child's peak resident set (``ru_maxrss``) less its resident
set when it started: what compiling that one schema added at its peak, Python and native
allocations alike (tracemalloc would miss the native core's).  The child also reports its CPU
time.  Forking costs a few milliseconds a case, which the figures do not include.

Prints the median, p99 and max over the MaskBench cases, the cases at the top, and a table for
the large-bound specs (``maxLength: 100000``, a 10,000-value enum, ``maxItems: 100000``,
``.{4096}``), each with its CPU time or its refusal.

    .venv/bin/python benchmarks/compile_memory.py                 # 300-case stratified sample
    .venv/bin/python benchmarks/compile_memory.py --sample 0      # every case
    .venv/bin/python benchmarks/compile_memory.py --sample -1     # the large-bound specs only
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import resource
import statistics
import string
import sys
import time
import warnings

import numpy as np

os.environ.setdefault("GUIDED_IR_CACHE", "0")

import guided  # noqa: E402
from guided import compiler, models  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from compile_phases import stratified  # noqa: E402  (the same case sample)

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "maskbench"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def _resident_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_KB


def _enum_values(n: int) -> list[str]:
    rnd = random.Random(0)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rnd.choice(string.ascii_letters + string.digits + "_-") for _ in range(rnd.randint(3, 20))))
    return sorted(out)


def large_specs() -> dict[str, object]:
    """The large-bound specs of issue 14's memory target, and neighbours of them."""
    return {
        "string maxLength 100000": guided.JsonSchema({"type": "string", "maxLength": 100000}),
        "enum of 10,000 strings": guided.JsonSchema({"type": "string", "enum": _enum_values(10000)}),
        "enum of 10,000 strings, canonical": guided.JsonSchema({"type": "string", "enum": _enum_values(10000)},
                                                               canonical=True),
        "enum of 1,000 strings": guided.JsonSchema({"type": "string", "enum": _enum_values(1000)}),
        "array maxItems 100000": guided.JsonSchema({"type": "array", "items": {"type": "integer"}, "maxItems": 100000}),
        "array maxItems 1000": guided.JsonSchema({"type": "array", "items": {"type": "integer"}, "maxItems": 1000}),
        "regex .{4096}": guided.Regex(".{4096}"),
        "regex x[0-9]{1,100000}y": guided.Regex("x[0-9]{1,100000}y"),
    }


def measure(spec, vocab, words) -> tuple[str, float, float]:
    """(outcome, peak MB added, CPU ms) of compiling ``spec`` and its first mask, in a forked child."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compile, report, exit without running the parent's cleanup
        os.close(read)
        warnings.simplefilter("ignore")  # unknown formats: reported by other benchmarks
        start_kb = _resident_kb()
        t = time.process_time()
        try:
            compiler.compile(spec, vocab, cache=False).matcher().fill_bitmask(words, 0)
            outcome = "ok"
        except guided.GuidedError as exc:
            outcome = f"refused: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}"
        except Exception as exc:  # noqa: BLE001 - reported as a bug, not hidden
            outcome = f"BUG {type(exc).__name__}: {exc}"
        cpu_ms = (time.process_time() - t) * 1e3
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        os.write(write, json.dumps([outcome, max(0, peak_kb - start_kb) / 1024, cpu_ms]).encode())
        os._exit(0)
    os.close(write)
    data = b""
    while chunk := os.read(read, 65536):
        data += chunk
    os.close(read)
    _, status = os.waitpid(pid, 0)
    if not data:
        return f"child died (status {status})", float("nan"), float("nan")
    outcome, mb, ms = json.loads(data)
    return outcome, mb, ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=300, help="MaskBench cases, evenly spread (0: all, -1: none)")
    ap.add_argument("--top", type=int, default=5, help="how many of the largest cases to list")
    args = ap.parse_args()
    vocab = guided.Vocabulary.from_tokenizer(models.load_tokenizer())
    words = np.zeros((1, (vocab.size + 31) // 32), np.int32)
    compiler.compile(guided.Regex("warm"), vocab, cache=False).matcher().fill_bitmask(words, 0)  # load the core
    print(f"SmolLM2 vocabulary ({vocab.size} tokens); peak resident memory a compilation adds, in a forked child; "
          f"engine {compiler.resolve_engine()}")
    print()
    if args.sample >= 0:
        paths = stratified(sorted(DATA.glob("*.json")), args.sample)
        rows = []
        for path in paths:
            schema = json.loads(path.read_text())["schema"]
            outcome, mb, ms = measure(guided.JsonSchema(schema), vocab, words)
            rows.append((mb, ms, path.stem, outcome))
        done = [r for r in rows if r[3] == "ok"]
        bugs = [r for r in rows if r[3].startswith(("BUG", "child"))]
        mbs = sorted(r[0] for r in done)

        def at(q: float) -> float:
            return mbs[min(len(mbs) - 1, int(q * len(mbs)))]

        print(f"{len(rows)} MaskBench cases: {len(done)} compiled, {len(rows) - len(done) - len(bugs)} refused, "
              f"{len(bugs)} crashed")
        print()
        print("| peak MB added | median | p99 | max |")
        print("|---|---:|---:|---:|")
        print(f"| compiled cases | {statistics.median(mbs):.1f} | {at(0.99):.1f} | {mbs[-1]:.1f} |")
        print()
        print("| largest cases | peak MB | CPU ms |")
        print("|---|---:|---:|")
        for mb, ms, name, _ in sorted(done, reverse=True)[:args.top]:
            print(f"| {name} | {mb:.1f} | {ms:.0f} |")
        for mb, ms, name, outcome in bugs:
            print(f"| {name} | {outcome} | |")
        print()
    print("| large-bound spec | outcome | peak MB added | CPU ms |")
    print("|---|---|---:|---:|")
    for name, spec in large_specs().items():
        outcome, mb, ms = measure(spec, vocab, words)
        print(f"| {name} | {outcome} | {mb:.1f} | {ms:.0f} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
