# Two entry points: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export FRACTALSYNC_HOME ?= $(HOME)/.cache/fractalsync

.PHONY: demo test bench lint sysdeps models clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.core: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(VENV)/.live: pyproject.toml | $(BIN)/python
	bash scripts/sysdeps.sh
	$(BIN)/python -m pip install -q -e '.[live]'
	touch $@ $(VENV)/.core

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	bash scripts/sysdeps.sh
	$(BIN)/python -m pip install -q -e '.[dev,live,cluster,train,serve,link,midi]'
	touch $@ $(VENV)/.core $(VENV)/.live

sysdeps:
	bash scripts/sysdeps.sh

# Converts BeatNet's pretrained weights (downloaded from PyPI) to ONNX; a no-op when up to date.
models: $(VENV)/.core
	$(BIN)/fractalsync-export-beatnet --model all

# The main job: the live Julia visual on the demo song. A window where there is a display;
# otherwise 20 s (the end of the first verse, the chorus, the next verse) rendered to
# demo_output/live_julia.mp4, with the frame-time statistics.
demo: $(VENV)/.live models
	@if [ -n "$$DISPLAY" ]; then $(BIN)/python examples/live_julia.py; \
	else $(BIN)/python examples/live_julia.py --start 14 --seconds 20; fi

# Lint, the test suite, then every benchmark with the fewest rounds (a smoke run, so that they cannot
# rot; its timings are not the figures quoted in the README: those come from `make bench`).
test: $(VENV)/.dev models
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest benchmarks -q --benchmark-min-rounds=1 --benchmark-max-time=0.0001 \
		--benchmark-warmup=off --benchmark-columns=min,max

bench: $(VENV)/.dev
	$(BIN)/python -m pytest --benchmark-only -q --benchmark-columns=min,median,max,rounds

lint: $(VENV)/.dev
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) demo_output .pytest_cache .benchmarks
