"""The native core's API: engine selection, batch filling in threads, and refusal of bad input."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

import guided
from guided.compiler import resolve_engine
from guided.engine import native
from guided.engine.native import NativeMatcher, lower_cfg
from guided.errors import ConstraintViolation, SpecError, TokenizerMismatch
from guided.frontends.jsonschema import schema_to_ir

pytestmark = pytest.mark.skipif(not native.available(), reason="the native core is not built")

SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name"]},
    {"type": "array", "items": {"type": "number"}, "maxItems": 5},
    {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}}}},
    {"type": "string", "format": "date"},
]


@pytest.fixture
def tiny():
    return guided.Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"1", b"<eos>"], eos_token_ids=[4])


def test_engine_selection(tiny, monkeypatch):
    assert resolve_engine(None) == "native"
    assert isinstance(guided.compile(guided.Regex("ab"), tiny).matcher(), NativeMatcher)
    monkeypatch.setenv("GUIDED_ENGINE", "python")
    assert resolve_engine(None) == "python"
    assert not isinstance(guided.compile(guided.Regex("ab"), tiny).matcher(), NativeMatcher)
    with pytest.raises(ValueError, match="unknown engine"):
        guided.compile(guided.Regex("ab"), tiny, engine="rust")
    py = guided.compile(guided.Regex("ab"), tiny, engine="python")
    nat = guided.compile(guided.Regex("ab"), tiny, engine="native")
    assert py is not nat and nat is guided.compile(guided.Regex("ab"), tiny, engine="native")


def walk_halfway(grammar, tokenizer, vocab, doc) -> object:
    m = grammar.matcher()
    ids = tokenizer.encode(json.dumps(doc), add_special_tokens=False)
    for t in ids[: len(ids) // 2]:
        m.advance(t)
    return m


DOCS = [{"name": "Ada Lovelace", "age": 36}, [1.5, 2, 3e4], {"tags": ["a", "c", "b"]}, "2024-02-29"]


@pytest.mark.parametrize("threads", [1, 2, 4, None])
def test_fill_bitmasks_equals_rows_filled_one_by_one(threads, smollm2_tokenizer, smollm2_vocab):
    matchers = []
    for schema, doc in zip(SCHEMAS, DOCS):
        g = guided.compile(guided.JsonSchema(schema), smollm2_vocab, engine="native")
        matchers.append(walk_halfway(g, smollm2_tokenizer, smollm2_vocab, doc))
        matchers.append(g.matcher())
    matchers.append(matchers[0])  # the same matcher twice: one task fills both rows
    matchers.append(guided.compile(guided.Regex("[a-z]+"), smollm2_vocab, engine="native").matcher())
    expected = np.zeros((len(matchers), (smollm2_vocab.size + 31) // 32), np.int32)
    for i, m in enumerate(matchers):
        m.fill_bitmask(expected, i)
    got = torch.full((len(matchers) + 1, expected.shape[1]), -1, dtype=torch.int32)
    guided.fill_bitmasks(matchers, got, threads=threads)
    assert np.array_equal(got.numpy()[: len(matchers)], expected)
    assert (got.numpy()[len(matchers)] == -1).all()  # rows past the batch are left alone


@pytest.mark.parametrize("threads", [1, 3])
def test_background_fill_leaves_each_matcher_its_mask(threads, smollm2_tokenizer, smollm2_vocab):
    """The decoders' overlap (`guided.decoding.overlap`): masks computed in background native
    threads are kept by their matchers and equal masks computed in this thread by twins."""
    core = native._require()
    batch, twins = [], []
    for schema, doc in zip(SCHEMAS, DOCS):
        for target in (batch, twins):
            g = guided.compile(guided.JsonSchema(schema), smollm2_vocab, engine="native", cache=False)
            target.append(walk_halfway(g, smollm2_tokenizer, smollm2_vocab, doc))
    job = core.fill_in_background([m._m for m in batch] + [batch[0]._m], threads)
    assert job.join() > 0 and job.join() >= 0  # joining twice is harmless
    for m, twin in zip(batch, twins):
        assert np.array_equal(m.words(), twin.words())
    with pytest.raises(TypeError):
        core.fill_in_background([batch[0]._m, None], 1)
    with pytest.raises(ValueError):
        core.fill_in_background([batch[0]._m], 0)
    del job
    core.fill_in_background([m._m for m in twins], 2)  # dropped unjoined: its destructor joins


def test_fill_bitmasks_mixes_engines(smollm2_tokenizer, smollm2_vocab):
    py = guided.compile(guided.JsonSchema(SCHEMAS[0]), smollm2_vocab, engine="python")
    nat = guided.compile(guided.JsonSchema(SCHEMAS[0]), smollm2_vocab, engine="native")
    matchers = [walk_halfway(py, smollm2_tokenizer, smollm2_vocab, DOCS[0]), nat.matcher(),
                walk_halfway(nat, smollm2_tokenizer, smollm2_vocab, DOCS[0])]
    out = np.zeros((3, (smollm2_vocab.size + 31) // 32), np.int32)
    guided.fill_bitmasks(matchers, out, threads=2)
    assert np.array_equal(out[0], out[2]) and not np.array_equal(out[0], out[1])


def test_concurrent_threads_share_one_grammar(smollm2_tokenizer, smollm2_vocab):
    """Python threads filling masks of one fresh grammar at once get the single-threaded masks."""
    schema = {"type": "object", "properties": {"k": {"type": "array", "items": {"type": "string"}}}}
    ids = smollm2_tokenizer.encode(json.dumps({"k": ["alpha", "beta gamma", "δ"]}), add_special_tokens=False)
    reference = guided.compile(guided.JsonSchema(schema), smollm2_vocab, engine="python", cache=False)
    shared = guided.compile(guided.JsonSchema(schema), smollm2_vocab, engine="native", cache=False)
    expected = []
    m = reference.matcher()
    for t in ids:
        expected.append(m.mask().copy())
        m.advance(t)
    errors = []

    def run():
        try:
            m = shared.matcher()
            for k, t in enumerate(ids):
                assert np.array_equal(m.mask(), expected[k]), k
                m.advance(t)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_bad_buffers_and_indices_are_refused(tiny):
    m = guided.compile(guided.Regex("ab"), tiny, engine="native").matcher()
    with pytest.raises(IndexError):
        m.fill_bitmask(np.zeros((1, 1), np.int32), 1)
    with pytest.raises(IndexError):
        m.fill_bitmask(np.zeros((1, 1), np.int32), -1)
    with pytest.raises(TokenizerMismatch):
        m.fill_bitmask(np.zeros((1, 0), np.int32), 0)
    with pytest.raises(TypeError):
        m.fill_bitmask(np.zeros((1, 1), np.int64), 0)
    with pytest.raises(TypeError):
        m.fill_bitmask(np.zeros((2, 4), np.int32)[:, ::2], 0)
    with pytest.raises(IndexError):
        guided.fill_bitmasks([m, m], np.zeros((1, 1), np.int32))
    for bad in (-1, 5, 1 << 40, 4 + 100):
        with pytest.raises(ConstraintViolation):
            m.copy().advance(bad)
    with pytest.raises(ValueError):
        m.rollback(1)
    with pytest.raises(ValueError):
        m.rollback(-1)


def test_malformed_ir_is_refused(smollm2_vocab):
    core = native._require()
    trie = native.native_trie(smollm2_vocab)
    table = np.zeros((3, 256), np.int32)
    table[1, 97] = 2
    with pytest.raises(SpecError, match="out of range"):
        bad = table.copy()
        bad[2, 0] = 7
        core.byte_dfa(bad, np.array([False, False, True]), 1)
    with pytest.raises(SpecError, match="dead state"):
        bad = table.copy()
        bad[0, 5] = 1
        core.byte_dfa(bad, np.array([False, False, True]), 1)
    with pytest.raises(SpecError, match="initial"):
        core.byte_dfa(table, np.array([False, False, True]), 3)
    with pytest.raises(SpecError, match="accepting"):
        core.byte_dfa(table, np.array([False, True]), 1)
    ir = schema_to_ir(guided.JsonSchema(SCHEMAS[0]))
    good = lower_cfg(ir)
    for field, mutate, message in [
        ("action_values", lambda a: a.__setitem__(0, ir.num_states + 5), "out of range"),
        ("action_symbols", lambda a: a.__setitem__(0, 10_000), "out of range"),
        ("goto_values", lambda a: a.__setitem__(0, -2), "out of range"),
        ("rule_lhs", lambda a: a.__setitem__(0, 999), "out of range"),
        ("action_offsets", lambda a: a.__setitem__(1, 10**9), "rows"),
    ]:
        args = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in good.items()}
        mutate(args[field])
        with pytest.raises(SpecError, match=message):
            core.cfg_grammar(trie, None, max_lexer_states=1000, **args)
    with pytest.raises(SpecError, match="start or end"):
        core.cfg_grammar(trie, None, max_lexer_states=1000, **{**good, "start_state": -1})
    with pytest.raises(SpecError, match="ignored terminal"):
        core.cfg_grammar(trie, None, max_lexer_states=1000, **{**good, "ignore": [len(ir.terminals)]})


def test_runtime_malformed_tables_raise_instead_of_crashing(tiny):
    """Tables that pass the static checks but pop past the stack bottom are caught when walked."""
    core = native._require()
    trie = native.native_trie(tiny)
    table = np.zeros((2, 256), np.int32)
    table[1, ord("a")] = 1
    dfa = core.byte_dfa(table, np.array([False, True]), 1)
    # state 0: on "a" reduce by rule 0, which pops 3 symbols from a one-node stack
    with pytest.raises(SpecError, match="bottom of the stack"):
        g = core.cfg_grammar(trie, None, [(dfa, 0, False, 0)], [], True, [], np.array([0, 1, 1], np.int64),
                             np.array([0], np.int32), np.array([-1], np.int32), np.array([0, 0, 0], np.int64),
                             np.array([], np.int32), np.array([], np.int32), np.array([0], np.int32),
                             np.array([3], np.int32), 1, 0, 1, [], 0, 100)
        g.matcher().words()


def test_lexer_limit_is_a_guided_error(smollm2_vocab):
    ir = schema_to_ir(guided.JsonSchema(SCHEMAS[0]))
    g = native.NativeCfgGrammar(ir, smollm2_vocab, max_lexer_states=3)
    with pytest.raises(guided.LimitExceeded):
        g.matcher().words()


def test_budget_masks_of_grammars_match_the_reference(smollm2_tokenizer, smollm2_vocab):
    """Along a document, with rollbacks and copies (the Python twin follows them)."""
    py = guided.compile(guided.JsonSchema(SCHEMAS[0]), smollm2_vocab, engine="python")
    nat = guided.compile(guided.JsonSchema(SCHEMAS[0]), smollm2_vocab, engine="native")
    ids = smollm2_tokenizer.encode(json.dumps(DOCS[0]), add_special_tokens=False)
    mp, mn = py.matcher(), nat.matcher()
    for k, t in enumerate(ids):
        for remaining in (1, 4, 12):
            assert np.array_equal(mp.budget_mask(remaining), mn.budget_mask(remaining)), (k, remaining)
        assert mp.closing_distance() == mn.closing_distance(), k
        if k % 3 == 2:  # roll back two, check, and go on from a copy
            mp.rollback(2)
            mn.rollback(2)
            assert np.array_equal(mp.budget_mask(6), mn.budget_mask(6))
            mp, mn = mp.copy(), mn.copy()
            for u in ids[k - 2:k]:
                mp.advance(u)
                mn.advance(u)
        mp.advance(t)
        mn.advance(t)
    assert np.array_equal(mp.budget_mask(1), mn.budget_mask(1))


def test_the_sanitizer_build_is_the_one_loaded_when_named():
    import os

    path = os.environ.get("GUIDED_NATIVE_PATH")
    if not path:
        pytest.skip("GUIDED_NATIVE_PATH not set (make test-native-asan sets it)")
    assert os.path.samefile(native._native.__file__, path)
