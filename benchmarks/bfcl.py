"""Function calling on real questions (BFCL): constrained tool calls vs unconstrained prompting.

Runs the Berkeley Function-Calling Leaderboard questions in ``../shared/data/bfcl/`` (simple,
multiple, parallel and live-simple: the shared half of each category) with the default model,
twice, and scores both with BFCL's AST rules:

* **constrained**: the functions as tools (`guided.Tools`, ``tool_choice="required"``, several
  calls allowed in the parallel category): the output is a call by construction;
* **unconstrained**: the same prompt, free text; the calls are read from ``<tool_call>`` blocks
  or, failing that, from any JSON object with a ``name`` in the answer.

Both see the same prompt: a system message listing the functions (their JSON definitions) and
asking for ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, then the question.

A call is **valid** when it names one of the offered functions and its arguments are valid under
that function's JSON Schema; an answer is valid when it holds at least one call and all of its
calls are valid.  It is **correct** (BFCL's AST check, as ``../shared/data/README.md`` describes
it) when its calls match the ground truth one to one (in any order): same function name, every
parameter whose allowed values lack ``""`` present, no unknown parameter, every value one of the
allowed ones (numbers by value, an int where a float is expected; strings case-insensitively
without spaces and ``,./-_*^``; lists element by element; objects key by key).

Questions are decoded in batches (``--batch``, one constraint per row through
`guided.decoding.iter_decode`, which is what `guided.generate` runs); ``--batch 1`` calls
`guided.generate` itself.  Greedy decoding, so a run is deterministic up to the float rounding
of batched left-padded rows.

    nice -n 10 .venv/bin/python benchmarks/bfcl.py [--limit 20] [--categories simple,multiple]
        [--modes constrained,unconstrained] [--quantize int8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import guided
from guided.decoding import Constraints, GenerationStats
from guided.decoding.runner import ModelRunner
from guided.decoding.sampler import decode
from guided.generate import _finish, encode_prompt
from guided.sampling.pipeline import SamplingParams
from guided.frontends.tools import Tools, parse_tool_calls

DATA = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "bfcl"
CATEGORIES = {
    "simple": "BFCL_v4_simple_python",
    "multiple": "BFCL_v4_multiple",
    "parallel": "BFCL_v4_parallel",
    "live_simple": "BFCL_v4_live_simple",
}
BFCL_TYPES = {"dict": "object", "float": "number", "tuple": "array"}
CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)


# ------------------------------------------------------------------------------------------
# Data


@dataclass
class Question:
    id: str
    category: str
    messages: list[dict]
    functions: list[dict]  # OpenAI-style tool definitions (JSON Schema parameters)
    truth: list[dict]  # one {function_name: {param: [allowed values]}} per expected call


def json_schema(node: Any) -> Any:
    """BFCL's parameter schema as JSON Schema: ``dict``/``float``/``tuple`` renamed, ``any`` dropped,
    BFCL's own ``optional`` flag dropped (``required`` says the same)."""
    if isinstance(node, list):
        return [json_schema(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "type":
            if value == "any":
                continue
            value = BFCL_TYPES.get(value, value)
        elif key == "optional":
            continue
        elif key == "properties":
            value = {name: json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            value = json_schema(value)
        out[key] = value
    if out.get("type") == "array" and "enum" in out and not any(isinstance(v, list) for v in out["enum"]):
        # An enum of strings beside "type": "array" (a live_simple question) can hold no value;
        # BFCL's answers read it as the items' enum.
        out["items"] = {**out.get("items", {}), "enum": out.pop("enum")}
    return out


def load(category: str, limit: int | None, data: pathlib.Path = DATA) -> list[Question]:
    name = CATEGORIES[category]
    truths = {}
    with open(data / f"{name}.answers.json", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            truths[row["id"]] = row["ground_truth"]
    out = []
    with open(data / f"{name}.json", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            functions = [{"type": "function", "function": {
                "name": fn["name"], "description": fn.get("description", ""),
                "parameters": json_schema(fn["parameters"])}} for fn in row["function"]]
            out.append(Question(row["id"], category, list(row["question"][0]), functions, truths[row["id"]]))
    return out[:limit] if limit else out


SYSTEM = (
    "You are an expert in composing function calls. You are given a question and a set of possible "
    "functions. Call the function(s) that answer the question, with arguments taken from the question.\n"
    "Here are the functions you may call, in JSON format:\n<tools>\n{tools}\n</tools>\n"
    "For each call, answer with a JSON object holding the function name and its arguments inside "
    "<tool_call></tool_call> tags:\n<tool_call>\n{{\"name\": <function-name>, \"arguments\": <args-json-object>}}\n"
    "</tool_call>"
)


def messages(q: Question) -> list[dict]:
    tools = "\n".join(json.dumps(t["function"], ensure_ascii=False) for t in q.functions)
    system = SYSTEM.format(tools=tools)
    msgs = list(q.messages)
    if msgs and msgs[0]["role"] == "system":
        system += "\n\n" + msgs[0]["content"]
        msgs = msgs[1:]
    return [{"role": "system", "content": system}] + msgs


# ------------------------------------------------------------------------------------------
# Reading calls from free text, and checking them


def free_calls(text: str) -> list[dict]:
    """Call objects in a free answer: each ``<tool_call>`` block's JSON, else every top-level JSON
    object (or list of objects) in the text that has a ``name``."""
    found = []
    blocks = [m.group(1) for m in CALL.finditer(text)]
    for chunk in blocks or [text]:
        found.extend(_json_objects(chunk))
    calls = []
    for obj in found:
        for o in obj if isinstance(obj, list) else [obj]:
            if isinstance(o, dict) and isinstance(o.get("name"), str):
                args = o.get("arguments", o.get("parameters", {}))
                if isinstance(args, str):  # OpenAI's wire format: arguments as JSON text
                    try:
                        args = json.loads(args)
                    except json.JSONDecodeError:
                        pass
                calls.append({"name": o["name"], "arguments": args})
    return calls


def _json_objects(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    out, i = [], 0
    while True:
        starts = [j for j in (text.find("{", i), text.find("[", i)) if j >= 0]
        if not starts:
            return out
        i = min(starts)
        try:
            value, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i += 1
            continue
        out.append(value)
        i = end


def valid_call(call: dict, q: Question) -> bool:
    import jsonschema

    fn = next((t["function"] for t in q.functions if t["function"]["name"] == call["name"]), None)
    if fn is None or not isinstance(call["arguments"], dict):
        return False
    try:
        jsonschema.validate(call["arguments"], fn["parameters"])
    except (jsonschema.ValidationError, jsonschema.SchemaError):
        return False
    return True


def _standard(s: str) -> str:
    return re.sub(r"[ ,./\-_*^]", "", s).lower().replace("'", '"')


def value_matches(value: Any, allowed: Any) -> bool:
    """One value against one allowed value, by BFCL's rules."""
    if isinstance(allowed, bool) or isinstance(value, bool):
        return isinstance(allowed, bool) and isinstance(value, bool) and value == allowed
    if isinstance(allowed, (int, float)):
        if not isinstance(value, (int, float)):
            return False
        if isinstance(allowed, int) and isinstance(value, float) and not value.is_integer():
            return False
        return math.isclose(float(value), float(allowed), rel_tol=0, abs_tol=1e-9)
    if isinstance(allowed, str):
        return isinstance(value, str) and _standard(value) == _standard(allowed)
    if isinstance(allowed, list):
        return isinstance(value, list) and len(value) == len(allowed) and all(
            value_matches(v, a) for v, a in zip(value, allowed))
    if isinstance(allowed, dict):  # a nested object: each key with its own allowed values
        return isinstance(value, dict) and arguments_match(value, allowed)
    return value == allowed


def arguments_match(args: dict, expected: dict) -> bool:
    """``expected``: ``{param: [allowed values]}`` (``""`` among them: the parameter may be left out)."""
    for name in args:
        if name not in expected:
            return False
    for name, allowed in expected.items():
        allowed = allowed if isinstance(allowed, list) else [allowed]
        if name not in args:
            if "" not in allowed:
                return False
            continue
        if not any(value_matches(args[name], a) for a in allowed if a != ""):
            return False
    return True


def call_matches(call: dict, truth: dict) -> bool:
    (name, expected), = truth.items()
    return call["name"] == name and isinstance(call["arguments"], dict) and arguments_match(call["arguments"], expected)


def correct(calls: list[dict], truth: list[dict]) -> bool:
    """The calls match the expected ones one to one, in any order (bipartite matching)."""
    if len(calls) != len(truth):
        return False
    match: dict[int, int] = {}  # truth index -> call index

    def assign(c: int, seen: set) -> bool:
        for t in range(len(truth)):
            if t not in seen and call_matches(calls[c], truth[t]):
                seen.add(t)
                if t not in match or assign(match[t], seen):
                    match[t] = c
                    return True
        return False

    return all(assign(c, set()) for c in range(len(calls)))


# ------------------------------------------------------------------------------------------
# Running


@dataclass
class Outcome:
    id: str
    text: str
    calls: list[dict] = field(default_factory=list)
    valid: bool = False
    correct: bool = False
    tokens: int = 0
    error: str = ""


def budget(category: str) -> int:
    return 256 if category == "parallel" else 128


def tools_for(q: Question) -> Tools:
    return Tools(q.functions, tool_choice="required", parallel=q.category == "parallel")


def score(q: Question, text: str, calls: list[dict] | None, tokens: int, error: str = "") -> Outcome:
    if calls is None:
        calls = free_calls(text)
    ok = bool(calls) and all(valid_call(c, q) for c in calls)
    return Outcome(q.id, text, calls, ok, ok and correct(calls, q.truth), tokens, error)


def run_batch(model, batch: list[Question], mode: str, stats: GenerationStats, use_generate: bool) -> list[Outcome]:
    vocab = model.vocab
    max_new = max(budget(q.category) for q in batch)
    stop = [] if batch[0].category == "parallel" else ["</tool_call>"]
    if use_generate:
        out = []
        for q in batch:
            before = stats.new_tokens
            try:
                if mode == "constrained":
                    result = guided.generate(model, messages(q), tools=tools_for(q), max_new_tokens=max_new, stats=stats)
                    calls = [{"name": c.name, "arguments": c.arguments} for c in result]
                    out.append(score(q, json.dumps(calls), calls, stats.new_tokens - before))
                else:
                    text = guided.generate(model, messages(q), max_new_tokens=max_new, stop=stop, stats=stats)
                    out.append(score(q, text, None, stats.new_tokens - before))
            except Exception as exc:  # noqa: BLE001 - any failure is a failed answer, named in the JSON
                out.append(Outcome(q.id, getattr(exc, "text", ""), error=f"{type(exc).__name__}: {str(exc)[:200]}",
                                   tokens=stats.new_tokens - before))
        return out
    prompts = [encode_prompt(model, messages(q)) for q in batch]
    base = Constraints.build(vocab)
    refused: dict[str, str] = {}
    if mode == "constrained":
        per_row = []
        for q in batch:
            try:
                per_row.append(Constraints.build(vocab, grammar=guided.compile(tools_for(q), vocab)))
            except guided.GuidedError as exc:  # a question whose functions admit no call: a failed answer
                refused[q.id] = f"{type(exc).__name__}: {str(exc)[:200]}"
                per_row.append(base)
        rows = [c.start() for c in per_row]
        completions = decode(ModelRunner(model), prompts, base, SamplingParams(), max_new_tokens=max_new,
                             row_constraints=rows, stats=stats)
    else:
        per_row = [base] * len(batch)
        completions = decode(ModelRunner(model), prompts, base, SamplingParams(), max_new_tokens=max_new, stop=stop,
                             stats=stats)
    out = []
    for q, c, cons in zip(batch, completions, per_row):
        if mode == "unconstrained":
            out.append(score(q, c.text, None, c.num_steps))
            continue
        if q.id in refused:
            out.append(Outcome(q.id, c.text, error=refused[q.id], tokens=c.num_steps))
            continue
        spec = tools_for(q)
        try:
            result = _finish(c, cons, lambda text, spec=spec: parse_tool_calls(text, spec), max_new)
        except Exception as exc:  # noqa: BLE001 - IncompleteOutput, invalid arguments, or a parser's error
            out.append(Outcome(q.id, c.text, error=f"{type(exc).__name__}: {str(exc)[:200]}", tokens=c.num_steps))
            continue
        calls = [{"name": k.name, "arguments": k.arguments} for k in result] if isinstance(result, list) else []
        out.append(score(q, c.text, calls, c.num_steps))
    return out


def run(model, questions: list[Question], mode: str, batch: int, progress: bool) -> tuple[list[Outcome], GenerationStats, float]:
    stats = GenerationStats()
    t0 = time.perf_counter()
    out: list[Outcome] = []
    # Similar prompt lengths in one batch: less padding.
    order = sorted(range(len(questions)), key=lambda i: len(json.dumps(questions[i].functions)))
    for start in range(0, len(order), batch):
        chunk = [questions[i] for i in order[start:start + batch]]
        out.extend(run_batch(model, chunk, mode, stats, use_generate=batch == 1))
        if progress:
            print(f"  {mode} {questions[0].category}: {len(out)}/{len(questions)} "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    by_id = {o.id: o for o in out}
    return [by_id[q.id] for q in questions], stats, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", default=",".join(CATEGORIES))
    ap.add_argument("--modes", default="constrained,unconstrained")
    ap.add_argument("--limit", type=int, default=0, help="first N questions per category (0: all)")
    ap.add_argument("--batch", type=int, default=8, help="questions decoded together (1: guided.generate each)")
    ap.add_argument("--quantize", default=None, help="load_model(quantize=...), e.g. int8")
    ap.add_argument("--data", type=pathlib.Path, default=DATA)
    ap.add_argument("--json", type=pathlib.Path, help="write every answer and its score here")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    t0 = time.time()
    model = guided.load_model(quantize=args.quantize) if args.quantize else guided.load_model()
    print(f"model: {model!r}; loaded in {time.time() - t0:.1f} s", file=sys.stderr)
    modes = args.modes.split(",")
    results: dict = {}
    rows = []
    for category in args.categories.split(","):
        questions = load(category, args.limit or None, args.data)
        line = [category, len(questions)]
        for mode in modes:
            outcomes, stats, seconds = run(model, questions, mode, args.batch, not args.quiet)
            n = len(outcomes)
            valid = sum(o.valid for o in outcomes)
            right = sum(o.correct for o in outcomes)
            tokens = sum(o.tokens for o in outcomes) / max(n, 1)
            line.append((valid / n, right / n, tokens, stats.tokens_per_second, seconds))
            results.setdefault(category, {})[mode] = {
                "valid": valid, "correct": right, "n": n, "tokens_per_answer": tokens,
                "tokens_per_second": stats.tokens_per_second, "seconds": seconds,
                "answers": [o.__dict__ for o in outcomes],
            }
            print(f"{category:12} {mode:13} valid {valid}/{n}  correct {right}/{n}  {tokens:.1f} tok/answer  "
                  f"{stats.tokens_per_second:.1f} tok/s  {seconds:.0f} s", file=sys.stderr)
        rows.append(line)

    print()
    print(f"BFCL shared half ({f'first {args.limit} per category' if args.limit else 'all questions'}), "
          f"{model!r}{', quantize=' + args.quantize if args.quantize else ''}, greedy, batch {args.batch}")
    print()
    head = "| category | questions |" + "".join(
        f" {m} valid | {m} correct | {m} tokens/answer | {m} tok/s |" for m in modes)
    print(head)
    print("|---|---:|" + "---:|---:|---:|---:|" * len(modes))
    for line in rows:
        cells = "".join(f" {v:.1%} | {c:.1%} | {t:.1f} | {s:.1f} |" for v, c, t, s, _ in line[2:])
        print(f"| {line[0]} | {line[1]} |{cells}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    print(f"\nwall time {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
