# ember's two commands: `make demo` and `make test`. Each makes .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench-env bench bench-quick clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ember demo

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

format: $(STAMP)
	$(VENV)/bin/ruff format src tests benchmarks examples
	$(VENV)/bin/ruff check --fix src tests benchmarks examples

# The benchmark environment: ember (editable) beside fastai, so benchmarks run both side by side.
# fastai is only ever installed here, never as a dependency of ember.
BENCH_VENV := .bench-venv
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed

$(BENCH_STAMP): pyproject.toml
	test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_PY) -m pip install --quiet --upgrade pip
	$(BENCH_PY) -m pip install --quiet -e '.[bench]'
	$(BENCH_PY) -c "import torch, torchvision, fastai; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'fastai', fastai.__version__)"
	touch $(BENCH_STAMP)

bench-env: $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BENCH_PY) benchmarks/import_time.py
	$(BENCH_PY) benchmarks/overhead.py --runs 3

bench-quick: $(BENCH_STAMP)
	$(BENCH_PY) benchmarks/import_time.py --quick
	$(BENCH_PY) benchmarks/overhead.py --quick

clean:
	rm -rf $(VENV) .bench-venv build dist src/*.egg-info .pytest_cache .ruff_cache demo_output
