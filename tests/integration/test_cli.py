"""The installed `emotion-detect` console script and `python -m emotion_core.inference`, run as subprocesses on
real RAVDESS clips against the smoke champion in the session's temporary MLflow store."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emotion_core.config import data_dir
from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS, MUSIC_MOODS
from emotion_core.serving.predictor import Predictor
from emotion_core.serving.schemas import EmotionPrediction

REPO = Path(__file__).resolve().parents[2]
EMOTION_DETECT = Path(sys.executable).parent / "emotion-detect"
RAVDESS = data_dir() / "ravdess"
#: Actor 1 (unseen by the smoke model): angry (strong), neutral, happy (strong).
CLIPS = {
    "a_angry.flac": "Actor_01/03-01-05-02-01-01-01.flac",
    "b_neutral.flac": "Actor_01/03-01-01-01-01-01-01.flac",
    "c_happy.flac": "Actor_01/03-01-03-02-01-01-01.flac",
}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cli_env(smoke_run) -> dict[str, str]:
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = smoke_run["tracking_uri"]
    env.pop("EMOTION_MODEL_URI", None)
    return env


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 real clips (symlinks) and a text file named bad.wav."""
    folder = tmp_path_factory.mktemp("clips")
    for name, rel in CLIPS.items():
        (folder / name).symlink_to(RAVDESS / rel)
    (folder / "bad.wav").write_text("not audio at all\n")
    (folder / "notes.txt").write_text("ignored: not an audio suffix\n")
    return folder


@pytest.fixture(scope="module")
def dir_json(clip_dir: Path, cli_env) -> subprocess.CompletedProcess:
    return run([str(EMOTION_DETECT), "--json", str(clip_dir)], cli_env)


def expected_paths(clip_dir: Path) -> list[str]:
    return sorted(str(clip_dir / n) for n in [*CLIPS, "bad.wav"])


def test_single_file_table(cli_env, predictor: Predictor) -> None:
    clip = RAVDESS / CLIPS["a_angry.flac"]
    r = run([str(EMOTION_DETECT), str(clip)], cli_env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    path, emotion, confidence, mood = lines[0].split("\t")
    local = predictor.predict(clip)
    assert path == str(clip)
    assert emotion == local.emotion
    assert confidence == f"{local.confidence:.2f}"
    assert mood.removesuffix("  (low confidence)") == MUSIC_MOODS[emotion]
    assert mood.endswith("(low confidence)") == (local.confidence < CONFIDENCE_THRESHOLD)


def test_directory_table(clip_dir: Path, cli_env) -> None:
    r = run([str(EMOTION_DETECT), str(clip_dir)], cli_env)
    assert r.returncode == 1, (r.stdout, r.stderr)  # one bad file
    lines = [line.split("\t") for line in r.stdout.strip().splitlines()]
    assert [cols[0] for cols in lines] == expected_paths(clip_dir)
    for cols in lines:
        if cols[0].endswith("bad.wav"):
            assert cols[1] == "ERROR" and "could not decode audio" in cols[2]
        else:
            assert cols[1] in EMOTIONS and 0.0 <= float(cols[2]) <= 1.0
    assert "bad.wav" in r.stderr and "could not decode audio" in r.stderr


def test_directory_json(clip_dir: Path, dir_json: subprocess.CompletedProcess, predictor: Predictor) -> None:
    assert dir_json.returncode == 1, dir_json.stderr
    rows = json.loads(dir_json.stdout)  # stdout is only the JSON document
    assert [row["path"] for row in rows] == expected_paths(clip_dir)
    for row in rows:
        if row["path"].endswith("bad.wav"):
            assert set(row) == {"path", "error"}
            assert "could not decode audio" in row["error"]
            continue
        assert set(row) == {"path", "emotion", "confidence", "music_mood", "warning", "all_probabilities"}
        probs = row["all_probabilities"]
        assert list(probs) == list(EMOTIONS)
        assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4)
        assert row["confidence"] == max(probs.values())
        assert row["music_mood"] == MUSIC_MOODS[row["emotion"]]
        assert (row["warning"] is not None) == (row["confidence"] < CONFIDENCE_THRESHOLD)
        local = predictor.predict(row["path"])
        assert row["emotion"] == local.emotion
        np.testing.assert_allclose(list(probs.values()), list(local.all_probabilities.model_dump().values()),
                                   atol=1e-5)


def test_directory_csv(clip_dir: Path, cli_env, dir_json: subprocess.CompletedProcess) -> None:
    r = run([str(EMOTION_DETECT), "--csv", str(clip_dir)], cli_env)
    assert r.returncode == 1, r.stderr
    reader = csv.DictReader(io.StringIO(r.stdout))
    assert reader.fieldnames == ["path", "emotion", "confidence", "music_mood", *EMOTIONS, "warning", "error"]
    rows = list(reader)
    by_path = {row["path"]: row for row in json.loads(dir_json.stdout)}
    assert [row["path"] for row in rows] == expected_paths(clip_dir)
    for row in rows:
        if row["path"].endswith("bad.wav"):
            assert "could not decode audio" in row["error"]
            assert row["emotion"] == "" and all(row[e] == "" for e in EMOTIONS)
            continue
        assert row["error"] == ""
        probs = [float(row[e]) for e in EMOTIONS]
        assert math.isclose(sum(probs), 1.0, abs_tol=1e-3)  # 4-decimal rounding
        same = by_path[row["path"]]  # the CSV carries the same prediction as --json
        assert row["emotion"] == same["emotion"]
        assert float(row["confidence"]) == pytest.approx(same["confidence"], abs=5e-5)
        assert (row["warning"] != "") == (same["warning"] is not None)


def test_enroll_calibrates_per_user(cli_env, predictor: Predictor, tmp_path: Path) -> None:
    """`--enroll DIR`: a profile from the user's unlabeled recordings; predictions from the speaker probe."""
    actor = sorted((RAVDESS / "Actor_01").glob("*.flac"))
    enroll = tmp_path / "me"
    enroll.mkdir()
    for path in actor[1::6][:8]:
        (enroll / path.name).symlink_to(path)
    clip = RAVDESS / CLIPS["a_angry.flac"]
    r = run([str(EMOTION_DETECT), "--json", "--enroll", str(enroll), str(clip)], cli_env)
    assert r.returncode == 0, r.stderr
    assert "speaker profile from 8 recordings" in r.stderr
    [row] = json.loads(r.stdout)
    local = predictor.predict(clip, speaker=predictor.enroll(sorted(enroll.iterdir())))
    assert row["emotion"] == local.emotion and math.isclose(row["confidence"], local.confidence, abs_tol=1e-4)
    few = run([str(EMOTION_DETECT), "--enroll", str(next(enroll.iterdir())), str(clip)], cli_env)
    assert few.returncode == 2 and "at least 5 recordings" in few.stderr


def test_json_and_csv_are_exclusive(cli_env) -> None:
    r = run([str(EMOTION_DETECT), "--json", "--csv", "x.wav"], cli_env)
    assert r.returncode == 2 and "not allowed" in r.stderr


def test_missing_file_is_reported(cli_env, tmp_path: Path) -> None:
    r = run([str(EMOTION_DETECT), "--json", str(tmp_path / "nope.wav")], cli_env)
    assert r.returncode == 1
    [row] = json.loads(r.stdout)
    assert "not found" in row["error"]


def test_empty_store_says_what_to_run(tmp_path: Path, cli_env) -> None:
    env = {**cli_env, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty.db'}"}
    r = run([str(EMOTION_DETECT), str(RAVDESS / CLIPS["a_angry.flac"])], env)
    assert r.returncode == 2
    assert "no model at models:/emotion-cnn@champion" in r.stderr and "`make " in r.stderr
    assert "Traceback" not in r.stderr


def test_inference_module(cli_env, predictor: Predictor) -> None:
    clip = RAVDESS / CLIPS["c_happy.flac"]
    r = run([sys.executable, "-m", "emotion_core.inference", str(clip)], cli_env)
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert set(body) == {"emotion", "confidence", "music_mood", "warning", "all_probabilities", "status"}
    pred = EmotionPrediction.model_validate(body)
    local = predictor.predict(clip)
    assert pred.emotion == local.emotion and pred.status == "success"
    np.testing.assert_allclose(list(pred.all_probabilities.model_dump().values()),
                               list(local.all_probabilities.model_dump().values()), atol=1e-5)


def test_inference_module_bad_file(cli_env, clip_dir: Path) -> None:
    r = run([sys.executable, "-m", "emotion_core.inference", str(clip_dir / "bad.wav")], cli_env)
    assert r.returncode == 1
    assert r.stdout == "" and "could not decode audio" in r.stderr and "Traceback" not in r.stderr
