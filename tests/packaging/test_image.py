"""The images (Dockerfile, docs/image.md), built and run for real with a Docker engine here.

`make image-build` lints the Dockerfile with hadolint and builds the three targets from a base
image made on this machine (`make base-image`: no registry is reachable). Then the images run as
the chart's and the operator's pods run them (uid 10001, read-only root filesystem, /tmp the only
writable place, no capabilities), with host networking, against the session's local Postgres
over 127.0.0.1: a user's two-line handler image FROM the worker image drains a queue, and the API
image takes a task submitted with a key its own `taskq keys create` made.

Skipped, with the reason, when no Docker engine can be installed or started (`make docker-up`).
The first run debootstraps the base and builds for several minutes; later runs reuse the cached
base tarball, the base image and the build cache, and take well under a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from devenv.postgres import free_port

from taskq.client import Client
from taskq.models import QueueSettings, TaskRequest
from taskq_operator.resources import WORKER_UID

REPO = Path(__file__).resolve().parents[2]
WORKER_IMAGE = "taskq-worker:0.1.0"  # the defaults of mk/docker.mk, passed to it explicitly
OPERATOR_IMAGE = "taskq-operator:0.1.0"
API_IMAGE = "taskq-api:0.1.0"
UID = str(WORKER_UID)  # what the operator's pods run as
TASKS = 200
BUILD_TIMEOUT = 2400  # a cold debootstrap + both builds on 2 cores; cached reruns take seconds
DRAIN_TIMEOUT = 120.0
# How the operator's pods run the worker container (and the chart the API's), as docker run
# options.
POD_LIKE = [
    "--read-only", "--tmpfs", "/tmp:rw,size=64m", "--user", f"{UID}:{UID}",
    "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
]


def _run(*argv: str, timeout: float = 600, stdin: str | None = None,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=REPO, capture_output=True, text=True, timeout=timeout, input=stdin,
        env={**os.environ, **(env or {})}, check=False,
    )


def _tail(result: subprocess.CompletedProcess[str], lines: int = 25) -> str:
    return "\n".join((result.stdout + result.stderr).strip().splitlines()[-lines:])


def _engine_answers() -> bool:
    return shutil.which("docker") is not None and _run("docker", "info", timeout=60).returncode == 0


@pytest.fixture(scope="module")
def engine() -> Iterator[None]:
    """A Docker engine: the one already running, or one that `make docker-up` starts (and that
    `make docker-down` stops again afterwards)."""
    already_running = _engine_answers()
    if not already_running:
        if shutil.which("make") is None:
            pytest.skip("image check skipped: `make` is not installed to start dockerd")
        up = _run("make", "-s", "--no-print-directory", "docker-up")
        if up.returncode != 0 or not _engine_answers():
            said = [line for line in (up.stdout + up.stderr).splitlines()
                    if line.startswith("docker-up:")]
            reason = said[-1] if said else _tail(up, 3)
            pytest.skip(f"image check skipped: no Docker engine could be started: {reason}")
    try:
        yield
    finally:
        if not already_running:
            _run("make", "-s", "--no-print-directory", "docker-down", timeout=60)


@dataclass(frozen=True)
class Images:
    worker: str
    operator: str
    api: str


@pytest.fixture(scope="module")
def images(engine: None) -> Images:
    started = time.monotonic()
    build = _run(
        "make", "-s", "--no-print-directory", "image-build",
        f"WORKER_IMAGE={WORKER_IMAGE}", f"OPERATOR_IMAGE={OPERATOR_IMAGE}",
        f"API_IMAGE={API_IMAGE}", timeout=BUILD_TIMEOUT,
    )
    assert build.returncode == 0, f"make image-build failed:\n{_tail(build)}"
    assert "hadolint" in build.stdout and "Dockerfile clean" in build.stdout
    print(f"image-build: {time.monotonic() - started:.0f}s")
    return Images(WORKER_IMAGE, OPERATOR_IMAGE, API_IMAGE)


def _config(image: str) -> dict[str, object]:
    inspected = _run("docker", "image", "inspect", image)
    assert inspected.returncode == 0, _tail(inspected)
    config: dict[str, object] = json.loads(inspected.stdout)[0]["Config"]
    return config


# What each final stage must not contain: the other target's dependencies, installers and build
# tools in its venv, compilers on its PATH.
_PROBE = """
import importlib.util, os, shutil, sys
absent = {absent!r}
present = {present!r}
found = [m for m in absent if importlib.util.find_spec(m) is not None]
found += [tool for tool in ("uv", "gcc", "cc", "make") if shutil.which(tool)]
missing = [m for m in present if importlib.util.find_spec(m) is None]
print(f"uid={{os.getuid()}} gid={{os.getgid()}} prefix={{sys.prefix}}",
      f"found={{found}} missing={{missing}}")
"""


def test_worker_image(images: Images) -> None:
    config = _config(images.worker)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["taskq"]
    assert config["Cmd"] == ["worker"]
    labels = config["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.title"] == "taskq-worker"
    assert labels["org.opencontainers.image.version"] == "0.1.0"

    probe = _PROBE.format(
        absent=["kopf", "kubernetes", "yaml", "pip", "uv", "hatchling", "taskq_operator",
                "taskq_api", "fastapi", "starlette", "uvicorn"],
        present=["taskq", "asyncpg", "pydantic", "pydantic_settings", "prometheus_client"],
    )
    run = _run("docker", "run", "--rm", *POD_LIKE, "--entrypoint", "python", images.worker,
               "-c", probe)
    assert run.returncode == 0, _tail(run)
    assert run.stdout.strip() == f"uid={UID} gid={UID} prefix=/opt/taskq found=[] missing=[]"

    # The entrypoint itself: the worker refuses a missing setting with one line naming it.
    refused = _run("docker", "run", "--rm", *POD_LIKE, images.worker)
    assert refused.returncode != 0
    assert "TASKQ_" in refused.stderr, _tail(refused)
    assert "Traceback" not in refused.stderr


def test_operator_image(images: Images) -> None:
    config = _config(images.operator)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["python", "-m", "taskq_operator"]
    labels = config["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.title"] == "taskq-operator"

    probe = _PROBE.format(
        absent=["pip", "uv", "hatchling", "taskq_api", "fastapi"],
        present=["taskq", "taskq_operator", "kopf", "kubernetes", "yaml", "asyncpg"],
    )
    run = _run("docker", "run", "--rm", *POD_LIKE, "--entrypoint", "python", images.operator,
               "-c", probe)
    assert run.returncode == 0, _tail(run)
    assert run.stdout.strip() == f"uid={UID} gid={UID} prefix=/opt/taskq found=[] missing=[]"

    # `python -m taskq_operator` starts (imports kopf and kubernetes, reads its settings) and
    # refuses an invalid setting with one line, before it would look for a cluster.
    refused = _run("docker", "run", "--rm", *POD_LIKE, "-e", "TASKQ_OPERATOR_STATUS_INTERVAL=0",
                   images.operator)
    assert refused.returncode == 2, _tail(refused)
    assert refused.stderr.strip().startswith(
        "taskq-operator: error: TASKQ_OPERATOR_STATUS_INTERVAL:"
    ), _tail(refused)


def test_api_image(images: Images) -> None:
    config = _config(images.api)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["taskq-api"]
    labels = config["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.title"] == "taskq-api"

    probe = _PROBE.format(
        absent=["pip", "uv", "hatchling", "kopf", "kubernetes", "yaml", "taskq_operator"],
        present=["taskq", "taskq_api", "fastapi", "uvicorn", "httptools", "asyncpg"],
    )
    run = _run("docker", "run", "--rm", *POD_LIKE, "--entrypoint", "python", images.api,
               "-c", probe)
    assert run.returncode == 0, _tail(run)
    assert run.stdout.strip() == f"uid={UID} gid={UID} prefix=/opt/taskq found=[] missing=[]"

    # The entrypoint refuses a missing DSN with one line naming both variables.
    refused = _run("docker", "run", "--rm", *POD_LIKE, images.api)
    assert refused.returncode == 2, _tail(refused)
    assert refused.stderr.strip() == (
        "taskq-api: error: TASKQ_API_DSN or TASKQ_DSN (--dsn): required"
    )


async def _docker(*argv: str, stdin: str | None = None, timeout: float = 600) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "docker", *argv, cwd=REPO, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(
        process.communicate(None if stdin is None else stdin.encode()), timeout
    )
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


def _get(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback http only
        status: int = response.status
        return status


async def test_user_image_drains_a_queue(
    images: Images, client: Client, dsn: str, tmp_path: Path
) -> None:
    # The user's project: their handler module and the two-line Dockerfile of docs/image.md.
    (tmp_path / "examples").mkdir()
    for name in ("__init__.py", "thumbnails.py"):
        shutil.copy(REPO / "examples" / name, tmp_path / "examples" / name)
    (tmp_path / "Dockerfile").write_text(
        f"FROM {images.worker}\nCOPY examples/ /app/examples/\n", encoding="utf-8"
    )
    app_image = "taskq-image-check-app:latest"
    code, out = await _docker("build", "--network", "host", "-q", "-t", app_image, str(tmp_path))
    assert code == 0, out

    queue = "imagecheck/thumbnails"
    await client.ensure_queue(queue, QueueSettings())
    results = await client.enqueue_many(queue, [
        TaskRequest("make_thumbnail", {"image": f"cat-{n}.png", "size": 128})
        for n in range(TASKS)
    ])
    assert all(r.created for r in results)

    metrics_port = free_port()
    name = f"taskq-image-check-{secrets.token_hex(4)}"
    env = {
        "TASKQ_DSN": dsn,  # 127.0.0.1: the container shares the host's network namespace
        "TASKQ_QUEUES": queue,
        "TASKQ_APP": "examples.thumbnails",
        "TASKQ_CONCURRENCY": "20",
        "TASKQ_METRICS_PORT": str(metrics_port),
        "TASKQ_METRICS_HOST": "127.0.0.1",
        "TASKQ_POD_UID": name,  # the first part of the worker id, as the operator sets it
    }
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    code, out = await _docker("run", "-d", "--name", name, "--network", "host", *POD_LIKE,
                              *env_args, app_image)
    assert code == 0, out
    try:
        started = time.monotonic()
        deadline = started + DRAIN_TIMEOUT
        while True:
            stats = await client.queue_stats(queue)
            if stats.ready == stats.scheduled == stats.running == 0:
                break
            if time.monotonic() > deadline:
                _, logs = await _docker("logs", "--tail", "30", name)
                raise AssertionError(f"queue not drained in {DRAIN_TIMEOUT}s: {stats}\n{logs}")
            await asyncio.sleep(0.2)
        drained = time.monotonic() - started

        tasks = [await client.get_task(r.id) for r in results]
        assert [t.state for t in tasks] == ["succeeded"] * TASKS
        assert [t.result for t in tasks] == [
            {"thumbnail": f"cat-{n}.png.128px.webp"} for n in range(TASKS)
        ]
        # Each ran once, in the container (its worker id carries TASKQ_POD_UID).
        attempts = [await client.task_attempts(r.id) for r in results]
        assert all(len(a) == 1 and a[0].outcome == "succeeded" for a in attempts)
        assert {a[0].worker_id.split(":")[0] for a in attempts} == {name}

        # The worker's health endpoints answer on loopback, as the pods' probes ask them.
        assert await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/healthz") == 200
        assert await asyncio.to_thread(_get, f"http://127.0.0.1:{metrics_port}/readyz") == 200

        # SIGTERM (docker stop) ends it cleanly, as a pod's termination does.
        code, out = await _docker("stop", "--time", "30", name)
        assert code == 0, out
        code, out = await _docker("inspect", "--format", "{{.State.ExitCode}}", name)
        assert (code, out.strip()) == (0, "0")
        _, logs = await _docker("logs", name)
        assert "Traceback" not in logs, logs[-3000:]
        print(f"{TASKS} tasks drained by the container in {drained:.1f}s")
    finally:
        await _docker("rm", "--force", name)


async def _serve_api(images: Images, name: str, network: list[str], dsn: str) -> int:
    """Starts the API image as container `name` on a free port of the host's network and
    returns the port once the container answers /readyz there. The port is free when chosen,
    not when the container binds it: a container that could not bind exits, and another
    port is tried (what answered on the port is checked to be the container, still running)."""
    for _ in range(3):
        port = free_port()
        # TASKQ_API_HOST stays the default 127.0.0.1: on the host's network, loopback only
        code, out = await _docker(
            "run", "-d", "--name", name, *network, "-e", f"TASKQ_API_DSN={dsn}",
            "-e", f"TASKQ_API_PORT={port}", images.api,
        )
        assert code == 0, out
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=10) as http:
            while time.monotonic() < deadline:
                try:
                    ready = (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code
                except httpx.TransportError:
                    ready = None
                _, running = await _docker("inspect", "--format", "{{.State.Running}}", name)
                if running.strip() != "true":
                    break
                if ready == 200:
                    return port
                await asyncio.sleep(0.2)
        _, logs = await _docker("logs", "--tail", "30", name)
        await _docker("rm", "--force", name)
        if "address already in use" not in logs:
            raise AssertionError(f"the API container never became ready:\n{logs}")
    raise AssertionError("three free ports were taken before the API container bound them")


async def test_api_image_serves_a_task(images: Images, client: Client, dsn: str) -> None:
    """The API image as the chart runs it: `taskq keys create` from the image makes a key, the
    server takes a task with it and shows it back, and SIGTERM stops it with exit code 0."""
    queue = "imagecheck/api"
    await client.ensure_queue(queue, QueueSettings())
    pod_like_net = ["--network", "host", *POD_LIKE]
    key_name = f"image-check-{secrets.token_hex(4)}"
    code, out = await _docker(
        "run", "--rm", *pod_like_net, "-e", f"TASKQ_DSN={dsn}", "--entrypoint", "taskq",
        images.api, "keys", "create", key_name, "--namespace", "imagecheck", "--role", "operator",
    )
    assert code == 0, out
    made = out
    key = next(line for line in made.splitlines() if line.startswith("tq_"))

    name = f"taskq-image-check-api-{secrets.token_hex(4)}"
    try:
        port = await _serve_api(images, name, pod_like_net, dsn)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert (await http.get("/healthz")).status_code == 200

            auth = {"Authorization": f"Bearer {key}"}
            created = await http.post(
                f"/v1/queues/{queue}/tasks",
                json={"task_name": "make_thumbnail", "payload": {"image": "api.png"}},
                headers=auth,
            )
            if created.status_code != 201:  # seen once in CI (401 for the key just made)
                _, logs = await _docker("logs", "--tail", "40", name)
                raise AssertionError(f"{created.text}\nkeys create said:\n{made}\n{logs}")
            task_id = created.json()["id"]
            shown = await http.get(f"/v1/tasks/{task_id}", headers=auth)
            assert shown.status_code == 200, shown.text
            assert shown.json()["payload"] == {"image": "api.png"}
            assert (await http.get(f"/v1/tasks/{task_id}")).status_code == 401
            assert "taskq_api_" in (await http.get("/metrics")).text
        stored = await client.get_task(task_id)
        assert (stored.queue, stored.payload) == (queue, {"image": "api.png"})

        code, out = await _docker("stop", "--time", "30", name)
        assert code == 0, out
        code, out = await _docker("inspect", "--format", "{{.State.ExitCode}}", name)
        assert (code, out.strip()) == (0, "0")
        _, logs = await _docker("logs", name)
        assert "Traceback" not in logs, logs[-3000:]
        assert key not in logs  # the secret is never logged
    finally:
        await _docker("rm", "--force", name)
