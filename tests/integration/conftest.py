"""Integration fixtures: real RAVDESS clips and ONE real shrunk pipeline run (experiments/smoke.yaml) into a
temporary MLflow store, reused by the end-to-end, CLI and service tests; ONE real `bentoml serve` on it; the
HTTP client and the in-process predictor of that champion."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

from emotion_core.config import data_dir, load_config

RAVDESS = data_dir() / "ravdess"


def pytest_configure(config: pytest.Config) -> None:
    if not (RAVDESS / "manifest.csv").exists():
        raise pytest.UsageError(f"RAVDESS not found at {RAVDESS}: set EMOTION_DATA_DIR (see README); "
                                "`pytest tests/unit` needs no data")


@pytest.fixture(scope="session")
def ravdess_manifest() -> pd.DataFrame:
    return pd.read_csv(RAVDESS / "manifest.csv")


@pytest.fixture(scope="session")
def angry_clip() -> Path:
    """A strong-intensity angry clip of actor 1 (a test actor of fold 1, unseen by the smoke model)."""
    return RAVDESS / "Actor_01" / "03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="session")
def smoke_cfg():
    return load_config("smoke")


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh sqlite MLflow store for this test session; also the store the CLI/service subprocesses use."""
    root = tmp_path_factory.mktemp("mlruns")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["EMOTION_REPORTS_DIR"] = str(tmp_path_factory.mktemp("reports"))
    return uri


@pytest.fixture(scope="session")
def smoke_run(mlflow_store: str, smoke_cfg) -> dict:
    """prepare → embed → train → evaluate → register on 6 actors, 3 epochs: a real champion in the temp store."""
    from emotion_core.data import read_manifest_csv
    from emotion_core.research import steps

    prepared = steps.prepare(smoke_cfg)
    manifest, csv_path = read_manifest_csv(prepared["manifest"]), prepared["manifest"]
    embedded = steps.embed(smoke_cfg, progress=False)
    trained = steps.train(smoke_cfg, progress=False)
    evaluated = steps.evaluate(smoke_cfg, run_id=trained["run_id"])
    registered = steps.register(smoke_cfg)
    return {"manifest": manifest, "manifest_csv": csv_path, "embed": embedded, "train": trained,
            "evaluate": evaluated, "register": registered, "tracking_uri": mlflow_store}


@pytest.fixture(scope="session")
def server(smoke_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of ONE real `bentoml serve` for the session, loading `emotion-cnn@champion` from the session
    store (bench/server.py); shared by the service test files."""
    from bench.server import serving

    assert os.environ["MLFLOW_TRACKING_URI"] == smoke_run["tracking_uri"]
    try:
        with serving(tmp_path_factory.mktemp("bentoml-serve")) as (base_url, _):
            yield base_url
    except RuntimeError as exc:  # never became ready
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    """An HTTP client of the session's server (long timeout: a 10-minute upload is judged on 2 cores)."""
    with httpx.Client(base_url=server, timeout=300) as c:
        yield c


@pytest.fixture(scope="module")
def predictor(smoke_run):
    """The champion the server loads, in-process."""
    from emotion_core.serving.predictor import Predictor

    return Predictor.from_uri()


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, list[tuple[float, float]]]:
    """RAVDESS clips of a held-out actor joined with 1–2 s pauses, and where its utterances truly are."""
    from tests.integration._recordings import joined_recording

    return joined_recording()
