# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
DATA ?= .gristmill
PORT ?= 8000

.PHONY: serve test install install-test lint typecheck pytest bench clean chromium

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv

$(VENV)/.installed: pyproject.toml | $(PY)
	$(UV) pip install --python $(PY) --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(UV) pip install --python $(PY) --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

serve: install
	$(VENV)/bin/gristmill serve --data $(DATA) --port $(PORT)

lint: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install-test
	$(VENV)/bin/mypy

pytest: install-test
	$(PY) -m pytest -n 2 --dist loadgroup

# The UI tests drive Debian's chromium (never a downloaded browser); CI runs as root.
chromium:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

test: chromium lint typecheck pytest

bench: install
	$(PY) -m benchmarks kernels --json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
