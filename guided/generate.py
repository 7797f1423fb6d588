"""`generate`: one call from a prompt to constrained text.

This first version drives Hugging Face's own decoding loop with `guided.LogitsProcessor`;
greedy by default, sampling with ``temperature > 0``.

>>> import guided
>>> model = guided.models.random_model(num_layers=2, seed=0)   # doctest: +SKIP
>>> guided.generate(model, "Year?", regex=r"(19|20)[0-9]{2}")  # doctest: +SKIP
'2047'
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import transformers

from guided.compiler import compile
from guided.errors import GuidedError
from guided.frontends.regex import Regex
from guided.integrations.hf import LogitsProcessor
from guided.models import Model


class IncompleteOutput(GuidedError):
    """Generation stopped (token budget) before the output formed a complete document."""

    def __init__(self, text: str, max_new_tokens: int):
        self.text = text
        super().__init__(
            f"max_new_tokens={max_new_tokens} was reached before the output was complete: {text!r}"
        )


def generate(
    model: Model,
    prompt: str | Sequence[dict[str, str]],
    *,
    regex: str | Regex | None = None,
    max_new_tokens: int = 256,
    temperature: float = 0.0,
    seed: int | None = None,
    chat: bool | None = None,
) -> str:
    """Generate text from ``model`` that fully matches ``regex``.

    ``prompt`` is a string or a list of chat messages (``{"role", "content"}``); with ``chat``
    left to None, a model that has a chat template gets it.  ``temperature=0`` is greedy.
    Raises `IncompleteOutput` if ``max_new_tokens`` ends the output early.
    """
    if regex is None:
        raise TypeError("generate() needs a constraint: regex=...")
    spec = regex if isinstance(regex, Regex) else Regex(regex)
    grammar = compile(spec, model.vocab)
    input_ids = encode_prompt(model, prompt, chat)
    context = getattr(model.hf.config, "max_position_embeddings", None)
    if context is not None and input_ids.shape[1] >= context:
        raise GuidedError(
            f"the prompt is {input_ids.shape[1]} tokens long but the model's context holds {context}"
        )
    if seed is not None:
        torch.manual_seed(seed)
    config = transformers.GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=temperature > 0,
        temperature=temperature if temperature > 0 else None,
        top_k=None,
        top_p=None,
        eos_token_id=sorted(model.vocab.eos_token_ids),
        pad_token_id=model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None
        else min(model.vocab.eos_token_ids),
    )
    with torch.inference_mode():
        out = model.hf.generate(
            input_ids.to(model.device),
            attention_mask=torch.ones_like(input_ids).to(model.device),
            generation_config=config,
            logits_processor=[LogitsProcessor(grammar)],
        )
    tokens = out[0, input_ids.shape[1] :].tolist()
    matcher = grammar.matcher()
    text_ids = []
    for token in tokens:
        if matcher.is_finished() and token not in model.vocab.eos_token_ids:
            break
        matcher.advance(token)
        if token in model.vocab.eos_token_ids:
            break
        text_ids.append(token)
    text = b"".join(model.vocab.token_bytes[t] for t in text_ids).decode("utf-8", errors="replace")
    if not matcher.accepts_eos() and not matcher.is_finished():
        raise IncompleteOutput(text, max_new_tokens)
    return text


def encode_prompt(model: Model, prompt: Any, chat: bool | None) -> torch.Tensor:
    """Token ids ``[1, n]`` of ``prompt``, through the chat template when there is one (or asked)."""
    tok = model.tokenizer
    messages = prompt if not isinstance(prompt, str) else [{"role": "user", "content": prompt}]
    use_chat = (getattr(tok, "chat_template", None) is not None) if chat is None else chat
    if use_chat or not isinstance(prompt, str):
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
    else:
        ids = tok(prompt, add_special_tokens=True)["input_ids"]
    return torch.tensor([list(ids)], dtype=torch.long)
