"""`ScriptedModel`: a deterministic fake language model for unit tests (no weights, any tokenizer).

It follows a script: while the text generated so far is a prefix of the current scripted
response, the tokens that continue the response get the highest logits (longer ones first)
and EOS wins once it is complete; everywhere else, and in ``responses=None`` mode, logits are
pseudo-random, a fixed function of ``(seed, prompt, generated tokens)``.  Under a constraint the
masks still apply, so a script that breaks the constraint shows what the library does then.

>>> m = ScriptedModel(["yes", "no"])
>>> import guided
>>> guided.generate(m, "Answer", choices=["yes", "no"]), guided.generate(m, "Again", choices=["no", "maybe"])
('yes', 'no')
"""

from __future__ import annotations

import types
import zlib
from typing import Any, Callable, Sequence

import torch

__all__ = ["ByteTokenizer", "ScriptedModel"]


class ByteTokenizer:
    """A minimal tokenizer: one token per byte (ids 0-255), EOS = 256.  No files needed."""

    eos_token_id = 256
    pad_token_id = 256
    chat_template = None

    def __init__(self):
        from guided.vocab import Vocabulary

        self.vocab = Vocabulary.from_token_bytes([bytes([b]) for b in range(256)] + [b"<eos>"], eos_token_ids=[256])

    def __len__(self) -> int:
        return 257

    def __call__(self, text: str, add_special_tokens: bool = True, **_: Any) -> dict:
        return {"input_ids": list(text.encode("utf-8"))}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return bytes(i for i in ids if i < 256).decode("utf-8", "replace")

    def apply_chat_template(self, messages, add_generation_prompt: bool = True, tokenize: bool = True, **_: Any):
        text = "".join(f"{m['role']}: {m['content']}\n" for m in messages) + ("assistant: " if add_generation_prompt else "")
        return list(text.encode("utf-8")) if tokenize else text


class ScriptedModel:
    """A `guided.Model` stand-in whose next-token logits come from a script (see the module docstring).

    ``responses``: texts to write, one per generated sequence, in order (the last one repeats);
    a callable ``prompt_ids -> text`` picks the response from the prompt; None: random logits.
    ``tokenizer``: any Hugging Face tokenizer (its vocabulary is used as is) or None for
    `ByteTokenizer`.  ``calls`` records the prompts seen.
    """

    def __init__(self, responses: Sequence[str] | Callable[[list[int]], str] | None = None, *,
                 tokenizer: Any = None, seed: int = 0, scale: float = 1.0):
        self.tokenizer = tokenizer if tokenizer is not None else ByteTokenizer()
        self.responses = responses
        self.seed = seed
        self.scale = scale
        self.calls: list[list[int]] = []
        self._next = 0
        self.hf = types.SimpleNamespace(config=types.SimpleNamespace(max_position_embeddings=None))

    @property
    def vocab(self):
        v = getattr(self, "_vocab", None)
        if v is None:
            v = getattr(self.tokenizer, "vocab", None)
            from guided.vocab import Vocabulary

            if not isinstance(v, Vocabulary):
                v = Vocabulary.from_tokenizer(self.tokenizer)
            self._vocab = v
        return v

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def logits_width(self) -> int:
        return self.vocab.size

    def logits_source(self) -> "_ScriptRunner":
        """The `guided.decoding.runner.LogitsSource` that decoders drive."""
        return _ScriptRunner(self)

    def _response_for(self, prompt: list[int]) -> bytes | None:
        self.calls.append(list(prompt))
        r = self.responses
        if r is None:
            return None
        if callable(r):
            return str(r(list(prompt))).encode("utf-8")
        if not r:
            return None
        text = r[min(self._next, len(r) - 1)]
        self._next += 1
        return text.encode("utf-8")

    def __repr__(self) -> str:
        return f"ScriptedModel(responses={self.responses!r}, vocab={self.vocab.size})"


class _ScriptRunner:
    def __init__(self, model: ScriptedModel):
        self.model = model
        self.vocab = model.vocab
        self.rows: list[tuple[tuple[int, ...], bytes | None, tuple[int, ...]]] = []  # (prompt, script, generated)
        self.forward_seconds = 0.0
        self.forward_calls = 0
        self._index: dict[bytes, list[int]] | None = None

    def _tokens_by_bytes(self) -> dict[bytes, list[int]]:
        if self._index is None:
            index: dict[bytes, list[int]] = {}
            for i, b in enumerate(self.vocab.token_bytes):
                if b:
                    index.setdefault(b, []).append(i)
            self._index = index
        return self._index

    def _logits(self, row) -> torch.Tensor:
        prompt, script, generated = row
        key = zlib.crc32(repr((self.model.seed, prompt, generated)).encode())
        g = torch.Generator().manual_seed(key)
        logits = torch.randn(self.vocab.size, generator=g) * self.model.scale
        if script is not None:
            text = b"".join(self.vocab.token_bytes[t] for t in generated if t not in self.vocab.eos_token_ids)
            if script.startswith(text):
                rest = script[len(text):]
                if not rest:
                    logits[sorted(self.vocab.eos_token_ids)] = 100.0
                index = self._tokens_by_bytes()
                for k in range(1, min(len(rest), 64) + 1):
                    for t in index.get(rest[:k], ()):
                        logits[t] = 50.0 + k
        return logits

    def _all(self) -> torch.Tensor:
        self.forward_calls += 1
        return torch.stack([self._logits(r) for r in self.rows])

    def prefill(self, prompts):
        self.rows = [(tuple(int(t) for t in p), self.model._response_for(list(p)), ()) for p in prompts]
        return self._all()

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() == 1:
            tokens = tokens[:, None]
        out = []
        for k in range(tokens.shape[1]):
            self.rows = [(p, s, g + (int(t),)) for (p, s, g), t in zip(self.rows, tokens[:, k].tolist())]
            out.append(self._all())
        return torch.stack(out, dim=1)

    def select(self, rows) -> None:
        self.rows = [self.rows[i] for i in rows]

    def truncate(self, row: int, length: int) -> None:
        p, s, g = self.rows[row]
        self.rows[row] = (p, s, g[: max(0, length - len(p))])
