"""Packaging stays in step with pyproject.toml: bentofile.yaml's packages and service, environment.yml.
`bentoml build` itself: tests/integration/test_bentoml_build.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


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
    assert bentofile["service"] == "emotion_core.serving.service:EmotionService"
    assert bentofile["name"] == "emotion_detector"
    assert "emotion_core/**/*.py" in bentofile["include"]


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
