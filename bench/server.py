"""Start and stop the REAL BentoML server (`bentoml serve emotion_core.serving.service:EmotionService`) as a
subprocess: the one helper the tests, the load test and the benchmark share."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
BENTOML = Path(sys.executable).parent / "bentoml"
SERVICE = "emotion_core.serving.service:EmotionService"
READY_TIMEOUT_S = 240


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(workdir: Path, env: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """`env` (default: this process's) with a private BENTOML_HOME under `workdir`, no telemetry, and `extra`."""
    out = dict(os.environ if env is None else env)
    out.setdefault("BENTOML_HOME", str(workdir / "bentoml-home"))  # keep ~/bentoml out of it
    out["BENTOML_DO_NOT_TRACK"] = "True"
    return {**out, **extra}


class Server:
    """One `bentoml serve` in its own process group (so stopping it reaches every worker), its output in a log."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, port: int | None = None,
                 name: str = "server", target: str = SERVICE, cwd: Path = REPO) -> None:
        """`target`: the service in the checkout (default), or a Bento from the store, e.g.
        "emotion_detector:latest" (then run from `cwd` outside the checkout)."""
        workdir.mkdir(parents=True, exist_ok=True)
        self.name, self.log_path = name, workdir / f"{name}.log"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        with self.log_path.open("wb") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [str(BENTOML), "serve", target, "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=cwd, env=server_env(workdir, env), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def ready(self) -> bool:
        """True once `/readyz` answers 200; raises RuntimeError (with the log) if the server has exited."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"bentoml serve ({self.name}) exited with {self.proc.returncode} before it was "
                               f"ready:\n{self.log_tail()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Seconds it took to become ready; RuntimeError (with the log) on exit or timeout."""
        return wait_all_ready([self], timeout)[self.name]

    def stop(self) -> None:
        """SIGTERM the whole process group and any worker that left it, SIGKILL whatever is left after 30 s;
        leaves no orphans."""
        try:  # found first: a worker in a group of its own is ended by pid
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)  # start_new_session: the server leads its own group
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.send_signal(sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.proc.poll()
                if self.proc.returncode is not None and not any(
                        c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
                    return
                time.sleep(0.2)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def wait_all_ready(servers: list[Server], timeout: float = READY_TIMEOUT_S) -> dict[str, float]:
    """Wait for servers started side by side; seconds each took, by name."""
    start, took = time.monotonic(), {}
    while len(took) < len(servers):
        for server in servers:
            if server.name not in took and server.ready():
                took[server.name] = time.monotonic() - start
        if time.monotonic() - start > timeout:
            late = [s for s in servers if s.name not in took]
            raise RuntimeError(f"bentoml serve ({late[0].name}) not ready after {timeout:.0f} s:\n{late[0].log_tail()}")
        time.sleep(0.5)
    return took


@contextlib.contextmanager
def serving(workdir: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of a ready server with `env` (default: this process's), logging to workdir/server.log."""
    server = Server(workdir, env)
    try:
        server.wait_ready()
        yield server.url, server.proc
    finally:
        server.stop()
        print(f"bentoml serve log: {server.log_path}")
