# The README's two commands: `make demo` and `make test`. Each does its own set-up.
PY := .venv/bin/python

.PHONY: setup demo test lint unit bench

setup:
	@bash scripts/setup

demo: setup
	$(PY) -m receiver demo

lint:
	$(PY) -m ruff check receiver sim tests bench
	$(PY) -m mypy receiver sim
	.venv/bin/lint-imports

# pytest-randomly shuffles the order on every run and prints "Using --randomly-seed=N";
# replay an order with `$(PY) -m pytest -p no:cacheprovider -p randomly --randomly-seed=N` (the
# seed is also said at the end of the run); `-p no:randomly` runs in file order.
unit:
	$(PY) -m pytest -q -p no:cacheprovider -p randomly

test: setup lint unit

bench: setup
	$(PY) bench/run_all.py
