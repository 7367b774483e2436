# The two set-up commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast venv bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m robustbench_lite demo --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)  # skips the tests marked slow
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_layout.py
	$(BIN)/python benchmarks/bench_batch.py
	$(BIN)/python benchmarks/bench_attacks.py
	$(BIN)/python benchmarks/bench_suite.py
	$(BIN)/python benchmarks/bench_scale.py
	$(BIN)/python benchmarks/bench_fast.py

clean:
	rm -rf runs/demo
