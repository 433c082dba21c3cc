# Set-up and the two everyday jobs. `make sweep` and `make test` build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SWEEP ?= configs/sweep/quick.yaml

.PHONY: setup sweep test test-all lint clean

$(BIN)/dmi: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# CPU torch first (a GPU machine installs its own CUDA build before this).
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip check
	touch $(BIN)/dmi

setup: $(BIN)/dmi

sweep: setup
	$(BIN)/dmi-tune run $(SWEEP)

lint: setup
	$(BIN)/ruff check dmi tune tests benchmarks

test: setup lint
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m "slow or not slow"

clean:
	rm -rf $(VENV) mlruns mlflow.db ray_results
