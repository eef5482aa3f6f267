# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: demo test bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install when the package metadata changes; stamps keep repeated runs fast.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/thresher demo $(ARGS)

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests bench scripts
	$(PY) -m pytest -q $(ARGS)

bench: $(VENV)/.installed-dev
	@for f in bench/[!_]*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests bench scripts

clean:
	rm -rf runs .pytest_cache build dist src/*.egg-info
