"""The servers a team shares, started for real: a PostgreSQL cluster (for the MLflow backend store and the Optuna
study) and an MLflow tracking server on it that serves the artifacts itself.

    python -m tools.team_servers postgres DIR              # a local cluster in DIR; prints its URL (Ctrl-C stops it)
    python -m tools.team_servers mlflow BACKEND ARTIFACTS  # `mlflow server` on BACKEND (postgresql://…)

`make postgres` and `make mlflow-server` run these; the integration tests use the context managers. A team with
its own PostgreSQL only needs the second: `make mlflow-server BACKEND=postgresql://user@db-host/mlflow`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx

from bench.server import free_port

BIN = Path(sys.executable).parent
#: Debian's packaging puts the server binaries here (only psql, createdb… are on PATH).
PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
PG_USER = "emotion"
#: PostgreSQL refuses to run as root; as root, the cluster runs as the `postgres` account Debian's package creates.
SERVICE_ACCOUNT = "postgres"


def pg_binary(name: str) -> str | None:
    """initdb / pg_ctl / postgres from PATH or Debian's /usr/lib/postgresql/<version>/bin; None when absent."""
    if found := shutil.which(name):
        return found
    return next((str(d / name) for d in PG_BIN_DIRS if (d / name).is_file()), None)


def postgres_available() -> bool:
    return all(pg_binary(b) for b in ("initdb", "pg_ctl"))


def _as_service_account(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", SERVICE_ACCOUNT, "--", *cmd]


def _chown(path: Path) -> None:
    if os.geteuid() == 0:
        account = pwd.getpwnam(SERVICE_ACCOUNT)
        os.chown(path, account.pw_uid, account.pw_gid)


class PostgresCluster:
    """A throwaway cluster: `initdb` into `directory` (trust auth, loopback only, a private socket dir), `pg_ctl
    start` on a free port, databases created on demand. `url(db)` is the SQLAlchemy URL of a database."""

    def __init__(self, directory: Path | None = None, port: int | None = None):
        if not postgres_available():
            raise RuntimeError("PostgreSQL's server binaries are not installed (Debian: apt-get install postgresql)")
        self.root = Path(directory or tempfile.mkdtemp(prefix="emotion-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        _chown(self.root)  # mkdtemp makes it 0700 for us: the cluster's account must own it
        self.data, self.port = self.root / "data", port or free_port()
        self.log = self.root / "postgres.log"

    def start(self) -> "PostgresCluster":
        if not (self.data / "PG_VERSION").exists():
            subprocess.run(_as_service_account([pg_binary("initdb"), "-D", str(self.data), "-U", PG_USER, "-A", "trust",
                                                "-E", "UTF8", "--no-instructions"]),
                           check=True, capture_output=True, text=True, timeout=120)
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=off"
        done = subprocess.run(_as_service_account([pg_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                                                   "-o", options, "-w", "-t", "60", "start"]),
                              capture_output=True, text=True, timeout=90)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed:\n{done.stdout}{done.stderr}\n{self.log_tail()}")
        return self

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg  # the driver (SQLAlchemy's default for postgresql://): only a team set-up needs it

        # autocommit: CREATE DATABASE cannot run inside a transaction
        with psycopg.connect(self.url(), autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        subprocess.run(_as_service_account([pg_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=60)


@contextlib.contextmanager
def postgres(directory: Path | None = None) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(directory).start()
    try:
        yield cluster
    finally:
        cluster.stop()
        if directory is None:
            shutil.rmtree(cluster.root, ignore_errors=True)


def mlflow_server_command(backend: str, artifacts: Path | str, host: str = "127.0.0.1", port: int = 5000,
                          workers: int = 2) -> list[str]:
    """`mlflow server` on `backend` that stores and serves the artifacts itself (clients need no access to
    `artifacts`: uploads and downloads go through the server's HTTP API)."""
    return [str(BIN / "mlflow"), "server", "--backend-store-uri", backend, "--serve-artifacts",
            "--artifacts-destination", str(artifacts), "--host", host, "--port", str(port), "--workers", str(workers)]


class MlflowServer:
    """One `mlflow server` process in its own process group; `url` is what MLFLOW_TRACKING_URI is set to."""

    def __init__(self, backend: str, artifacts: Path, log: Path, port: int | None = None):
        self.port = port or free_port()
        self.url, self.log_path = f"http://127.0.0.1:{self.port}", log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(mlflow_server_command(backend, artifacts, port=self.port), stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, "MLFLOW_TRACKING_URI": ""})

    def wait_ready(self, timeout: float = 180) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log_path.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - start
            time.sleep(0.5)
        raise RuntimeError(f"mlflow server not ready after {timeout:.0f} s:\n{self.log_path.read_text()[-4000:]}")

    def stop(self) -> None:
        for sig, grace in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=grace)
                return


@contextlib.contextmanager
def mlflow_server(backend: str, workdir: Path) -> Iterator[MlflowServer]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = MlflowServer(backend, workdir / "artifacts", workdir / "mlflow-server.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    pg = sub.add_parser("postgres", help="a local PostgreSQL cluster with the mlflow and optuna databases")
    pg.add_argument("directory", type=Path)
    pg.add_argument("--port", type=int, default=5432)
    ml = sub.add_parser("mlflow", help="an MLflow tracking server on a PostgreSQL backend")
    ml.add_argument("backend")
    ml.add_argument("artifacts", type=Path)
    ml.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to serve the team's network")
    ml.add_argument("--port", type=int, default=5000)
    args = p.parse_args(argv)
    if args.what == "mlflow":
        os.execv(str(BIN / "mlflow"), mlflow_server_command(args.backend, args.artifacts.resolve(), args.host, args.port))
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # sigwait below takes them
    cluster = PostgresCluster(args.directory.resolve(), args.port).start()
    print(f"PostgreSQL on port {cluster.port} (data: {cluster.data}); Ctrl-C stops it.\n"
          f"  MLflow backend store: {cluster.create_database('mlflow')}\n"
          f"  Optuna storage:       {cluster.create_database('optuna')}", flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
