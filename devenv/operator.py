"""The operator as a local process, for tests, benchmarks and the demo.

`python -m taskq_operator` configured only through its environment (as the chart's Deployment
configures it), started against a kubeconfig, and waited on until kopf's liveness endpoint
answers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from devenv.postgres import free_port

REPO = Path(__file__).resolve().parent.parent


class LocalOperator:
    def __init__(
        self,
        kubeconfig: Path,
        default_dsn: str,
        log_path: Path,
        *,
        namespaces: str,
        settings: Mapping[str, str] | None = None,
        python_args: Sequence[str] = (),
    ) -> None:
        """`namespaces`: comma-separated names or globs to watch, so that several operators
        can share one cluster; `settings`: more TASKQ_OPERATOR_* values (without the prefix);
        `python_args`: e.g. ("-m", "cProfile", "-o", FILE)."""
        self.liveness_port = free_port()
        self.log_path = log_path
        self.python_args = list(python_args)
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONPATH": str(REPO),
            "TASKQ_OPERATOR_DEFAULT_DSN": default_dsn,
            "TASKQ_OPERATOR_NAMESPACES": namespaces,
            "TASKQ_OPERATOR_METRICS_PORT": "0",
            "TASKQ_OPERATOR_LIVENESS_PORT": str(self.liveness_port),
            **{f"TASKQ_OPERATOR_{key.upper()}": value for key, value in (settings or {}).items()},
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, *self.python_args, "-m", "taskq_operator"],
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=1
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the operator did not become live in {timeout:.0f} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def cpu_seconds(self) -> float:
        """utime + stime of the operator process (all its threads)."""
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 (state)
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
