# The two commands of the README: `make demo` (set up + main job) and `make test` (set up + tests).
# `make test` is the full suite (what CI runs) and ends with the 25 slowest tests; `make test-fast` is the
# unit tier for the edit-test loop: it deselects the tests marked `slow` (host training runs, subprocess
# flows, full-size models, packaging; see tests/conftest.py).
PY := .venv/bin/python
PYTEST_ARGS ?=
# One worker per core (at most 4: each worker imports torch and the hosts once); tests sharing a module fixture
# stay on one worker (tests/conftest.py). PYTEST_WORKERS=0 runs in this process (pdb, -s).
PYTEST_WORKERS ?= auto
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --maxprocesses=4 --dist loadgroup)

.PHONY: setup demo test test-fast docs clean
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(XDIST) --durations=25 $(PYTEST_ARGS) tests

test-fast: setup
	$(PY) -m pytest -q -p no:cacheprovider $(XDIST) -m 'not slow' --durations=10 $(PYTEST_ARGS) tests

# The docs site, built strictly: a warning, a broken reference or a missing picture fails (tests/test_docs.py too).
docs: setup
	$(PY) tools/misc/generate_model_zoo.py --check
	$(PY) -m sphinx -W --keep-going -n -q -b html docs docs/_build/html

clean:
	rm -rf work_dirs data
