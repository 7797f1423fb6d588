"""Decoders: greedy, sampling, beam search and best-of-N over a KV-cached model, per-row constraints.

- `ModelRunner`: the model behind a KV cache (prefill once, then one or more tokens per step);
- `Constraints` / `RowConstraints`: grammar ∧ ban list ∧ must-include, budget-aware;
- `decode` / `iter_decode`: greedy and sampling for a batch of prompts;
- `beam_search`: per-beam matchers, length normalisation, early stopping, n best;
- `GenerationStats`: tokens, tokens/s, time in masks and in the model;
- `overlap`: the next step's native masks computed while the model runs its forward pass;
- `speculative_decode` with a `Drafter` (prompt lookup, early exit, a draft model) and
  jump-forward over grammar-forced bytes: lossless, `SpeculativeStats` counts the passes saved.

>>> import guided
>>> from guided.decoding import Constraints, decode
>>> from guided.decoding.fake import TableModel
>>> vocab = guided.Vocabulary.from_token_bytes([b"0", b"1", b"<eos>"], eos_token_ids=[2])
>>> cons = Constraints.build(vocab, grammar=guided.compile(guided.Regex("1+"), vocab))
>>> greedy = guided.sampling.SamplingParams(temperature=0)
>>> [c.text for c in decode(TableModel.from_probs([0.7, 0.2, 0.1]), [[0]], cons, greedy, max_new_tokens=3)]
['111']
"""

from guided.decoding.beam import beam_search, normalized_score
from guided.decoding.constraints import DEFAULT_BUDGET_WINDOW, Constraints, NoAllowedToken, RowConstraints
from guided.decoding.runner import LogitsSource, ModelRunner
from guided.decoding.sampler import Completion, decode, iter_decode
from guided.decoding.stats import GenerationStats
from guided.decoding.drafters import DraftModelDrafter, Drafter, EarlyExitDrafter, PromptLookupDrafter
from guided.decoding.speculative import SpeculativeStats, speculative_decode

__all__ = [
    "DEFAULT_BUDGET_WINDOW",
    "Completion",
    "Constraints",
    "DraftModelDrafter",
    "Drafter",
    "EarlyExitDrafter",
    "GenerationStats",
    "LogitsSource",
    "ModelRunner",
    "NoAllowedToken",
    "PromptLookupDrafter",
    "RowConstraints",
    "SpeculativeStats",
    "beam_search",
    "decode",
    "iter_decode",
    "normalized_score",
    "speculative_decode",
]
