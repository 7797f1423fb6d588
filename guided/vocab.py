"""The exact byte string of every token id of a tokenizer.

Constraints are compiled over bytes, so guided needs to know, for every token id, exactly which
bytes that token appends to the decoded text when it follows other text. `Vocabulary` holds that
table together with the end-of-sequence ids and the special tokens a grammar must never produce.

Two token-string encodings are understood, detected from the tokenizer itself (its decoder, or
the attributes of a slow tokenizer), never from the model's name:

* byte-level BPE (GPT-2, SmolLM2, Llama-3, Qwen, ...): each character of a token string stands
  for one byte through the standard GPT-2 byte-to-unicode table;
* SentencePiece style (Llama-2, Gemma, Mistral, ...): ``'▁'`` (U+2581) stands for a space,
  ``<0xNN>`` byte-fallback pieces for the single byte ``NN``, everything else is UTF-8.

Either way the result is checked against the tokenizer's own ``decode`` on a probe text before it
is returned; a tokenizer that fits neither scheme raises `guided.errors.TokenizerMismatch`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import sys
import types
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from guided.errors import TokenizerMismatch

__all__ = ["Vocabulary", "bytes_to_unicode"]

# Token strings that generation configs commonly list as end-of-sequence tokens. Such a token
# counts as EOS only where the tokenizer has it as a special token (Gemma's '</s>', for one, is an
# ordinary HTML-tag token).
_EOS_NAMES = frozenset(
    {
        "</s>",
        "<eos>",
        "<|endoftext|>",
        "<|end_of_text|>",
        "<|im_end|>",
        "<|eot_id|>",
        "<|eom_id|>",
        "<end_of_turn>",
        "<|end|>",
    }
)

# A text exercising spaces, whitespace runs, digits, punctuation, JSON, accents, CJK and emoji.
# Its tokens' bytes must agree with the tokenizer's own decode before a Vocabulary is returned.
_PROBE_TEXT = (
    'Hello, world! The year 2024: {"key": [1, 2.5e-3, null], "ok": true}\n'
    "\tdef f(x):\n        return x  *  2\n\n"
    "café naïve Ünïcödé — 日本語のテキスト 한국어 😀🚀 ∑ ✓\n"
)

_SPACE_MARKER = "\u2581"  # '▁', SentencePiece's visible space
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>\Z")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """The GPT-2 byte-level alphabet: byte value -> the character standing for it in tokens.

    The 188 printable bytes (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``) stand for themselves;
    the 68 others (control characters, space, DEL, NBSP, soft hyphen ...) are mapped, in
    increasing order, to U+0100, U+0101, ... so that every token string is printable.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return dict(sorted(table.items()))


@functools.lru_cache(maxsize=1)
def _byte_level_translation() -> dict[int, str]:
    """`str.translate` table: alphabet char -> the latin-1 char of its byte; other latin-1 -> U+FFFF.

    Translating a token string then encoding it as latin-1 gives its bytes, and fails (so the
    caller can fall back) when the string holds any character outside the alphabet.
    """
    table: dict[int, str] = {c: "\uffff" for c in range(256)}
    for byte, char in bytes_to_unicode().items():
        table[ord(char)] = chr(byte)
    return table


@dataclasses.dataclass(frozen=True, eq=False)
class Vocabulary:
    """The exact bytes of every token id, the end-of-sequence ids and the special ids.

    ``token_bytes[i]`` is what token ``i`` appends to the decoded text when it follows other
    text (not what ``tokenizer.decode([i])`` shows alone: some decoders strip a leading space).
    Byte-level vocabularies hold tokens that are half a UTF-8 character: their bytes are not
    valid UTF-8 on their own, only concatenated with their neighbours.

    ``b""`` marks an id a grammar must never produce: special, control and end-of-sequence
    tokens (their strings are kept in ``special_token_text`` for messages) and ids that map to
    no token. End-of-sequence ids are listed in both ``eos_token_ids`` and ``special_token_ids``;
    the matcher allows them separately, when the constraint is complete. Added tokens that the
    tokenizer does not flag special (Gemma's ``"\\n\\n"`` or ``"<table>"``) are text:
    the tokenizer emits them for plain input, so they keep their bytes.

    ``size`` is ``len(tokenizer)``. A model's logits are often wider (its ``lm_head`` is padded
    to a multiple of 64 or 128): the mask engine pads the extra ids with False, so they can never
    be sampled.

    Two vocabularies are equal only if they are the same object (they are used as weak-keys of
    caches); compare ``fingerprint`` to know whether two have the same content.

    >>> vocab = Vocabulary.from_token_bytes([b"a", b"b", b"ab", b"\\xc3", b"</s>"], eos_token_ids=[4])
    >>> vocab.size, vocab.token_bytes[2], vocab.token_bytes[4], sorted(vocab.eos_token_ids)
    (5, b'ab', b'', [4])
    >>> vocab.token_text(3), vocab.token_text(4)
    ('\\\\xc3', '</s>')
    >>> len(vocab.fingerprint)
    64
    """

    token_bytes: tuple[bytes, ...]
    """Index = token id; ``b""`` for ids a grammar must never produce."""
    eos_token_ids: frozenset[int]
    """Every end-of-sequence id (``eos_token_id`` and the chat-turn ends such as ``<|im_end|>``)."""
    special_token_ids: frozenset[int]
    """Added special, control and end-of-sequence tokens: never produced by a grammar."""
    name: str = ""
    """The tokenizer's ``name_or_path``, for messages."""
    special_token_text: Mapping[int, str] = dataclasses.field(default_factory=dict)
    """The string of each special token (``{2: "<|im_end|>"}``), for messages."""

    def __post_init__(self) -> None:
        tokens = tuple(self.token_bytes)
        for i, b in enumerate(tokens):
            if type(b) is not bytes:
                raise TypeError(f"token_bytes[{i}] is {type(b).__name__}, expected bytes")
        size = len(tokens)
        eos = frozenset(int(i) for i in self.eos_token_ids)
        special = frozenset(int(i) for i in self.special_token_ids) | eos
        for label, ids in (("eos_token_ids", eos), ("special_token_ids", special)):
            bad = sorted(i for i in ids if not 0 <= i < size)
            if bad:
                raise TokenizerMismatch(f"{label} {bad[:5]} out of range for a vocabulary of {size} tokens")
        nonempty = sorted(i for i in special if tokens[i])
        if nonempty:
            raise TokenizerMismatch(
                f"special/eos token ids {nonempty[:5]} have non-empty token_bytes; special tokens must be b'' "
                "(use Vocabulary.from_token_bytes, which moves their bytes into special_token_text)"
            )
        texts = {int(k): str(v) for k, v in dict(self.special_token_text).items()}
        object.__setattr__(self, "token_bytes", tokens)
        object.__setattr__(self, "eos_token_ids", eos)
        object.__setattr__(self, "special_token_ids", special)
        object.__setattr__(self, "special_token_text", types.MappingProxyType(texts))

    # ---------------------------------------------------------------------------------------
    # Properties

    @property
    def size(self) -> int:
        """Number of token ids (``len(tokenizer)``); may be less than the model's logits width."""
        return len(self.token_bytes)

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 hex of the token bytes and EOS ids: a stable cache key across processes."""
        h = hashlib.sha256(b"guided.Vocabulary/1\0")
        h.update(len(self.token_bytes).to_bytes(8, "little"))
        lengths = array("I", map(len, self.token_bytes))
        if sys.byteorder != "little":
            lengths.byteswap()
        h.update(lengths.tobytes())
        h.update(b"".join(self.token_bytes))
        eos = array("Q", sorted(self.eos_token_ids))
        if sys.byteorder != "little":
            eos.byteswap()
        h.update(len(eos).to_bytes(8, "little"))
        h.update(eos.tobytes())
        return h.hexdigest()

    def token_text(self, token_id: int) -> str:
        """A readable form of a token: its bytes as text (``\\xNN`` for bytes that are not
        UTF-8), a special token's string, or ``""`` for an id without a token."""
        if not 0 <= token_id < self.size:
            raise IndexError(f"token id {token_id} out of range for a vocabulary of {self.size} tokens")
        if token_id in self.special_token_text:
            return self.special_token_text[token_id]
        return self.token_bytes[token_id].decode("utf-8", errors="backslashreplace")

    def __repr__(self) -> str:
        name = f"{self.name!r}, " if self.name else ""
        return (
            f"Vocabulary({name}size={self.size}, eos={sorted(self.eos_token_ids)}, "
            f"special={len(self.special_token_ids)})"
        )

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # IPython and hypothesis pretty-print dataclasses field by field: keep it short.
        printer.text(repr(self))

    # ---------------------------------------------------------------------------------------
    # Constructors

    @classmethod
    def from_token_bytes(
        cls,
        tokens: Sequence[bytes],
        eos_token_ids: Iterable[int],
        special_token_ids: Iterable[int] = (),
        name: str = "",
    ) -> Vocabulary:
        """A vocabulary from explicit token bytes (toy vocabularies, tests, custom tokenizers).

        The bytes given for EOS and special ids are kept (decoded) as their display string and
        replaced by ``b""``: a grammar never produces them. ``b""`` elsewhere marks an unused id.
        """
        tokens = [bytes(t) for t in tokens]
        eos = frozenset(int(i) for i in eos_token_ids)
        special = frozenset(int(i) for i in special_token_ids) | eos
        texts: dict[int, str] = {}
        for i in special:
            if 0 <= i < len(tokens):
                if tokens[i]:
                    texts[i] = tokens[i].decode("utf-8", errors="backslashreplace")
                tokens[i] = b""
        return cls(tuple(tokens), eos, special, name=name, special_token_text=texts)

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, eos_token_ids: Iterable[int] | None = None) -> Vocabulary:
        """The vocabulary of a Hugging Face tokenizer (fast or slow).

        ``eos_token_ids`` replaces the detected end-of-sequence ids (``tokenizer.eos_token_id``
        plus the special tokens named like a turn or text end: ``<|im_end|>``, ``<|eot_id|>``,
        ``<end_of_turn>``, ``</s>``, ...). Raises `TokenizerMismatch` when the tokenizer's
        token strings fit no known encoding, or when no EOS token can be found.
        """
        name = str(getattr(tokenizer, "name_or_path", "") or "")
        strings = _token_strings(tokenizer)
        size = len(strings)

        special_text = _special_tokens(tokenizer, size)
        if eos_token_ids is None:
            eos = _detect_eos(tokenizer, special_text)
            if not eos:
                raise TokenizerMismatch(
                    f"cannot find an end-of-sequence token in tokenizer {name or type(tokenizer).__name__!r}; "
                    "pass eos_token_ids=[...] explicitly"
                )
        else:
            eos = frozenset(int(i) for i in eos_token_ids)
            bad = sorted(i for i in eos if not 0 <= i < size)
            if bad:
                raise TokenizerMismatch(f"eos_token_ids {bad[:5]} out of range for tokenizer {name!r} of {size} tokens")
        for i in eos:
            if i not in special_text:
                special_text[i] = strings[i] if strings[i] is not None else f"<eos:{i}>"

        scheme = _detect_scheme(tokenizer, strings)
        if scheme is None:
            scheme = _guess_scheme(tokenizer, strings, special_text)
        token_bytes = scheme.convert(strings, special_text)
        vocab = cls(token_bytes, eos, frozenset(special_text), name=name, special_token_text=special_text)
        problem = _probe(tokenizer, vocab, scheme)
        if problem:
            raise TokenizerMismatch(
                f"tokenizer {name or type(tokenizer).__name__!r}: token bytes computed as {scheme.describe()} "
                f"disagree with the tokenizer's own decode: {problem}"
            )
        return vocab


# -------------------------------------------------------------------------------------------
# Reading a tokenizer


def _token_strings(tokenizer: Any) -> list[str | None]:
    """The token string of every id in ``range(len(tokenizer))`` (None where no token has the id)."""
    try:
        vocab: Mapping[str, int] = tokenizer.get_vocab()
        size = len(tokenizer)
    except Exception as e:  # noqa: BLE001 - any failure here means the object is no tokenizer we know
        raise TokenizerMismatch(
            f"cannot read the vocabulary of {type(tokenizer).__name__} (expected a Hugging Face tokenizer): {e}"
        ) from e
    if vocab:
        size = max(size, max(vocab.values()) + 1)
    strings: list[str | None] = [None] * size
    for text, i in vocab.items():
        strings[i] = text
    # Two ids with the same string collapse in get_vocab(); ask for the missing ones directly.
    missing = [i for i, s in enumerate(strings) if s is None]
    if missing and hasattr(tokenizer, "convert_ids_to_tokens"):
        for i, s in zip(missing, tokenizer.convert_ids_to_tokens(missing)):
            if isinstance(s, str):
                strings[i] = s
    return strings


def _special_tokens(tokenizer: Any, size: int) -> dict[int, str]:
    """Special/control token id -> its string: added tokens flagged special, ``all_special_ids``
    and, for SentencePiece slow tokenizers, control/unknown/unused pieces."""
    out: dict[int, str] = {}
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for i, tok in added.items():
        if getattr(tok, "special", False) and 0 <= int(i) < size:
            out[int(i)] = str(getattr(tok, "content", tok))
    ids = list(getattr(tokenizer, "all_special_ids", None) or [])
    if ids:
        for i, s in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
            if isinstance(i, int) and 0 <= i < size and i not in out:
                out[i] = s if isinstance(s, str) else f"<special:{i}>"
    sp = getattr(tokenizer, "sp_model", None)
    if sp is not None and hasattr(sp, "IsControl"):
        for i in range(min(size, sp.GetPieceSize())):
            if i not in out and (sp.IsControl(i) or sp.IsUnknown(i) or sp.IsUnused(i)):
                out[i] = sp.IdToPiece(i)
    return out


def _detect_eos(tokenizer: Any, special_text: Mapping[int, str]) -> frozenset[int]:
    eos: set[int] = set()
    declared = getattr(tokenizer, "eos_token_id", None)
    if isinstance(declared, int):
        eos.add(declared)
    elif isinstance(declared, (list, tuple)):
        eos.update(int(i) for i in declared)
    eos.update(i for i, s in special_text.items() if s in _EOS_NAMES)
    return frozenset(eos)


# -------------------------------------------------------------------------------------------
# Token-string encodings


@dataclasses.dataclass(frozen=True)
class _Scheme:
    """How a token string maps to bytes: ``byte_level``, or SentencePiece-style with a space marker."""

    kind: str  # "byte_level" | "sentencepiece"
    marker: str = _SPACE_MARKER
    byte_fallback: bool = True
    source: str = ""

    def describe(self) -> str:
        if self.kind == "byte_level":
            what = "byte-level BPE"
        else:
            what = f"SentencePiece-style ({self.marker!r} = space, byte fallback {'on' if self.byte_fallback else 'off'})"
        return f"{what}, detected from {self.source}"

    def convert(self, strings: Sequence[str | None], special: Mapping[int, str]) -> tuple[bytes, ...]:
        if self.kind == "byte_level":
            out = [b"" if s is None else _byte_level_bytes(s) for s in strings]
        else:
            marker = self.marker
            out = [b"" if s is None else s.replace(marker, " ").encode("utf-8") for s in strings]
            if self.byte_fallback:
                for i in [i for i, s in enumerate(strings) if s is not None and s.startswith("<0x")]:
                    m = _BYTE_PIECE.match(strings[i])  # type: ignore[arg-type]
                    if m:
                        out[i] = bytes((int(m.group(1), 16),))
        for i in special:
            out[i] = b""
        return tuple(out)


def _byte_level_bytes(token: str) -> bytes:
    """The bytes of a byte-level token string, as the ByteLevel decoder computes them."""
    try:
        return token.translate(_byte_level_translation()).encode("latin-1")
    except UnicodeEncodeError:
        # A string with any character outside the alphabet (an added token kept as plain text)
        # contributes its own UTF-8, like the ByteLevel decoder does.
        return token.encode("utf-8")


def _component_json(component: Any) -> Any:
    """The JSON form of a `tokenizers` decoder / pre-tokenizer (None when absent or unreadable)."""
    if component is None:
        return None
    try:
        return json.loads(component.__getstate__())
    except Exception:  # noqa: BLE001 - an unknown component is treated as absent
        return None


def _flatten(node: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(node, dict):
        return []
    if node.get("type") == "Sequence":
        return [step for child in node.get(key, []) for step in _flatten(child, key)]
    return [node]


def _detect_scheme(tokenizer: Any, strings: Sequence[str | None]) -> _Scheme | None:
    """The encoding as the tokenizer declares it (its decoder), or None if it says nothing clear."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        decoder = _flatten(_component_json(getattr(backend, "decoder", None)), "decoders")
        types_ = [d.get("type") for d in decoder]
        if "ByteLevel" in types_:
            return _Scheme("byte_level", source="the ByteLevel decoder")
        fallback = "ByteFallback" in types_
        for step in decoder:
            if step.get("type") == "Metaspace":
                return _Scheme("sentencepiece", step.get("replacement", _SPACE_MARKER), fallback, "the Metaspace decoder")
            if step.get("type") == "Replace" and step.get("content") == " ":
                pattern = step.get("pattern", {})
                if isinstance(pattern, dict) and "String" in pattern:
                    return _Scheme("sentencepiece", pattern["String"], fallback, "the Replace decoder")
        unsupported = {"WordPiece", "BPEDecoder", "CTC"} & set(types_)
        if unsupported:
            raise TokenizerMismatch(
                f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} uses a {sorted(unsupported)[0]} decoder, which "
                "inserts or removes text between tokens: its tokens have no fixed bytes, so guided cannot constrain it"
            )
        if not decoder:
            pre = _flatten(_component_json(getattr(backend, "pre_tokenizer", None)), "pretokenizers")
            for step in pre:
                if step.get("type") == "ByteLevel":
                    return _Scheme("byte_level", source="the ByteLevel pre-tokenizer")
                if step.get("type") == "Metaspace":
                    model = getattr(backend, "model", None)
                    return _Scheme(
                        "sentencepiece",
                        step.get("replacement", _SPACE_MARKER),
                        bool(getattr(model, "byte_fallback", False)),
                        "the Metaspace pre-tokenizer",
                    )
        return None
    # Slow (pure Python) tokenizers.
    if isinstance(getattr(tokenizer, "byte_decoder", None), dict):
        return _Scheme("byte_level", source="the tokenizer's byte_decoder")
    if getattr(tokenizer, "sp_model", None) is not None:
        return _Scheme("sentencepiece", _SPACE_MARKER, True, "the tokenizer's sp_model")
    return None


def _guess_scheme(tokenizer: Any, strings: Sequence[str | None], special: Mapping[int, str]) -> _Scheme:
    """Try each encoding on a probe text; the first the tokenizer's own decode agrees with wins."""
    regular = [s for i, s in enumerate(strings) if s is not None and i not in special]
    candidates = []
    alphabet = set(bytes_to_unicode().values())
    if regular and set("".join(regular)) <= alphabet:
        candidates.append(_Scheme("byte_level", source="the token strings (all in the byte-level alphabet)"))
    if any(_SPACE_MARKER in s for s in regular):
        candidates.append(_Scheme("sentencepiece", _SPACE_MARKER, True, "the token strings ('▁' pieces)"))
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    problems = []
    for scheme in candidates:
        vocab = Vocabulary(
            scheme.convert(strings, special), frozenset(), frozenset(special), special_token_text=special
        )
        problem = _probe(tokenizer, vocab, scheme)
        if not problem:
            return scheme
        problems.append(f"as {scheme.describe()}: {problem}")
    detail = "; ".join(problems) if problems else "its token strings are neither byte-level nor SentencePiece-style"
    raise TokenizerMismatch(f"cannot determine the bytes of the tokens of tokenizer {name!r}: {detail}")


def _probe(tokenizer: Any, vocab: Vocabulary, scheme: _Scheme) -> str | None:
    """None if the tokens of a probe text concatenate to what the tokenizer decodes them to,
    else a description of the first disagreement.

    A SentencePiece-style decoder may strip the leading space of the whole text (``Strip`` or
    Metaspace ``prepend_scheme``); that space is still part of the first token's bytes.
    """
    try:
        ids = list(tokenizer.encode(_PROBE_TEXT, add_special_tokens=False))
        ref = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    except Exception as e:  # noqa: BLE001 - reported as a mismatch, with its cause
        return f"encoding/decoding the probe text failed: {e}"
    ids = [i for i in ids if 0 <= i < vocab.size and i not in vocab.special_token_ids]
    ours = b"".join(vocab.token_bytes[i] for i in ids).decode("utf-8", errors="replace")
    if ours == ref or (scheme.kind == "sentencepiece" and ours == " " + ref):
        return None
    # Locate the first token whose bytes break the agreement, for the message.
    pos = next((k for k, (a, b) in enumerate(zip(ours, ref)) if a != b), min(len(ours), len(ref)))
    acc = 0
    for i in ids:
        acc += len(vocab.token_bytes[i].decode("utf-8", errors="replace"))
        if acc > pos:
            return (
                f"decode gives {ref[max(0, pos - 10):pos + 10]!r} where the token bytes give "
                f"{ours[max(0, pos - 10):pos + 10]!r} (around token {i}, {vocab.token_bytes[i]!r})"
            )
    return f"decode gives {ref!r}, the token bytes give {ours!r}"
