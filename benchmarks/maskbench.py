"""MaskBench: JSON Schema compile time, mask time and mask correctness, guided vs its peers.

The methodology of JSONSchemaBench's MaskBench (see ``../shared/data/README.md``), per case:

1. compile the schema and compute the first mask: the time to first mask (TTFM);
2. for each test instance, serialize ``data`` with ``json.dumps`` (its default separators
   ``", "`` / ``": "``, ASCII escapes), tokenize it (``add_special_tokens=False``) and walk it token
   by token: compute the mask before each token (time between masks, TBM: every mask after the
   first one of the case, the EOS step's included) and check the token is allowed; at the end
   the engine must allow EOS;
3. a ``valid: true`` instance rejected anywhere is a *validation error*; a ``valid: false``
   instance accepted to the end an *invalidation error*; a case *passes* when it compiles and
   has neither.

Every engine runs in its own worker process (one thread: ``torch.set_num_threads(1)``); a case
whose compile or walk takes longer than ``--timeout`` seconds is killed and counted as a
*timeout* (the worker restarts).  The tokenizer's own preprocessing (guided's token trie,
llguidance's tokenizer, XGrammar's tokenizer info, outlines-core's vocabulary) is built once per
worker before any timing.

    .venv/bin/python benchmarks/maskbench.py --sample 300 --engines guided,llguidance
    .venv/bin/python benchmarks/maskbench.py --engines guided,llguidance,xgrammar --plot docs/maskbench.png
    .venv/bin/python benchmarks/maskbench.py --sample 300 --tokenizer llama3
    .venv/bin/python benchmarks/maskbench.py --engines guided-native,guided-python,llguidance

``guided`` is guided's default engine (the native core where it is built); ``guided-native`` and
``guided-python`` name one engine each.

guided compiles with its defaults (strict: a schema with a keyword it cannot enforce exactly is a
compile error; any whitespace, bounded runs); peers with theirs (llguidance: its JSON defaults;
XGrammar: ``any_whitespace=True``, ``strict_mode=False`` so absent ``additionalProperties`` means
true as for the others; outlines-core: ``build_regex_from_schema`` with its default whitespace).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import multiprocessing as mp
import os
import pathlib
import re
import sys
import time
import traceback
import warnings
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "maskbench"
ENGINES = ("guided", "guided-native", "guided-python", "llguidance", "xgrammar", "outlines_core")
PCTS = (25, 50, 75, 90, 95, 99, 99.9)


def category(name: str) -> str:
    m = re.match(r"(Github_[a-z]+|[A-Za-z0-9]+?)(?:---|_|\.json$)", name)
    return m.group(1) if m else name


def select_cases(data: pathlib.Path, sample: int | None) -> list[pathlib.Path]:
    """All cases, or a fixed stratified sample: per category, the files with the smallest hashes."""
    files = sorted(data.glob("*.json"))
    if not sample or sample >= len(files):
        return files
    by_cat: dict[str, list[pathlib.Path]] = collections.defaultdict(list)
    for f in files:
        by_cat[category(f.name)].append(f)
    key = lambda f: hashlib.sha1(f.name.encode()).hexdigest()  # noqa: E731
    quota = {c: max(1, round(sample * len(v) / len(files))) for c, v in by_cat.items()}
    out = []
    for c, v in sorted(by_cat.items()):
        out.extend(sorted(v, key=key)[: quota[c]])
    return sorted(out)


def load_tokenizer(name: str):
    if name == "smollm2":
        from guided import models

        return models.load_tokenizer()
    if name == "llama3":
        sys.path.insert(0, str(ROOT))
        from tests.large_tokenizers import llama3_tokenizer

        return llama3_tokenizer(on_missing="raise")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(name, local_files_only=True)


# ------------------------------------------------------------------------------------------------
# Engines: compile(schema) -> handle; matcher(handle); allowed(m, token) (computes the mask);
# advance(m, token); eos_allowed(m) (computes the mask).


class GuidedEngine:
    engine = None  # guided's default: native where built (or $GUIDED_ENGINE)

    def __init__(self, tokenizer):
        import numpy as np
        import torch

        import guided

        self.np, self.torch = np, torch
        self.guided = guided
        self.vocab = guided.Vocabulary.from_tokenizer(tokenizer)
        self.eos = sorted(self.vocab.eos_token_ids)[0]
        self.bitmask = torch.zeros((1, (self.vocab.size + 31) // 32), dtype=torch.int32)
        self.words = self.bitmask.numpy()[0]
        warm = self.compile({"type": "object", "properties": {"a": {"type": "string"}}})
        m = warm.matcher()
        self.allowed(m, 0)

    def version(self):
        import guided
        from guided.compiler import resolve_engine

        return f"{guided.__version__} ({resolve_engine(self.engine)})"

    def compile(self, schema):
        # Unknown formats are annotations (compiled as plain strings); their warning would print
        # once per such case here.
        warnings.simplefilter("ignore", self.guided.UnknownFormatWarning)
        if self.engine is None:
            return self.guided.compile(self.guided.JsonSchema(schema), self.vocab, cache=False)
        return self.guided.compile(self.guided.JsonSchema(schema), self.vocab, cache=False, engine=self.engine)

    def matcher(self, handle):
        return handle.matcher()

    def allowed(self, m, token):
        m.fill_bitmask(self.bitmask, 0)
        return bool((int(self.words[token >> 5]) >> (token & 31)) & 1)

    def advance(self, m, token):
        m.advance(token)

    def eos_allowed(self, m):
        return self.allowed(m, self.eos)


class GuidedNativeEngine(GuidedEngine):
    engine = "native"


class GuidedPythonEngine(GuidedEngine):
    engine = "python"


class LLGuidanceEngine:
    def __init__(self, tokenizer):
        import llguidance
        import llguidance.hf
        import llguidance.numpy as lnp

        self.ll, self.lnp = llguidance, lnp
        self.tok = llguidance.hf.from_tokenizer(tokenizer)
        self.eos = self.tok.eos_token
        self.bitmask = lnp.allocate_token_bitmask(1, self.tok.vocab_size)

    def version(self):
        import importlib.metadata

        return importlib.metadata.version("llguidance")

    def compile(self, schema):
        grammar = self.ll.LLMatcher.grammar_from_json_schema(schema)
        m = self.ll.LLMatcher(self.tok, grammar)
        if m.is_error():
            raise RuntimeError(m.get_error())
        return grammar

    def matcher(self, grammar):
        return self.ll.LLMatcher(self.tok, grammar)

    def allowed(self, m, token):
        self.lnp.fill_next_token_bitmask(m, self.bitmask, 0)
        return bool((int(self.bitmask[0, token >> 5]) >> (token & 31)) & 1)

    def advance(self, m, token):
        if not m.consume_token(token):
            raise RuntimeError(m.get_error())

    def eos_allowed(self, m):
        return self.allowed(m, self.eos) and m.is_accepting() or self.allowed(m, self.eos)


class XGrammarEngine:
    def __init__(self, tokenizer):
        import torch
        import xgrammar as xgr

        self.xgr, self.torch = xgr, torch
        info = xgr.TokenizerInfo.from_huggingface(tokenizer)
        self.compiler = xgr.GrammarCompiler(info, max_threads=1, cache_enabled=False)
        self.eos = info.stop_token_ids[0]
        self.bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)

    def version(self):
        import importlib.metadata

        return importlib.metadata.version("xgrammar")

    def compile(self, schema):
        return self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=True, strict_mode=False)

    def matcher(self, handle):
        return self.xgr.GrammarMatcher(handle)

    def allowed(self, m, token):
        m.fill_next_token_bitmask(self.bitmask, 0)
        return bool((int(self.bitmask[0, token >> 5]) >> (token & 31)) & 1)

    def advance(self, m, token):
        if not m.accept_token(token):
            raise RuntimeError("rejected")

    def eos_allowed(self, m):
        return self.allowed(m, self.eos)


class OutlinesEngine:
    def __init__(self, tokenizer):
        import numpy as np
        import outlines_core
        from outlines_core.json_schema import build_regex_from_schema

        import guided

        self.oc, self.np, self.build = outlines_core, np, build_regex_from_schema
        vocab = guided.Vocabulary.from_tokenizer(tokenizer)
        self.eos = tokenizer.eos_token_id
        token_map: dict[bytes, list[int]] = {}
        for i, data in enumerate(vocab.token_bytes):
            if data and i not in vocab.eos_token_ids and i != self.eos:
                token_map.setdefault(data, []).append(i)
        self.vocab = outlines_core.Vocabulary(self.eos, token_map)
        self.size = vocab.size
        import torch

        self.bitmask = torch.zeros((1, (self.size + 31) // 32), dtype=torch.int32)

    def version(self):
        import importlib.metadata

        return importlib.metadata.version("outlines-core")

    def compile(self, schema):
        return self.oc.Index(self.build(json.dumps(schema)), self.vocab)

    def matcher(self, index):
        return self.oc.Guide(index)

    def allowed(self, m, token):
        m.write_mask_into(self.bitmask.data_ptr(), self.bitmask.numel(), self.bitmask.element_size())
        return bool((int(self.bitmask[0, token >> 5]) >> (token & 31)) & 1)

    def advance(self, m, token):
        m.advance(token)

    def eos_allowed(self, m):
        return self.allowed(m, self.eos)


ENGINE_CLASSES = {"guided": GuidedEngine, "guided-native": GuidedNativeEngine, "guided-python": GuidedPythonEngine,
                  "llguidance": LLGuidanceEngine, "xgrammar": XGrammarEngine,
                  "outlines_core": OutlinesEngine}


def run_case(engine, tokenizer, path: pathlib.Path) -> dict[str, Any]:
    case = json.loads(path.read_text())
    out: dict[str, Any] = {"case": path.name, "tests": len(case["tests"]), "validation": 0, "invalidation": 0,
                           "tbm": [], "ttfm": None, "error": None}
    docs = []
    for t in case["tests"]:
        text = json.dumps(t["data"])
        docs.append((t["valid"], tokenizer.encode(text, add_special_tokens=False)))
    # --clock cpu: the thread's CPU time, which a loaded machine's scheduling delays do not inflate
    perf = time.thread_time if os.environ.get("MASKBENCH_CLOCK") == "cpu" else time.perf_counter
    t0 = perf()
    try:
        handle = engine.compile(case["schema"])
        m = engine.matcher(handle)
        first_token = docs[0][1][0] if docs and docs[0][1] else 0
        engine.allowed(m, first_token)
    except Exception as exc:  # noqa: BLE001 - any failure to compile is a compile error
        out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        return out
    out["ttfm"] = perf() - t0
    tbm = out["tbm"]
    first = True
    for valid, ids in docs:
        m = engine.matcher(handle)
        ok = True
        for tok in ids:
            if first:
                first = False
                allowed = engine.allowed(m, tok)
            else:
                s = perf()
                allowed = engine.allowed(m, tok)
                tbm.append(perf() - s)
            if not allowed:
                ok = False
                break
            try:
                engine.advance(m, tok)
            except Exception:  # noqa: BLE001 - an engine refusing a token its mask allowed
                ok = False
                out["inconsistent"] = out.get("inconsistent", 0) + 1
                break
        if ok:
            s = perf()
            ok = engine.eos_allowed(m)
            tbm.append(perf() - s)
        if valid and not ok:
            out["validation"] += 1
        elif not valid and ok:
            out["invalidation"] += 1
    return out


def worker(engine_name: str, tokenizer_name: str, conn) -> None:
    try:
        import torch

        torch.set_num_threads(1)
        tokenizer = load_tokenizer(tokenizer_name)
        engine = ENGINE_CLASSES[engine_name](tokenizer)
        conn.send({"ready": True, "version": engine.version()})
    except Exception as exc:  # noqa: BLE001
        conn.send({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    while True:
        path = conn.recv()
        if path is None:
            return
        try:
            result = run_case(engine, tokenizer, pathlib.Path(path))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a peer's native panic is a BaseException
            result = {"case": pathlib.Path(path).name, "error": f"crash: {type(exc).__name__}: {exc}",
                      "crash": traceback.format_exc()[-2000:], "tbm": [], "ttfm": None, "tests": 0,
                      "validation": 0, "invalidation": 0}
        conn.send(result)


def run_engine(engine_name: str, cases: list[pathlib.Path], tokenizer_name: str, timeout: float,
               progress: bool) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    results: list[dict[str, Any]] = []
    version = ""
    proc = conn = None

    def start():
        nonlocal proc, conn, version
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=worker, args=(engine_name, tokenizer_name, child), daemon=True)
        proc.start()
        if not parent.poll(600):
            raise RuntimeError(f"{engine_name}: worker did not start")
        hello = parent.recv()
        if not hello.get("ready"):
            raise RuntimeError(f"{engine_name}: {hello.get('error')}")
        version = hello["version"]
        conn = parent

    try:
        start()
    except RuntimeError as exc:
        return {"engine": engine_name, "unavailable": str(exc), "results": []}
    t_start = time.time()
    for i, path in enumerate(cases):
        if progress and i and i % 100 == 0:
            print(f"  {engine_name}: {i}/{len(cases)} cases, {time.time() - t_start:.0f} s", file=sys.stderr)
        conn.send(str(path))
        if not conn.poll(timeout):
            proc.kill()
            proc.join()
            results.append({"case": path.name, "timeout": True, "error": f"timeout ({timeout:g} s)", "tbm": [],
                            "ttfm": None, "tests": 0, "validation": 0, "invalidation": 0})
            start()
            continue
        try:
            results.append(conn.recv())
        except (EOFError, OSError):  # the worker died (a native crash): count it, start another
            proc.join()
            results.append({"case": path.name, "error": f"crash: worker exited ({proc.exitcode})", "tbm": [],
                            "ttfm": None, "tests": 0, "validation": 0, "invalidation": 0})
            start()
    conn.send(None)
    proc.join(timeout=10)
    return {"engine": engine_name, "version": version, "results": results}


# ------------------------------------------------------------------------------------------------
# Report


def percentiles(values, pcts=PCTS):
    import numpy as np

    if not len(values):
        return {p: float("nan") for p in pcts} | {"max": float("nan")}
    arr = np.asarray(values, dtype=np.float64)
    out = {p: float(np.percentile(arr, p)) for p in pcts}
    out["max"] = float(arr.max())
    return out


def summarize(run: dict[str, Any]) -> dict[str, Any]:
    rs = run["results"]
    compiled = [r for r in rs if r.get("ttfm") is not None]
    timeouts = [r for r in rs if r.get("timeout")]
    errors = [r for r in rs if r.get("ttfm") is None and not r.get("timeout")]
    passing = [r for r in compiled if r["validation"] == 0 and r["invalidation"] == 0]
    tbm = [x for r in compiled for x in r["tbm"]]
    return {
        "engine": run["engine"], "version": run.get("version", ""), "schemas": len(rs),
        "passing": len(passing), "compile_errors": len(errors), "timeouts": len(timeouts),
        "validation_errors": sum(r["validation"] for r in compiled),
        "invalidation_errors": sum(r["invalidation"] for r in compiled),
        "cases_with_validation_errors": sum(1 for r in compiled if r["validation"]),
        "cases_with_invalidation_errors": sum(1 for r in compiled if r["invalidation"]),
        "inconsistent": sum(r.get("inconsistent", 0) for r in compiled),
        "ttfm": percentiles([r["ttfm"] for r in compiled]),
        "tbm": percentiles(tbm), "masks": len(tbm),
    }


def fmt_ms(x: float) -> str:
    if x != x:
        return "-"
    ms = x * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"


def report(summaries: list[dict[str, Any]], runs: list[dict[str, Any]], header: str) -> str:
    lines = [header, ""]
    lines.append("| engine | schemas | passing | compile errors | timeouts | validation errors | invalidation errors |")
    lines.append("|---|---|---|---|---|---|---|")
    for s in summaries:
        pct = 100.0 * s["passing"] / s["schemas"] if s["schemas"] else 0
        lines.append(f"| {s['engine']} {s['version']} | {s['schemas']} | {s['passing']} ({pct:.1f}%) | "
                     f"{s['compile_errors']} | {s['timeouts']} | {s['validation_errors']} "
                     f"({s['cases_with_validation_errors']} cases) | {s['invalidation_errors']} "
                     f"({s['cases_with_invalidation_errors']} cases) |")
    for what in ("ttfm", "tbm"):
        lines.append("")
        title = "TTFM (compile + first mask), ms" if what == "ttfm" else "TBM (time between masks), ms"
        cols = [f"p{p:g}" for p in PCTS] + ["max"]
        lines.append(f"| {title} | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for s in summaries:
            vals = [s[what][p] for p in PCTS] + [s[what]["max"]]
            extra = f" ({s['masks']} masks)" if what == "tbm" else ""
            lines.append(f"| {s['engine']}{extra} | " + " | ".join(fmt_ms(v) for v in vals) + " |")
    # passing per category
    cats = sorted({category(r["case"]) for run in runs for r in run["results"]})
    lines.append("")
    lines.append("| passing by category | cases | " + " | ".join(s["engine"] for s in summaries) + " |")
    lines.append("|---|---|" + "---|" * len(summaries))
    for c in cats:
        row = []
        n = 0
        for run in runs:
            rs = [r for r in run["results"] if category(r["case"]) == c]
            n = len(rs)
            ok = sum(1 for r in rs if r.get("ttfm") is not None and r["validation"] == 0 and r["invalidation"] == 0)
            row.append(f"{ok}")
        lines.append(f"| {c} | {n} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(summaries: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    names = [s["engine"] for s in summaries]
    rates = [100.0 * s["passing"] / max(1, s["schemas"]) for s in summaries]
    axes[0].bar(names, rates, color=["#3b7dd8" if n == "guided" else "#999999" for n in names])
    axes[0].set_ylabel("passing schemas (%)")
    axes[0].set_ylim(0, 100)
    for i, r in enumerate(rates):
        axes[0].text(i, r + 1, f"{r:.1f}%", ha="center")
    for ax, what, label in ((axes[1], "ttfm", "TTFM (ms)"), (axes[2], "tbm", "TBM (ms)")):
        xs = [f"p{p:g}" for p in PCTS] + ["max"]
        for s in summaries:
            ys = [s[what][p] * 1e3 for p in PCTS] + [s[what]["max"] * 1e3]
            ax.plot(xs, ys, marker="o", label=s["engine"])
        ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--engines", default="guided,llguidance")
    ap.add_argument("--sample", type=int, default=None, help="a fixed stratified sample of N cases")
    ap.add_argument("--cases", default=None, help="regex on file names")
    ap.add_argument("--tokenizer", default="smollm2", help="smollm2 (default), llama3, or a local HF folder")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per case (compile + walks)")
    ap.add_argument("--plot", default=None, help="write a PNG chart here")
    ap.add_argument("--json", default=None, help="write per-case results here")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time with the wall clock (default) or the worker thread's CPU time (for a busy machine)")
    ap.add_argument("--report-from", nargs="+", default=None, metavar="JSON",
                    help="print the report (and --plot) from --json files, no run; several files (runs of "
                         "different engines on the same cases) are reported side by side")
    args = ap.parse_args(argv)
    if args.report_from:
        runs = [run for path in args.report_from for run in json.loads(pathlib.Path(path).read_text())["runs"]]
        if len({tuple(sorted(r["case"] for r in run["results"])) for run in runs}) > 1:
            ap.error("the --report-from files hold runs over different cases")
        summaries = [summarize(r) for r in runs]
        n = len(runs[0]["results"]) if runs else 0
        header = f"MaskBench: {n} cases, from {', '.join(pathlib.Path(p).name for p in args.report_from)}"
        print(report(summaries, runs, header))
        if args.plot:
            plot(summaries, args.plot, header)
        return 0
    os.environ["MASKBENCH_CLOCK"] = args.clock  # read by the workers
    cases = select_cases(pathlib.Path(args.data), args.sample)
    if args.cases:
        cases = [c for c in cases if re.search(args.cases, c.name)]
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINE_CLASSES:
            ap.error(f"unknown engine {e!r} (choose from {', '.join(ENGINES)})")
    runs = []
    for e in engines:
        if not args.quiet:
            print(f"running {e} on {len(cases)} cases ...", file=sys.stderr)
        run = run_engine(e, cases, args.tokenizer, args.timeout, not args.quiet)
        if run.get("unavailable"):
            print(f"{e}: unavailable: {run['unavailable']}", file=sys.stderr)
            continue
        runs.append(run)
    summaries = [summarize(r) for r in runs]
    header = (f"MaskBench: {len(cases)} cases{' (stratified sample)' if args.sample else ''}, tokenizer "
              f"{args.tokenizer}, one thread, timeout {args.timeout:g} s per case")
    print(report(summaries, runs, header))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps({"summaries": summaries, "runs": runs}, default=str))
    if args.plot:
        plot(summaries, args.plot, header)
    return 0


if __name__ == "__main__":
    sys.exit(main())
