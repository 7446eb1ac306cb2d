# A fresh clone needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fix7-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet

.PHONY: install demo test test-slow bench bench-corpus bench-rehearsal bench-scan ui clean

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

# Full size (minutes; not CI): the corpus comparison, then the rehearsal against bare restore at 1M rows.
# `make test-slow` runs both small (full corpus, 20,000 rows). docs/BENCHMARK.md says what each measures.
bench: bench-corpus bench-rehearsal

bench-corpus: install
	$(BIN)/python -m fix7_pipeline.bench_corpus

bench-rehearsal: install
	$(BIN)/python -m fix7_pipeline.bench_rehearsal --rows $(or $(ROWS),1000000)

# The scan alone against pg_dump and detect-secrets on a 1M-row planted clone (issue 4's benchmark).
bench-scan: install
	$(BIN)/python -m fix7_pipeline.bench

ui: install
	$(BIN)/fix7 ui

clean:
	rm -rf $(VENV) .fix7 evidence
