# Two commands on a fresh machine: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-fast lint bench clean debian-tools run-tools

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[cpu,test]'
	# The other MLflow client version the tracking API is tested with (tests/service/tracking), kept
	# apart with the protobuf it needs; the tests put it on PYTHONPATH.
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(VENV)/mlflow-2 'mlflow-skinny==2.22.5' 'protobuf>=6,<7'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP) run-tools
	$(VENV)/bin/labtrain up

# Everything: the import rules, lint and format, then every test against the real PostgreSQL and Redis.
test: $(STAMP) debian-tools lint
	$(PY) -m pytest

# For daily work: the tests marked `fast`, on SQLite with no servers, in two to three minutes.
test-fast: $(STAMP)
	LABTRAIN_TEST_SERVERS=none $(PY) -m pytest -m fast -q

lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Debian packages: bubblewrap makes the sandbox code jobs run in (service/sandbox), for `make
# run` and the tests; the tests also use docker-compose, which validates docker-compose.yml
# without a Docker engine (tests/test_deploy.py), and Chromium for the dashboard's browser tests
# (Playwright drives it; `playwright install` would download from a CDN), and slurm-wlm, whose
# slurmctld and slurmd the SLURM backend's tests start as a one-node cluster of their own
# (tests/support/slurm_cluster.py), with slurmrestd beside it and SLURM's JWT plugin, which both
# need (tests/support/slurmrestd.py). Installed when missing if we are root; otherwise the command
# is printed. Each entry is command:package (or a file's path, a pattern, for a plugin).
RUN_TOOLS := bwrap:bubblewrap
TEST_TOOLS := $(RUN_TOOLS) docker-compose:docker-compose chromium:chromium slurmctld:slurm-wlm \
	slurmrestd:slurmrestd /usr/lib/*/slurm-wlm/auth_jwt.so:slurm-wlm-jwt-plugin
define install_missing
	@missing=""; for entry in $(1); do found=$$(command -v $${entry%%:*} 2>/dev/null || ls $${entry%%:*} 2>/dev/null); \
	  [ -n "$$found" ] || missing="$$missing $${entry#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing:$$missing; install with: sudo apt-get install -y$$missing" >&2; \
	  fi; \
	fi
endef

run-tools:
	$(call install_missing,$(RUN_TOOLS))

debian-tools:
	$(call install_missing,$(TEST_TOOLS))

bench: $(STAMP)
	$(PY) bench/job_latency.py

clean:
	rm -rf $(VENV) build *.egg-info
