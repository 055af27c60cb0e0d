"""`bentoml build` in a private BENTOML_HOME: the Bento holds the package, the experiment configs and pyproject's
dependencies (bentofile.yaml against pyproject.toml without building: tests/unit/test_packaging.py); then
`bentoml serve emotion_detector:latest` from the store, outside the checkout, answers every seed endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import psutil
import yaml

from bench.server import Server

REPO = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).parent / "bentoml"


def test_bentoml_build_then_serve_the_bento_from_the_store(smoke_run, angry_clip, tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml-home"), "BENTOML_DO_NOT_TRACK": "True"}
    build = subprocess.run([str(BENTOML), "build"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, f"bentoml build failed:\n{build.stdout[-4000:]}\n{build.stderr[-4000:]}"

    listed = subprocess.run([str(BENTOML), "list", "-o", "json"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)
    assert listed.returncode == 0, listed.stderr
    tags = [b["tag"] for b in json.loads(listed.stdout)]
    assert len(tags) == 1 and tags[0].startswith("emotion_detector:"), tags

    # What went into the Bento: the package, the experiment configs, pyproject's dependencies.
    [bento] = (tmp_path / "bentoml-home" / "bentos" / "emotion_detector").glob(tags[0].split(":")[1])
    src = bento / "src"
    for rel in ("emotion_core/serving/service.py", "emotion_core/serving/predictor.py", "emotion_core/encoders/__init__.py",
                "emotion_core/data/__init__.py", "experiments/default.yaml",
                "emotion_core/serving/web/static/index.html", "emotion_core/serving/web/static/demo.js", "emotion_core/serving/web/static/api.js"):
        assert (src / rel).is_file(), rel
    assert not list(src.rglob("__pycache__"))
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(deps) <= set(requirements)
    bento_yaml = yaml.safe_load((bento / "bento.yaml").read_text())
    assert bento_yaml["name"] == "emotion_detector" and bento_yaml["models"] == []  # the model comes from MLflow
    routes = {r["route"] for r in bento_yaml["schema"]["routes"]}
    assert {"/predict-emotion/", "/predict-realtime/"} <= routes

    # Served from the store, not the checkout: run elsewhere, the Bento's own copy of the code answers, with
    # the champion read from the MLflow store the environment names, and two workers.
    elsewhere = tmp_path / "elsewhere"
    server = Server(elsewhere, env={**env, "EMOTION_WORKERS": "2"}, target="emotion_detector:latest", cwd=elsewhere,
                    name="bento")
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as client:
            info = client.get("/").json()
            assert info["status"] == "healthy" and info["model_version"], info
            assert client.get("/emotions/").json()["count"] == 8
            assert len(client.get("/music-moods/").json()) == 8
            audio = angry_clip.read_bytes()
            full = client.post("/predict-emotion/", files={"file": ("a.flac", audio, "audio/flac")})
            assert full.status_code == 200 and {"emotion", "confidence", "music_mood", "all_probabilities", "status"} <= set(full.json())
            now = client.post("/predict-realtime/", files={"audio_buffer": ("b.flac", audio, "audio/flac")})
            assert now.status_code == 200 and set(now.json()) >= {"emotion", "confidence", "music_mood"}
        workers = [p for p in psutil.Process(server.pid).children(recursive=True)
                   if "_bentoml_impl.worker.service" in p.cmdline()]
        assert len(workers) == 2 and {Path(p.cwd()) for p in workers} == {src}  # the Bento's code, two workers
    finally:
        server.stop()
