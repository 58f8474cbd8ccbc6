# `make test` and `make demo` work on a fresh clone: they build .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test matrix demo bench screenshots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,notebook,plot]'
	touch $(STAMP)

$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -e '.[bench]'
	touch $@

test: $(STAMP)
	$(PY) -m pytest tests

# the suite on 3.12, 3.13, 3.14 (tests not marked slow) and free-threaded
# 3.14t (all), each in .venv-<version>: see .ci/matrix
matrix:
	bash .ci/matrix $(VERSIONS)

demo: $(STAMP)
	$(PY) demos/run.py demos/quickstart.ipynb demos/when_things_go_wrong.ipynb demos/dask.ipynb demos/long_runs.ipynb

bench: $(VENV)/.bench-installed
	$(PY) benchmarks/run.py

# docs/screenshots/*.png, shown in the README: cells of the browser test
screenshots: $(STAMP)
	PARMAGIC_SCREENSHOTS=docs/screenshots $(PY) -m pytest -q tests/test_browser.py

clean:
	rm -rf $(VENV) .venv-3.* .pythons demos/out build *.egg-info
