# Two commands on a fresh machine: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-fast lint bench clean debian-tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cpu,test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/labtrain up

# Everything: the import rules, lint and format, then every test against the real PostgreSQL and Redis.
test: $(STAMP) debian-tools lint
	$(PY) -m pytest

# For daily work: the tests marked `fast`, on SQLite with no servers, in under a minute.
test-fast: $(STAMP)
	LABTRAIN_TEST_SERVERS=none $(PY) -m pytest -m fast -q

lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Debian packages the tests use: docker-compose validates docker-compose.yml without a Docker
# engine (tests/test_deploy.py); Chromium runs the dashboard's browser tests (Playwright drives
# it; `playwright install` would download from a CDN). Installed when missing if we are root;
# otherwise the command is printed.
DEBIAN_TOOLS := docker-compose chromium
debian-tools:
	@missing=""; for tool in $(DEBIAN_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing; install with: sudo apt-get install -y$$missing" >&2; \
	  fi; \
	fi

bench: $(STAMP)
	$(PY) bench/job_latency.py

clean:
	rm -rf $(VENV) build *.egg-info
