"""Build the clip manifest of an experiment and log it to MLflow (experiment "prepare").

    python -m pipelines.prepare [--config experiments/default.yaml] [--set data.path=/x ...] [--no-mlflow]

Writes `cache_dir()/manifests/<config name>.csv` and prints clips per emotion / per fold and the
total duration.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from emotion_core.config import (
    EXPERIMENTS_DIR,
    ExperimentConfig,
    artifact_root,
    load_config,
    parse_override,
    tracking_uri,
)
from emotion_core.data import prepare, summarize

EXPERIMENT_NAME = "prepare"


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_config(config: str | None, overrides: list[str]) -> ExperimentConfig:
    merged: dict[str, Any] = {}
    for text in overrides:
        merged = _merge(merged, parse_override(text))
    if config is None and not (EXPERIMENTS_DIR / "default.yaml").exists():
        # no experiments/default.yaml yet: the code defaults are the default experiment
        return ExperimentConfig.model_validate({"name": "default", **merged})
    return load_config(config, merged)


def _ensure_experiment(name: str) -> str:
    """Create the MLflow experiment (artifacts beside the store) if missing; returns its id.

    Local helper until a shared `emotion_core.tracking` module provides one.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        experiment_id = mlflow.create_experiment(name, artifact_location=artifact_root())
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def log_to_mlflow(cfg: ExperimentConfig, df: pd.DataFrame, csv_path: Path, summary: str) -> str:
    import mlflow

    _ensure_experiment(EXPERIMENT_NAME)
    with mlflow.start_run(run_name=cfg.name) as run:
        mlflow.log_params(
            {
                "config": cfg.name,
                "corpus": cfg.data.corpus,
                "data_path": cfg.data.path,
                "n_clips": len(df),
                "n_actors": int(df["actor"].nunique()),
                "n_speakers": int(df["speaker"].nunique()),
                "actors": cfg.data.actors,
                "max_samples": cfg.data.max_samples,
            }
        )
        mlflow.log_metric("total_hours", float(df["duration_s"].sum()) / 3600.0)
        mlflow.log_artifact(str(csv_path))
        mlflow.log_text(summary, "summary.txt")
        return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="experiment YAML (path or name in experiments/); default: default.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--no-mlflow", action="store_true", help="only write the manifest CSV")
    args = parser.parse_args(argv)

    cfg = build_config(args.config, args.overrides)
    df, csv_path = prepare(cfg)
    summary = summarize(df)
    print(summary)
    print(f"\nmanifest: {csv_path}")
    if not args.no_mlflow:
        run_id = log_to_mlflow(cfg, df, csv_path, summary)
        print(f"MLflow run {run_id} in experiment {EXPERIMENT_NAME!r} ({tracking_uri()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
