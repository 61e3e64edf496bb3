# The two commands of the README: `make demo` (set up + main job) and `make test` (set up + tests).
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test clean
setup:
	bash tools/setup_env.sh

demo: setup
	$(PY) tools/demo.py

test: setup
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests

clean:
	rm -rf work_dirs data
