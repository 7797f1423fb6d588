"""guided.vocab: the exact bytes of every token, proved against real and synthetic tokenizers.

The fast suite uses the real SmolLM2 tokenizer (byte-level BPE, 49,152 tokens) and small
tokenizers built here with the `tokenizers` library (Llama-2-style SentencePiece with byte
fallback and a prefix space, Metaspace, WordPiece). Llama-3 and Gemma-3 are in
test_vocab_large.py (slow).
"""

from __future__ import annotations

import dataclasses
import time
import weakref

import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.large_tokenizers import SAMPLE_TEXTS
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

from guided.errors import TokenizerMismatch
from guided.vocab import Vocabulary, bytes_to_unicode


def token_concat(vocab: Vocabulary, ids) -> bytes:
    return b"".join(vocab.token_bytes[i] for i in ids)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -------------------------------------------------------------------------------------------
# The byte-level alphabet


def test_bytes_to_unicode_is_the_gpt2_table():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    printable = [b for b, c in table.items() if ord(c) == b]
    assert len(printable) == 188
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("\t")] == "ĉ"
    assert table[0] == "\u0100" and table[0x7F] == "ġ" and table[0xAD] == "Ń"
    shifted = [ord(c) for b, c in table.items() if ord(c) != b]
    assert shifted == list(range(256, 256 + 68))


# -------------------------------------------------------------------------------------------
# Toy vocabularies


def test_from_token_bytes_toy_vocabulary():
    vocab = Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"\xc3", b"", b"</s>"], eos_token_ids=[5], name="toy")
    assert vocab.size == 6
    assert vocab.token_bytes == (b"a", b"b", b"ab", b"\xc3", b"", b"")
    assert vocab.eos_token_ids == {5}
    assert vocab.special_token_ids == {5}
    assert vocab.special_token_text == {5: "</s>"}
    assert vocab.name == "toy"
    assert vocab.token_text(2) == "ab"
    assert vocab.token_text(3) == "\\xc3"
    assert vocab.token_text(4) == ""
    assert vocab.token_text(5) == "</s>"
    with pytest.raises(IndexError):
        vocab.token_text(6)
    assert repr(vocab) == "Vocabulary('toy', size=6, eos=[5], special=1)"


def test_from_token_bytes_special_ids_are_never_text():
    vocab = Vocabulary.from_token_bytes([b"<s>", b"x", b"<pad>", b"</s>"], eos_token_ids=[3], special_token_ids=[0, 2])
    assert vocab.special_token_ids == {0, 2, 3}  # EOS ids are special too
    assert vocab.token_bytes == (b"", b"x", b"", b"")
    assert vocab.token_text(0) == "<s>" and vocab.token_text(2) == "<pad>"


def test_vocabulary_validates_its_fields():
    with pytest.raises(TokenizerMismatch, match="out of range"):
        Vocabulary.from_token_bytes([b"a", b"b"], eos_token_ids=[2])
    with pytest.raises(TokenizerMismatch, match="out of range"):
        Vocabulary.from_token_bytes([b"a", b"b"], eos_token_ids=[1], special_token_ids=[-1])
    with pytest.raises(TypeError, match=r"token_bytes\[1\] is str"):
        Vocabulary((b"a", "b"), frozenset(), frozenset())  # type: ignore[arg-type]
    with pytest.raises(TokenizerMismatch, match="non-empty"):
        Vocabulary((b"a", b"</s>"), frozenset({1}), frozenset({1}))


def test_vocabulary_is_frozen_hashable_and_weakrefable():
    vocab = Vocabulary.from_token_bytes([b"a", b""], eos_token_ids=[1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        vocab.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        vocab.special_token_text[0] = "y"  # type: ignore[index]
    twin = Vocabulary.from_token_bytes([b"a", b""], eos_token_ids=[1])
    assert vocab != twin and vocab == vocab  # identity equality ...
    assert vocab.fingerprint == twin.fingerprint  # ... content compared by fingerprint
    cache = weakref.WeakKeyDictionary({vocab: 1, twin: 2})
    assert cache[vocab] == 1 and cache[twin] == 2


def test_fingerprint_is_a_stable_content_hash():
    vocab = Vocabulary.from_token_bytes([b"a", b"bc", b"\xff", b""], eos_token_ids=[3])
    # A golden value: the fingerprint keys on-disk caches, so it must not change between
    # processes, platforms or releases without a deliberate format bump.
    assert vocab.fingerprint == "8bdaadd4fe3ad8a6b01717b0622fa34f4a6014484dda001ddec8a8ae0bd27af9"
    assert vocab.fingerprint is vocab.fingerprint  # computed once
    same = Vocabulary.from_token_bytes([b"a", b"bc", b"\xff", b"<eos>"], eos_token_ids=[3])
    assert same.fingerprint == vocab.fingerprint  # special tokens' display text is not content
    others = [
        Vocabulary.from_token_bytes([b"ab", b"c", b"\xff", b""], eos_token_ids=[3]),  # same concatenation
        Vocabulary.from_token_bytes([b"a", b"bc", b"\xfe", b""], eos_token_ids=[3]),
        Vocabulary.from_token_bytes([b"a", b"bc", b"\xff", b""], eos_token_ids=[]),
        Vocabulary.from_token_bytes([b"a", b"bc", b"\xff", b"", b""], eos_token_ids=[3]),
        Vocabulary.from_token_bytes([b"", b"bc", b"\xff", b""], eos_token_ids=[0, 3]),
    ]
    prints = {vocab.fingerprint} | {v.fingerprint for v in others}
    assert len(prints) == 1 + len(others)


# -------------------------------------------------------------------------------------------
# SmolLM2: byte-level BPE


@pytest.fixture(scope="module")
def smollm2(smollm2_tokenizer):
    return Vocabulary.from_tokenizer(smollm2_tokenizer)


def test_smollm2_size_eos_and_special_tokens(smollm2_tokenizer, smollm2):
    tok = smollm2_tokenizer
    assert smollm2.size == len(tok) == 49152
    assert smollm2.name == tok.name_or_path
    # Instruct generation ends on <|im_end|> (the declared eos_token); <|endoftext|> ends text.
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    assert tok.convert_ids_to_tokens([0, 2]) == ["<|endoftext|>", "<|im_end|>"]
    assert smollm2.eos_token_ids == {0, 2}
    added_special = {i for i, t in tok.added_tokens_decoder.items() if t.special}
    assert added_special == set(range(17))
    assert smollm2.special_token_ids == added_special
    assert set(tok.all_special_ids) <= smollm2.special_token_ids
    for i in smollm2.special_token_ids:
        assert smollm2.token_bytes[i] == b""
        assert smollm2.special_token_text[i] == tok.added_tokens_decoder[i].content
        assert smollm2.token_text(i) == tok.added_tokens_decoder[i].content
    assert smollm2.token_text(2) == "<|im_end|>"
    regular = [i for i in range(smollm2.size) if i not in smollm2.special_token_ids]
    assert len(regular) == 49152 - 17
    assert all(smollm2.token_bytes[i] for i in regular), "a regular token has empty bytes"


def test_smollm2_every_token_matches_the_tokenizers_decoder(smollm2_tokenizer, smollm2):
    """Each regular token's bytes, decoded like the tokenizer's Rust decoder decodes it alone
    (invalid UTF-8 becoming U+FFFD), give exactly the tokenizer's output: all 49,135 of them."""
    regular = [i for i in range(smollm2.size) if i not in smollm2.special_token_ids]
    decoded = smollm2_tokenizer.backend_tokenizer.decode_batch([[i] for i in regular], skip_special_tokens=False)
    wrong = [
        (i, smollm2.token_bytes[i], text)
        for i, text in zip(regular, decoded)
        if smollm2.token_bytes[i].decode("utf-8", errors="replace") != text
    ]
    assert not wrong, wrong[:10]


# Bytes with no single-byte token in SmolLM2's vocabulary (its BPE has no unk token either):
# the tokenizer silently drops them from any text. Six are control characters; 0xF1 and 0xF2
# lead the UTF-8 of U+40000..U+BFFFF; the others never occur in UTF-8.
SMOLLM2_MISSING_BYTES = frozenset([0x04, 0x06, 0x13, 0x14, 0x16, 0x1D, 0xC0, 0xC1, 0xF1, 0xF2, *range(0xF5, 0x100)])


def smollm2_expected(text: str) -> bytes:
    """What SmolLM2's tokens can spell of ``text``: its UTF-8 minus the bytes it has no token for."""
    return bytes(b for b in text.encode("utf-8") if b not in SMOLLM2_MISSING_BYTES)


def test_smollm2_known_tokens(smollm2_tokenizer, smollm2):
    tok = smollm2_tokenizer
    ids = tok.convert_tokens_to_ids(["Ġthe", "Ċ", "ĉ", "ĠĠĠ", "{\"", "Ġ{"])
    assert [smollm2.token_bytes[i] for i in ids] == [b" the", b"\n", b"\t", b"   ", b'{"', b" {"]
    # Each single-byte token that exists maps to its byte; the others are missing from the
    # tokenizer itself, and no token at all is that single byte.
    table = bytes_to_unicode()
    strings = tok.get_vocab()
    missing = {b for b in range(256) if table[b] not in strings}
    assert missing == SMOLLM2_MISSING_BYTES
    for b in set(range(256)) - missing:
        assert smollm2.token_bytes[strings[table[b]]] == bytes([b])
    single = {t[0] for t in smollm2.token_bytes if len(t) == 1}
    assert single == set(range(256)) - missing


def test_smollm2_drops_the_bytes_it_has_no_token_for(smollm2_tokenizer, smollm2):
    for text in ["a\x04b", "x\U00040000y", "\x1d\x13"]:
        ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
        assert token_concat(smollm2, ids) == smollm2_expected(text) != text.encode()
        assert smollm2_tokenizer.decode(ids).encode("utf-8", "replace") != text.encode()


@pytest.mark.parametrize("text", SAMPLE_TEXTS, ids=[f"t{i}" for i in range(len(SAMPLE_TEXTS))])
def test_smollm2_round_trips_sample_texts(smollm2_tokenizer, smollm2, text):
    assert smollm2_expected(text) == text.encode("utf-8")  # all representable
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    assert token_concat(smollm2, ids) == text.encode("utf-8")


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=120))
def test_smollm2_round_trips_random_text(smollm2_tokenizer, smollm2, text):
    # split_special_tokens: a text spelling "<|im_end|>" is text, not the special token
    # (test_special_token_strings_in_text); hypothesis does find such strings.
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert token_concat(smollm2, ids) == smollm2_expected(text)


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.characters(min_codepoint=0x80, max_codepoint=0x10FFFF, exclude_categories=["Cs"]), max_size=40))
def test_smollm2_round_trips_random_non_ascii_text(smollm2_tokenizer, smollm2, text):
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert token_concat(smollm2, ids) == smollm2_expected(text)


def test_special_token_strings_in_text(smollm2_tokenizer, smollm2):
    text = "a<|im_end|>b"
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
    assert 2 in ids and token_concat(smollm2, ids) == b"ab"  # the special token has no bytes
    ids = smollm2_tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)
    assert 2 not in ids and token_concat(smollm2, ids) == text.encode()


def test_smollm2_partial_utf8_tokens(smollm2_tokenizer, smollm2):
    """Byte-level tokens may hold part of a UTF-8 character: such bytes are not UTF-8 alone,
    yet the tokens of a text still concatenate to exactly its UTF-8 bytes."""
    partial = [i for i, b in enumerate(smollm2.token_bytes) if b and not is_utf8(b)]
    assert len(partial) > 100
    assert all(smollm2.token_text(i).count("\\x") >= 1 for i in partial[:50])
    used = set()
    for text in ("😀🎉👍🏽", "日本語のテキストです", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "한국어 텍스트입니다", "ภาษาไทย", "ქართული"):
        ids = smollm2_tokenizer.encode(text, add_special_tokens=False)
        assert token_concat(smollm2, ids) == text.encode("utf-8")
        used.update(i for i in ids if not is_utf8(smollm2.token_bytes[i]))
    assert len(used) >= 5, "the texts should be split inside characters"


def test_smollm2_eos_override(smollm2_tokenizer):
    vocab = Vocabulary.from_tokenizer(smollm2_tokenizer, eos_token_ids=[2])
    assert vocab.eos_token_ids == {2}
    assert 0 in vocab.special_token_ids and vocab.token_bytes[0] == b""
    # A regular token named as EOS stops being text.
    the = smollm2_tokenizer.convert_tokens_to_ids("Ġthe")
    vocab = Vocabulary.from_tokenizer(smollm2_tokenizer, eos_token_ids=[the])
    assert vocab.eos_token_ids == {the} and vocab.token_bytes[the] == b"" and vocab.token_text(the) == "Ġthe"
    with pytest.raises(TokenizerMismatch, match="out of range"):
        Vocabulary.from_tokenizer(smollm2_tokenizer, eos_token_ids=[49152])


def test_smollm2_fingerprint_is_stable_and_distinct(smollm2_tokenizer, smollm2):
    again = Vocabulary.from_tokenizer(smollm2_tokenizer)
    assert again is not smollm2 and again.token_bytes == smollm2.token_bytes
    assert again.fingerprint == smollm2.fingerprint
    assert Vocabulary.from_tokenizer(smollm2_tokenizer, eos_token_ids=[2]).fingerprint != smollm2.fingerprint
    assert Vocabulary.from_token_bytes([b"a"], eos_token_ids=[]).fingerprint != smollm2.fingerprint


def test_smollm2_build_is_fast(smollm2_tokenizer):
    start = time.perf_counter()
    Vocabulary.from_tokenizer(smollm2_tokenizer)
    assert time.perf_counter() - start < 2.0


def test_added_tokens_follow_the_decoder(smollm2_tokenizer):
    """Non-special added tokens are text: their bytes are what the ByteLevel decoder makes of
    them (a string with a character outside the alphabet, here a space, is taken as UTF-8)."""
    tok = transformers.AutoTokenizer.from_pretrained(smollm2_tokenizer.name_or_path, local_files_only=True)
    first = len(tok)
    tok.add_tokens(["Ġ xq", "<zz-tag>", "naïve ünïcode zz"])
    tok.add_special_tokens({"additional_special_tokens": ["<|tool|>"]})
    vocab = Vocabulary.from_tokenizer(tok)
    assert vocab.size == len(tok) == first + 4
    ids = tok.convert_tokens_to_ids(["Ġ xq", "<zz-tag>", "naïve ünïcode zz", "<|tool|>"])
    assert [vocab.token_bytes[i] for i in ids[:3]] == [b"\xc4\xa0 xq", b"<zz-tag>", "naïve ünïcode zz".encode()]
    comma = tok.convert_tokens_to_ids(",")
    for i in ids[:3]:
        assert tok.decode([comma, i, comma]) == "," + vocab.token_bytes[i].decode() + ","
    assert ids[3] in vocab.special_token_ids and vocab.token_bytes[ids[3]] == b""
    assert ids[3] not in vocab.eos_token_ids
    text = "x <zz-tag> naïve ünïcode zz!"
    assert token_concat(vocab, tok.encode(text, add_special_tokens=False)) == text.encode()


# -------------------------------------------------------------------------------------------
# Tokenizers without a declared decoder: detection from the token strings, checked by a probe


class SlowLike:
    """A tokenizer as a slow (pure Python) one looks: no ``backend_tokenizer``."""

    def __init__(self, inner, decode=None, **attrs):
        self._inner = inner
        self._decode = decode
        self.name_or_path = "slow-like"
        self.__dict__.update(attrs)

    def get_vocab(self):
        return self._inner.get_vocab()

    def __len__(self):
        return len(self._inner)

    def encode(self, text, add_special_tokens=True):
        return self._inner.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids, **kw):
        out = self._inner.decode(ids, **kw)
        return self._decode(out) if self._decode else out

    def convert_ids_to_tokens(self, ids):
        return self._inner.convert_ids_to_tokens(ids)

    @property
    def added_tokens_decoder(self):
        return self._inner.added_tokens_decoder

    @property
    def all_special_ids(self):
        return self._inner.all_special_ids

    @property
    def eos_token_id(self):
        return self._inner.eos_token_id


def test_slow_tokenizer_detected_from_token_strings(smollm2_tokenizer, smollm2):
    vocab = Vocabulary.from_tokenizer(SlowLike(smollm2_tokenizer))
    assert vocab.token_bytes == smollm2.token_bytes
    assert vocab.eos_token_ids == smollm2.eos_token_ids
    assert vocab.special_token_ids == smollm2.special_token_ids


def test_slow_tokenizer_with_byte_decoder(smollm2_tokenizer, smollm2):
    byte_decoder = {c: b for b, c in bytes_to_unicode().items()}
    vocab = Vocabulary.from_tokenizer(SlowLike(smollm2_tokenizer, byte_decoder=byte_decoder))
    assert vocab.fingerprint == smollm2.fingerprint


def test_disagreeing_decode_raises(smollm2_tokenizer):
    """A tokenizer whose decode disagrees with the computed bytes is refused, not guessed."""
    with pytest.raises(TokenizerMismatch, match="disagree with the tokenizer's own decode"):
        Vocabulary.from_tokenizer(SlowLike(smollm2_tokenizer, decode=lambda s: s.replace("world", "World"), byte_decoder={}))
    with pytest.raises(TokenizerMismatch, match="cannot determine the bytes"):
        Vocabulary.from_tokenizer(SlowLike(smollm2_tokenizer, decode=lambda s: s.upper()))


# -------------------------------------------------------------------------------------------
# Synthetic SentencePiece-style and unsupported tokenizers


def llama2_style_tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A tiny Llama-2-style tokenizer: BPE over '▁'-marked pieces with <0xNN> byte fallback,
    a normalizer that prepends '▁' to the text, and a decoder that strips that leading space."""
    pieces = ["▁", "h", "e", "l", "o", "w", "r", "d", "▁h", "▁he", "ll", "▁hell", "▁hello", "▁w", "or", "▁wor", "ld", "▁world"]
    merges = [("▁", "h"), ("▁h", "e"), ("l", "l"), ("▁he", "ll"), ("▁hell", "o"), ("▁", "w"), ("o", "r"), ("▁w", "or"), ("l", "d"), ("▁wor", "ld")]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    vocab.update({p: 259 + k for k, p in enumerate(pieces)})
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>", name_or_path="llama2-style"
    )


def test_sentencepiece_style_with_byte_fallback_and_prefix_space():
    tok = llama2_style_tokenizer()
    vocab = Vocabulary.from_tokenizer(tok)
    assert vocab.size == len(tok) == 259 + 18
    assert vocab.eos_token_ids == {2} and vocab.special_token_ids == {0, 1, 2}
    assert vocab.token_bytes[:3] == (b"", b"", b"")
    assert [vocab.token_bytes[3 + b] for b in range(256)] == [bytes([b]) for b in range(256)]
    hello = tok.convert_tokens_to_ids("▁hello")
    # The raw bytes of a token, not what decode shows for it alone (the Strip decoder eats the space).
    assert vocab.token_bytes[hello] == b" hello" and tok.decode([hello]) == "hello"
    for text in ["hello world", "hello  world", "hello wörld 😀", "日本 hello", "\n\thello\x00"]:
        ids = tok.encode(text, add_special_tokens=False)
        # The normalizer prepends '▁' to every text: the tokens carry exactly one extra leading space.
        assert token_concat(vocab, ids) == b" " + text.encode("utf-8")
    ids = tok.encode("wö", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(ids) == ["▁w", "<0xC3>", "<0xB6>"]
    assert [vocab.token_bytes[i] for i in ids] == [b" w", b"\xc3", b"\xb6"]


def test_metaspace_decoder():
    vocab = {"<unk>": 0, "</s>": 1, "▁hello": 2, "▁world": 3, "▁": 4, "x": 5, "▁x": 6, "<0x41>": 7}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tk.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, eos_token="</s>", unk_token="<unk>")
    v = Vocabulary.from_tokenizer(tok)
    assert v.token_bytes == (b"", b"", b" hello", b" world", b" ", b"x", b" x", b"<0x41>")  # no byte fallback
    ids = tok.encode("hello world x", add_special_tokens=False)
    assert token_concat(v, ids) == b" hello world x"


def test_wordpiece_tokenizer_is_refused():
    vocab = {"[UNK]": 0, "[SEP]": 1, "hello": 2, "world": 3, "##s": 4}
    tk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.decoder = decoders.WordPiece()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", sep_token="[SEP]")
    with pytest.raises(TokenizerMismatch, match="WordPiece decoder"):
        Vocabulary.from_tokenizer(tok, eos_token_ids=[1])
    with pytest.raises(TokenizerMismatch, match="end-of-sequence"):
        Vocabulary.from_tokenizer(tok)
