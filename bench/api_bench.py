"""API benchmark: prints one JSON object.

    make bench-api                       # its own durable PostgreSQL (fsync on)
    TASKQ_BENCH_DSN=postgresql://... make bench-api

The server is a real `taskq-api` process on 127.0.0.1 (log level WARNING, so that request
logging does not dominate), PostgreSQL another, and the load comes from this process over
keep-alive connections (a minimal HTTP/1.1 client; httpx for the batches; a grpcio channel for
gRPC): all three share the machine's cores, as the issue's targets assume.

Phases (each on a fresh queue):
  single_enqueue   POST /v1/queues/{ns}/{name}/tasks for TASKQ_BENCH_API_SECONDS (default 10)
                   from TASKQ_BENCH_API_CONCURRENCY (default 32) concurrent callers:
                   requests/s and latency percentiles
  grpc_enqueue     the same over gRPC (taskq.v1 Enqueue), the same callers multiplexed on one
                   channel (one HTTP/2 connection), for the same time: calls/s and latency
                   percentiles, beside REST's
  Both report the CPU time per call of the server, of PostgreSQL (its postmaster and every
  process under it; only when the bench runs its own) and of this load generator: on a shared
  machine these move far less than the rates do.
  batch_enqueue    POST .../tasks:batch of 1,000 tasks, 50 times, one at a time: tasks/s,
                   beside Client.enqueue_many of the same batches in this process
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import grpc
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devenv.postgres import LocalPostgres, bench_database

from taskq.auth import Role
from taskq.client import Client
from taskq.models import TaskRequest
from taskq.store import keys as key_store
from taskq.store.migrations import migrate
from taskq_api.grpc.v1 import taskq_pb2 as pb
from taskq_api.grpc.v1 import taskq_pb2_grpc as pb_grpc

SECONDS = float(os.environ.get("TASKQ_BENCH_API_SECONDS", "10"))
CONCURRENCY = int(os.environ.get("TASKQ_BENCH_API_CONCURRENCY", "32"))
BATCH = 1000
BATCHES = 50
NAMESPACE = "bench"


_TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> tuple[int, float] | None:
    """A process's parent and its CPU seconds so far (user + system), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command, which may hold spaces
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


class CpuMeter:
    """CPU seconds used, during a phase, by the server, by PostgreSQL (the postmaster and its
    children, when the bench started it) and by this process."""

    def __init__(self, server_pid: int, postgres: LocalPostgres | None) -> None:
        self.server_pid = server_pid
        pid_file = postgres.datadir / "postmaster.pid" if postgres else None
        self.postmaster = int(pid_file.read_text().split()[0]) if pid_file else None

    def _postgres(self) -> dict[int, float]:
        if self.postmaster is None:
            return {}
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                process = _process_cpu(int(entry.name))
                if process and self.postmaster in (process[0], int(entry.name)):
                    found[int(entry.name)] = process[1]
        return found

    def _sample(self) -> tuple[float, dict[int, float], float]:
        server = _process_cpu(self.server_pid)
        return (server[1] if server else 0.0), self._postgres(), time.process_time()

    @contextlib.contextmanager
    def phase(self, prefix: str, result: dict[str, float]) -> Iterator[None]:
        """Adds {prefix}_cpu_ms_per_call_{server,postgres,load_generator} to `result`, which
        the phase fills with {prefix}_calls."""
        server, postgres, own = self._sample()
        yield
        server_end, postgres_end, own_end = self._sample()
        calls = max(1, int(result[f"{prefix}_calls"]))
        used = {
            "server": server_end - server,
            "postgres": sum(cpu - postgres.get(pid, 0.0) for pid, cpu in postgres_end.items()),
            "load_generator": own_end - own,
        }
        if self.postmaster is None:
            del used["postgres"]
        for part, seconds in used.items():
            result[f"{prefix}_cpu_ms_per_call_{part}"] = round(seconds / calls * 1000, 3)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def api_server(dsn: str) -> Iterator[tuple[str, str, int]]:
    """The server's HTTP base URL, gRPC target and process id, once it is ready."""
    port, grpc_port = _free_port(), _free_port()
    env = {**os.environ, "TASKQ_API_DSN": dsn, "TASKQ_API_LOG_LEVEL": "WARNING"}
    argv = [sys.executable, "-m", "taskq_api", "--host", "127.0.0.1", "--port", str(port),
            "--grpc-port", str(grpc_port)]
    process = subprocess.Popen(argv, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API server did not become ready")
            time.sleep(0.1)
        yield url, f"127.0.0.1:{grpc_port}", process.pid
    finally:
        process.terminate()
        process.wait(30)


@contextlib.asynccontextmanager
async def http_client(url: str, key: str) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http:
        yield http


def _percentile(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] if samples else 0.0


class KeepAliveConnection:
    """A minimal HTTP/1.1 client on one kept-alive socket. The load generator shares the
    cores with the server and PostgreSQL, so it must be cheap: httpx's AsyncClient managed
    only ~260 requests/s at 32 concurrent connections against a trivial ASGI app that this
    client drives at ~8,000."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> KeepAliveConnection:
        host, port = url.removeprefix("http://").split(":")
        return cls(*await asyncio.open_connection(host, int(port)))

    async def post_json(self, path: str, key: str, body: object) -> int:
        """The response's status (its body is read and dropped)."""
        data = json.dumps(body).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        )
        self.writer.write(head.encode() + data)
        response = await self.reader.readuntil(b"\r\n\r\n")
        lines = response.split(b"\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in lines
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        await self.reader.readexactly(length)
        return int(lines[0].split()[1])

    def close(self) -> None:
        self.writer.close()


async def single_enqueue(url: str, key: str, queue: str) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + SECONDS

    async def caller(n: int) -> None:
        nonlocal errors
        connection = await KeepAliveConnection.open(url)
        i = 0
        try:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                status = await connection.post_json(
                    f"/v1/queues/{queue}/tasks",
                    key,
                    {"task_name": "bench", "payload": {"caller": n, "i": i}},
                )
                latencies.append(time.perf_counter() - started)
                if status != 201:
                    errors += 1
                i += 1
        finally:
            connection.close()

    began = time.perf_counter()
    await asyncio.gather(*(caller(n) for n in range(CONCURRENCY)))
    elapsed = time.perf_counter() - began
    return {
        "single_enqueue_requests_per_s": round(len(latencies) / elapsed),
        "single_enqueue_p50_ms": round(_percentile(latencies, 50) * 1000, 2),
        "single_enqueue_p95_ms": round(_percentile(latencies, 95) * 1000, 2),
        "single_enqueue_p99_ms": round(_percentile(latencies, 99) * 1000, 2),
        "single_enqueue_errors": errors,
        "single_enqueue_calls": len(latencies),
    }


async def grpc_enqueue(target: str, key: str, queue: str) -> dict[str, float]:
    namespace, name = queue.split("/")
    metadata = (("authorization", f"Bearer {key}"),)
    latencies: list[float] = []
    errors = 0
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.TaskqServiceStub(channel)
        await channel.channel_ready()
        stop_at = time.perf_counter() + SECONDS

        async def caller(n: int) -> None:
            nonlocal errors
            i = 0
            while time.perf_counter() < stop_at:
                request = pb.EnqueueRequest(namespace=namespace, name=name, task=pb.TaskSubmission(
                    task_name="bench", payload_json=json.dumps({"caller": n, "i": i})))
                started = time.perf_counter()
                try:
                    await stub.Enqueue(request, metadata=metadata)
                except grpc.aio.AioRpcError:
                    errors += 1
                latencies.append(time.perf_counter() - started)
                i += 1

        began = time.perf_counter()
        await asyncio.gather(*(caller(n) for n in range(CONCURRENCY)))
        elapsed = time.perf_counter() - began
    return {
        "grpc_enqueue_calls_per_s": round(len(latencies) / elapsed),
        "grpc_enqueue_p50_ms": round(_percentile(latencies, 50) * 1000, 2),
        "grpc_enqueue_p95_ms": round(_percentile(latencies, 95) * 1000, 2),
        "grpc_enqueue_p99_ms": round(_percentile(latencies, 99) * 1000, 2),
        "grpc_enqueue_errors": errors,
        "grpc_enqueue_calls": len(latencies),
    }


async def batch_enqueue(http: httpx.AsyncClient, client: Client, queue: str) -> dict[str, float]:
    body = {"tasks": [{"task_name": "bench", "payload": {"n": i}} for i in range(BATCH)]}
    began = time.perf_counter()
    for _ in range(BATCHES):
        response = await http.post(f"/v1/queues/{queue}/tasks:batch", json=body, timeout=60)
        if response.status_code != 201:
            raise RuntimeError(f"batch refused: {response.status_code} {response.text[:300]}")
    http_rate = BATCH * BATCHES / (time.perf_counter() - began)
    requests = [TaskRequest("bench", {"n": i}) for i in range(BATCH)]
    began = time.perf_counter()
    for _ in range(BATCHES):
        await client.enqueue_many(queue, requests)
    direct_rate = BATCH * BATCHES / (time.perf_counter() - began)
    return {
        "batch_enqueue_tasks_per_s": round(http_rate),
        "client_enqueue_many_tasks_per_s": round(direct_rate),
        "batch_share_of_client": round(http_rate / direct_rate, 2),
    }


async def run(dsn: str, server: str, postgres: LocalPostgres | None) -> dict[str, object]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
    assert pool is not None
    async with pool.acquire() as conn:
        await migrate(conn)
    client = Client(pool)
    stamp = int(time.time())
    single_queue, batch_queue = f"{NAMESPACE}/single-{stamp}", f"{NAMESPACE}/batch-{stamp}"
    grpc_queue = f"{NAMESPACE}/grpc-{stamp}"
    for queue in (single_queue, grpc_queue, batch_queue):
        await client.ensure_queue(queue)
    _, secret = await key_store.create_key(pool, f"bench-{stamp}", Role.OPERATOR, [NAMESPACE])
    try:
        with api_server(dsn) as (url, grpc_target, pid):
            meter = CpuMeter(pid, postgres)
            async with http_client(url, secret) as http:
                single: dict[str, float] = {}
                with meter.phase("single_enqueue", single):
                    single.update(await single_enqueue(url, secret, single_queue))
                calls: dict[str, float] = {}
                with meter.phase("grpc_enqueue", calls):
                    calls.update(await grpc_enqueue(grpc_target, secret, grpc_queue))
                result: dict[str, object] = {**single, **calls}
                result.update(await batch_enqueue(http, client, batch_queue))
    finally:
        await pool.close()
    result["settings"] = {
        "seconds": SECONDS,
        "concurrency": CONCURRENCY,
        "batch": BATCH,
        "batches": BATCHES,
        "postgres": server,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    return result


def main() -> None:
    with bench_database() as (dsn, label, postgres):
        result = asyncio.run(run(dsn, label, postgres))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
