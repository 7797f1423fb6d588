"""Masks in the forward pass's shadow (`guided.decoding.overlap`): decoding with the next masks
computed during the forward pass gives exactly what decoding without it gives (greedy, seeded
sampling, beam search; native grammars of every kind, ban lists), and Python-engine matchers
are never handed to the worker."""

from __future__ import annotations

import pytest

import guided
from guided.decoding import Constraints, GenerationStats, ModelRunner, beam_search, decode, overlap
from guided.engine import native
from guided.sampling import SamplingParams

pytestmark = pytest.mark.skipif(not native.available(), reason="the native core is not built")

SPECS = {
    "regex": guided.Regex(r'\{"n": [0-9]{1,4}, "s": "[a-z ]{0,12}"\}'),
    "json schema": guided.JsonSchema({"type": "object", "properties": {"a": {"type": "integer"},
                                                                       "b": {"type": "array", "items": {"type": "string"}}},
                                      "required": ["a", "b"], "additionalProperties": False}),
    "lark json": guided.Grammar("json"),
    "xml": guided.Xml(),
}
PROMPTS = [[1, 2, 3, 4], [5, 6]]


def _run(model, cons: Constraints, how: str, enabled: bool, monkeypatch) -> tuple[list, GenerationStats]:
    monkeypatch.setattr(overlap, "enabled", enabled)
    stats = GenerationStats()
    runner = ModelRunner(model)
    if how == "beam":
        out = beam_search(runner, PROMPTS, cons, num_beams=3, num_return=2, max_new_tokens=24, stats=stats)
        return [[(c.tokens, c.finish_reason, round(c.logprob, 4)) for c in cs] for cs in out], stats
    params = SamplingParams(temperature=0) if how == "greedy" else SamplingParams(temperature=1.0, top_k=50)
    out = decode(runner, PROMPTS, cons, params, max_new_tokens=24, seed=7, stats=stats)
    return [(c.tokens, c.finish_reason, round(c.logprob, 4)) for c in out], stats


@pytest.mark.parametrize("how", ["greedy", "sampling", "beam"])
@pytest.mark.parametrize("name", list(SPECS))
def test_overlap_changes_nothing(name, how, tiny_model, monkeypatch):
    """The same tokens, finish reasons and log-probabilities with the overlap on and off."""
    vocab = tiny_model.vocab

    def fresh() -> Constraints:  # a grammar of its own: its masks are computed as decoding goes
        grammar = guided.compile(SPECS[name], vocab, engine="native", cache=False)
        return Constraints.build(vocab, grammar=grammar, ban=["zz"] if name == "regex" else ())

    shadowed, _ = _run(tiny_model, fresh(), how, True, monkeypatch)
    plain, _ = _run(tiny_model, fresh(), how, False, monkeypatch)
    assert shadowed == plain  # (masks already cached, e.g. a regex's DFA states, start no thread)


def test_python_engine_matchers_are_not_prefetched(tiny_model, monkeypatch):
    vocab = tiny_model.vocab
    cons = Constraints.build(vocab, grammar=guided.compile(SPECS["regex"], vocab, engine="python"))
    plain, _ = _run(tiny_model, cons, "greedy", False, monkeypatch)
    shadowed, stats = _run(tiny_model, cons, "greedy", True, monkeypatch)
    assert shadowed == plain
    assert stats.overlapped_mask_seconds == 0


def test_a_prefetched_mask_is_the_mask(smollm2_vocab):
    """Along a walk, the mask a matcher finds after a prefetch equals a fresh twin's."""
    g = guided.compile(guided.Grammar("json"), smollm2_vocab, engine="native", cache=False)
    fresh = guided.compile(guided.Grammar("json"), smollm2_vocab, engine="native", cache=False)
    m, twin = g.matcher(), fresh.matcher()
    prefetch = overlap.MaskPrefetch(threads=1)
    text = b'{"a": [1, 2.5e3, "x\\u00e9"], "b": {"c": null, "d": true}}'
    by_bytes = {b: i for i, b in enumerate(smollm2_vocab.token_bytes) if b}
    steps = 0
    for b in text:
        prefetch.start([m])
        prefetch.wait()
        assert (m.mask() == twin.mask()).all()
        m.advance(by_bytes[bytes([b])])
        twin.advance(by_bytes[bytes([b])])
        steps += 1
    assert steps == len(text) and m.accepts_eos()
    assert prefetch.seconds > 0  # a fresh grammar: the background threads computed its masks


@pytest.mark.parametrize("name", ["json schema", "lark json"])
def test_speculative_draft_model_overlap_changes_nothing(name, tiny_model, monkeypatch):
    """Speculative decoding with a draft model: the draft passes run beside the masks, and the
    tokens, finish reasons and log-probabilities are those of the run without overlap."""
    from guided.decoding import speculative_decode
    from guided.decoding.drafters import DraftModelDrafter

    vocab = tiny_model.vocab
    draft_model = guided.models.random_model(num_layers=1, seed=1)

    def run(enabled: bool, params: SamplingParams) -> tuple[list, GenerationStats]:
        monkeypatch.setattr(overlap, "enabled", enabled)
        grammar = guided.compile(SPECS[name], vocab, engine="native", cache=False)
        stats = GenerationStats()
        out = speculative_decode(ModelRunner(tiny_model), PROMPTS, Constraints.build(vocab, grammar=grammar), params,
                                 drafter=DraftModelDrafter(draft_model), max_new_tokens=24, seed=3,
                                 stats=stats)
        return [(c.tokens, c.finish_reason, round(c.logprob, 4)) for c in out], stats

    for params in (SamplingParams(temperature=0), SamplingParams(temperature=1.0, top_k=50)):
        shadowed, stats = run(True, params)
        plain, plain_stats = run(False, params)
        assert shadowed == plain
        assert plain_stats.overlapped_mask_seconds == 0
    assert stats.overlapped_mask_seconds > 0  # a fresh grammar: masks were computed in the draft's shadow
