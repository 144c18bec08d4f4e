# Two commands for a new user: `make demo` (forward the bundled sample to files) and `make test`.
# Python 3.11 or newer: where python3 is older, PYTHON=python3.11 make demo
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The environment itself, then what is installed into it: the runtime alone for the demo (62 MB), the
# test and lint tools on top for test, lint, bench and schemas (335 MB, 111 MB of it the Kubernetes API
# schemas that tests/test_deploy_files.py validates the manifests against).
CREATED := $(VENV)/.created
RUNTIME := $(VENV)/.runtime-installed
DEV     := $(VENV)/.dev-installed

.PHONY: demo test lint bench schemas clean

# A venv that failed half-way (no ensurepip, an older Python) is removed and built again, never reused.
$(CREATED):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo >&2 "nsg-forwarder needs Python 3.11 or newer; '$(PYTHON)' is $$($(PYTHON) --version 2>&1 || echo 'not installed')."; \
	  echo >&2 "Install Python 3.11+ with its venv module (Debian/Ubuntu: apt-get install python3.11 python3.11-venv),"; \
	  echo >&2 "then run: PYTHON=python3.11 make $(or $(MAKECMDGOALS),demo)"; exit 1; }
	rm -rf $(VENV)
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo >&2 "Could not create $(VENV) with $(PYTHON): install its venv module (Debian/Ubuntu: apt-get install python3-venv, or python3.11-venv)"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip || { rm -rf $(VENV); exit 1; }
	touch $@

$(RUNTIME): pyproject.toml $(CREATED)
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV): pyproject.toml $(CREATED)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(RUNTIME)

node_modules/.installed: package.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: tests that need Azurite will be skipped"; fi

## Forward a generated sample of NSG v1/v2 and VNet flow logs to newline-JSON files (ECS, CEF, OCSF).
demo: $(RUNTIME)
	rm -rf sample
	$(BIN)/nsg-forwarder sample sample/flowlogs --hours 2
	$(BIN)/nsg-forwarder validate --config examples/demo.toml
	$(BIN)/nsg-forwarder run --config examples/demo.toml --once
	@echo; echo "Events written:"; wc -l sample/out/*; echo; echo "First ECS event:"; head -n 1 sample/out/flows-ecs.ndjson

## Run the whole test suite (installs the package with its test tools first).
test: $(DEV) node_modules/.installed
	$(BIN)/python -m pytest -q -rs

lint: $(DEV)
	$(BIN)/ruff check forwarder tests bench tools
	$(BIN)/ruff format --check forwarder tests bench tools
	$(BIN)/mypy

bench: $(DEV)
	$(BIN)/python bench/bench_formats.py

schemas: $(DEV)
	$(BIN)/python tools/build_config_schema.py
	$(BIN)/python tools/build_asim_schema.py
	$(BIN)/python tools/build_sentinel_deploy.py

clean:
	rm -rf $(VENV) node_modules sample .pytest_cache .mypy_cache .ruff_cache
