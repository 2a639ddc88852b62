# Two entry points: `make run` (install, then start the server) and `make test` (install, then run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch 2.13.0: on a machine without an NVIDIA GPU this resolves to the CPU wheel where one is provided
# (set TORCH_SPEC or PIP_EXTRA_INDEX_URL to pick another build); with a GPU, pip's default CUDA build.
TORCH_SPEC ?= torch==2.13.0
ARGS ?=

.PHONY: install run test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m server $(ARGS)

test: install
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV)
