PYTHON ?= python3
export PYTHON

.PHONY: setup setup-test run test bench

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

run: setup
	$(PYTHON) experiments/run.py model=kaleido posenc=gta

test: setup-test
	$(PYTHON) -m pytest -q

bench: setup
	for f in benchmarks/*.py; do $(PYTHON) $$f --quick || exit 1; done
