# Tuning Lab. Two commands do everything on a fresh clone:
#   make run    create .venv, install the pinned packages, run the DVC pipeline
#   make test   create .venv, install the pinned packages, run the test suite
VENV ?= .venv
BIN := $(VENV)/bin
# Stage commands call `python` and `dvc`: make them the environment's own.
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-fast lint bench bench-study bench-speed notebooks report

# The pinned packages, then the lab itself as an editable package (`import tuninglab` works from
# anywhere: notebooks, scripts); DVC's stage commands still run the checkout's own code.
$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements-dev.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

# The page `dvc plots show/diff` fills (plots.html_template in .dvc/config): vega, vega-lite and
# vega-embed inlined from the npm packages plots_template/package-lock.json pins, so it needs no network.
PLOTS_TEMPLATE := plots_template/offline.html

$(PLOTS_TEMPLATE): plots_template/package.json plots_template/package-lock.json plots_template/build.py
	npm ci --prefix plots_template --ignore-scripts --no-audit --no-fund --loglevel=error
	python3 plots_template/build.py

install: $(BIN)/.installed $(PLOTS_TEMPLATE)

run: install
	dvc repro

test: install
	pytest

test-fast: install
	pytest -m "not slow"

lint: install
	ruff check .
	ruff format --check .

bench: install
	python -m benchmarks.pipeline

bench-study: install
	python -m benchmarks.study ofat

# Imports, train stage start-up and memory, the training loop against a bare one, augmentation and the
# fixed cost of an experiment; PARTS=loop,augment REPEATS=3 for a quick subset (needs `make run` first).
PARTS ?= imports,stages,loop,augment,fixed
REPEATS ?= 5
bench-speed: install
	python -m benchmarks.speed --parts $(PARTS) --repeats $(REPEATS)

# Execute the experiment notebooks on results/ (TUNINGLAB_RESULTS=DIR reads another folder) into
# notebooks/executed/, leaving the committed ones without outputs.
notebooks: install
	mkdir -p notebooks/executed
	for notebook in notebooks/*.ipynb; do \
	  jupyter execute --output="executed/$$(basename $$notebook .ipynb)" $$notebook || exit 1; \
	done

report: install
	python -m tuninglab report
