"""Packaging stays in step with pyproject.toml: bentofile.yaml's packages, `bentoml build`, environment.yml."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BENTOML = Path(sys.executable).parent / "bentoml"


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def bentofile() -> dict:
    return yaml.safe_load((REPO / "bentofile.yaml").read_text())


def test_bentofile_packages_mirror_pyproject(pyproject: dict, bentofile: dict) -> None:
    deps = [d.strip() for d in pyproject["project"]["dependencies"]]
    packages = [str(p).strip() for p in bentofile["python"]["packages"]]
    assert len(set(packages)) == len(packages), "duplicate entries in bentofile.yaml python.packages"
    missing, extra = sorted(set(deps) - set(packages)), sorted(set(packages) - set(deps))
    assert not missing and not extra, (
        f"bentofile.yaml python.packages drifted from pyproject [project].dependencies: "
        f"missing {missing}, not in pyproject {extra}"
    )


def test_bentofile_points_at_the_service(bentofile: dict) -> None:
    assert bentofile["service"] == "emotion_core.service:EmotionService"
    assert bentofile["name"] == "emotion_detector"
    assert "emotion_core/**/*.py" in bentofile["include"]


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
    for rel in ("emotion_core/service.py", "emotion_core/predictor.py", "emotion_core/encoders/__init__.py",
                "emotion_core/data/__init__.py", "experiments/default.yaml",
                "emotion_core/web/static/index.html", "emotion_core/web/static/demo.js", "emotion_core/web/static/api.js"):
        assert (src / rel).is_file(), rel
    assert not list(src.rglob("__pycache__"))
    requirements = (bento / "env" / "python" / "requirements.txt").read_text().splitlines()
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert set(deps) <= set(requirements)
    bento_yaml = yaml.safe_load((bento / "bento.yaml").read_text())
    assert bento_yaml["name"] == "emotion_detector" and bento_yaml["models"] == []  # the model comes from MLflow
    routes = {r["route"] for r in bento_yaml["schema"]["routes"]}
    assert {"/predict-emotion/", "/predict-realtime/"} <= routes


def test_environment_yml_installs_the_project(pyproject: dict) -> None:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    deps = env["dependencies"]
    pythons = [d for d in deps if isinstance(d, str) and d.split("=")[0].split(" ")[0] == "python"]
    assert pythons == ["python=3.11"], pythons
    assert pyproject["project"]["requires-python"] == ">=3.11,<3.12"
    assert "pip" in deps
    pip = [d["pip"] for d in deps if isinstance(d, dict) and "pip" in d]
    assert pip == [["-e .[dev]"]], pip
    assert "dev" in pyproject["project"]["optional-dependencies"]
