"""guided.integrations.sglang driven by a stand-in for SGLang's scheduler (SGLang itself needs CUDA):
random logits over the real SmolLM2 vocabulary, every output checked with a real parser."""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from types import SimpleNamespace

import jsonschema
import lark
import pytest
import torch

from tests import sglang_standin

if importlib.util.find_spec("sglang") is None:
    sglang_standin.install()
sglang = importlib.import_module("guided.integrations.sglang")

SCHEMA = {"type": "object", "properties": {"id": {"type": "integer", "minimum": 0, "maximum": 999},
                                           "tag": {"type": "string", "enum": ["a", "bb", "ccc"]}},
          "required": ["id", "tag"], "additionalProperties": False}
REGEX = r"[A-Z]{2}-[0-9]{3}"
LARK = 'start: "(" WORD (" " WORD)? (" " WORD)? ")"\nWORD: /[a-z]{1,5}/'
KEYS = {"json": json.dumps(SCHEMA), "regex": REGEX, "ebnf": LARK}


def check(kind: str, text: str) -> None:
    if kind == "json":
        jsonschema.validate(json.loads(text), SCHEMA)
    elif kind == "regex":
        assert re.fullmatch(REGEX, text), text
    else:
        lark.Lark(LARK).parse(text)


@pytest.fixture(scope="module")
def eos(smollm2_tokenizer):
    return {smollm2_tokenizer.eos_token_id}


def scheduler(tokenizer, eos, batched: bool, seed: int):
    """Random logits would wander through JSON whitespace: served as with
    ``--constrained-json-disable-any-whitespace``."""
    sglang.register()
    return sglang_standin.Scheduler("guided", tokenizer, len(tokenizer), eos, batched_fill=batched,
                                    generator=torch.Generator().manual_seed(seed),
                                    server_args=SimpleNamespace(constrained_json_disable_any_whitespace=True))


@pytest.mark.parametrize("batched", [False, True])
def test_batches_of_mixed_requests_are_all_valid(smollm2_tokenizer, eos, batched):
    tok = smollm2_tokenizer
    sched = scheduler(tok, eos, batched, seed=1)
    kinds = ["json", "regex", "ebnf", None] * 3
    batch = [sglang_standin.Req((k, KEYS[k]) if k else None, max_new_tokens=60) for k in kinds]
    for req in batch:
        if req.key is not None:
            sched.admit(req)
    assert all(r.error is None for r in batch)
    for _ in range(60):
        if all(r.finished for r in batch):
            break
        sched.step(batch, torch.randn(len(batch), len(tok)) * 3)
    for kind, req in zip(kinds, batch):
        if kind is None:
            continue
        assert req.output_ids[-1] in eos, (kind, tok.decode(req.output_ids))
        assert req.grammar.is_terminated()
        check(kind, tok.decode(req.output_ids[:-1]))


def test_cached_grammar_is_copied_fresh_per_request(smollm2_tokenizer, eos):
    sched = scheduler(smollm2_tokenizer, eos, True, seed=2)
    first, second = sglang_standin.Req(("regex", REGEX), 20), sglang_standin.Req(("regex", REGEX), 20)
    sched.admit(first)
    first.grammar.accept_token(smollm2_tokenizer.encode("A", add_special_tokens=False)[0])
    sched.admit(second)  # a cache hit: SGLang copies the cached prototype
    assert second.grammar is not first.grammar and second.grammar.matcher.num_tokens == 0


def test_jump_forward_and_retokenize(smollm2_tokenizer, eos):
    """The schema forces '{"id":' style text: jumped text is appended, the output re-encoded, and
    the grammar follows the new tokens; the finished output is still valid."""
    tok = smollm2_tokenizer
    sched = scheduler(tok, eos, False, seed=3)
    req = sglang_standin.Req(("json", json.dumps(SCHEMA, separators=(",", ":"))), 80)
    sched.admit(req)
    jumped = []
    for _ in range(80):
        if req.finished:
            break
        if (text := sched.jump_forward(req)):
            jumped.append(text)
        sched.step([req], torch.randn(1, len(tok)) * 3)
    assert jumped and jumped[0].startswith("{")
    assert req.output_ids[-1] in eos
    check("json", tok.decode(req.output_ids[:-1]))


def test_rollback_undoes_rejected_draft_tokens(smollm2_tokenizer, eos):
    tok = smollm2_tokenizer
    sched = scheduler(tok, eos, False, seed=4)
    req = sglang_standin.Req(("regex", REGEX), 20)
    sched.admit(req)
    drafts = tok.encode("AB-12", add_special_tokens=False)
    for t in drafts:
        req.grammar.accept_token(t)
    req.grammar.rollback(len(drafts) - 1)  # the verifier kept only the first draft token
    mask = req.grammar.allocate_vocab_mask(len(tok), 1, "cpu")
    req.grammar.fill_vocab_mask(mask, 0)
    fresh = sglang.GuidedGrammar(req.grammar.grammar)
    fresh.accept_token(drafts[0])
    expected = fresh.allocate_vocab_mask(len(tok), 1, "cpu")
    fresh.fill_vocab_mask(expected, 0)
    assert torch.equal(mask, expected)


@pytest.mark.parametrize("key, message", [
    (("regex", "a("), "RegexError"),
    (("json", '{"type": "object", "properties": {"x": {"$ref": "#/nope"}}}'), "/properties/x"),
    (("json", "{not json"), "not valid JSON"),
    (("ebnf", 'root ::= "a"'), "not GBNF"),
    (("ebnf", "start: undefined"), "GrammarError"),
    (("structural_tag", "{}"), "not supported"),
])
def test_bad_specs_become_invalid_grammar_objects_with_the_message(smollm2_tokenizer, eos, key, message):
    sched = scheduler(smollm2_tokenizer, eos, False, seed=0)
    req = sglang_standin.Req(key, 10)
    sched.admit(req)
    assert req.finished and message in req.error


def test_a_forbidden_token_ends_the_request_instead_of_crashing(smollm2_tokenizer, eos):
    sched = scheduler(smollm2_tokenizer, eos, True, seed=0)
    req = sglang_standin.Req(("regex", "[0-9]+"), 10)
    sched.admit(req)
    req.grammar.accept_token(smollm2_tokenizer.encode("x", add_special_tokens=False)[0])
    assert req.grammar.is_terminated()
    mask = req.grammar.allocate_vocab_mask(len(smollm2_tokenizer), 1, "cpu")
    sglang.GuidedGrammar.fill_vocab_mask_batched([sglang_standin.install().GrammarRow(0, req.grammar)], mask)
    logits = torch.zeros(1, len(smollm2_tokenizer))
    req.grammar.apply_vocab_mask(logits, mask)
    assert torch.isfinite(logits[0]).nonzero().flatten().tolist() == sorted(eos)
