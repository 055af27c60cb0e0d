"""The REAL BentoML server (`bentoml serve emotion_core.serving.service:EmotionService`) as a subprocess, serving the
smoke champion from the session's temporary MLflow store, tested over HTTP with real RAVDESS clips."""

from __future__ import annotations

import math
import os
import re
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from bench.server import Server
from emotion_core.config import data_dir
from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS, MUSIC_MOODS
from emotion_core.serving.predictor import Predictor

RAVDESS = data_dir() / "ravdess"

EMPTY_STORE_TIMEOUT_S = 90
PREDICTION_KEYS = {"emotion", "confidence", "music_mood", "all_probabilities", "status", "warning"}


@pytest.fixture(scope="module")
def clips(ravdess_manifest) -> dict[str, Path]:
    """One clip per emotion of actor 1 (a test actor, unseen by the smoke model); strong intensity when it exists."""
    actor = ravdess_manifest[ravdess_manifest["actor"] == 1]
    chosen = {}
    for emotion in EMOTIONS:
        rows = actor[actor["emotion"] == emotion]
        strong = rows[rows["intensity"] == "strong"]
        chosen[emotion] = RAVDESS / (strong if len(strong) else rows).sort_values("path").iloc[0]["path"]
    return chosen


@pytest.fixture(scope="module")
def excerpt(clips, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2 s wav from the middle of the angry clip, at its native rate (a microphone buffer)."""
    audio, rate = sf.read(clips["angry"], dtype="float32")
    start = max(0, (len(audio) - 2 * rate) // 2)
    path = tmp_path_factory.mktemp("buffers") / "buffer.wav"
    sf.write(path, audio[start : start + 2 * rate], rate, subtype="PCM_16")
    assert math.isclose(sf.info(path).duration, 2.0, abs_tol=1e-3)
    return path


def post_file(client: httpx.Client, route: str, field: str, path: Path):
    with path.open("rb") as f:
        return client.post(route, files={field: (path.name, f, "application/octet-stream")})


def assert_error_json(response: httpx.Response) -> dict:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert body["status"] == "error" and isinstance(body["detail"], str) and body["detail"], body
    return body


# --------------------------------------------------------------------------------------------- startup


def test_empty_store_refuses_to_start(tmp_path: Path) -> None:
    """No champion registered: the server never becomes ready, and its output says what to run.
    (BentoML restarts the failing worker instead of exiting, so 'never ready' is the observable outcome.)"""
    env = dict(os.environ)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'empty.db'}"
    env["BENTOML_HOME"] = str(tmp_path / "bentoml-home")
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env.pop("EMOTION_MODEL_URI", None)
    server = Server(tmp_path, env)
    proc, log_path = server.proc, server.log_path

    def is_ready() -> bool:  # Server.ready() raises once the process has exited: that is not "ready" either
        try:
            return server.ready()
        except RuntimeError:
            return False

    try:
        deadline = time.monotonic() + EMPTY_STORE_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None:
            assert not is_ready(), f"server became ready with an empty store:\n{server.log_tail()}"
            if "train and register one first" in log_path.read_text(errors="replace"):
                time.sleep(2)  # the worker has failed; give it a moment to (not) come up
                assert not is_ready()
                break
            time.sleep(1)
        if proc.poll() is not None:
            assert proc.returncode != 0
    finally:
        server.stop()
    log = log_path.read_text(errors="replace")
    assert "LookupError: no model at models:/emotion-cnn@champion" in log, log[-6000:]
    assert env["MLFLOW_TRACKING_URI"] in log  # names the store it looked in
    assert re.search(r"train and register one first \(`make [a-z-]+`", log), log[-6000:]


# --------------------------------------------------------------------------------------------- GET routes


def test_health(client: httpx.Client, smoke_run) -> None:
    r = client.get("/")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "healthy"
    assert body["model_uri"] == "models:/emotion-cnn@champion"
    assert body["model_version"] == str(smoke_run["register"]["version"])
    assert body["encoder"] == "whisper-base"
    assert body["emotions"] == len(EMOTIONS)
    assert "running" in body["message"]


def test_emotions(client: httpx.Client) -> None:
    r = client.get("/emotions/")
    assert r.status_code == 200
    assert r.json() == {"emotions": list(EMOTIONS), "count": 8}


def test_music_moods(client: httpx.Client) -> None:
    r = client.get("/music-moods/")
    assert r.status_code == 200
    assert r.json() == dict(MUSIC_MOODS)
    assert list(r.json()) == list(EMOTIONS)


# --------------------------------------------------------------------------------------------- predictions


@pytest.mark.parametrize("emotion", EMOTIONS)
def test_predict_emotion(client: httpx.Client, predictor: Predictor, clips: dict[str, Path], emotion: str) -> None:
    r = post_file(client, "/predict-emotion/", "file", clips[emotion])
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == PREDICTION_KEYS
    assert body["status"] == "success"
    probs = body["all_probabilities"]
    assert list(probs) == list(EMOTIONS)
    assert all(0.0 <= p <= 1.0 for p in probs.values())
    assert math.isclose(sum(probs.values()), 1.0, abs_tol=1e-4)
    assert body["confidence"] == max(probs.values())
    assert body["emotion"] == max(probs, key=probs.get)
    assert body["music_mood"] == MUSIC_MOODS[body["emotion"]]
    assert (body["warning"] is not None) == (body["confidence"] < CONFIDENCE_THRESHOLD)

    local = predictor.predict(clips[emotion])  # the served prediction is the in-process one
    assert body["emotion"] == local.emotion
    np.testing.assert_allclose([probs[e] for e in EMOTIONS],
                               [getattr(local.all_probabilities, e) for e in EMOTIONS], atol=1e-4)


def test_predict_realtime(client: httpx.Client, predictor: Predictor, excerpt: Path) -> None:
    r = post_file(client, "/predict-realtime/", "audio_buffer", excerpt)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"emotion", "confidence", "music_mood", "warning"}
    assert body["emotion"] in EMOTIONS
    assert body["music_mood"] == MUSIC_MOODS[body["emotion"]]
    assert (body["warning"] is not None) == (body["confidence"] < CONFIDENCE_THRESHOLD)
    local = predictor.predict(excerpt)
    assert body["emotion"] == local.emotion
    assert math.isclose(body["confidence"], local.confidence, abs_tol=1e-4)


def test_a_named_speaker_is_learnt_then_adapted_to(client: httpx.Client, predictor: Predictor, ravdess_manifest) -> None:
    """`X-Speaker-Id`: the head answers (and the voice is learnt) until ADAPT_MIN_CLIPS recordings, then the
    speaker probe with the running profile of the earlier ones, exactly as `Predictor` does in process; the
    answer's fields stay the app's, the header says which answered."""
    from emotion_core.head.speaker import ADAPT_MIN_CLIPS, RunningProfile

    actor = ravdess_manifest[ravdess_manifest["actor"] == 11].sort_values("path")  # a test actor
    paths = [RAVDESS / p for p in actor["path"].iloc[:: len(actor) // (ADAPT_MIN_CLIPS + 2)][: ADAPT_MIN_CLIPS + 2]]
    voice, speaker = RunningProfile(), f"actor-11-{os.getpid()}-{time.time_ns()}"
    for i, path in enumerate(paths):
        with path.open("rb") as f:
            r = client.post("/predict-emotion/", files={"file": (path.name, f)}, headers={"X-Speaker-Id": speaker})
        assert r.status_code == 200, r.text
        assert set(r.json()) == PREDICTION_KEYS
        assert r.headers["x-emotion-adaptation"] == (f"adapted; clips={i}" if i >= ADAPT_MIN_CLIPS else f"learning; clips={i}")
        local = predictor.predict(path, voice=voice)
        if i < ADAPT_MIN_CLIPS:  # still the head: the same answer as without the header
            assert local == predictor.predict(path)
        probs = r.json()["all_probabilities"]
        np.testing.assert_allclose([probs[e] for e in EMOTIONS], [getattr(local.all_probabilities, e) for e in EMOTIONS],
                                   atol=1e-3)
    assert voice.n_clips == len(paths)
    plain = post_file(client, "/predict-emotion/", "file", paths[-1])  # no header: the head, deterministic
    assert plain.headers["x-emotion-adaptation"] == "off" and plain.json()["emotion"] == predictor.predict(paths[-1]).emotion
    with paths[0].open("rb") as f:
        bad = client.post("/predict-realtime/", files={"audio_buffer": (paths[0].name, f)}, headers={"X-Speaker-Id": "../x y"})
    assert "X-Speaker-Id" in assert_error_json(bad)["detail"]


# --------------------------------------------------------------------------------------------- bad input: 4xx, never 5xx


@pytest.mark.parametrize("route,field", [("/predict-emotion/", "file"), ("/predict-realtime/", "audio_buffer")])
def test_text_bytes_rejected(client: httpx.Client, route: str, field: str) -> None:
    r = client.post(route, files={field: ("notes.wav", b"this is text, not audio\n" * 20, "audio/wav")})
    assert r.status_code == 422
    assert "could not decode audio" in assert_error_json(r)["detail"]


def test_empty_file_rejected(client: httpx.Client) -> None:
    r = client.post("/predict-emotion/", files={"file": ("empty.wav", b"", "audio/wav")})
    assert r.status_code == 422
    detail = assert_error_json(r)["detail"]
    assert "empty" in detail
    assert "/tmp" not in detail and "bentoml-request" not in detail  # no server-side temp paths


def test_too_short_rejected(client: httpx.Client, tmp_path: Path) -> None:
    path = tmp_path / "blip.wav"
    sf.write(path, np.zeros(1600, dtype=np.float32), 16000)  # 0.1 s
    r = post_file(client, "/predict-emotion/", "file", path)
    assert r.status_code == 422
    assert "too short" in assert_error_json(r)["detail"]


def test_wrong_field_name_rejected(client: httpx.Client, clips: dict[str, Path]) -> None:
    for route, field in (("/predict-emotion/", "audio"), ("/predict-realtime/", "file")):
        r = post_file(client, route, field, clips["angry"])  # real (binary) audio under the wrong name
        assert 400 <= r.status_code < 500, (route, r.status_code, r.text)
        assert "multipart field" in assert_error_json(r)["detail"]


@pytest.mark.parametrize(
    "request_kwargs",
    [
        pytest.param({"files": {"file": (None, "http://127.0.0.1:9/clip.wav")}}, id="url-as-text-field"),
        pytest.param({"files": {"file": (None, "hello")}}, id="text-field"),
        pytest.param({"json": {"file": "http://127.0.0.1:9/clip.wav"}}, id="json-body"),
        pytest.param({}, id="no-body"),
        pytest.param({"content": b"--x\r\n", "headers": {"content-type": "multipart/form-data"}}, id="no-boundary"),
    ],
)
def test_malformed_requests_rejected(client: httpx.Client, request_kwargs: dict) -> None:
    assert_error_json(client.post("/predict-emotion/", **request_kwargs))


def test_extra_field_rejected(client: httpx.Client, clips: dict[str, Path]) -> None:
    with clips["calm"].open("rb") as f:
        r = client.post("/predict-emotion/", files={"file": ("a.flac", f), "extra": ("b.bin", b"\xe8\x00\xff")})
    assert r.status_code == 422
    assert "'extra'" in assert_error_json(r)["detail"]


def test_server_still_healthy_after_bad_inputs(client: httpx.Client, clips: dict[str, Path]) -> None:
    assert client.get("/readyz").status_code == 200
    assert post_file(client, "/predict-emotion/", "file", clips["happy"]).status_code == 200
