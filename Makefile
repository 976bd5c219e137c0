# `make test` and `make demo` set everything up on a fresh machine: a virtual environment in .venv,
# PyTorch and torchvision from the package registry, and this project (editable, with test extras).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.terralite-installed

.PHONY: test test-slow demo install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch torchvision
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

# -rs: every skipped test prints its reason (a missing optional component must show in the log)
test: $(STAMP)
	$(PY) -m pytest -rs

# the slow end-to-end tests, and the GPU tests (they skip, saying so, without CUDA)
test-slow: $(STAMP)
	$(PY) -m pytest -rs -m "slow or gpu"

demo: $(STAMP)
	$(VENV)/bin/terralite demo

clean:
	rm -rf $(VENV) demo_out
