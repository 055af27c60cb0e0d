"""The real shrunk end-to-end run (experiments/smoke.yaml): prepare → embed → train → evaluate → register."""

import json
import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from emotion_core.config import CHAMPION_ALIAS, REGISTERED_MODEL_NAME
from emotion_core.labels import EMOTIONS


def test_smoke_run_registers_a_champion(smoke_run, smoke_cfg):
    assert set(smoke_run["manifest"]["actor"].unique()) == set(smoke_cfg.data.actors)
    assert smoke_run["embed"]["encoded"] + smoke_run["embed"]["cached"] == len(smoke_run["manifest"])
    assert 30_000 <= smoke_run["train"]["trainable_params"] <= 100_000
    assert len(smoke_run["train"]["history"]) == smoke_cfg.train.epochs

    client = MlflowClient(smoke_run["tracking_uri"])
    version = client.get_model_version_by_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS)
    assert version.run_id == smoke_run["train"]["run_id"]
    run = client.get_run(version.run_id)
    for key in ("test_ua", "test_wa", "test_macro_f1", "train_loss", "val_ua"):
        assert key in run.data.metrics
    assert run.data.params["train.epochs"] == str(smoke_cfg.train.epochs)
    # per-epoch metrics, not just the last value
    assert len(client.get_metric_history(version.run_id, "train_loss")) == smoke_cfg.train.epochs
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "evaluation")}
    assert {"evaluation/confusion_matrix.png", "evaluation/evaluation.json"} <= artifacts


def test_test_actors_are_held_out(smoke_run, smoke_cfg):
    run = MlflowClient(smoke_run["tracking_uri"]).get_run(smoke_run["train"]["run_id"])
    train_actors = set(run.data.params["train_actors"].split(","))
    val_actors = set(run.data.params["val_actors"].split(","))
    test_actors = set(run.data.params["test_actors"].split(","))
    assert test_actors == {"1", "11"}  # fold 1 ∩ smoke actors
    assert not (train_actors & test_actors) and not (val_actors & test_actors) and not (train_actors & val_actors)


def test_evaluation_report(smoke_run):
    result = smoke_run["evaluate"]
    reports = Path(os.environ["EMOTION_REPORTS_DIR"]) / "smoke"
    saved = json.loads((reports / "evaluation.json").read_text())
    assert saved["ua"] == result["ua"] and 0.0 <= saved["ua"] <= 1.0
    assert list(saved["per_class"]) == list(EMOTIONS)
    matrix = np.array(saved["confusion_matrix"])
    assert matrix.shape == (8, 8) and matrix.sum() == saved["n_test"] == 120
    assert (reports / "confusion_matrix.png").stat().st_size > 10_000
    assert "unweighted accuracy" in (reports / "evaluation.md").read_text()


def test_served_prediction_equals_evaluated(smoke_run, smoke_cfg, monkeypatch):
    """The predictor (serving path: decode → encoder → head) reproduces the evaluation path (cache → head),
    with the fp32 torch encoder the cache was built with (the int8 ONNX default: tests/integration/test_onnx_encoder.py)."""
    monkeypatch.setenv("EMOTION_RUNTIME", "torch")
    from emotion_core.head.batching import predict_logits
    from emotion_core.head.packaging import load_model_dir
    from emotion_core.research.cache import EmbeddingCache
    from emotion_core.research.steps import make_splits
    from emotion_core.serving.predictor import Predictor

    predictor = Predictor.from_uri()  # models:/emotion-cnn@champion in the test store
    test = make_splits(smoke_cfg).test.iloc[::15]
    model, meta = load_model_dir(Path(mlflow.artifacts.download_artifacts(smoke_run["train"]["model_uri"])))
    logits = predict_logits(model, EmbeddingCache(predictor.encoder, front_end=predictor.front_end).load(test)) / meta.temperature  # calibrated
    cached_probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for row, expected in zip(test.itertuples(), cached_probs):
        served = predictor.predict(row.path)
        got = np.array([served.all_probabilities.model_dump()[e] for e in EMOTIONS])
        np.testing.assert_allclose(got, expected, atol=2e-3)
        assert served.emotion == EMOTIONS[int(expected.argmax())]
        assert abs(sum(got) - 1) < 1e-5


def test_per_user_calibration_matches_the_cached_path(smoke_run, smoke_cfg, monkeypatch):
    """`enroll` (unlabeled clips of one unseen actor) + `predict(speaker=)`: the profile is the mean/std of the
    cached features' statistics and the answer is the registered speaker probe on them, calibrated."""
    monkeypatch.setenv("EMOTION_RUNTIME", "torch")
    from emotion_core.head.calibration import softmax
    from emotion_core.head.speaker import MIN_ENROLLMENT_CLIPS, SpeakerProfile, clip_statistics
    from emotion_core.research.cache import EmbeddingCache
    from emotion_core.research.steps import make_splits
    from emotion_core.serving.predictor import Predictor

    predictor = Predictor.from_uri()
    probe = predictor.speaker_probe
    assert probe is not None and 0.05 < probe.temperature < 20 and probe.coef.shape == (len(EMOTIONS), probe.scale_mean.size)
    test = make_splits(smoke_cfg).test
    actor = test[test["actor"] == 1]
    enroll, scored = actor.iloc[::6].iloc[:10], actor.drop(actor.index[::6]).iloc[::9]
    profile = predictor.enroll(list(enroll["path"]))
    cache = EmbeddingCache(predictor.encoder, front_end=predictor.front_end)
    expected = SpeakerProfile.from_statistics(np.stack([clip_statistics(c) for c in cache.iter(enroll)]))
    assert profile.n_clips == 10
    np.testing.assert_allclose(profile.mean, expected.mean, atol=1e-3)
    for row, clip in zip(scored.itertuples(), cache.iter(scored)):
        want = softmax(probe.logits(clip_statistics(clip), expected), probe.temperature)
        served = predictor.predict(row.path, speaker=profile)
        got = np.array([served.all_probabilities.model_dump()[e] for e in EMOTIONS])
        np.testing.assert_allclose(got, want, atol=5e-3)
        assert served.emotion == EMOTIONS[int(want.argmax())]
    with pytest.raises(ValueError, match=f"at least {MIN_ENROLLMENT_CLIPS}"):
        predictor.enroll(list(enroll["path"][: MIN_ENROLLMENT_CLIPS - 1]))


def test_predictor_keeps_the_registry_stack_out_of_the_serving_process(smoke_run):
    """`Predictor.from_uri` in a process without MLflow (the serving worker) resolves the champion in a
    child process: the same version and directory, and mlflow/sqlalchemy never load (~100 MB of RSS)."""
    import subprocess
    import sys

    code = ("import json, sys; from emotion_core.serving.predictor import Predictor; p = Predictor.from_uri(); "
            "print(json.dumps({'version': p.version, 'loaded': sorted(m for m in ('mlflow', 'sqlalchemy', 'alembic') "
            "if m in sys.modules)}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert r.returncode == 0, r.stderr[-3000:]
    answer = json.loads(r.stdout.strip().splitlines()[-1])
    assert answer == {"version": str(smoke_run["register"]["version"]), "loaded": []}


def test_pyfunc_flavour(smoke_run, angry_clip):
    import pandas as pd

    out = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}").predict(
        pd.DataFrame({"path": [str(angry_clip)]}))
    assert out.loc[0, "emotion"] in EMOTIONS
    assert out.loc[0, list(EMOTIONS)].sum() == pytest.approx(1.0, abs=1e-5)
