# Two entry points: `make run` (install, then start the server) and `make test` (install, then run the tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and the torchvision built for it (spandrel, for upscale models, needs torchvision), installed together so
# pip cannot pair them wrongly. Without an NVIDIA GPU this resolves to the CPU wheels where provided (the CUDA build
# also runs on CPU); set TORCH_SPEC (space-separated requirements) or PIP_EXTRA_INDEX_URL to pick another build.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
ARGS ?=

# What the tests take from the registry (tests/fetched.py), fetched here so that no test reaches the network.
TEST_DATA := $(VENV)/test-data/.fetched

.PHONY: install run test clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

$(TEST_DATA): $(VENV)/.installed tests/fetched.py
	$(PY) -m tests.fetched
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m server $(ARGS)

test: install $(TEST_DATA)
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf $(VENV)
