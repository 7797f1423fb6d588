"""Sampling: logits processors, ban lists, must-include phrases and reward reweighting, composed
with grammar masks in one fixed, documented order.

The pipeline, for every row at every step (`LogitsPipeline`):

1. **Penalties** on the raw logits: repetition (multiplicative, over prompt and generated
   tokens, as in CTRL and Hugging Face), frequency and presence (additive, over generated tokens,
   as in OpenAI's API), no-repeat-n-gram (a *soft* ban, see 3).
2. **Logit bias** (``{token_id: bias}``; ``-inf`` is a soft ban).
3. **Hard masks**: the grammar (budget-aware near ``max_new_tokens``), the ban list and the
   must-include phrases, intersected (`guided.decoding.constraints`).  Soft bans from steps 1-2
   give way if they would leave a row with no allowed token; hard masks never do.
4. **Temperature** (``T → 0`` is greedy).
5. **Truncation**: top-k → top-p → min-p → typical → epsilon → eta, in Hugging Face's order.
   They run on the masked logits, so their probabilities are the model's renormalised over the
   allowed tokens, and each keeps at least the most likely allowed token: no truncation step
   can ever remove every allowed token.
6. **Reward reweighting**: ``P'(x) ∝ P(x)·exp(λ·r(prefix, x))`` over the ``reward_top_k`` most
   likely survivors, scored by the user's batched ``r``; the others are dropped.
7. **Pick**: argmax (greedy) or a sample; a token the must-include / ban matchers veto (it
   would close the document too early) is excluded and the pick repeated.

Why this order: penalties and bias describe the model's preferences, so they act on its logits
before anything is removed (as in HF, where logits processors precede warpers).  Masking before
temperature and truncation makes "top-p 0.9" mean 90% of the *allowed* mass, so truncation
cannot empty a row (masking after truncation can: the classic "all tokens masked" failure).
Reward reweighting comes last so that ``r`` is only called on plausible, allowed candidates and
``λ`` keeps the same scale whatever the temperature.

>>> import torch
>>> from guided.sampling import LogitsPipeline, SamplingParams
>>> pipe = LogitsPipeline(SamplingParams(top_k=1), prompts=[[]], width=4, device=torch.device("cpu"))
>>> allowed = torch.tensor([[False, True, True, True]])
>>> pipe.pick(pipe.scores(torch.tensor([[9.0, 1.0, 3.0, 2.0]]), allowed)).tolist()
[2]
"""

from guided.sampling.phrases import PhraseOptions, ban_grammar, must_include_grammar
from guided.sampling.pipeline import LogitsPipeline, RewardFn, SamplingParams, sample
from guided.sampling import processors

__all__ = [
    "LogitsPipeline",
    "PhraseOptions",
    "RewardFn",
    "SamplingParams",
    "ban_grammar",
    "must_include_grammar",
    "processors",
    "sample",
]
