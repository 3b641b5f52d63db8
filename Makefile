PYTHON ?= python3
export PYTHON
# pytest-xdist workers for `make test` (one per core of the 2-core CI machine; conftest.py groups the tests)
TEST_WORKERS ?= 2

.PHONY: setup setup-test run test bench

setup:
	bash scripts/setup.sh

setup-test:
	bash scripts/setup.sh --test

run: setup
	$(PYTHON) experiments/run.py model=kaleido posenc=gta

test: setup-test
	$(PYTHON) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: setup
	for f in benchmarks/*.py; do $(PYTHON) $$f --quick || exit 1; done
