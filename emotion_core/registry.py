"""MLflow model URIs → a local model directory: the one registry call serving makes.

`python -m emotion_core.registry <uri>` answers in a throwaway process, so the registry stack (mlflow,
sqlalchemy, alembic, pandas) never loads into a serving worker (`serving.predictor.resolve_model_uri`).
"""

from __future__ import annotations

import json
import sys

import mlflow
from mlflow.tracking import MlflowClient

from emotion_core.config import tracking_uri


def resolve_model(uri: str) -> tuple[str, str | None]:
    """`models:/name@alias`, `models:/name/3`, `runs:/<id>/model` → (local model directory, registry
    version or None). Raises LookupError, saying what to run, when the store has no such model."""
    mlflow.set_tracking_uri(tracking_uri())  # $MLFLOW_TRACKING_URI or the repo's sqlite store
    mlflow.set_registry_uri(tracking_uri())
    version = None
    if uri.startswith("models:/") and "@" in uri:
        name, alias = uri.removeprefix("models:/").split("@", 1)
        try:
            version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
        except Exception as exc:  # registry empty or alias missing: say what to run
            raise LookupError(
                f"no model at {uri} in the MLflow store {mlflow.get_tracking_uri()}: "
                "train and register one first (`make all`, or `make train evaluate register`; see README)"
            ) from exc
    return mlflow.artifacts.download_artifacts(uri), version


if __name__ == "__main__":
    try:
        local, version = resolve_model(sys.argv[1])
    except LookupError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps({"dir": local, "version": version}))
