"""`bentoml build` in a private BENTOML_HOME: the Bento holds the package, the experiment configs and pyproject's
dependencies (bentofile.yaml against pyproject.toml without building: tests/unit/test_packaging.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
BENTOML = Path(sys.executable).parent / "bentoml"


def test_bentoml_build(tmp_path: Path) -> None:
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
