# torchdeck developer entry points. `make test` is what CI (.ci/run) runs.
SHELL := /bin/bash
.DEFAULT_GOAL := test

PYTHON ?= python3.11
VENV ?= .venv
PORT ?= 8866
CHROMIUM ?= chromium
PYTEST_ARGS ?=

VENV_PY := $(VENV)/bin/python
VENV_PIP := $(VENV)/bin/pip
REQS := requirements/base.txt requirements/ui.txt requirements/test.txt
# Re-install only when a pin or the package metadata changes; a second `make test` does no pip work.
STAMP := $(VENV)/.torchdeck-bootstrap.stamp
# The benchmarks' peers (fastai, lightning, albumentations, kornia) are only for `make bench`.
BENCH_STAMP := $(VENV)/.torchdeck-bench.stamp

.PHONY: studio test bench lab bootstrap chromium

studio: bootstrap
	@echo "torchdeck Studio: http://127.0.0.1:$(PORT)/"
	$(VENV)/bin/voila app/studio.ipynb --no-browser --port=$(PORT) --Voila.ip=127.0.0.1 --show_tracebacks=True

lab: bootstrap
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1

test: bootstrap chromium
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

# Runs every benchmarks/*.py (except _helpers.py); runs them all, then fails if any failed.
bench: bootstrap $(BENCH_STAMP)
	@shopt -s nullglob; failed=0; ran=0; \
	for f in benchmarks/*.py; do \
	  case "$$(basename "$$f")" in _*) continue;; esac; \
	  echo "== $$f"; ran=$$((ran + 1)); \
	  $(VENV_PY) "$$f" || { echo "FAILED: $$f" >&2; failed=1; }; \
	done; \
	echo "== $$ran benchmark(s) run"; exit $$failed

bootstrap: $(STAMP)

$(VENV_PY):
	$(PYTHON) -m venv $(VENV)

# pip/setuptools are pinned in lock.txt: the venv's bundled setuptools (65.x on 3.11) is old,
# and the editable install uses --no-build-isolation, so the venv's own setuptools builds it.
$(STAMP): $(REQS) requirements/lock.txt pyproject.toml | $(VENV_PY)
	$(VENV_PIP) install --upgrade -c requirements/lock.txt pip setuptools
	$(VENV_PIP) install -c requirements/lock.txt $(addprefix -r ,$(REQS))
	$(VENV_PIP) install --no-deps --no-build-isolation -e .
	@touch $@

$(BENCH_STAMP): requirements/bench.txt requirements/lock.txt $(STAMP)
	$(VENV_PIP) install -c requirements/lock.txt -r requirements/bench.txt
	@touch $@

# Browser tests drive Debian's chromium (apt package `chromium`) through playwright;
# never `playwright install` (it downloads a browser and fails offline).
chromium:
	@if ! command -v $(CHROMIUM) >/dev/null 2>&1; then \
	  if [ "$$(id -u)" -eq 0 ]; then SUDO=; \
	  elif command -v sudo >/dev/null 2>&1; then SUDO=sudo; \
	  else echo "chromium is missing and installing it needs root or sudo" >&2; exit 1; fi; \
	  $$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi
