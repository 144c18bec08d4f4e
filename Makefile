# Two commands for a new user: `make demo` (forward the bundled sample to files) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

node_modules/.installed: package.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: tests that need Azurite will be skipped"; fi

## Forward a generated sample of NSG v1/v2 and VNet flow logs to newline-JSON files (ECS, CEF, OCSF).
demo: $(STAMP)
	rm -rf sample
	$(BIN)/nsg-forwarder sample sample/flowlogs --hours 2
	$(BIN)/nsg-forwarder validate --config examples/demo.toml
	$(BIN)/nsg-forwarder run --config examples/demo.toml --once
	@echo; echo "Events written:"; wc -l sample/out/*; echo; echo "First ECS event:"; head -n 1 sample/out/flows-ecs.ndjson

## Run the whole test suite (installs the package with its test tools first).
test: $(STAMP) node_modules/.installed
	$(BIN)/python -m pytest -q -rs

lint: $(STAMP)
	$(BIN)/ruff check forwarder tests bench tools
	$(BIN)/ruff format --check forwarder tests bench tools
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/bench_formats.py

schemas: $(STAMP)
	$(BIN)/python tools/build_config_schema.py
	$(BIN)/python tools/build_asim_schema.py
	$(BIN)/python tools/build_sentinel_deploy.py

clean:
	rm -rf $(VENV) node_modules sample .pytest_cache .mypy_cache .ruff_cache
