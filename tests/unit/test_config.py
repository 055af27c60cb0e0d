"""Paths from the environment and experiment configs from experiments/*.yaml + overrides (no corpus needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from emotion_core import config
from emotion_core.config import DEFAULT_MODEL_URI, ExperimentConfig, fingerprint, load_config, parse_override


def test_paths_follow_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMOTION_DATA_DIR", str(tmp_path / "data"))
    assert config.data_dir() == (tmp_path / "data").resolve()
    monkeypatch.delenv("EMOTION_DATA_DIR")
    assert config.data_dir() == (config.PROJECT_ROOT.parent / "shared" / "data").resolve()

    monkeypatch.setenv("EMOTION_CACHE_DIR", str(tmp_path / "cache"))
    assert config.cache_dir() == tmp_path / "cache" and (tmp_path / "cache").is_dir()  # created on first use

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    assert config.tracking_uri() == f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    assert config.artifact_root() == (tmp_path / "store" / "artifacts").resolve().as_uri()  # beside the store
    assert config.artifact_root("http://127.0.0.1:5000") is None  # a tracking server keeps (and serves) them
    assert config.artifact_root("postgresql://db/mlflow") == (config.MLRUNS_DIR / "artifacts").resolve().as_uri()

    monkeypatch.delenv("EMOTION_MODEL_URI", raising=False)
    assert config.model_uri() == DEFAULT_MODEL_URI == "models:/emotion-cnn@champion"
    monkeypatch.setenv("EMOTION_MODEL_URI", "runs:/abc/model")
    assert config.model_uri() == "runs:/abc/model"

    monkeypatch.setenv("EMOTION_REPORTS_DIR", str(tmp_path / "reports"))
    assert config.reports_dir(load_config("smoke")) == tmp_path / "reports" / "smoke"
    assert (tmp_path / "reports" / "smoke").is_dir()


def test_smoke_inherits_default_and_overrides_apply() -> None:
    default, smoke = load_config("default"), load_config("smoke")
    assert smoke.name == "smoke" and smoke.data.actors == [1, 2, 3, 4, 11, 13] and smoke.train.epochs == 3
    assert smoke.model == default.model and smoke.encoder == default.encoder  # `base: default.yaml`
    assert load_config(config.EXPERIMENTS_DIR / "smoke.yaml") == smoke  # a path works like a name
    tweaked = load_config("smoke", ["train.epochs=1", "model.dropout=0.5", "data.actors=[1, 2]"])
    assert (tweaked.train.epochs, tweaked.model.dropout, tweaked.data.actors) == (1, 0.5, [1, 2])
    assert load_config("smoke", {"train": {"epochs": 1}}).train == tweaked.train
    assert tweaked.train.lr == smoke.train.lr  # the rest of the section stays


def test_bad_configs_are_refused() -> None:
    with pytest.raises(FileNotFoundError, match="no-such-config"):
        load_config("no-such-config")
    with pytest.raises(ValidationError):
        load_config("smoke", ["train.epoch=3"])  # a typo is an error, not a silently ignored key
    with pytest.raises(ValidationError):
        load_config("smoke", ["model.frame_pool=9"])  # out of range
    with pytest.raises(ValueError, match="section.key=value"):
        parse_override("train.epochs")
    assert parse_override("data.actors=[1, 2]") == {"data": {"actors": [1, 2]}}
    with pytest.raises(ValidationError):  # frozen: a config is a value
        ExperimentConfig().train.epochs = 3  # type: ignore[misc]


def test_fingerprint_is_the_settings_not_the_name() -> None:
    smoke = load_config("smoke")
    assert fingerprint(smoke) == fingerprint(smoke.model_copy(update={"name": "renamed"}))
    assert fingerprint(smoke) != fingerprint(load_config("smoke", ["train.seed=1"]))
    assert len(fingerprint(smoke)) == 12 and fingerprint(smoke) == fingerprint(load_config("smoke"))
