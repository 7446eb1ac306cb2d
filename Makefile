# A fresh clone needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fix7-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: install demo test test-slow bench bench-diff ui clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: install
	$(BIN)/fix7 demo

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

bench: install
	$(BIN)/python -m fix7_pipeline.bench
	$(BIN)/python -m fix7_pipeline.bench_diff

bench-diff: install
	$(BIN)/python -m fix7_pipeline.bench_diff

ui: install
	$(BIN)/fix7 ui

clean:
	rm -rf $(VENV) .fix7 evidence
