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

.PHONY: demo test lint bench schemas fuzz clean

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

$(RUNTIME): pyproject.toml setup.py $(CREATED)
	$(BIN)/pip install --quiet -e .
	touch $@

$(DEV): pyproject.toml setup.py $(CREATED)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(RUNTIME)

# The compiled core (forwarder/_core*.so, built in place by the editable install): rebuilt when its C changes.
# Without a C compiler the install says so and everything runs on the pure-Python core.
CORE_SRC := $(wildcard csrc/*.c csrc/*.h)
CORE     := $(VENV)/.core-built
$(CORE): $(RUNTIME) $(CORE_SRC)
	$(BIN)/pip install --quiet --no-deps -e .
	@$(BIN)/python -c 'from forwarder.flowlog.core import DESCRIPTION; print("nsg-forwarder core:", DESCRIPTION)'
	touch $@

node_modules/.installed: package.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: tests that need Azurite will be skipped"; fi

## Forward a generated sample of NSG v1/v2 and VNet flow logs to newline-JSON files (ECS, CEF, OCSF).
demo: $(RUNTIME) $(CORE)
	rm -rf sample
	$(BIN)/nsg-forwarder sample sample/flowlogs --hours 2
	$(BIN)/nsg-forwarder validate --config examples/demo.toml
	$(BIN)/nsg-forwarder run --config examples/demo.toml --once
	@echo; echo "Events written:"; wc -l sample/out/*; echo; echo "First ECS event:"; head -n 1 sample/out/flows-ecs.ndjson

## Run the whole test suite (installs the package with its test tools first).
test: $(DEV) $(CORE) node_modules/.installed
	$(BIN)/python -m pytest -q -rs

lint: $(DEV)
	$(BIN)/ruff check forwarder tests bench tools
	$(BIN)/ruff format --check forwarder tests bench tools
	$(BIN)/mypy

bench: $(DEV) $(CORE)
	$(BIN)/python bench/bench_core.py

## Fuzz the compiled core's C code under AddressSanitizer + UndefinedBehaviorSanitizer (needs clang with
## libFuzzer: apt-get install clang libclang-rt-14-dev). FUZZ_SECONDS bounds the run; any finding fails.
FUZZ_SECONDS ?= 150
fuzz:
	mkdir -p fuzz-out
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc \
	  csrc/fuzz/fuzz_flow.c csrc/flow.c csrc/render.c csrc/community_id.c csrc/reduce.c \
	  -o fuzz-out/fuzz_flow
	@echo "== every input of the committed corpus (seeds and past crashes), once"
	fuzz-out/fuzz_flow -runs=0 csrc/fuzz/corpus
	@echo "== coverage-guided fuzzing for $(FUZZ_SECONDS) s; a crash input is written to fuzz-out/crash-*"
	rm -rf fuzz-out/corpus && mkdir -p fuzz-out/corpus
	fuzz-out/fuzz_flow -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -print_final_stats=1 \
	  -artifact_prefix=fuzz-out/ fuzz-out/corpus csrc/fuzz/corpus \
	  || { echo "The fuzzer found an input that breaks the core: add it to csrc/fuzz/corpus/ as crash-<name>"; exit 1; }

schemas: $(DEV)
	$(BIN)/python tools/build_config_schema.py
	$(BIN)/python tools/build_asim_schema.py
	$(BIN)/python tools/build_sentinel_deploy.py

clean:
	rm -rf $(VENV) node_modules sample fuzz-out build forwarder/_core*.so .pytest_cache .mypy_cache .ruff_cache
