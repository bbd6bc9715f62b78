# racebench: `make demo` is the main job, `make test` the test suite (see README.md).
PYTHON ?= python3
VENV   ?= .venv
FLOORS := harness reference_service scenarios loadtests reports
BIN    := $(VENV)/bin

.PHONY: install demo test lint fmt typecheck clean

$(BIN)/racebench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/racebench

demo: install
	$(BIN)/racebench demo

test: install
	$(BIN)/pytest -q

lint: typecheck
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy reads packages from folders named like them; the floors live at the root and are mapped
# into `racebench` by pyproject.toml, so mypy checks a tree of links with that shape.
typecheck: install
	@rm -rf .typecheck && mkdir -p .typecheck/racebench
	@for f in racebench/*.py; do ln -s ../../$$f .typecheck/racebench/; done
	@for d in $(FLOORS); do ln -s ../../$$d .typecheck/racebench/$$d; done
	$(BIN)/mypy

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) reports/runs .pytest_cache .ruff_cache .mypy_cache .typecheck
