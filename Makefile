# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.synthgen-installed

# Nothing may phone home: Prefect telemetry off, Prefect's embedded temporary API only.
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_UI_ENABLED := false
# OpenMP threads spin only briefly while they wait (see synthgen/__init__.py)
export GOMP_SPINCOUNT := 1000

.PHONY: run test lint install browser postgres clean bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	@# A CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0 2>&1 | { grep -v "is ignored" || true; } \
		|| $(PY) -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	@$(PY) -m pip install -q -e ".[test,dask]" 2>&1 | { grep -v "is ignored" || true; }
	@$(PY) -c "import synthgen, torch, prefect, sdmetrics, selenium, prefect_dask" && test -x $(VENV)/bin/ruff \
		|| (echo "error: installation failed" >&2; exit 1)
	@touch $@

# Headless Chromium for the report's browser test (Debian packages); best effort outside CI.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "note: chromium not installed; the browser test will be skipped"; }

# PostgreSQL for the database tests (Debian's packages; the tests start their own server as the
# `postgres` user); best effort outside CI.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null \
		|| { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& (apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
		|| echo "note: postgresql not installed; the PostgreSQL tests will be skipped"; }

run: $(STAMP)
	$(VENV)/bin/synthgen generate --config data/demo/demo.yaml

test: $(STAMP) browser postgres
	$(PY) -m pytest -q

# Format and style (ruff, settings in pyproject.toml); CI runs it before the tests.
lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/compare.py --datasets adult,diamonds,cps1988,telco_churn,credit

clean:
	rm -rf data/synthetic reports/*/ models .pytest_cache
