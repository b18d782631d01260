# The two commands of the README:
#   make run   create .venv, install cnnlab, train the default model on MNIST, print the test error
#   make test  create or reuse .venv, install the test extras, lint, run the quick tier of the tests, build the docs
#   make test-all  the same with the slow tier too, as CI runs it
#   make docs  build the documentation site into site/ (mkdocs build --strict)
#   make notebook  open the tutorial in JupyterLab (installs the notebook extra: JupyterLab, ipywidgets)
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# PyTorch's CPU build. On this project's machines it comes from a local wheel; elsewhere on
# Linux, add TORCH_INDEX=https://download.pytorch.org/whl/cpu to skip the multi-GB CUDA build.
TORCH := torch==2.13.0
TORCH_INDEX ?=
# Data: $CNNLAB_DATA if set, else ../shared/data when it exists (CI and developer machines),
# else cnnlab's default cache, ~/.cache/cnnlab, filled by download on first use.
ifeq ($(origin CNNLAB_DATA), undefined)
ifneq ($(wildcard ../shared/data/mnist),)
export CNNLAB_DATA := $(abspath ../shared/data)
endif
endif

.PHONY: run test test-all lint docs notebook clean chromium
run: $(VENV)/.installed
	$(BIN)/cnnlab train

# The tests run the README's and the docs' examples and the tutorial notebook (tests/test_docs*.py, conftest.py).
# make test runs the quick tier; CI (CI set) and make test-all add the slow one (conftest.py). pytest-xdist
# runs a worker a core, each test file on one worker (a page's docs blocks share their names).
test: $(VENV)/.installed-test chromium
	$(BIN)/ruff check .
	$(BIN)/pytest -n auto --dist loadfile
	$(MAKE) --no-print-directory docs

test-all:
	CNNLAB_TESTS=all $(MAKE) --no-print-directory test

# A broken link, a missing page or a reference that no longer resolves fails the build (--strict).
# NO_MKDOCS_2_WARNING: Material's banner about its own future, printed on every build, is not ours to act on.
docs: $(VENV)/.installed-test
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "Built the documentation site: site/index.html"

# The browser test (tests/serving/test_serve_browser.py) drives Debian's Chromium through playwright, which
# downloads no browser of its own. Installed here when missing: CI runs as root; elsewhere sudo is tried.
chromium:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	{ SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	  chromium >/dev/null; } || echo "warning: could not install chromium (apt-get install chromium): the browser test will fail"

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

notebook: $(VENV)/.installed-notebook
	$(BIN)/jupyter lab docs/tutorial.ipynb

$(VENV)/.installed-notebook: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[notebook]"
	touch $@

clean:
	rm -rf $(VENV) build site .cache src/*.egg-info .pytest_cache .ruff_cache
