"""A throwaway PostgreSQL server for tests, the demo and benchmarks.

Runs Debian's server binaries (initdb into a directory of ours, listening on 127.0.0.1 only).
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.

    python -m devenv.postgres start DIR [--port N] [--durable]   # prints the DSN
    python -m devenv.postgres stop DIR
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Settings for a disposable server: durability off unless asked (tests kill and restart it).
_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
_COMMON = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "log_min_messages": "warning",
    "log_min_error_statement": "panic",
}


class PostgresUnavailableError(RuntimeError):
    pass


def find_bindir() -> Path:
    """The newest installed server's bin directory, or a clear error naming the fix."""
    explicit = os.environ.get("TASKQ_PG_BINDIR")
    candidates = [explicit] if explicit else sorted(glob.glob("/usr/lib/postgresql/*/bin"))[::-1]
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise PostgresUnavailableError(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
        "install them with `apt-get install postgresql` or set TASKQ_PG_BINDIR"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocalPostgres:
    datadir: Path
    port: int
    durable: bool = False
    # server settings on top of the disposable defaults (e.g. a small lock table)
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def _user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    @classmethod
    def temporary(
        cls, durable: bool = False, settings: dict[str, str] | None = None
    ) -> LocalPostgres:
        """A server in a new temp directory that the server's user owns (as root, the
        `postgres` user cannot enter root's private temp directories)."""
        base = Path(tempfile.mkdtemp(prefix="taskq-pg-"))
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            os.chown(base, entry.pw_uid, entry.pw_gid)
        return cls(base / "data", free_port(), durable, dict(settings or {}))

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(find_bindir() / argv[0]), *argv[1:]],
            user=self._user,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise PostgresUnavailableError(
                f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}"
            )
        return result

    def init(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self.datadir, entry.pw_uid, entry.pw_gid)
        self.datadir.chmod(0o700)
        self._run(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )

    def is_running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.datadir), check=False).returncode == 0

    def start(self) -> None:
        self.init()
        if self.is_running():
            return
        settings = {
            **_COMMON,
            **({} if self.durable else _FAST),
            **self.settings,
            "port": str(self.port),
            "unix_socket_directories": str(self.datadir),
        }
        options = " ".join(f"-c {k}={v}" for k, v in settings.items())
        result = self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(self.datadir),
            "-l",
            str(self.datadir / "server.log"),
            "-o",
            options,
            check=False,
        )
        if result.returncode != 0:
            log = (self.datadir / "server.log").read_text(errors="replace")[-2000:]
            raise PostgresUnavailableError(f"PostgreSQL did not start: {result.stderr}\n{log}")
        self._wait_accepting()

    def _wait_accepting(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.05)
        raise PostgresUnavailableError(f"PostgreSQL is not accepting on 127.0.0.1:{self.port}")

    def stop(self, mode: str = "fast") -> None:
        if (self.datadir / "PG_VERSION").exists() and self.is_running():
            self._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.datadir), check=False)

    def destroy(self) -> None:
        """Stop and delete the data directory (and the temp directory holding it)."""
        self.stop("immediate")
        temp_parent = self.datadir.parent.name.startswith("taskq-pg-")
        shutil.rmtree(self.datadir.parent if temp_parent else self.datadir, ignore_errors=True)


@contextlib.contextmanager
def bench_database() -> Iterator[tuple[str, str, LocalPostgres | None]]:
    """The database a benchmark runs on: TASKQ_BENCH_DSN's, else a throwaway durable server
    destroyed afterwards. Yields (dsn, how to name it in the results, the server when it is
    ours)."""
    dsn = os.environ.get("TASKQ_BENCH_DSN")
    if dsn:
        yield dsn, "TASKQ_BENCH_DSN", None
        return
    server = LocalPostgres.temporary(durable=True)
    server.start()
    try:
        yield server.dsn, "local PostgreSQL, durable (fsync on)", server
    finally:
        server.destroy()


def _port_file(datadir: Path) -> Path:
    return datadir.parent / (datadir.name + ".port")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.postgres")
    parser.add_argument("action", choices=["start", "stop", "dsn"])
    parser.add_argument("datadir", type=Path)
    parser.add_argument(
        "--port", type=int, default=0, help="default: a free port, kept per datadir"
    )
    parser.add_argument("--durable", action="store_true", help="keep fsync and synchronous commit")
    args = parser.parse_args(argv)
    datadir: Path = args.datadir.resolve()
    port_file = _port_file(datadir)
    port = args.port or (int(port_file.read_text()) if port_file.exists() else free_port())
    server = LocalPostgres(datadir, port, durable=args.durable)
    if args.action == "start":
        try:
            server.start()
        except PostgresUnavailableError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        port_file.write_text(str(port))
    elif args.action == "stop":
        server.stop()
        return 0
    print(server.dsn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
