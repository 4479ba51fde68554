# One command per chore. `make up` starts the platform, `make test` runs lint + the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup up test lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip uv
	@$(BIN)/python -m uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test]'
	@touch $(STAMP)

setup: $(STAMP)

up: setup
	$(BIN)/bastion up

lint: setup  # format, lint, types, and the import layers of docs/architecture.md
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

format: setup
	$(BIN)/ruff format src tests benchmarks scripts
	$(BIN)/ruff check --fix src tests benchmarks scripts

bench: setup
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .bastion .pytest_cache .mypy_cache .ruff_cache
