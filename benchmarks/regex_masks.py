#!/usr/bin/env python
"""Regex constraints on the real SmolLM2 tokenizer: compile time and per-token mask latency.

For every practical regex of ``tests/regexes.py`` (plus a ~300-character alternation of city
names), this script:

1. draws ``--samples`` documents from the regex with a small seeded generator (deterministic:
   the same documents on every run and for any ``--regex`` filter) and tokenizes them with the
   SmolLM2 tokenizer;
2. times ``guided.compile(guided.Regex(p), vocab, cache=False)`` (the DFA; the vocabulary's token
   table is built once beforehand and its one-off cost reported separately);
3. walks every document token by token, timing ``m.fill_bitmask(bitmask, 0)`` (the mask) and
   ``m.advance(token)`` at each step, EOS step included:

   * **cold**: a freshly compiled grammar per document, so each state's mask is computed the first
     time the document reaches it (the cost of a first request for a regex);
   * **warm**: one compiled grammar on its second pass over all documents (every mask cached);

4. does the same with outlines-core when it is installed (``Index`` construction as its compile
   time; ``Guide.write_mask_into`` into the same packed int32 bitmask and ``Guide.advance``), and
   compares the two engines' allowed-token sets at every step of every document.

Timings use ``time.perf_counter_ns`` on one thread (``torch.set_num_threads(1)``).

    .venv/bin/python benchmarks/regex_masks.py                  # all regexes, 20 documents each
    .venv/bin/python benchmarks/regex_masks.py --regex uuid --regex email --samples 50
    .venv/bin/python benchmarks/regex_masks.py --json /tmp/masks.json --profile
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import platform
import pstats
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import guided  # noqa: E402
from timing import fmt, gc_paused, median, pct, perf_ns  # noqa: E402 (benchmarks/ is on sys.path)
from guided.decoding.torch_masks import allocate_bitmask  # noqa: E402
from guided.engine.token_table import TokenTable  # noqa: E402
from guided.models import load_tokenizer  # noqa: E402
from guided.vocab import bytes_to_unicode  # noqa: E402
from tests.regexes import PRACTICAL  # noqa: E402

try:  # Python >= 3.11
    import re._constants as sre_constants
    import re._parser as sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]


CITIES = [
    "New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia", "San Antonio",
    "San Diego", "Dallas", "San Jose", "Austin", "Jacksonville", "Fort Worth", "Columbus",
    "Charlotte", "Indianapolis", "San Francisco", "Seattle", "Denver", "Washington", "Boston",
    "El Paso", "Nashville", "Detroit", "Oklahoma City", "Portland", "Las Vegas", "Memphis",
    "Louisville", "Baltimore",
]  # fmt: skip

EXTRA = {
    # A realistic ~300-character alternation: options with shared prefixes ("San ...", "Los/Las"),
    # spaces and mixed lengths (long_alternation's options all look alike).
    "alternation_300": "(" + "|".join(CITIES) + ")",
}

# ---------------------------------------------------------------------------------------------
# Deterministic sample documents, generated from the regex's own parse tree


# Characters that "." and negated classes draw from: mostly printable ASCII, sometimes not.
_ASCII = [chr(c) for c in range(0x20, 0x7F)]
_NON_ASCII = list("éèàüöñçßøåæœ—–’“”…€£¥°±×÷ÀÉÖ日本語中文字한국어😀🚀✓∑")


class RegexSampler:
    """Random strings fully matching a regex, from ``re``'s parser; seeded, so reproducible.

    Handles what the practical regexes use: literals, classes (ranges, negation, ``\\d \\w \\s``),
    ``.``, groups, alternation, bounded and unbounded repeats, and ``(?i)``.  Unbounded repeats
    draw up to ``max_extra`` extra iterations.
    """

    def __init__(self, pattern: str, rng: random.Random, max_extra: int = 12):
        self.parsed = sre_parse.parse(pattern)
        self.rng = rng
        self.max_extra = max_extra
        self.icase = bool(self.parsed.state.flags & re.IGNORECASE)

    def sample(self) -> str:
        out: list[str] = []
        self._gen(self.parsed, out, self.icase)
        return "".join(out)

    def _case(self, ch: str, icase: bool) -> str:
        if icase and self.rng.random() < 0.5:
            return ch.swapcase()
        return ch

    def _pool_char(self, ok: Callable[[str], bool]) -> str:
        for _ in range(1000):
            pool = _ASCII if self.rng.random() < 0.85 else _NON_ASCII
            ch = self.rng.choice(pool)
            if ok(ch):
                return ch
        raise ValueError("no pool character fits the class")

    def _gen(self, items: Any, out: list[str], icase: bool) -> None:
        c = sre_constants
        for op, av in items:
            if op is c.LITERAL:
                out.append(self._case(chr(av), icase))
            elif op is c.NOT_LITERAL:
                out.append(self._pool_char(lambda ch, av=av: ord(ch) != av))
            elif op is c.ANY:
                out.append(self._pool_char(lambda ch: ch != "\n"))
            elif op is c.IN:
                out.append(self._case(self._in(av), icase))
            elif op is c.BRANCH:
                self._gen(self.rng.choice(av[1]), out, icase)
            elif op is c.SUBPATTERN:
                _group, add_flags, del_flags, sub = av
                sub_icase = (icase or bool(add_flags & re.IGNORECASE)) and not del_flags & re.IGNORECASE
                self._gen(sub, out, sub_icase)
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT) or op is getattr(c, "POSSESSIVE_REPEAT", None):
                lo, hi, sub = av
                if hi == c.MAXREPEAT:
                    n = lo + self.rng.randint(0, self.max_extra)
                else:
                    n = self.rng.randint(lo, hi)
                for _ in range(n):
                    self._gen(sub, out, icase)
            elif op is c.AT:
                continue
            else:
                raise NotImplementedError(f"sampler: unsupported regex op {op}")

    def _in(self, items: list) -> str:
        c = sre_constants
        if items and items[0][0] is c.NEGATE:
            rest = items[1:]
            return self._pool_char(lambda ch: not _class_contains(rest, ch))
        choices: list[tuple[int, int]] = []
        for op, av in items:
            if op is c.LITERAL:
                choices.append((av, av))
            elif op is c.RANGE:
                choices.append(av)
            elif op is c.CATEGORY:
                choices.extend(_CATEGORY_RANGES[av])
            else:
                raise NotImplementedError(f"sampler: unsupported class item {op}")
        weights = [hi - lo + 1 for lo, hi in choices]
        lo, hi = self.rng.choices(choices, weights=weights)[0]
        return chr(self.rng.randint(lo, hi))


_CATEGORY_RANGES = {
    sre_constants.CATEGORY_DIGIT: [(48, 57)],
    sre_constants.CATEGORY_WORD: [(48, 57), (65, 90), (95, 95), (97, 122)],
    sre_constants.CATEGORY_SPACE: [(32, 32), (9, 13)],
}


def _class_contains(items: list, ch: str) -> bool:
    c, o = sre_constants, ord(ch)
    for op, av in items:
        if op is c.LITERAL and o == av:
            return True
        if op is c.RANGE and av[0] <= o <= av[1]:
            return True
        if op is c.CATEGORY:
            if av in _CATEGORY_RANGES and any(lo <= o <= hi for lo, hi in _CATEGORY_RANGES[av]):
                return True
            if av.name.startswith("CATEGORY_NOT_"):
                pos = getattr(c, av.name.replace("NOT_", ""))
                if not any(lo <= o <= hi for lo, hi in _CATEGORY_RANGES[pos]):
                    return True
    return False


def make_documents(name: str, pattern: str, n: int, seed: int, dfa) -> list[str]:
    """``n`` documents of ``pattern`` (fewer when the language is tiny), checked with ``re`` and the DFA."""
    rng = random.Random(f"{seed}:{name}")
    sampler = RegexSampler(pattern, rng)
    docs: list[str] = []
    for _ in range(n * 50):
        if len(docs) == n:
            break
        s = sampler.sample()
        if re.fullmatch(pattern, s) and dfa.fullmatch(s.encode("utf-8")):
            docs.append(s)
    return docs


# ---------------------------------------------------------------------------------------------
# Statistics and formatting


def summary(values: list[int]) -> dict[str, float]:
    return {"p50": pct(values, 50), "p99": pct(values, 99), "max": (max(values) / 1000 if values else float("nan"))}


def fmt3(s: dict[str, float] | None) -> str:
    if not s:
        return "–"
    return f"{fmt(s['p50'])} / {fmt(s['p99'])} / {fmt(s['max'])}"


# ---------------------------------------------------------------------------------------------
# guided


def walk_guided(grammar_for_doc: Callable[[], Any], docs: list[list[int]], bitmask, eos: int):
    """Time fill_bitmask + advance at every step (the EOS step's mask included).

    ``grammar_for_doc`` gives the grammar of each document: a fresh one (cold) or a shared one (warm).
    """
    mask_ns: list[int] = []
    adv_ns: list[int] = []
    states_computed = 0
    for ids in docs:
        g = grammar_for_doc()
        before = g.stats.states_computed
        m = g.matcher()
        with gc_paused():
            for t in ids:
                t0 = perf_ns()
                m.fill_bitmask(bitmask, 0)
                t1 = perf_ns()
                m.advance(t)
                t2 = perf_ns()
                mask_ns.append(t1 - t0)
                adv_ns.append(t2 - t1)
            # EOS step: the mask is timed like any other; advance times cover text tokens only.
            t0 = perf_ns()
            m.fill_bitmask(bitmask, 0)
            mask_ns.append(perf_ns() - t0)
            m.advance(eos)
        states_computed += g.stats.states_computed - before
    return mask_ns, adv_ns, states_computed


def bench_guided(
    pattern: str, vocab, docs: list[list[int]], eos: int, repeat: int, collect: bool = True
) -> dict[str, Any]:
    spec = guided.Regex(pattern)
    compile_ns = []
    for _ in range(repeat):
        with gc_paused():
            t0 = perf_ns()
            g = guided.compile(spec, vocab, cache=False)
            compile_ns.append(perf_ns() - t0)
    bitmask = allocate_bitmask(1, vocab.size)

    if collect:
        gc.collect()
    fresh = lambda: guided.compile(spec, vocab, cache=False)  # noqa: E731
    cold_mask, cold_adv, cold_states = walk_guided(fresh, docs, bitmask, eos)

    shared = guided.compile(spec, vocab, cache=False)
    if collect:
        gc.collect()  # before the untimed pass: a collection right before timing slows the next steps
    walk_guided(lambda: shared, docs, bitmask, eos)  # first pass: computes every visited mask
    warm_mask, warm_adv, _ = walk_guided(lambda: shared, docs, bitmask, eos)
    return {
        "states": g.dfa.num_states - 1,  # live states (state 0 is the dead state)
        "compile_ms": statistics.median(compile_ns) / 1e6,
        "compile_ns": compile_ns,
        "cold_states_computed_per_doc": cold_states / max(1, len(docs)),
        "cold_mask_us": summary(cold_mask),
        "cold_advance_us": summary(cold_adv),
        "warm_mask_us": summary(warm_mask),
        "warm_advance_us": summary(warm_adv),
        "cold_mask_ns": cold_mask,
        "warm_mask_ns": warm_mask,
        "warm_advance_ns": warm_adv,
        "states_computed_total": shared.stats.states_computed,
        "mask_seconds_total": shared.stats.seconds,
        "grammar": shared,
    }


# ---------------------------------------------------------------------------------------------
# outlines-core


class Outlines:
    """outlines-core's Vocabulary built from the same tokenizer, or the reason it is unavailable."""

    def __init__(self, tokenizer, vocab: guided.Vocabulary, enabled: bool = True):
        self.error: str | None = None
        self.version = ""
        self.vocab = None
        self.eos = tokenizer.eos_token_id
        self.build_ms = float("nan")
        self.conversion_mismatches = 0
        if not enabled:
            self.error = "disabled (--no-outlines)"
            return
        try:
            import importlib.metadata

            import outlines_core

            self.oc = outlines_core
            self.version = importlib.metadata.version("outlines-core")
        except Exception as e:  # noqa: BLE001 - any import failure just disables the column
            self.error = f"not installed ({type(e).__name__}: {e})"
            return
        try:
            t0 = perf_ns()
            token_map = self._token_map(tokenizer, vocab)
            self.vocab = outlines_core.Vocabulary(self.eos, token_map)
            self.build_ms = (perf_ns() - t0) / 1e6
        except Exception as e:  # noqa: BLE001
            self.error = f"error building its Vocabulary: {type(e).__name__}: {e}"

    def _token_map(self, tokenizer, vocab: guided.Vocabulary) -> dict[bytes, list[int]]:
        """Token bytes -> ids, decoded from the tokenizer's byte-level token strings (GPT-2 alphabet).

        outlines-core's ``Vocabulary(eos_id, map)`` takes the tokens' *bytes* (str keys would be
        UTF-8 encoded as is, so "Ġhello" would mean "Ġhello", not " hello").  Special tokens are
        left out; the EOS id is given separately.  The result is checked against guided's own
        token bytes (the mismatches are counted and shown in the report header).
        """
        decoder = {ch: b for b, ch in bytes_to_unicode().items()}
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        for i, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
            if getattr(tok, "special", False):
                special.add(int(i))
        special.add(self.eos)
        token_map: dict[bytes, list[int]] = {}
        for text, i in tokenizer.get_vocab().items():
            if i in special:
                continue
            data = bytes(decoder[ch] for ch in text)
            token_map.setdefault(data, []).append(i)
            if i < vocab.size and vocab.token_bytes[i] != data:
                self.conversion_mismatches += 1
        return token_map

    def bench(self, pattern: str, docs: list[list[int]], words: int, repeat: int) -> dict[str, Any]:
        if self.vocab is None:
            return {"error": self.error}
        oc = self.oc
        try:
            compile_ns = []
            for _ in range(repeat):
                with gc_paused():
                    t0 = perf_ns()
                    index = oc.Index(pattern, self.vocab)
                    compile_ns.append(perf_ns() - t0)
                if compile_ns[-1] > 1e9:  # a slow build is not worth repeating
                    break
        except Exception as e:  # noqa: BLE001
            return {"error": f"Index: {type(e).__name__}: {str(e)[:120]}"}
        bitmask = torch.zeros((1, words), dtype=torch.int32)
        ptr, numel = bitmask.data_ptr(), bitmask.numel()
        mask_ns: list[int] = []
        adv_ns: list[int] = []
        truncated: list[str] = []  # documents whose tokens outlines-core refused: timed up to there
        gc.collect()
        for _pass in range(2):  # first pass warms caches, the second is timed
            mask_ns.clear()
            adv_ns.clear()
            truncated.clear()
            for d, ids in enumerate(docs):
                guide = oc.Guide(index)
                with gc_paused():
                    try:
                        for t in ids:
                            t0 = perf_ns()
                            guide.write_mask_into(ptr, numel, 4)
                            t1 = perf_ns()
                            guide.advance(t, return_tokens=False)
                            t2 = perf_ns()
                            mask_ns.append(t1 - t0)
                            adv_ns.append(t2 - t1)
                    except Exception as e:  # noqa: BLE001 - a refused token ends this document's walk
                        truncated.append(f"doc {d}: {type(e).__name__}: {str(e)[:100]}")
                        continue
                    # EOS step: the mask only (outlines-core's Guide.advance raises on EOS).
                    t0 = perf_ns()
                    guide.write_mask_into(ptr, numel, 4)
                    mask_ns.append(perf_ns() - t0)
        return {
            "compile_ms": statistics.median(compile_ns) / 1e6,
            "compile_ns": compile_ns,
            "truncated_docs": list(truncated),
            "mask_us": summary(mask_ns),
            "advance_us": summary(adv_ns),
            "mask_ns": mask_ns,
            "advance_ns": adv_ns,
            "index": index,
        }

    def compare(self, index, grammar, docs: list[list[int]], vocab, guided_eos: set[int]) -> dict[str, Any]:
        """Allowed sets of both engines at every step of every document (EOS step included)."""
        words = (vocab.size + 31) // 32
        theirs = torch.zeros((1, words), dtype=torch.int32)
        ours = allocate_bitmask(1, vocab.size)
        ptr = theirs.data_ptr()
        # guided allows every EOS id of the tokenizer ({0, 2} for SmolLM2); outlines-core only its one.
        drop = np.zeros(words * 32, dtype=bool)
        drop[sorted(guided_eos - {self.eos})] = True
        keep = ~np.packbits(drop, bitorder="little").view("<i4")
        steps = disagreeing_steps = only_guided_total = only_outlines_total = 0
        examples: list[str] = []
        rejected_docs = []
        for d, ids in enumerate(docs):
            guide = self.oc.Guide(index)
            m = grammar.matcher()
            for k, t in enumerate((*ids, self.eos)):
                self_ok = True
                m.fill_bitmask(ours, 0)
                theirs.zero_()
                guide.write_mask_into(ptr, theirs.numel(), 4)
                a = ours.numpy()[0] & keep
                b = theirs.numpy()[0]
                steps += 1
                if not np.array_equal(a, b):
                    disagreeing_steps += 1
                    only_g = np.flatnonzero(np.unpackbits((a & ~b).view(np.uint8), bitorder="little"))
                    only_o = np.flatnonzero(np.unpackbits((b & ~a).view(np.uint8), bitorder="little"))
                    only_guided_total += len(only_g)
                    only_outlines_total += len(only_o)
                    if len(examples) < 2:
                        examples.append(
                            f"doc {d} step {k}: {len(only_g)} only guided {_show(vocab, only_g)}, "
                            f"{len(only_o)} only outlines-core {_show(vocab, only_o)}"
                        )
                if not (int(b[t >> 5]) >> (t & 31)) & 1:
                    self_ok = False
                elif k < len(ids):  # outlines-core's Guide.advance raises on EOS: only its bit is checked
                    try:
                        guide.advance(t, return_tokens=False)
                    except Exception:  # noqa: BLE001
                        self_ok = False
                m.advance(t)
                if not self_ok:
                    rejected_docs.append(d)
                    break
        return {
            "steps": steps,
            "disagreeing_steps": disagreeing_steps,
            "tokens_only_guided_allows": only_guided_total,
            "tokens_only_outlines_allows": only_outlines_total,
            "examples": examples,
            "outlines_rejected_docs": rejected_docs,
        }


def _show(vocab, ids: np.ndarray, n: int = 4) -> str:
    shown = ", ".join(f"{int(i)}:{vocab.token_text(int(i))!r}" for i in ids[:n])
    return f"[{shown}, ...]" if len(ids) > n else f"[{shown}]"


# ---------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--regex", action="append", default=[], metavar="NAME",
                        help="only this regex (repeatable; substring match on the names)")
    parser.add_argument("--samples", type=int, default=20, help="documents per regex (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the document generator")
    parser.add_argument("--repeat", type=int, default=3, help="compile timings per regex; the median is shown")
    parser.add_argument("--json", metavar="PATH", help="write the raw results (per-step timings, documents) here")
    parser.add_argument("--no-outlines", action="store_true", help="skip outlines-core even when installed")
    parser.add_argument("--profile", action="store_true",
                        help="cProfile guided's compile + cold walks and print the hot spots")
    args = parser.parse_args(argv)  # fmt: skip

    torch.set_num_threads(1)
    regexes = {**PRACTICAL, **EXTRA}
    if args.regex:
        regexes = {k: v for k, v in regexes.items() if any(f in k for f in args.regex)}
        if not regexes:
            parser.error(f"no regex matches {args.regex}; names: {', '.join({**PRACTICAL, **EXTRA})}")

    t0 = perf_ns()
    tokenizer = load_tokenizer()
    tok_ms = (perf_ns() - t0) / 1e6
    t0 = perf_ns()
    vocab = guided.Vocabulary.from_tokenizer(tokenizer)
    vocab_ms = (perf_ns() - t0) / 1e6
    t0 = perf_ns()
    table = TokenTable.of(vocab)
    table_ms = (perf_ns() - t0) / 1e6
    t0 = perf_ns()
    guided.compile(guided.Regex("[0-9]+"), vocab, cache=False).matcher().mask()
    first_ms = (perf_ns() - t0) / 1e6
    eos = int(tokenizer.eos_token_id)
    words = (vocab.size + 31) // 32
    outlines = Outlines(tokenizer, vocab, enabled=not args.no_outlines)

    print("# Regex masks: guided vs outlines-core, SmolLM2 tokenizer\n")
    print(f"- python {platform.python_version()}, torch {torch.__version__} (1 thread), numpy {np.__version__}, "
          f"{platform.machine()} ({platform.processor() or 'cpu'})")  # fmt: skip
    print(f"- tokenizer {Path(vocab.name).name or vocab.name}: {vocab.size} ids, EOS {sorted(vocab.eos_token_ids)} "
          f"(guided) / {eos} (outlines-core); load {tok_ms:.0f} ms, guided Vocabulary {vocab_ms:.0f} ms")  # fmt: skip
    print(f"- guided token table (once per vocabulary, shared by all grammars): {table_ms:.0f} ms, "
          f"{table.num_nodes} trie nodes; first compile + mask after it: {first_ms:.1f} ms")  # fmt: skip
    if outlines.error:
        print(f"- outlines-core: {outlines.error}")
    else:
        print(f"- outlines-core {outlines.version}: Vocabulary built in {outlines.build_ms:.0f} ms from the "
              f"tokenizer's byte-level strings; {outlines.conversion_mismatches} tokens whose bytes differ "
              "from guided's")  # fmt: skip
    print(f"- {args.samples} documents per regex (seed {args.seed}), every step timed, EOS step included\n")
    sys.stdout.flush()

    profiler = cProfile.Profile() if args.profile else None
    results: dict[str, dict[str, Any]] = {}
    for name, pattern in regexes.items():
        started = time.perf_counter()
        dfa = guided.compile(guided.Regex(pattern), vocab, cache=False).dfa
        try:
            texts = make_documents(name, pattern, args.samples, args.seed, dfa)
        except (NotImplementedError, ValueError) as e:
            texts = []
            print(f"  {name}: cannot draw documents: {e}", file=sys.stderr)
        if not texts:
            print(f"  {name}: skipped (no documents)", file=sys.stderr)
            continue
        docs = [list(tokenizer.encode(s, add_special_tokens=False)) for s in texts]
        for s, ids in zip(texts, docs):
            if b"".join(vocab.token_bytes[i] for i in ids) != s.encode("utf-8"):
                raise SystemExit(f"{name}: tokens of {s!r} do not spell it back")
        if profiler:
            gc.collect()
            profiler.enable()
        g = bench_guided(pattern, vocab, docs, eos, args.repeat, collect=profiler is None)
        if profiler:
            profiler.disable()
        o = outlines.bench(pattern, docs, words, args.repeat) if not outlines.error else {"error": outlines.error}
        agree = None
        if "index" in o:
            try:
                agree = outlines.compare(o["index"], g["grammar"], docs, vocab, set(vocab.eos_token_ids))
            except Exception as e:  # noqa: BLE001
                agree = {"error": f"{type(e).__name__}: {e}"}
        o.pop("index", None)
        g.pop("grammar")
        results[name] = {
            "pattern": pattern,
            "documents": texts,
            "tokens": docs,
            "mean_tokens": statistics.mean(len(d) for d in docs) if docs else 0,
            "guided": g,
            "outlines_core": o,
            "agreement": agree,
            "seconds": time.perf_counter() - started,
        }
        print(f"  {name}: {len(docs)} docs, {time.perf_counter() - started:.1f} s", file=sys.stderr)

    print_table(results)
    if profiler:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("tottime").print_stats(15)
        stats.sort_stats("cumulative").print_stats(20)
        print("\n## cProfile of guided (compiles + cold and warm walks)\n\n```")
        print(out.getvalue().strip())
        print("```")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "tokenizer": vocab.name,
                    "vocab_size": vocab.size,
                    "token_table_ms": table_ms,
                    "first_compile_ms": first_ms,
                    "outlines_core": outlines.version or outlines.error,
                    "samples": args.samples,
                    "seed": args.seed,
                    "regexes": results,
                },
                f,
                indent=1,
            )
        print(f"\nraw results written to {args.json}")
    return 0


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = [
        "regex", "states", "tok/doc", "compile ms guided", "compile ms outlines",
        "mask µs guided cold p50 / p99 / max", "mask µs guided warm p50 / p99 / max",
        "mask µs outlines p50 / p99 / max", "advance µs p50 guided / outlines",
        "mask p50 ratio outlines / guided warm", "steps where masks differ",
    ]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    cols: dict[str, list[float | None]] = {}

    def col(key: str, value: float | None) -> float | None:
        cols.setdefault(key, []).append(value)
        return value

    notes: list[str] = []
    totals = {"steps": 0, "differ": 0, "only_guided": 0, "only_outlines": 0, "refused": 0, "docs": 0}
    for name, r in results.items():
        g, o, a = r["guided"], r["outlines_core"], r["agreement"]
        ok = "error" not in o
        ratio = o["mask_us"]["p50"] / g["warm_mask_us"]["p50"] if ok else None
        if a is None:
            agree = "–"
        elif "error" in a:
            agree = "error"
            notes.append(f"- {name}: comparison failed: {a['error']}")
        else:
            agree = f"{a['disagreeing_steps']}/{a['steps']}"
            refused = len(a["outlines_rejected_docs"])
            if refused:
                agree += f" ({refused}/{len(r['tokens'])} docs refused)"
            totals["steps"] += a["steps"]
            totals["differ"] += a["disagreeing_steps"]
            totals["only_guided"] += a["tokens_only_guided_allows"]
            totals["only_outlines"] += a["tokens_only_outlines_allows"]
            totals["refused"] += refused
            totals["docs"] += len(r["tokens"])
            for ex in a["examples"]:
                notes.append(f"- {name}: {ex}")
        if not ok:
            notes.append(f"- {name}: outlines-core: {o['error']}")
        elif o["truncated_docs"]:
            notes.append(f"- {name}: outlines-core refused a token in {len(o['truncated_docs'])} documents "
                         f"(timed up to there), first: {o['truncated_docs'][0]}")  # fmt: skip
        for k in ("cold_mask_us", "warm_mask_us"):
            for q in ("p50", "p99", "max"):
                col(f"{k}.{q}", g[k][q])
        for q in ("p50", "p99", "max"):
            col(f"oc.{q}", o["mask_us"][q] if ok else None)
        if ok:
            oc_mask = fmt3(o["mask_us"]) + (" †" if o["truncated_docs"] else "")
        else:
            oc_mask = next((w for w in ("not installed", "disabled") if w in o["error"]), "error")
        row = [
            name,
            str(g["states"]),
            f"{r['mean_tokens']:.1f}",
            fmt(col("gc", g["compile_ms"])),
            fmt(col("oc", o.get("compile_ms"))),
            fmt3(g["cold_mask_us"]),
            fmt3(g["warm_mask_us"]),
            oc_mask,
            f"{fmt(col('ga', g['warm_advance_us']['p50']))} / "
            f"{fmt(col('oa', o['advance_us']['p50'] if ok else None))}",
            (fmt(col("ratio", ratio)) + "×") if ratio else "–",
            agree,
        ]
        print("| " + " | ".join(row) + " |")
    if len(results) > 1:

        def m3(prefix: str) -> str:
            vals = [median(cols.get(f"{prefix}.{q}", [])) for q in ("p50", "p99", "max")]
            return " / ".join(fmt(v) for v in vals)

        ratio_med = median(cols.get("ratio", []))
        row = [
            "**median**",
            fmt(median([r["guided"]["states"] for r in results.values()])),
            fmt(median([r["mean_tokens"] for r in results.values()])),
            fmt(median(cols["gc"])),
            fmt(median(cols.get("oc", []))),
            m3("cold_mask_us"),
            m3("warm_mask_us"),
            m3("oc"),
            f"{fmt(median(cols['ga']))} / {fmt(median(cols.get('oa', [])))}",
            (fmt(ratio_med) + "×") if ratio_med else "–",
            f"{totals['differ']}/{totals['steps']} (total)" if totals["steps"] else "",
        ]
        print("| " + " | ".join(row) + " |")
    if totals["steps"]:
        print(
            f"\nAgreement: the masks differ at {totals['differ']} of {totals['steps']} steps; summed over those "
            f"steps, {totals['only_guided']} tokens are allowed only by guided and {totals['only_outlines']} only "
            f"by outlines-core. outlines-core refused {totals['refused']} of {totals['docs']} documents "
            "(every document fully matches its regex and is the tokenizer's own tokenization). "
            "† = outlines-core timings cover each refused document up to the refused token."
        )
    if notes:
        print("\nNotes:")
        print("\n".join(notes))


if __name__ == "__main__":
    sys.exit(main())
