# Every target that runs code depends on the virtual environment, so each command does its own set-up.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FER2013_ROOT ?= $(if $(wildcard ../shared/data/fer2013),../shared/data/fer2013,data/fer2013)
export FER2013_ROOT

.PHONY: help install demo train bench test test-slow test-all lint format tensorboard modal-check modal-lock clean

help:  ## this list
	@awk -F':.*## ' '/^[a-z-]+:.*## /{printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned dependencies (every target does this first)

demo: $(STAMP)  ## the whole pipeline on generated faces, no data set needed (~1-2 min on 2 cores)
	$(BIN)/python -m emotion.train experiment=demo

train: $(STAMP)  ## EmotionCNN with the best recipe found (recipe v24: distilled from shipped EmotionVGGs, AdamW, EMA, bf16 where native, 120 epochs), on FER2013 (~5 h on 2 AVX-512 EPYC cores, ~18-20 h on AVX2; FER2013_ROOT=DIR elsewhere)
	$(BIN)/python -m emotion.train experiment=recipe

bench: $(STAMP)  ## throughput benchmark (experiments/throughput/): run it on an otherwise idle machine
	$(BIN)/python experiments/throughput/bench.py --data $(FER2013_ROOT)

TEST_WORKERS ?= 2
test: $(STAMP)  ## the default test suite in two processes (TEST_WORKERS=2; 4 min on 2 AVX-512 cores, 9 on AVX2; the everyday loop)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-slow: $(STAMP)  ## the slow tests: real FER2013 training, shipped-model re-measures, the serving install, DDP/cluster harness, benchmark smoke
	$(BIN)/python -m pytest -m slow

test-all: test test-slow  ## the default suite, then the slow tests (~38 min on 2 AVX-512 cores; 67 min in CI, set-up included; the README's test command, run by .ci/run)

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## ruff fix and format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

tensorboard: $(STAMP)  ## TensorBoard over every run under logs/
	$(BIN)/tensorboard --logdir logs

modal-check: $(STAMP)  ## modal_app.py's remote bodies in a container laid out as Modal's: train, kill, restart; DDP; 2 nodes; TensorBoard (~5 min)
	$(BIN)/python tests/modal_harness.py

# The Modal training image installs exactly these versions (the ones the test suite ran with); regenerate after
# changing dependencies. Dev-only tools (tests, lint, label issues) and Modal's own client are left out.
MODAL_LOCK_EXCLUDE := ^(pytest|pytest-timeout|pytest-xdist|execnet|iniconfig|pluggy|ruff|modal|synchronicity|grpclib|scikit-image|imageio|tifffile|lazy-loader|cleanlab|scikit-learn|pandas|narwhals|termcolor|threadpoolctl)==
modal-lock: $(STAMP)  ## regenerate .ci/modal-requirements.txt (the Modal image's pins) from this venv
	$(BIN)/pip freeze --exclude-editable | grep -viE '$(MODAL_LOCK_EXCLUDE)' > .ci/modal-requirements.txt

clean:  ## remove logs/, caches
	rm -rf logs .cache .pytest_cache .ruff_cache
