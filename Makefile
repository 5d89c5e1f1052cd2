# The commands the README names. Each installs what it needs (uv, the locked dependencies) by itself.
SHELL := /bin/bash
UV := $(or $(shell command -v uv 2>/dev/null),python3 -m uv)
RUN := $(UV) run --frozen --all-extras
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export PREFECT_LOGGING_LEVEL ?= INFO
# The demo's temporary Prefect server creates and migrates its database on the first run; on a fresh 2-core machine
# that once took longer than Prefect's default 20 s (seen: "Timed out while attempting to connect to ephemeral ...").
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 90
# Every Python process (each test suite, Prefect server, worker and flow subprocess) would compile every module it
# imports again without cached bytecode: about twice the start-up time (measured: 30 s -> 14 s for the test helpers).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: uv install demo test test-fast lint typecheck pytest audit provision services-down server server-down benchmark soak screenshots clean

uv:  ## uv itself, when neither `uv` nor `python3 -m uv` is there (pip's output in .work/uv-install.log); and `uv` on PATH
	@command -v uv >/dev/null 2>&1 || python3 -c "import uv" 2>/dev/null || { mkdir -p .work \
	  && { python3 -m pip install --user --quiet --root-user-action=ignore --break-system-packages uv \
	       || python3 -m pip install --user --quiet uv; } >.work/uv-install.log 2>&1 \
	  && echo "uv: installed with pip (log: .work/uv-install.log)" \
	  || { cat .work/uv-install.log; echo "uv: pip could not install it; see above"; exit 1; }; }
	@command -v uv >/dev/null 2>&1 || { [ -w /usr/local/bin ] \
	  && ln -sf "$$(python3 -c 'import uv; print(uv.find_uv_bin())')" /usr/local/bin/uv \
	  && echo "uv: linked into /usr/local/bin"; } \
	  || echo "uv: not on PATH; add $$(python3 -m site --user-base)/bin to PATH for the README's \`uv run\` lines"

install: uv  ## the locked dependencies, into .venv (uv lists what it installs only with V=1)
	$(UV) sync --frozen --all-extras $(if $(V),,--quiet)

demo: install provision  ## the whole pipeline on embedded defaults (local S3, registry and cluster stand-ins)
	$(RUN) python -m demo

test: install provision lint typecheck pytest  ## lint, type check and every test suite (CI runs this)

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .

# mypy's cache lives with the machine's other caches, as the wheelhouse does: a fresh clone type-checks in 1.4 s
# instead of 44 s (mypy still checks again every file whose contents differ from what it cached).
MYPY_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/oncology-mlops/mypy

typecheck: install
	MYPY_CACHE_DIR=$(MYPY_CACHE_DIR) $(RUN) mypy .

# One pytest worker more than cores: with one per core the CPUs stood idle 44 % of `make test` (measured with vmstat
# on 2 cores), the workers waiting on containers, rollouts and retry back-offs.
PYTEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))

pytest: install  ## every test on cores + 1 workers (groups that share a server stay in one worker); the 25 slowest shown
	$(RUN) pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=25

test-fast: install  ## the fast suite while changing code: no Docker, no Prefect server, no whole flows; a fifth of the property examples
	ONCOLOGY_TEST_EXAMPLES=fast $(RUN) pytest -n 4 -m "not docker and not cluster and not slow"

audit: install  ## known vulnerabilities in every locked package (pip-audit, its database online); accepted: audit/allowlist.toml
	$(RUN) python -m audit

provision:  ## Docker engine, base image, local registry (root; idempotent)
	bash scripts/provision.sh

server-down:  ## stop what `make server` started
	bash scripts/server-down.sh

services-down:
	bash scripts/services-down.sh

server: install provision  ## Prefect server + process worker + `prefect deploy --all`, for nightly-style runs in the UI
	UV="$(UV)" bash scripts/server.sh

benchmark: install  ## in-process + HTTP load (wrk) side by side with the seed-style baseline, batch, py-spy, image (Docker), nights -> docs/benchmarks.md
	$(RUN) python -m benchmarks.run --image --nights $(addprefix --summary ,$(lastword $(sort $(wildcard .work/demo/runs/*/summary.json))))

soak: install  ## the serving container under wrk for 60 s at 64 connections: no errors, memory growth <= 10 %, steady p99 (Docker) -> docs/reliability.md
	$(RUN) python -m benchmarks.soak

clean:
	rm -rf .work build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage coverage.json
