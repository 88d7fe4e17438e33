# Set-up and main jobs. `make demo` and `make test` create .venv and install everything from the
# package registries when needed (torch 2.13.0 first: a CPU wheel of it lies on this machine's disk;
# any other torch spec would pull a multi-GB CUDA build).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
CLI    := $(VENV)/bin/clir-ot
XQUAD_SOURCE ?= $(if $(wildcard ../shared/data/xquad/xquad.en.json),../shared/data/xquad,download)
PYTEST_ARGS ?=

.PHONY: install test test-fast demo teacher teacher-search distill study clean-outputs

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

# the English teacher, cross-fitted over the article folds (after `make demo`), by the recipe search's
# winner (docs/training.md#the-recipe-search): E5 input format, mean pooling, 7 negatives, dense soft targets,
# validated on the dense top 10, reported pure and interpolated with the first stage
# TEACHER_CONFIG=tools/configs/teacher-xquad-cpu-epochs3.json: the same recipe for 3 epochs (better on
# English, worse zero-shot; docs/training.md); a finished teacher of another recipe is refused, not reused
TEACHER_CONFIG ?= tools/configs/teacher-xquad-cpu.json
teacher: install
	$(CLI) xquad-teacher --output runs/xquad --config $(TEACHER_CONFIG) --depth 10 \
	    --soft-targets --validate-on first-stage --interpolate

# the recipe search on fold 0 (resumable: run it again to continue; --report prints the table)
teacher-search: install
	HF_HUB_OFFLINE=1 $(PY) tools/teacher_recipe_search.py --output runs/xquad --search runs/teacher-search

# OPTICAL and baselines on multilingual-e5-small (after `make teacher`), then the dense students
distill: install
	HF_HUB_OFFLINE=1 $(CLI) study --config tools/studies/xquad-distill-offline.yaml
	HF_HUB_OFFLINE=1 $(CLI) xquad-dense-students --output runs/xquad --tatoeba ../shared/data/tatoeba \
	    --config tools/configs/distill-xquad-cpu.json

# the scaling study (after `make teacher`): the 3- and 6-layer backbones and their teachers are built by
# the study itself (`clir-ot study --config ... --dry-run` states what is left and its estimated cost)
study: install
	HF_HUB_OFFLINE=1 $(CLI) study --config tools/studies/xquad-scaling-offline.yaml

clean-outputs:
	rm -rf runs/xquad indexes/lucene.* indexes/faiss.*
