# taskq: the two commands a newcomer needs are `make demo` and `make test`.
# Everything is installed on first use: uv (from PyPI) into a per-user cache, the project's
# virtualenv from uv.lock, PostgreSQL's server from Debian when missing, and the control-plane
# binaries built from the pinned Go modules in tools/ (cached per user, outside the clone).

SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.9
UV_HOME := $(HOME)/.cache/taskq/uv-$(UV_VERSION)
UV := $(UV_HOME)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := python3

include cluster/cluster.mk
# Packaging checks (image, chart, Terraform modules), one fragment per area.
include $(wildcard mk/*.mk)

.PHONY: help venv system lint trace-tools test test-fast schema proto dashboard-shots demo demo-queue bench bench-footprint bench-layout bench-recovery bench-kills bench-api bench-list bench-dashboard bench-operator bench-scale bench-backlog clean

help:
	@echo "make demo    local control plane with a real node + Postgres, the chart's operator pod,"
	@echo "             tasks flowing, worker pods scaling 0 -> N -> 0,"
	@echo "             then a task submitted with curl and an API key, and its result read back"
	@echo "make demo-queue  the queue core alone: Postgres, a few thousand tasks, one worker"
	@echo "make test    lint, type-check, and run every test (unit, integration, e2e)"
	@echo "make bench   queue benchmarks (JSON); see docs/benchmarks.md"
	@echo "make schema  regenerate worker_runtime/src/taskq/sql/schema.sql from the migrations"
	@echo "make proto   regenerate the gRPC modules (api/src/taskq_api/grpc/v1) from api/proto"

$(UV):
	python3 -m venv $(UV_HOME)
	$(UV_HOME)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.synced: $(UV) uv.lock pyproject.toml worker_runtime/pyproject.toml operator/pyproject.toml \
		api/pyproject.toml
	$(UV) sync --frozen --quiet
	touch $@

venv: $(VENV)/.synced

# Debian packages a fresh machine may lack: PostgreSQL's server (tests and the demo start their
# own throwaway server from its binaries), PgBouncer (tests and bench/scale_bench.py put one in
# front of it: devenv/pgbouncer.py), openssl (cluster certificates), util-linux
# (setsid, for the cluster's processes), curl (the demo talks to the API with it) and chromium
# (the dashboard's browser tests drive it: a browser downloaded by a tool is not to be had).
system:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	ls /usr/sbin/pgbouncer >/dev/null 2>&1 || missing="$$missing pgbouncer"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v openssl >/dev/null || missing="$$missing openssl"; \
	command -v setsid >/dev/null || missing="$$missing util-linux"; \
	command -v curl >/dev/null || missing="$$missing curl"; \
	if [ -n "$$missing" ]; then \
	  echo "installing$$missing (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy worker_runtime/src operator/src api/src devenv tests bench examples
	$(VENV)/bin/lint-imports

# The trace receiver the tracing tests query (built here, not inside a test: minutes when cold).
trace-tools:
	@tools/build.sh jaeger >/dev/null

test: venv system tools trace-tools node-tools lint
	$(PY) -m pytest

# Unit, integration and API tiers only (no control plane).
test-fast: venv system
	$(PY) -m pytest tests/unit tests/integration tests/api

# The schema snapshot: every migration applied on a throwaway PostgreSQL, dumped (devenv/schema.py).
schema: venv system
	$(PY) -m devenv.schema

# The dashboard's screenshots in docs/ (devenv/dashboard_shots.py: PostgreSQL, a worker, taskq-api
# and Debian's chromium).
dashboard-shots: venv system
	$(PY) -m devenv.dashboard_shots

# The gRPC service's Python modules and their stubs, from api/proto (devenv/protogen.py).
proto: venv
	$(PY) -m devenv.protogen

# Real pods: the node's tools too (root); examples/demo.py builds and imports the images itself.
demo: venv system tools node-tools
	$(PY) -m examples.demo

# The queue core alone, without Kubernetes.
demo-queue: venv system
	$(PY) -m examples.queue_demo

bench: venv system
	$(PY) bench/queue_bench.py

bench-footprint: venv system
	$(PY) bench/footprint_bench.py

# Candidate task-table layouts, bytes per task under a held snapshot (docs/design.md, "Bytes per task").
bench-layout: venv system
	$(PY) bench/layout_bench.py

bench-recovery: venv system
	$(PY) bench/recovery_bench.py

bench-kills: venv system
	$(PY) bench/kills_bench.py

bench-api: venv system
	$(PY) bench/api_bench.py

# GET /v1/tasks over 5,000,000 tasks (TASKQ_BENCH_LIST_ROWS); filling them takes minutes.
bench-list: venv system
	$(PY) bench/list_bench.py

bench-dashboard: venv system
	$(PY) bench/dashboard_bench.py

bench-operator: venv system tools
	$(PY) bench/operator_bench.py

# 1,000 workers through PgBouncer beside 10 direct ones (TASKQ_BENCH_WORKERS); minutes to start.
bench-scale: venv system
	$(PY) bench/scale_bench.py

# 1,000 queues with 10,000,000 ready tasks, then one queue at 100,000 and 10,000,000: the fills
# take minutes (docs/benchmarks.md, "Deep backlogs").
bench-backlog: venv system
	$(PY) bench/backlog_bench.py

clean: cluster-down
	rm -rf $(VENV) .state .mypy_cache .ruff_cache .pytest_cache
