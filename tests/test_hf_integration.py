"""guided.LogitsProcessor inside Hugging Face's generate(): batches, beams, reuse, padded heads."""

from __future__ import annotations

import re

import pytest
import torch

import guided
from guided import Regex, TokenizerMismatch
from guided.decoding.torch_masks import apply_bitmask
from guided.engine.bitmask import pack
from tests.regexes import PRACTICAL

EXTRA = {
    "digits_3": r"[0-9]{3}",
    "signed_float": r"[+-]?[0-9]+\.[0-9]{2}",
    "quoted_word": r'"[a-z]{2,8}"',
    "bool_word": r"(true|false)",
}
ALL = {**PRACTICAL, **EXTRA}


def decode_checked(grammar, vocab, tokens) -> tuple[str, bool]:
    """Walk generated tokens through a fresh matcher; (text, finished with a complete match)."""
    m = grammar.matcher()
    data = b""
    for t in tokens:
        m.advance(t)  # raises if generate() ever produced a forbidden token
        if t in vocab.eos_token_ids:
            return data.decode("utf-8"), True
        data += vocab.token_bytes[t]
    return data.decode("utf-8", errors="replace"), m.accepts_eos()


@pytest.mark.parametrize("name", sorted(ALL))
def test_random_model_samples_always_match(name, tiny_model):
    """A random model sampling under each of 30+ regexes, several seeds: every finished output fullmatches."""
    vocab = tiny_model.vocab
    grammar = guided.compile(Regex(ALL[name]), vocab)
    oracle = re.compile(ALL[name], re.ASCII)
    eos = sorted(vocab.eos_token_ids)
    prompt = torch.tensor([[1, 9690, 198, 504, 3432, 28, 2, 198]] * 3)
    for seed in range(3):
        torch.manual_seed(seed)
        out = tiny_model.hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True,
                                     max_new_tokens=24, logits_processor=[guided.LogitsProcessor(grammar)],
                                     eos_token_id=eos, pad_token_id=eos[0], top_k=None, top_p=None)
        for row in out[:, prompt.shape[1]:].tolist():
            text, complete = decode_checked(grammar, vocab, row)
            if complete:
                assert oracle.fullmatch(text), (name, text)


def test_batch_rows_and_beams_keep_their_own_state(tiny_model):
    vocab = tiny_model.vocab
    grammar = guided.compile(Regex(r"(cat|dog|bird) [0-9]{1,3}"), vocab)
    eos = sorted(vocab.eos_token_ids)
    prompt = torch.tensor([[1, 504, 3432], [1, 9690, 28]])
    out = tiny_model.hf.generate(prompt, attention_mask=torch.ones_like(prompt), num_beams=3, do_sample=False,
                                 num_return_sequences=3, max_new_tokens=12,
                                 logits_processor=[guided.LogitsProcessor(grammar)],
                                 eos_token_id=eos, pad_token_id=eos[0])
    for row in out[:, prompt.shape[1]:].tolist():
        text, complete = decode_checked(grammar, vocab, row)
        if complete:
            assert re.fullmatch(r"(cat|dog|bird) [0-9]{1,3}", text), text


def test_processor_is_reusable_across_generate_calls(tiny_model):
    vocab = tiny_model.vocab
    grammar = guided.compile(Regex(r"[a-z]{3}"), vocab)
    processor = guided.LogitsProcessor(grammar)
    eos = sorted(vocab.eos_token_ids)
    for prompt in ([[1, 504, 3432]], [[1, 9690, 28, 44, 55]], [[1, 504, 3432]]):
        ids = torch.tensor(prompt)
        out = tiny_model.hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=6,
                                     logits_processor=[processor], eos_token_id=eos, pad_token_id=eos[0])
        text, complete = decode_checked(grammar, vocab, out[0, ids.shape[1]:].tolist())
        assert not complete or re.fullmatch(r"[a-z]{3}", text)


def test_padded_logits_are_masked_and_narrow_logits_refused(smollm2_vocab):
    grammar = guided.compile(Regex(r"[0-9]+"), smollm2_vocab)
    processor = guided.LogitsProcessor(grammar)
    scores = torch.zeros(1, smollm2_vocab.size + 64)
    out = processor(torch.tensor([[5]]), scores)
    assert torch.isinf(out[0, smollm2_vocab.size:]).all()
    assert int(torch.isfinite(out[0, :smollm2_vocab.size]).sum()) == int(grammar.matcher().mask().sum())
    with pytest.raises(TokenizerMismatch):
        guided.LogitsProcessor(grammar)(torch.tensor([[5]]), torch.zeros(1, 100))


def test_apply_bitmask_matches_bool_mask():
    allowed = torch.rand(70) > 0.5
    logits = torch.randn(2, 75)
    words = torch.from_numpy(pack(allowed.numpy()))[None].repeat(2, 1)
    out = apply_bitmask(logits, words)
    expected = logits.clone()
    expected[:, :70][:, ~allowed] = float("-inf")
    expected[:, 70:] = float("-inf")
    assert torch.equal(out, expected)


@pytest.mark.model
def test_generate_with_the_real_model(smollm2_model):
    answer = guided.generate(smollm2_model, "What is the capital of France?",
                             regex=r"The capital of France is [A-Z][a-z]+\.", max_new_tokens=16)
    assert answer == "The capital of France is Paris."
