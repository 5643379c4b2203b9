# taskq images, three targets (see docs/image.md):
#   docker build --target worker   -t taskq-worker:0.1.0   .   # `taskq worker`; the base of handler images
#   docker build --target operator -t taskq-operator:0.1.0 .   # `python -m taskq_operator`
#   docker build --target api      -t taskq-api:0.1.0      .   # `taskq-api`, the REST API server
# Always pass --target: the last stage (api) is what a build without one produces.
#
# BASE_IMAGE is any Debian-like image with python3.11 (with venv/ensurepip) and useradd. The venv
# is made with the base image's own python3, and the final stages start again from the same base,
# so the venv's interpreter link is valid in both (python: images and a debootstrap'ed Debian).
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# build: the tools that package taskq (uv, hatchling) and the pinned requirement sets, exported
# from uv.lock with hashes. Nothing of this stage reaches a final image.
FROM ${BASE_IMAGE} AS build
ARG UV_VERSION=0.13.9
ARG HATCHLING_VERSION=1.33.0
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_NO_CACHE=1 \
    UV_PYTHON_DOWNLOADS=never
RUN python3 -m venv /opt/build \
    && /opt/build/bin/pip install --no-cache-dir "uv==${UV_VERSION}" "hatchling==${HATCHLING_VERSION}"
WORKDIR /src
COPY pyproject.toml uv.lock ./
COPY worker_runtime/pyproject.toml worker_runtime/README.md worker_runtime/
COPY operator/pyproject.toml operator/README.md operator/
COPY api/pyproject.toml api/README.md api/
# --frozen: exactly uv.lock, never re-resolved; --no-emit-workspace: taskq's own packages are
# built from this context below, only third-party distributions come from the index.
RUN mkdir /build \
    && /opt/build/bin/uv export --frozen --no-dev --no-emit-workspace --no-header \
        --package taskq --output-file /build/worker.txt \
    && /opt/build/bin/uv export --frozen --no-dev --no-emit-workspace --no-header \
        --package taskq-operator --output-file /build/operator.txt \
    && /opt/build/bin/uv export --frozen --no-dev --no-emit-workspace --no-header \
        --package taskq-api --output-file /build/api.txt

# wheels: taskq, taskq-operator and taskq-api from this context's sources.
FROM build AS wheels
COPY worker_runtime/src worker_runtime/src
COPY operator/src operator/src
COPY api/src api/src
RUN /opt/build/bin/pip wheel --no-cache-dir --no-deps --no-build-isolation \
        --wheel-dir /build/wheels ./worker_runtime ./operator ./api

# worker-venv: /opt/taskq with the worker's dependencies only (no kopf, no kubernetes).
# Hash-checked, wheels only (nothing is compiled), no pip in the venv, bytecode compiled here
# because the running container may not write it (read-only root filesystem).
FROM build AS worker-venv
RUN python3 -m venv --without-pip /opt/taskq \
    && /opt/build/bin/uv pip install --python /opt/taskq/bin/python --require-hashes --no-deps \
        --only-binary :all: --compile-bytecode --requirement /build/worker.txt
COPY --from=wheels /build/wheels/ /build/wheels/
RUN /opt/build/bin/uv pip install --python /opt/taskq/bin/python --no-deps --no-index \
        --compile-bytecode /build/wheels/taskq-[0-9]*.whl

# ---------------------------------------------------------------------------------------------
# worker: `taskq worker`, configured by the TASKQ_* environment (docs/worker.md). Users build
# their handler image FROM it and add their module under /app (on PYTHONPATH):
#   FROM taskq-worker:0.1.0
#   COPY myapp/ /app/myapp/          # then run it with TASKQ_APP=myapp.tasks
FROM ${BASE_IMAGE} AS worker
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="taskq-worker" \
      org.opencontainers.image.description="taskq worker runtime: runs the handlers of TASKQ_APP against Postgres-backed queues" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
# uid/gid 10001: what the operator's pods run as (runAsUser/runAsGroup), numeric so that
# runAsNonRoot can be checked against the image. Pinned by WORKER_UID in
# operator/src/taskq_operator/resources.py; a unit test holds both stages here to it.
RUN groupadd --system --gid 10001 taskq \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin taskq
COPY --from=worker-venv /opt/taskq /opt/taskq
# Nothing is written outside /tmp (an emptyDir in pods): no bytecode, HOME in /tmp.
ENV PATH=/opt/taskq/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    HOME=/tmp
WORKDIR /app
USER 10001:10001
ENTRYPOINT ["taskq"]
CMD ["worker"]

# ---------------------------------------------------------------------------------------------
# operator-venv: /opt/taskq with the operator's dependencies, taskq and taskq-operator.
FROM build AS operator-venv
RUN python3 -m venv --without-pip /opt/taskq \
    && /opt/build/bin/uv pip install --python /opt/taskq/bin/python --require-hashes --no-deps \
        --only-binary :all: --compile-bytecode --requirement /build/operator.txt
COPY --from=wheels /build/wheels/ /build/wheels/
RUN /opt/build/bin/uv pip install --python /opt/taskq/bin/python --no-deps --no-index \
        --compile-bytecode /build/wheels/taskq-[0-9]*.whl /build/wheels/taskq_operator-[0-9]*.whl

# operator: `python -m taskq_operator` (docs/operator.md).
FROM ${BASE_IMAGE} AS operator
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="taskq-operator" \
      org.opencontainers.image.description="taskq Kubernetes operator: TaskQueue and WorkerPool resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --system --gid 10001 taskq \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin taskq
COPY --from=operator-venv /opt/taskq /opt/taskq
ENV PATH=/opt/taskq/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["python", "-m", "taskq_operator"]

# ---------------------------------------------------------------------------------------------
# api-venv: /opt/taskq with the API server's dependencies (FastAPI, uvicorn), taskq and taskq-api.
# Its own image, not the worker's with another command: taskq-api is its own distribution so
# that the worker image (the base of every handler image) does not carry a web framework.
FROM build AS api-venv
RUN python3 -m venv --without-pip /opt/taskq \
    && /opt/build/bin/uv pip install --python /opt/taskq/bin/python --require-hashes --no-deps \
        --only-binary :all: --compile-bytecode --requirement /build/api.txt
COPY --from=wheels /build/wheels/ /build/wheels/
RUN /opt/build/bin/uv pip install --python /opt/taskq/bin/python --no-deps --no-index \
        --compile-bytecode /build/wheels/taskq-[0-9]*.whl /build/wheels/taskq_api-[0-9]*.whl

# api: `taskq-api`, configured by the TASKQ_API_* environment (docs/api.md). It binds 127.0.0.1
# unless TASKQ_API_HOST says otherwise (the chart sets 0.0.0.0 in its pods). `taskq` (migrate,
# keys) is in the image too.
FROM ${BASE_IMAGE} AS api
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="taskq-api" \
      org.opencontainers.image.description="taskq API server: REST over HTTP with API keys and roles" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
RUN groupadd --system --gid 10001 taskq \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
        --shell /usr/sbin/nologin taskq
COPY --from=api-venv /opt/taskq /opt/taskq
ENV PATH=/opt/taskq/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["taskq-api"]
