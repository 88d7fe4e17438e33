# Set-up and main jobs. `make demo` and `make test` create .venv and install everything from the
# package registries when needed (torch 2.13.0 first: a CPU wheel of it lies on this machine's disk;
# any other torch spec would pull a multi-GB CUDA build).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/clir-ot
XQUAD_SOURCE ?= $(if $(wildcard ../shared/data/xquad/xquad.en.json),../shared/data/xquad,download)
PYTEST_ARGS ?=

.PHONY: install test test-fast demo clean-outputs

install: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[test]'
	touch $@

test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest $(PYTEST_ARGS)

test-fast: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: install
	$(CLI) baseline --source $(XQUAD_SOURCE) --output runs/xquad --index-root indexes

clean-outputs:
	rm -rf runs/xquad indexes/lucene.* indexes/faiss.*
