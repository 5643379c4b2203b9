"""A real PgBouncer in transaction pooling in front of a throwaway PostgreSQL, for tests and
benchmarks.

Runs Debian's pgbouncer (1.18: no protocol-level prepared statements) from a directory of ours,
listening on 127.0.0.1 only, every database of the server behind it (`* =`), each pair of
database and user sharing at most `pool_size` server connections. It trusts the users of its
auth file, as the test server trusts everyone. PgBouncer refuses to run as root, so as root it
runs as the `postgres` system user, like the server.

    python -m devenv.pgbouncer start DIR --server-port N [--pool-size 20]   # prints the DSN
    python -m devenv.pgbouncer stop DIR
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devenv.postgres import free_port

USER = "postgres"  # the only user the auth file knows, the test server's superuser
STOP_WAIT = 10.0  # seconds a stopping PgBouncer gets before it is killed


class PgBouncerUnavailableError(RuntimeError):
    pass


def find_pgbouncer() -> Path:
    """Debian's binary (in /usr/sbin, often not on a user's PATH), or a clear error."""
    explicit = os.environ.get("TASKQ_PGBOUNCER")
    candidates = [explicit] if explicit else [shutil.which("pgbouncer"), "/usr/sbin/pgbouncer"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise PgBouncerUnavailableError(
        "pgbouncer not found: install it with `apt-get install pgbouncer` (`make system` does) "
        "or set TASKQ_PGBOUNCER to its binary"
    )


@dataclass
class LocalPgBouncer:
    directory: Path
    server_port: int  # the PostgreSQL behind it, on 127.0.0.1
    port: int
    pool_size: int = 20
    max_clients: int = 5000

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    @property
    def _user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    @property
    def _pidfile(self) -> Path:
        return self.directory / "pgbouncer.pid"

    @classmethod
    def temporary(cls, server_port: int, pool_size: int = 20) -> LocalPgBouncer:
        return cls(Path(tempfile.mkdtemp(prefix="taskq-pgbouncer-")), server_port, free_port(),
                   pool_size)

    def _config(self) -> str:
        return f"""\
[databases]
* = host=127.0.0.1 port={self.server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = {self.max_clients}
auth_type = trust
auth_file = {self.directory / "userlist.txt"}
admin_users = {USER}
logfile = {self.directory / "pgbouncer.log"}
pidfile = {self._pidfile}
log_connections = 0
log_disconnections = 0
"""

    def start(self) -> None:
        if self.is_running():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "pgbouncer.ini").write_text(self._config())
        (self.directory / "userlist.txt").write_text(f'"{USER}" ""\n')
        if self._user:  # it writes its pid and log file here
            entry = pwd.getpwnam(self._user)
            for path in (self.directory, *self.directory.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        result = subprocess.run(
            [str(find_pgbouncer()), "-d", str(self.directory / "pgbouncer.ini")],
            user=self._user, capture_output=True, text=True, check=False,
        )
        if result.returncode != 0:
            raise PgBouncerUnavailableError(
                f"pgbouncer did not start ({result.returncode}): {result.stderr.strip()}\n"
                + self._log_tail()
            )
        self._wait_accepting()

    def _log_tail(self) -> str:
        log = self.directory / "pgbouncer.log"
        return log.read_text(errors="replace")[-2000:] if log.exists() else ""

    def _wait_accepting(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), 1),
            ):
                return
            time.sleep(0.05)
        raise PgBouncerUnavailableError(
            f"pgbouncer is not accepting on 127.0.0.1:{self.port}\n{self._log_tail()}"
        )

    def _pid(self) -> int | None:
        try:
            pid = int(self._pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return pid

    def is_running(self) -> bool:
        return self._pid() is not None

    def stop(self) -> None:
        """Immediate shutdown (SIGTERM: clients still connected are dropped); killed if it has
        not gone within STOP_WAIT."""
        pid = self._pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT
        while self._pid() is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)

    def destroy(self) -> None:
        self.stop()
        if self.directory.name.startswith("taskq-pgbouncer-"):
            shutil.rmtree(self.directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devenv.pgbouncer")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--server-port", type=int, help="the PostgreSQL on 127.0.0.1 (start)")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--pool-size", type=int, default=20,
                        help="server connections per database and user")
    args = parser.parse_args(argv)
    directory: Path = args.directory.resolve()
    if args.action == "stop":
        LocalPgBouncer(directory, 0, 0).stop()
        return 0
    if not args.server_port:
        parser.error("start needs --server-port")
    bouncer = LocalPgBouncer(directory, args.server_port, args.port or free_port(), args.pool_size)
    try:
        bouncer.start()
    except PgBouncerUnavailableError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(bouncer.dsn())
    return 0


if __name__ == "__main__":
    sys.exit(main())
