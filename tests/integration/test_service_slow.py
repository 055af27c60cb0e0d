"""The long service checks (`make test-slow`; they print their figures): schemathesis fuzzing of the served
OpenAPI document, and the bounded loopback load test (bench/loadtest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadtest import loadtest

pytestmark = pytest.mark.slow
ST = Path(sys.executable).parent / "st"


def test_schemathesis_no_server_errors(server: str, tmp_path: Path) -> None:
    """>= 500 generated requests from /docs.json, every check but `positive_data_acceptance` (a schema-valid
    binary `file` need not be audio, so a 422 for a PNG is right): 0 server errors, 0 failures."""
    report = tmp_path / "schemathesis.json"
    run = subprocess.run([str(ST), "run", f"{server}/docs.json", "--max-examples", "150", "--checks", "all",
                          "--exclude-checks", "positive_data_acceptance", "--generation-deterministic",
                          "--report", "json", "--report-json-path", str(report)],
                         capture_output=True, text=True, timeout=900)
    result = json.loads(report.read_text())
    cases = result["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, {cases['with_failures']} with failures, "
          f"{cases['errored']} errored, operations {result['operations']['tested']}")
    assert run.returncode == 0, run.stdout[-6000:]
    assert cases["generated"] >= 500 and cases["with_failures"] == 0 and cases["errored"] == 0


def test_load(smoke_run, tmp_path: Path) -> None:
    """8 concurrent clients for 60 s on a fresh server: 0 errors, RSS after within 10 % of the warm RSS."""
    result = loadtest(clients=8, seconds=60, workdir=tmp_path)  # the server log: tmp_path/loadtest-server.log
    print("load test:", json.dumps(result))
    assert result["errors"] == 0 and result["warmup_errors"] == 0, result["error_examples"]
    assert result["rss_growth"] <= 0.10
    assert result["health_after"] == 200
