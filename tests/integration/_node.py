"""Node, the npm packages of clients/typescript (typescript, playwright-core) and Debian's Chromium, for the
client and web-demo tests. `make clients-deps` (part of `make test`) installs them."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TS_DIR = REPO / "clients" / "typescript"
NODE_MODULES = TS_DIR / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")
OUTPUT_DIR = REPO / "test-output"  # screenshots (gitignored)


def node() -> str:
    exe = shutil.which("node")
    if exe is None:
        pytest.skip("node is not installed (Node 20+: `make clients-deps` needs it; .ci/run installs it)")
    return exe


def package(name: str) -> Path:
    """An installed npm package of clients/typescript; a clear failure when `npm ci` was not run."""
    path = NODE_MODULES / name
    if not (path / "package.json").is_file():
        pytest.fail(f"{path} is missing: run `make clients-deps` (npm ci in clients/typescript)")
    return path


def chromium() -> Path:
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (`make clients-deps` installs Debian's chromium)")
    return CHROMIUM


def tsc(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    script = package("typescript") / "bin" / "tsc"
    return subprocess.run([node(), str(script), *args], cwd=TS_DIR, capture_output=True, text=True, timeout=timeout)


def run_json(script: Path, *args: str, timeout: float = 300) -> dict:
    """`node script args...` whose stdout's last line is one JSON object."""
    done = subprocess.run([node(), str(script), *args], cwd=TS_DIR, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{script.name} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])
