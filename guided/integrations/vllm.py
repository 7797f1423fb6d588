"""guided inside vLLM: `GuidedLogitsProcessor`, a vLLM v1 logits processor driven by per-request arguments.

Load it once per engine; each request then asks for a constraint in ``extra_args`` (offline) or
``vllm_xargs`` (over HTTP)::

    from vllm import LLM, SamplingParams
    llm = LLM(model_dir, logits_processors=[GuidedLogitsProcessor])
    llm.generate(prompt, SamplingParams(extra_args={"guided_json": schema}))

    vllm serve MODEL --logits-processors guided.integrations.vllm:GuidedLogitsProcessor
    client.chat.completions.create(..., extra_body={"vllm_xargs": {"guided_json": json.dumps(schema)}})

Keys: ``guided_json`` (a schema dict or JSON text), ``guided_regex``, ``guided_grammar`` (Lark
text or a shipped grammar's name), ``guided_choice`` (a list), and ``guided_options`` (a dict or
JSON text: ``whitespace``, ``lenient``, ``closed``, ``max_whitespace``, ``max_depth``,
``unknown_formats`` for schemas, ``start`` for grammars, ``close_before_max_tokens`` for all).  Requests without them pass through
untouched.

How it fits vLLM's engine:

- ``validate_params`` runs where vLLM admits a request (the API server): a spec that does not
  compile is refused there with guided's error message, which vLLM answers with HTTP 400, and
  never reaches the engine.  Valid specs are remembered, so each is checked once per process.
- ``update_state`` follows the persistent batch (removed, added and moved rows; a preempted
  request comes back as an added row whose generated tokens are replayed) and compiles each
  added row's spec through `guided.compile`'s cache, so a distinct spec compiles once per
  worker.  vLLM gives the processor a live reference to each row's generated tokens, so
  ``apply`` advances each matcher over the tokens sampled since the last step (under async
  scheduling they are filled in just before ``apply``), fills the constrained rows' masks in one
  call and sets every forbidden logit to ``-inf`` on the logits' device.
- A row that nonetheless cannot be constrained (its spec fails to compile in the worker, or a
  token the mask forbade reaches it) is logged and allowed only EOS: one request ends early, the
  engine keeps serving.

What does not compose (refused clearly, not silently ignored):

- vLLM's own speculative decoding: vLLM refuses every custom logits processor when
  ``speculative_config`` is set.
- vLLM's own structured outputs (``structured_outputs=`` / ``response_format``) in the same
  request as a ``guided_*`` argument: refused at admission; use one or the other.
- ``min_tokens``: vLLM forbids EOS until ``min_tokens`` tokens exist, and a short document (a
  choice, a small schema) may then have no allowed token; refused at admission.
- vLLM's model runner V2 (the default on GPUs with Triton in recent releases) takes a different
  processor interface; run with ``VLLM_USE_V2_MODEL_RUNNER=0``.  The CPU build uses V1.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from vllm import SamplingParams
from vllm.exceptions import VLLMValidationError
from vllm.v1.sample.logits_processor import (
    BatchUpdate,
    LogitsProcessor,
    MoveDirectionality,
)

from guided.errors import GuidedError, SpecError, TokenizerMismatch
from guided.integrations.serving import (
    OPTIONS_KEY,
    SPEC_KEYS,
    RowMatchers,
    check_constraint,
    constraint_from_args,
)
from guided.vocab import Vocabulary

__all__ = ["GuidedLogitsProcessor", "collect_stats", "vocabulary_for"]

log = logging.getLogger("guided.vllm")


class GuidedLogitsProcessor(LogitsProcessor):
    """Constrains each request that carries a ``guided_*`` argument to its spec; see the module docstring."""

    @classmethod
    def validate_params(cls, sampling_params: SamplingParams) -> None:
        """Refuse a request whose constraint is malformed or cannot combine with its other params."""
        args = sampling_params.extra_args
        try:
            constraint = constraint_from_args(args)
            if constraint is None:
                return
            if sampling_params.structured_outputs is not None:
                raise SpecError("a request cannot combine a guided_* argument with vLLM's own structured "
                                "outputs (structured_outputs / response_format); use one of them")
            if sampling_params.min_tokens:
                raise SpecError("min_tokens cannot be combined with a guided_* constraint: the document may be "
                                "complete before min_tokens, and then no token would be allowed")
            check_constraint(constraint)
        except GuidedError as exc:
            raise VLLMValidationError(f"{type(exc).__name__}: {exc}", parameter=_given_key(args)) from None
        except Exception as exc:  # a client's spec must never turn into a server error
            log.exception("guided: unexpected error while checking a request's constraint")
            raise VLLMValidationError(f"the constraint could not be compiled: {type(exc).__name__}: {exc}",
                                      parameter=_given_key(args)) from None

    def __init__(self, vllm_config: Any, device: torch.device, is_pin_memory: bool) -> None:
        self.device = device
        self.vocab = vocabulary_for(vllm_config)
        width = vllm_config.model_config.get_vocab_size()
        if width < self.vocab.size:
            raise TokenizerMismatch(f"the model's logits have {width} entries but its tokenizer has "
                                    f"{self.vocab.size} tokens")
        self.rows = RowMatchers(self.vocab)
        self.stats = {"steps": 0, "rows": 0, "mask_seconds": 0.0, "add_seconds": 0.0, "added": 0}

    def is_argmax_invariant(self) -> bool:
        return False  # masking changes which token is the most likely

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        rows = self.rows
        for index in batch_update.removed:
            rows.remove(index)
        started = time.perf_counter()
        for index, params, _prompt, output in batch_update.added:
            rows.remove(index)  # an added row may replace the row's previous request
            constraint = _constraint_or_none(params)
            if constraint is not None:
                rows.add(index, constraint, output, params.max_tokens)
                self.stats["added"] += 1
        self.stats["add_seconds"] += time.perf_counter() - started
        for source, target, direction in batch_update.moved:
            rows.move(source, target, swap=direction == MoveDirectionality.SWAP)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not len(self.rows):
            return logits
        started = time.perf_counter()
        indices, bitmask = self.rows.fill()
        allowed = _unpack(bitmask, logits.shape[1], logits.device)
        if len(indices) == logits.shape[0] and indices == list(range(len(indices))):
            logits.masked_fill_(~allowed, float("-inf"))
        else:
            index = torch.tensor(indices, device=logits.device)
            logits[index] = logits[index].masked_fill(~allowed, float("-inf"))
        self.stats["steps"] += 1
        self.stats["rows"] += len(indices)
        self.stats["mask_seconds"] += time.perf_counter() - started
        return logits


def _constraint_or_none(params: SamplingParams):
    try:
        return constraint_from_args(params.extra_args)
    except GuidedError as exc:  # validate_params refused these; a request that bypassed it is not constrained
        log.error("guided: a request reached the engine with an invalid constraint (%s); it is not constrained", exc)
        return None


def _given_key(args: Any) -> str | None:
    if not isinstance(args, dict):
        return None
    return next((k for k in (*SPEC_KEYS, OPTIONS_KEY) if k in args), None)


def _unpack(bitmask: np.ndarray, width: int, device: torch.device) -> torch.Tensor:
    """Packed int32 rows -> bool ``[rows, width]`` on ``device``; columns past the vocabulary are False."""
    if device.type == "cpu":
        bits = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")
        allowed = torch.from_numpy(bits).view(torch.bool)
    else:  # expand on the device: the packed words are 32x smaller to copy
        words = torch.from_numpy(bitmask).to(device, non_blocking=True)
        shifts = torch.arange(32, dtype=torch.int32, device=device)
        allowed = ((words.unsqueeze(-1) >> shifts) & 1).reshape(words.shape[0], -1).bool()
    if allowed.shape[1] >= width:
        return allowed[:, :width]
    pad = torch.zeros((allowed.shape[0], width - allowed.shape[1]), dtype=torch.bool, device=allowed.device)
    return torch.cat([allowed, pad], dim=1)


def vocabulary_for(vllm_config: Any) -> Vocabulary:
    """The model's vocabulary as guided sees it, with EOS the ids vLLM stops on: the tokenizer's
    EOS and the generation config's ``eos_token_id`` (an EOS guided allowed but vLLM did not stop
    on would be generated again and again until ``max_tokens``)."""
    from vllm.tokenizers import cached_tokenizer_from_config

    model_config = vllm_config.model_config
    tokenizer = cached_tokenizer_from_config(model_config)
    if tokenizer is None:
        raise ValueError("GuidedLogitsProcessor needs the model's tokenizer; do not use skip_tokenizer_init")
    eos = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        eos.add(int(tokenizer.eos_token_id))
    generation_eos = model_config.try_get_generation_config().get("eos_token_id")
    if isinstance(generation_eos, int):
        eos.add(generation_eos)
    elif generation_eos:
        eos.update(int(t) for t in generation_eos)
    return Vocabulary.from_tokenizer(tokenizer, eos_token_ids=sorted(eos) or None)


def collect_stats(worker: Any) -> dict[str, float] | None:
    """The processor's counters in a vLLM worker, for ``llm.collective_rpc(collect_stats)``:
    steps masked, rows masked, seconds spent masking (``apply``) and starting rows
    (``update_state``, compiles included), rows started.  ``None`` where it is not loaded."""
    runner = getattr(worker, "model_runner", worker)
    for processor in runner.input_batch.logitsprocs.all:
        if isinstance(processor, GuidedLogitsProcessor):
            return dict(processor.stats)
    return None
