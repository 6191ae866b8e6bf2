# The two commands a newcomer needs: `make run` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_DEV := $(VENV)/.installed-dev

.PHONY: run test check lint typecheck contracts bench profile fuzz clean interop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP_RUN): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	touch $@

$(STAMP_DEV): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(STAMP_RUN)

# Demo-friendly values when unset, so a newcomer's first texts read well at any hour;
# every RADSCHED_* variable you export still wins.
run: $(STAMP_RUN)
	RADSCHED_PRACTICE_NAME="$${RADSCHED_PRACTICE_NAME-Example Imaging}" \
	RADSCHED_SCHEDULING_PHONE="$${RADSCHED_SCHEDULING_PHONE-555-0100}" \
	RADSCHED_QUIET_HOURS="$${RADSCHED_QUIET_HOURS-off}" \
	$(BIN)/radsched run

test: $(STAMP_DEV)
	$(BIN)/python -m pytest

check: $(STAMP_DEV) lint typecheck contracts

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck:
	$(BIN)/mypy

contracts:
	$(BIN)/lint-imports

# Every benchmark with its defaults, then one table of the targets, written into docs/performance.md's
# summary. `.venv/bin/python -m bench --only mllp,ack` runs some; `--summary` reprints the last results.
bench: $(STAMP_DEV)
	$(BIN)/python -m bench

# Corpus check (docs/interop.md): replays ../shared/hl7-corpus/ against a daemon on embedded defaults,
# one connection then a fresh one per message, and writes the result into docs/interop.md.
interop: $(STAMP_DEV)
	$(BIN)/python -m bench.interop --doc

# The daemon under cProfile answering slot queries (bench.gateway --profile): top functions printed,
# stats kept in bench/out/gateway.prof for snakeviz/pstats.
profile: $(STAMP_DEV)
	$(BIN)/python -m bench.gateway --profile bench/out/gateway.prof

# Long fuzzing run (docs/security.md): atheris harnesses FUZZ_SECONDS each, then the MLLP and
# OpenAPI fuzz tests with FUZZ_EXAMPLES random examples. About 10 minutes with the defaults.
FUZZ_SECONDS ?= 120
FUZZ_EXAMPLES ?= 1000
fuzz: $(STAMP_DEV)
	$(BIN)/python -m fuzz --seconds $(FUZZ_SECONDS) --examples $(FUZZ_EXAMPLES)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache

# The long chaos run (tests/chaos, docs/reliability.md): SOAK_SECONDS of traffic with SOAK_KILLS SIGKILLs,
# PostgreSQL restarts and peer faults; writes its figures into docs/reliability.md and docs/performance.md.
.PHONY: soak
SOAK_SECONDS ?= 600
SOAK_KILLS ?= 50
soak: $(STAMP_DEV)
	$(BIN)/python -m tests.chaos.soak --duration $(SOAK_SECONDS) --kills $(SOAK_KILLS) --write-docs
