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

unit:
	$(PY) -m pytest -q -p no:cacheprovider

test: setup lint unit

bench: setup
	$(PY) bench/run_all.py
