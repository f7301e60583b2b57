# The two commands of a fresh machine: `make demo` and `make test` (each sets up first).
VENV ?= .venv
BIN := $(VENV)/bin
# Busy-waiting OpenMP threads starve other work on small shared machines.
export OMP_WAIT_POLICY ?= PASSIVE
OUT ?= out

.PHONY: setup setup-test demo test lint bench clean

setup:
	bash scripts/setup.sh

demo: setup
	$(BIN)/hybrid demo -o $(OUT)/demo

setup-test:
	SETUP_TEST=1 bash scripts/setup.sh

lint: setup-test
	$(BIN)/ruff check hybrid scenes render physics tools tests

test: lint
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: setup
	for b in tools/bench/[!_]*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
