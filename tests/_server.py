"""Start and stop the REAL BentoML server (`bentoml serve emotion_core.service:EmotionService`) as a subprocess."""

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

REPO = Path(__file__).resolve().parents[1]
BENTOML = Path(sys.executable).parent / "bentoml"
READY_TIMEOUT_S = 180



def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    """`bentoml serve` in its own process group (so teardown reaches every worker), output to `log_path`."""
    port = free_port()
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [str(BENTOML), "serve", "emotion_core.service:EmotionService", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()  # the child holds its own descriptor
    return proc, f"http://127.0.0.1:{port}"


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group, SIGKILL whatever is left after 30 s; leaves no orphans."""
    pgid = proc.pid  # start_new_session: the server leads its own group
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            proc.poll()
            try:
                os.killpg(pgid, 0)  # anyone left in the group (workers included)?
            except ProcessLookupError:
                return
            time.sleep(0.2)
    proc.wait(timeout=10)


def log_tail(log_path: Path, chars: int = 6000) -> str:
    return log_path.read_text(errors="replace")[-chars:]


def is_ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def serving(workdir: Path, env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """(base URL, process) of a ready server with `env` (default: this process's), logging to workdir/server.log."""
    log_path = workdir / "server.log"
    env = dict(os.environ if env is None else env)
    env.setdefault("BENTOML_HOME", str(workdir / "bentoml-home"))  # keep ~/bentoml out of it
    env["BENTOML_DO_NOT_TRACK"] = "True"
    proc, base_url = start_server(env, log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not is_ready(base_url):
            if proc.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {proc.returncode} before it was ready:\n{log_tail(log_path)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"bentoml serve not ready after {READY_TIMEOUT_S} s:\n{log_tail(log_path)}")
            time.sleep(1)
        yield base_url, proc
    finally:
        stop_server(proc)
        print(f"bentoml serve log: {log_path}")
