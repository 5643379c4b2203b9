"""The API server as a local process, for tests and the demo.

`taskq-api` configured only through its environment (as the chart's Deployment configures it),
always on 127.0.0.1 and a free port whatever that environment says, and waited on until
`/readyz` answers 200 (the database answers and holds the schema).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from devenv.postgres import free_port

# The venv's console scripts (taskq, taskq-api), beside its interpreter.
BIN = Path(sys.executable).parent


class LocalApi:
    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        """`env`: the server's TASKQ_* settings (a DSN at least), added to this process's
        environment without its own TASKQ_* variables."""
        self.port = free_port()
        self.grpc_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")},
            **env,
            # loopback only, outside a pod (the chart's 0.0.0.0 is for the pod network)
            "TASKQ_API_HOST": "127.0.0.1",
            "TASKQ_API_PORT": str(self.port),
            # a free port rather than 9090, which another server on this machine may hold
            "TASKQ_API_GRPC_PORT": str(self.grpc_port),
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(BIN / "taskq-api")], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"taskq-api exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/readyz", timeout=1
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError:  # not listening yet, or 503 until the database is ready
                time.sleep(0.2)
        raise TimeoutError(f"taskq-api was not ready in {timeout:.0f} s")

    def stop(self) -> int | None:
        """SIGTERM, as a pod's termination; the exit status (None if it had to be killed)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode
