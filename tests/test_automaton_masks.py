"""Token masks of regex grammars: exact against an independent oracle, and walks of real tokenizations."""

from __future__ import annotations

import itertools
import random
import re

import numpy as np
import pytest
import regex as regex_module
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import guided
from guided import ConstraintViolation, Regex, Vocabulary
from guided.engine.bitmask import allocate_bitmask, unpack
from tests.regexes import PRACTICAL

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                           HealthCheck.function_scoped_fixture])


def is_prefix_oracle(pattern: str, data: bytes) -> bool:
    """Is ``data`` a prefix of some UTF-8 encoded full match?  Decided by the `regex` module's partial matching.

    An incomplete trailing UTF-8 sequence is completed by every character it can start.
    """
    for cut in range(len(data), max(-1, len(data) - 4), -1):
        head, tail = data[:cut], data[cut:]
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if not tail:
            return bool(regex_module.fullmatch(pattern, text, partial=True, flags=regex_module.ASCII))
        for cp in _completions(tail):
            if regex_module.fullmatch(pattern, text + chr(cp), partial=True, flags=regex_module.ASCII):
                return True
        return False
    return False


def _completions(tail: bytes) -> list[int]:
    """Every code point whose UTF-8 encoding starts with ``tail`` (at most two bytes missing)."""
    n = {0xC: 2, 0xD: 2, 0xE: 3, 0xF: 4}.get(tail[0] >> 4, 0)
    if n == 0 or len(tail) >= n:
        return []
    assert n - len(tail) <= 2, "the toy vocabulary has no lone 4-byte lead bytes"
    out = []
    for rest in itertools.product(range(0x80, 0xC0), repeat=n - len(tail)):
        try:
            out.append(ord((tail + bytes(rest)).decode()))
        except UnicodeDecodeError:
            continue
    return out


def small_vocab() -> Vocabulary:
    """Every single byte, pieces of the practical regexes' samples, multi-byte and half characters.

    Of the lone lead bytes of 3- and 4-byte characters only E4 stays, to keep the oracle's
    enumeration of completions small; longer pieces of such characters stay, and the
    real-tokenizer tests cover the rest.
    """
    pieces = {bytes([b]) for b in range(256) if b < 0xE0 or b == 0xE4}
    rng = random.Random(0)
    corpus = "".join([
        "2024-05-17T12:30:45.123Z", "user.name+tag@example.com", "192.168.0.1", "hello world",
        '"a\\"b\\u00e9"', "alpha12 beta7 gamma199", "option_017", "(555) 123-4567", "1.2.3-rc.1",
        "é中😀Ωñ", "x=1;y_z=22", "https://example.org:8080/a/b", "aaaaabbb", "#1a2B3c", "abcdefgh",
    ])
    data = corpus.encode()
    for _ in range(600):
        i = rng.randrange(len(data))
        piece = data[i : i + rng.randint(2, 8)]
        if piece[-1] < 0xE0 or piece[-1] == 0xE4:
            pieces.add(piece)
    tokens = sorted(pieces) + [b"<eos>"]
    return Vocabulary.from_token_bytes(tokens, eos_token_ids=[len(tokens) - 1], special_token_ids=[len(tokens) - 1])


@pytest.fixture(scope="module")
def toy_vocab():
    return small_vocab()


@pytest.mark.parametrize("name", ["iso_datetime", "email", "json_string", "ipv4", "semver", "unicode_name",
                                  "cjk", "emoji", "words_enum", "case_insensitive", "negated_class", "dot_any"])
def test_masks_are_exact_on_reachable_states(name, toy_vocab):
    """Allowed exactly when text-so-far + token bytes is still a prefix of a match; EOS exactly on a full match."""
    pattern = PRACTICAL[name]
    grammar = guided.compile(Regex(pattern), toy_vocab)
    oracle = re.compile(pattern, re.ASCII)
    rng = random.Random(name)
    eos = next(iter(toy_vocab.eos_token_ids))
    for walk in range(2):
        m = grammar.matcher()
        text = b""
        for _ in range(10):
            mask = m.mask()
            for t, tb in enumerate(toy_vocab.token_bytes):
                if t == eos:
                    expected = _valid_utf8(text) and bool(oracle.fullmatch(text.decode()))
                else:
                    expected = is_prefix_oracle(pattern, text + tb)
                assert mask[t] == expected, (pattern, text, tb)
            choices = [t for t in np.flatnonzero(mask) if t != eos]
            if not choices:
                break
            t = rng.choice(choices)
            m.advance(int(t))
            text += toy_vocab.token_bytes[t]


def _valid_utf8(b: bytes) -> bool:
    try:
        b.decode()
        return True
    except UnicodeDecodeError:
        return False


@pytest.mark.parametrize("name", sorted(PRACTICAL))
@SETTINGS
@given(data=st.data())
def test_real_tokenizations_walk_through(name, data, smollm2_tokenizer, smollm2_vocab):
    """Samples tokenized canonically and at random valid segmentations are accepted to the end."""
    pattern = PRACTICAL[name]
    grammar = guided.compile(Regex(pattern), smollm2_vocab)
    s = data.draw(st.from_regex(re.compile(pattern, re.ASCII), fullmatch=True))
    ids = smollm2_tokenizer.encode(s, add_special_tokens=False)
    # SmolLM2 has no token for some bytes (F1-F3 lead rare planes): such text is not producible.
    assume(b"".join(smollm2_vocab.token_bytes[i] for i in ids) == s.encode())
    for segmentation in (ids, random_segmentation(s.encode(), smollm2_vocab, data)):
        m = grammar.matcher()
        for t in segmentation:
            assert m.mask()[t], (s, t)
            m.advance(t)
        assert m.accepts_eos()
        eos = min(smollm2_vocab.eos_token_ids)
        assert m.mask()[eos]
        m.advance(eos)
        assert m.is_finished()


def random_segmentation(data: bytes, vocab: Vocabulary, draw_data) -> list[int]:
    """A random split of ``data`` into tokens of ``vocab`` (single bytes always exist in byte-level BPE)."""
    index = _bytes_index(vocab)
    out, i = [], 0
    while i < len(data):
        options = [index[data[i:j]] for j in range(i + 1, min(len(data), i + 16) + 1) if data[i:j] in index]
        t = draw_data.draw(st.sampled_from(options))
        out.append(t)
        i += len(vocab.token_bytes[t])
    return out


_INDEX: dict[int, dict[bytes, int]] = {}


def _bytes_index(vocab: Vocabulary) -> dict[bytes, int]:
    if id(vocab) not in _INDEX:
        _INDEX[id(vocab)] = {b: i for i, b in enumerate(vocab.token_bytes) if b}
    return _INDEX[id(vocab)]


@pytest.mark.parametrize("name", ["iso_date", "json_string", "email", "uuid"])
@SETTINGS
@given(data=st.data())
def test_mutated_documents_are_rejected(name, data, smollm2_tokenizer, smollm2_vocab):
    pattern = PRACTICAL[name]
    oracle = re.compile(pattern, re.ASCII)
    s = data.draw(st.from_regex(oracle, fullmatch=True))
    pos = data.draw(st.integers(0, len(s)))
    m_text = s[:pos] + data.draw(st.sampled_from(list('x"\\-@ 9é'))) + s[pos:]
    grammar = guided.compile(Regex(pattern), smollm2_vocab)
    ids = smollm2_tokenizer.encode(m_text, add_special_tokens=False)
    assume(b"".join(smollm2_vocab.token_bytes[i] for i in ids) == m_text.encode())
    m = grammar.matcher()
    accepted = True
    for t in ids:
        if not m.mask()[t]:
            with pytest.raises(ConstraintViolation):
                m.advance(t)
            accepted = False
            break
        m.advance(t)
    accepted = accepted and m.accepts_eos()
    assert accepted == bool(oracle.fullmatch(m_text)), m_text


def test_special_tokens_padding_and_bitmask(smollm2_vocab):
    grammar = guided.compile(Regex(r"[a-z]+"), smollm2_vocab)
    m = grammar.matcher()
    mask = m.mask()
    assert mask.dtype == np.bool_ and mask.shape == (smollm2_vocab.size,)
    for t in smollm2_vocab.special_token_ids | smollm2_vocab.eos_token_ids:
        assert not mask[t]
    # A bitmask wider than the vocabulary (padded LM head) keeps the padding masked.
    bitmask = allocate_bitmask(2, smollm2_vocab.size + 100)
    bitmask.fill(-1)
    m.fill_bitmask(bitmask, 1)
    row = unpack(bitmask[1], smollm2_vocab.size + 100)
    assert (row[: smollm2_vocab.size] == mask).all()
    assert not row[smollm2_vocab.size :].any()
    assert (bitmask[0] == -1).all()


def test_rollback_copy_and_forced_bytes(smollm2_tokenizer, smollm2_vocab):
    grammar = guided.compile(Regex(r'\{"name": "[a-z]+", "age": [0-9]+\}'), smollm2_vocab)
    m = grammar.matcher()
    assert m.forced_bytes() == b'{"name": "'
    ids = smollm2_tokenizer.encode('{"name": "bob", "age": 42}', add_special_tokens=False)
    states = []
    for t in ids:
        states.append((m.mask().copy(), m.accepts_eos(), m.forced_bytes()))
        m.advance(t)
    assert m.accepts_eos()
    fork = m.copy()
    m.rollback(len(ids))
    assert m.num_tokens == 0 and fork.num_tokens == len(ids) and fork.accepts_eos()
    for t, (mask, eos, forced) in zip(ids, states):
        assert np.array_equal(m.mask(), mask) and m.accepts_eos() == eos and m.forced_bytes() == forced
        m.advance(t)
    with pytest.raises(ValueError):
        m.rollback(len(ids) + 1)


def test_advance_rejects_and_leaves_state_unchanged(smollm2_tokenizer, smollm2_vocab):
    grammar = guided.compile(Regex(r"[0-9]{3}"), smollm2_vocab)
    m = grammar.matcher()
    m.advance(smollm2_tokenizer.encode("1", add_special_tokens=False)[0])
    before = m.mask().copy()
    for bad in [smollm2_tokenizer.encode("x", add_special_tokens=False)[0], min(smollm2_vocab.eos_token_ids),
                min(smollm2_vocab.special_token_ids - smollm2_vocab.eos_token_ids), smollm2_vocab.size + 5]:
        with pytest.raises(ConstraintViolation):
            m.advance(bad)
        assert np.array_equal(m.mask(), before) and m.num_tokens == 1


def test_grammar_is_shared_and_cached(smollm2_vocab):
    a = guided.compile(Regex("[0-9]+"), smollm2_vocab)
    assert guided.compile(Regex("[0-9]+"), smollm2_vocab) is a
    m1, m2 = a.matcher(), a.matcher()
    m1.advance(smollm2_vocab.token_bytes.index(b"1"))
    assert m2.num_tokens == 0
