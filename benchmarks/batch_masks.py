"""Batch mask filling with the native core: `guided.fill_bitmasks` with 2 threads against 1.

Two workloads, SmolLM2 vocabulary, MaskBench schemas:

- **cold**: 64 matchers of 64 different schemas, each half-way through one of its valid documents,
  on freshly compiled grammars (no mask computed yet): the first fill computes every mask.  Each
  repetition compiles two fresh copies of the 64 grammars and fills one with 1 thread, the other
  with 2 (alternating which goes first).
- **warm**: 1,000 matchers spread over the same schemas and over every position of their
  documents, all masks computed once already: a fill copies cached masks.  The last row copies
  the same bytes with no mask work (numpy, 1 thread against 2): where memory bandwidth, not the
  core, bounds what a second thread can gain on this workload.

    .venv/bin/python benchmarks/batch_masks.py
    .venv/bin/python benchmarks/batch_masks.py --cold 64 --warm 1000 --repeat 5
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import threading
import time

import numpy as np

import guided
from guided import models

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "maskbench"


def cases(tokenizer, vocab, count: int):
    """``count`` (schema, token ids of a valid document) pairs that compile and walk through."""
    out = []
    for path in sorted(DATA.glob("*.json")):
        case = json.loads(path.read_text())
        doc = next((t["data"] for t in case["tests"] if t["valid"]), None)
        if doc is None:
            continue
        ids = tokenizer.encode(json.dumps(doc), add_special_tokens=False)
        if len(ids) < 8:
            continue
        try:
            g = guided.compile(guided.JsonSchema(case["schema"]), vocab, engine="native", cache=False)
            m = g.matcher()
            for t in ids:
                m.advance(t)
        except guided.GuidedError:
            continue
        out.append((case["schema"], ids))
        if len(out) == count:
            break
    return out


def halfway(grammar, ids):
    m = grammar.matcher()
    for t in ids[: len(ids) // 2]:
        m.advance(t)
    return m


def fill_time(matchers, bitmask, threads: int) -> float:
    t0 = time.perf_counter()
    guided.fill_bitmasks(matchers, bitmask, threads=threads)
    return time.perf_counter() - t0


def cold(pairs, vocab, repeat: int) -> dict:
    times = {1: [], 2: []}
    bitmask = np.zeros((len(pairs), (vocab.size + 31) // 32), np.int32)
    for r in range(repeat):
        sets = {}
        for threads in (1, 2):
            grammars = [guided.compile(guided.JsonSchema(s), vocab, engine="native", cache=False) for s, _ in pairs]
            # advancing builds lexer states and parser stacks but no mask
            sets[threads] = [halfway(g, ids) for g, (_, ids) in zip(grammars, pairs)]
        for threads in ((1, 2) if r % 2 == 0 else (2, 1)):
            times[threads].append(fill_time(sets[threads], bitmask, threads))
    return times


def warm(pairs, vocab, count: int, repeat: int) -> dict:
    grammars = [guided.compile(guided.JsonSchema(s), vocab, engine="native", cache=False) for s, _ in pairs]
    matchers = []
    k = 0
    while len(matchers) < count:
        g, (_, ids) = grammars[k % len(grammars)], pairs[k % len(pairs)]
        cut = (k // len(grammars)) % (len(ids) + 1)
        m = g.matcher()
        for t in ids[:cut]:
            m.advance(t)
        matchers.append(m)
        k += 1
    bitmask = np.zeros((len(matchers), (vocab.size + 31) // 32), np.int32)
    guided.fill_bitmasks(matchers, bitmask, threads=1)  # every mask computed once
    times = {1: [], 2: []}
    for r in range(repeat):
        for threads in ((1, 2) if r % 2 == 0 else (2, 1)):
            times[threads].append(fill_time(matchers, bitmask, threads))
    return times


def copy_ceiling(rows: int, words: int, repeat: int) -> dict:
    """The same bytes copied with no mask work at all (numpy releases the GIL while copying), 1
    thread against 2 halves: what memory lets a fill of cached masks gain from a second thread."""
    src = np.ones((rows, words), np.int32)
    dst = np.zeros_like(src)
    half = rows // 2
    times = {1: [], 2: []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times[1].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        other = threading.Thread(target=np.copyto, args=(dst[half:], src[half:]))
        other.start()
        np.copyto(dst[:half], src[:half])
        other.join()
        times[2].append(time.perf_counter() - t0)
    return times


def report(name: str, times: dict, rows: int) -> None:
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"| {name} | {rows} | {one * 1e3:.2f} | {two * 1e3:.2f} | {one / two:.2f}x | "
          f"{max(times[1]) * 1e3:.2f} / {max(times[2]) * 1e3:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cold", type=int, default=64)
    ap.add_argument("--warm", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tokenizer = models.load_tokenizer()
    vocab = guided.Vocabulary.from_tokenizer(tokenizer)
    pairs = cases(tokenizer, vocab, args.cold)
    print(f"{len(pairs)} schemas; SmolLM2 vocabulary ({vocab.size} tokens); {args.repeat} repetitions; "
          f"medians of one fill_bitmasks call")
    print("| workload | rows | 1 thread (ms) | 2 threads (ms) | speed-up | max 1 / 2 (ms) |")
    print("|---|---|---|---|---|---|")
    report("cold states (fresh grammars)", cold(pairs, vocab, args.repeat), len(pairs))
    report("warm states (cached masks)", warm(pairs, vocab, args.warm, args.repeat * 20), args.warm)
    report("plain copy of the same bytes (ceiling for warm)", copy_ceiling(args.warm, (vocab.size + 31) // 32,
                                                                         args.repeat * 20), args.warm)


if __name__ == "__main__":
    main()
