"""int8 inference (`guided.quantize`, ``load_model(quantize="int8")``): close to float32, faithful sharing."""

from __future__ import annotations

import pytest
import torch

import guided
from guided import models
from guided.quantize import Int8Linear, RowQuantizer, quantize_int8


def test_int8_linear_is_close_to_the_float_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(128, 32)
    q = Int8Linear.from_linear(layer)
    x = torch.randn(5, 7, 128)
    exact = layer(x)
    assert q(x).shape == exact.shape
    # per-row activation scale and per-channel weight scale: relative error ~1/127 per factor
    assert (q(x) - exact).abs().max() < 0.02 * exact.abs().max()
    factors = torch.rand(128) + 0.5  # SmoothQuant's column factors, undone on the input
    smoothed = Int8Linear.from_linear(layer, factors)
    assert (smoothed(x / factors) - exact).abs().max() < 0.02 * exact.abs().max()


def test_shared_quantizer_gives_the_same_outputs_as_separate_ones():
    torch.manual_seed(1)
    layers = [torch.nn.Linear(64, 16, bias=False) for _ in range(3)]
    shared = RowQuantizer(readers=3)
    together = [Int8Linear.from_linear(layer, quantizer=shared) for layer in layers]
    apart = [Int8Linear.from_linear(layer) for layer in layers]
    for _ in range(2):
        x = torch.randn(4, 64)
        for a, b in zip(together, apart):
            assert torch.equal(a(x), b(x))
    y = torch.randn(4, 64)  # a reader that sees another tensor quantizes it afresh
    assert torch.equal(together[0](y), apart[0](y)) and torch.equal(together[1](x), apart[1](x))


def test_quantized_model_stays_close_and_generates(tiny_model):
    q = models.random_model(num_layers=2, seed=0)
    quantize_int8(q.hf, q.tokenizer)
    ints = [m for m in q.hf.modules() if isinstance(m, Int8Linear)]
    assert len(ints) == 2 * 7 + 1  # every projection of both layers and the output layer
    assert isinstance(q.hf.get_input_embeddings().weight, torch.nn.Parameter)  # embeddings stay float
    ids = torch.tensor([q.tokenizer("The capital of France is")["input_ids"]])
    with torch.inference_mode():
        ref = tiny_model.hf(ids).logits.log_softmax(-1)
        got = q.hf(ids).logits.log_softmax(-1)
    kl = (ref.exp() * (ref - got)).sum(-1).mean()
    assert kl < 0.05, kl
    out = guided.generate(q, "Year?", regex=r"(19|20)[0-9]{2}", max_new_tokens=8)
    assert len(out) == 4


def test_quantize_option_is_checked():
    with pytest.raises(ValueError, match="quantize"):
        guided.load_model(quantize="int4")
    with pytest.raises(ValueError, match="CPU"):
        guided.load_model(quantize="int8", dtype=torch.bfloat16)


@pytest.mark.model
def test_int8_default_model_answers_like_float32(smollm2_model):
    q = guided.load_model(quantize="int8")
    ids = torch.tensor([q.tokenizer("Paris is the capital of France. Rome is the capital of Italy.")["input_ids"]])
    with torch.inference_mode():
        ref = smollm2_model.hf(ids).logits.log_softmax(-1)
        got = q.hf(ids).logits.log_softmax(-1)
    assert (ref.exp() * (ref - got)).sum(-1).mean() < 0.05
    assert guided.generate(q, "Name three colors.", max_new_tokens=16).startswith("1. Red")
