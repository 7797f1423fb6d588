"""int8 inference on CPU: `quantize_int8` turns a causal LM's linear layers into int8 matrix products.

Each linear layer's weight is stored as int8 with one scale per output channel; at run time each
input row (each token) is quantized to int8 with its own scale, the product runs in integers
(``torch._int_mm``, int32 accumulation) and is rescaled to float.  Before that, SmoothQuant
(Xiao et al., 2023) moves the activations' outlier channels into the weights: for each linear
input, a per-channel factor ``s = max|x|^α / max|w|^(1-α)`` (``α = 0.5``, maxima measured on a
fixed calibration text) divides the activation and multiplies the weight's column, which leaves
the float model unchanged (the division is folded into the RMSNorm weight before the attention
and MLP projections and the output layer, and into ``up_proj`` before ``down_proj``).  Layers that
read the same input (``q/k/v_proj``, ``gate/up_proj``) quantize it once (`RowQuantizer`).

Why not ``torch.ao.quantization.quantize_dynamic``: it quantizes each activation *tensor* with one
7-bit scale, and on SmolLM2 that loses most of the model (mean KL to float32 of 1.3 nats per token
on a README text, top-1 agreement 40%), while this scheme stays close to float32 (KL 0.012, top-1
agreement 93%).  The output layer (``lm_head``, tied to the embeddings in SmolLM2) gets its own
int8 copy; the embeddings stay float32.  Architectures other than Llama-style decoders are
quantized without smoothing and keep a float32 output layer.  Figures and the BFCL accuracy are in
the README.

>>> import torch
>>> layer = torch.nn.Linear(64, 8)
>>> q = Int8Linear.from_linear(layer)
>>> x = torch.randn(3, 64)
>>> bool((q(x) - layer(x)).abs().max() < 0.05)
True
"""

from __future__ import annotations

import torch

__all__ = ["Int8Linear", "RowQuantizer", "quantize_int8", "CALIBRATION_TEXT"]

SMOOTHING_ALPHA = 0.5

CALIBRATION_TEXT = (
    "The quick brown fox jumps over the lazy dog. In 1969, Apollo 11 landed on the Moon; Neil Armstrong "
    "and Buzz Aldrin walked on its surface while Michael Collins orbited above.\n"
    '{"name": "John Carpenter", "age": 42, "city": "Paris", "tags": ["a", "b"], "active": true, "score": 3.5}\n'
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "unit": "celsius"}}\n</tool_call>\n'
    "def area(radius: float) -> float:\n    return 3.14159 * radius ** 2\n"
    "Question: What is the capital of France? Answer: The capital of France is Paris.\n"
    "<book><title>Dune</title><author>Frank Herbert</author><year>1965</year></book>\n"
    "Calculate the roots of 3x^2 - 11x - 4 = 0, then the area of a circle of radius 5 units."
)


class RowQuantizer:
    """Quantizes a float input to int8, one scale per row.  Shared by the ``readers`` layers that
    read the same tensor one after the other (``q/k/v_proj``): the first quantizes it, the others
    reuse the result while it is the very same tensor object, and the last one lets it go."""

    __slots__ = ("readers", "_last", "_result", "_left")

    def __init__(self, readers: int = 1):
        self.readers = readers
        self._last: torch.Tensor | None = None
        self._result: tuple[torch.Tensor, torch.Tensor] | None = None
        self._left = 0

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._left and x is self._last:
            result = self._result
        else:
            rows = x.reshape(-1, x.shape[-1]).float()
            scale = rows.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127.0
            result = (torch.round(rows / scale).to(torch.int8), scale)
            self._left = self.readers
        self._left -= 1
        if self._left:
            self._last, self._result = x, result
        else:
            self._last = self._result = None
        return result  # type: ignore[return-value]


class Int8Linear(torch.nn.Module):
    """A linear layer with an int8 weight (per output channel) and int8 inputs (per row)."""

    def __init__(self, weight_t: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None,
                 quantizer: RowQuantizer | None = None):
        super().__init__()
        self.quantizer = quantizer if quantizer is not None else RowQuantizer()
        self.register_buffer("weight_t", weight_t)  # int8 [in, out]: the layout torch._int_mm wants
        self.register_buffer("weight_scale", weight_scale)  # float32 [out]
        self.bias = None if bias is None else torch.nn.Parameter(bias.detach().float(), requires_grad=False)
        self.in_features, self.out_features = weight_t.shape

    @classmethod
    def from_linear(cls, layer: torch.nn.Linear, column_factors: torch.Tensor | None = None,
                    quantizer: RowQuantizer | None = None) -> "Int8Linear":
        """``column_factors``: multiply the weight's input columns first (SmoothQuant), on a copy;
        ``quantizer``: shared with the layers that read the same input."""
        w = layer.weight.detach().float()
        if column_factors is not None:
            w = w * column_factors[None, :]
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
        return cls(q.t().contiguous(), scale.contiguous(), layer.bias, quantizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        q, scale = self.quantizer(x)
        y = torch._int_mm(q, self.weight_t).to(torch.float32) * scale * self.weight_scale
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def _smooth(hf: torch.nn.Module, calibration: torch.Tensor, alpha: float) -> torch.Tensor:
    """SmoothQuant on Llama-style decoder layers, in place (the float model's outputs do not change).

    Returns the factors of the output layer's columns, already divided out of the final norm: the
    output layer's weight is tied to the embeddings, so it is scaled only in its int8 copy."""
    layers = hf.model.layers
    head = hf.get_output_embeddings()
    maxima: dict[tuple[int, str], torch.Tensor] = {}
    hooks = []

    def record(module: torch.nn.Module, key: tuple[int, str]) -> None:
        def hook(_module, inputs):
            m = inputs[0].detach().abs().reshape(-1, inputs[0].shape[-1]).amax(0).float()
            maxima[key] = torch.maximum(maxima[key], m) if key in maxima else m

        hooks.append(module.register_forward_pre_hook(hook))

    for i, layer in enumerate(layers):
        record(layer.self_attn.q_proj, (i, "attn"))
        record(layer.mlp.gate_proj, (i, "mlp"))
        record(layer.mlp.down_proj, (i, "down"))
    record(head, (-1, "head"))
    try:
        with torch.inference_mode():
            hf(calibration)
    finally:
        for h in hooks:
            h.remove()

    def factors(x_max: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        w_max = torch.stack([w.abs().amax(0) for w in weights]).amax(0).float()
        return x_max.clamp(min=1e-5) ** alpha / w_max.clamp(min=1e-5) ** (1 - alpha)

    with torch.no_grad():
        for i, layer in enumerate(layers):
            attn, mlp = layer.self_attn, layer.mlp
            projections = [attn.q_proj, attn.k_proj, attn.v_proj]
            s = factors(maxima[(i, "attn")], [p.weight for p in projections])
            layer.input_layernorm.weight.div_(s)
            for p in projections:
                p.weight.mul_(s[None, :])
            s = factors(maxima[(i, "mlp")], [mlp.gate_proj.weight, mlp.up_proj.weight])
            layer.post_attention_layernorm.weight.div_(s)
            for p in (mlp.gate_proj, mlp.up_proj):
                p.weight.mul_(s[None, :])
            s = factors(maxima[(i, "down")], [mlp.down_proj.weight])
            mlp.down_proj.weight.mul_(s[None, :])
            mlp.up_proj.weight.div_(s[:, None])
        s = factors(maxima[(-1, "head")], [head.weight])
        hf.model.norm.weight.div_(s)
    return s


def _is_llama_like(hf: torch.nn.Module) -> bool:
    layers = getattr(getattr(hf, "model", None), "layers", None)
    if not layers:
        return False
    layer = layers[0]
    return hasattr(hf.model, "norm") and isinstance(hf.get_output_embeddings(), torch.nn.Linear) and all(
        hasattr(layer, a) for a in ("input_layernorm", "post_attention_layernorm", "self_attn", "mlp")) and all(
        hasattr(layer.mlp, p) for p in ("gate_proj", "up_proj", "down_proj")) and all(
        hasattr(layer.self_attn, p) for p in ("q_proj", "k_proj", "v_proj"))


def quantize_int8(hf: torch.nn.Module, tokenizer, *, smooth: bool = True) -> torch.nn.Module:
    """Replace ``hf``'s linear layers by `Int8Linear`, in place; returns ``hf``.

    ``smooth``: apply SmoothQuant first, and quantize the output layer too (Llama-style decoders
    only: SmolLM2, Llama, Qwen, Mistral; others are quantized without smoothing, output layer
    left in float32).
    """
    if not hasattr(torch, "_int_mm"):
        from guided.errors import ModelUnavailable

        raise ModelUnavailable(f"int8 inference needs torch._int_mm, which torch {torch.__version__} lacks")
    head = hf.get_output_embeddings()
    if smooth and _is_llama_like(hf):
        ids = tokenizer(CALIBRATION_TEXT, return_tensors="pt")["input_ids"].to(next(hf.parameters()).device)
        head_factors = _smooth(hf, ids, SMOOTHING_ALPHA)
        for layer in hf.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            shared = RowQuantizer(readers=3)
            for name in ("q_proj", "k_proj", "v_proj"):
                setattr(attn, name, Int8Linear.from_linear(getattr(attn, name), quantizer=shared))
            shared = RowQuantizer(readers=2)
            for name in ("gate_proj", "up_proj"):
                setattr(mlp, name, Int8Linear.from_linear(getattr(mlp, name), quantizer=shared))
        hf.set_output_embeddings(Int8Linear.from_linear(head, head_factors))
        head = None
    for module in list(hf.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child is not head:
                setattr(module, name, Int8Linear.from_linear(child))
    return hf
