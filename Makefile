PYTHON ?= python3
export PYTHON

.PHONY: setup run test bench

setup:
	bash scripts/setup.sh

run: setup
	$(PYTHON) experiments/run.py model=kaleido posenc=gta

test: setup
	$(PYTHON) -m pytest -q

bench: setup
	for f in benchmarks/*.py; do $(PYTHON) $$f --quick || exit 1; done
