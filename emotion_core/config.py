"""Paths and experiment settings in one place: YAML configs from `experiments/` + environment variables.

Environment variables (all optional):
  EMOTION_DATA_DIR     corpus root holding `ravdess/` (and `tess/`); default `../shared/data` beside the repo
  EMOTION_CACHE_DIR    converted encoders and embedding caches; default the user cache dir
  MLFLOW_TRACKING_URI  MLflow store; default the sqlite store `mlruns/mlflow.db` in the repo
  EMOTION_MODEL_URI    what the predictor/service loads; default `models:/emotion-cnn@champion`
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from platformdirs import user_cache_dir
from pydantic import BaseModel, ConfigDict, Field, field_validator

PACKAGE_DIR = Path(__file__).resolve().parent
#: The checkout root when running from the repo (editable install); otherwise the working directory.
PROJECT_ROOT = PACKAGE_DIR.parent if (PACKAGE_DIR.parent / "pyproject.toml").exists() else Path.cwd()
EXPERIMENTS_DIR = PROJECT_ROOT / "experiments"
REPORTS_DIR = PROJECT_ROOT / "reports"
MLRUNS_DIR = PROJECT_ROOT / "mlruns"

#: The training crop (s): the head learns from windows of at most this long, so serving judges windows of it.
CROP_SECONDS = 4.0

REGISTERED_MODEL_NAME = "emotion-cnn"
CHAMPION_ALIAS = "champion"
DEFAULT_MODEL_URI = f"models:/{REGISTERED_MODEL_NAME}@{CHAMPION_ALIAS}"


def data_dir() -> Path:
    if env := os.environ.get("EMOTION_DATA_DIR"):
        return Path(env).expanduser().resolve()
    return (PROJECT_ROOT.parent / "shared" / "data").resolve()


def cache_dir() -> Path:
    path = Path(os.environ.get("EMOTION_CACHE_DIR") or user_cache_dir("emotion-detect"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def tracking_uri() -> str:
    if env := os.environ.get("MLFLOW_TRACKING_URI"):
        return env
    MLRUNS_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{MLRUNS_DIR / 'mlflow.db'}"


def artifact_root(uri: str | None = None) -> str | None:
    """Artifacts live beside a sqlite store (`<store dir>/artifacts`), so one folder holds a whole store. A
    tracking server keeps them where it was told (`mlflow server --artifacts-destination`): None, the
    server's choice, which every client then reaches through its HTTP API."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        return None
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "artifacts").resolve().as_uri()
    return (MLRUNS_DIR / "artifacts").resolve().as_uri()


def model_uri() -> str:
    return os.environ.get("EMOTION_MODEL_URI", DEFAULT_MODEL_URI)


def reports_dir(cfg: "ExperimentConfig") -> Path:
    """`reports/<config name>/` (override the root with $EMOTION_REPORTS_DIR, as the tests do)."""
    root = Path(os.environ.get("EMOTION_REPORTS_DIR") or REPORTS_DIR)
    path = root / cfg.name
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---------------------------------------------------------------------------------------------
# Experiment configs. Sections mirror the code: data → emotion_core.data, encoder → encoders,
# model → head.model.HybridEmotionCNN, train → research.training, adapt → encoders.top_layers and
# research.top_layer_fit. The defaults below ARE the
# README's run: experiments/default.yaml spells them out and a test keeps the two equal.
# ---------------------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Section):
    corpus: Literal["ravdess", "ravdess_original", "hf"] = "ravdess"
    #: None → `$EMOTION_DATA_DIR/ravdess`; for `ravdess_original` the folder with `Actor_XX/`;
    #: for `hf` a `datasets` name or a directory saved with `save_to_disk`.
    path: str | None = None
    hf_split: str = "train"
    #: Use only these actors (None = all); tests shrink the corpus this way.
    actors: list[int] | None = None
    #: Seed config: cap on clips (stratified by emotion), None = all.
    max_samples: int | None = None
    #: Seed config: share of the *training* actors used to fit; the rest is the inner validation set
    #: for early stopping (test actors are never seen before the final score).
    train_split: float = Field(0.8, gt=0.0, le=1.0)
    #: The held-out actor fold(s) evaluated, from folds.csv (1..6).
    test_folds: list[int] = []
    #: Extra corpora that only ever train (never validate or test), from `emotion_core.data.corpora.CORPORA`:
    #: `tess`, `turev` ($EMOTION_DATA_DIR/<name>).
    extra_train: list[Literal["tess", "turev"]] = ["tess", "turev"]


class EncoderConfig(_Section):
    #: `whisper-base` (shipped weights), a hub id such as `facebook/wav2vec2-base`, or a local HF model dir.
    name: str = "whisper-base"
    #: What it hears (`front_end.FrontEnd`): each clip's active speech level set to this (None: as recorded),
    level_dbfs: float | None = -26.0
    #: and a shorter clip centred in digital silence to this length (0: as long as it is).
    min_seconds: float = Field(4.0, ge=0, le=30)


class ModelConfig(_Section):
    conv_channels: int = 32
    kernel_size: int = 5
    mel_channels: int = 8
    #: Log-mel averaged over mel_pool × mel_pool cells (frequency × time) before the 2D branch: 2 → 40 bins
    #: at 50 Hz, the encoder's own frame rate.
    mel_pool: int = Field(2, ge=1, le=4)
    dropout: float = 0.3
    use_layer_weights: bool = True
    use_frames_branch: bool = True
    use_mel_branch: bool = True
    #: Encoder frames averaged into one head frame (2 → 25 Hz for Whisper).
    frame_pool: int = Field(2, ge=1, le=8)
    #: Linear map of standardised per-layer mean+std statistics (the probe's view, learned end-to-end).
    use_stats_branch: bool = True
    #: Encoder layers the stats branch reads (None = all); the top layers add little.
    stats_layers: list[int] | None = [1, 2, 3, 4, 5, 6]
    #: "lr": fit the stats branch as a standardised logistic regression (C = stats_c) on the training
    #: clips after the CNN branches train, the logits then add; "sgd": train it jointly with the rest.
    #: "corpus_lr": "lr" learning as the CNN branches do from several corpora: each clip's softmax over its corpus'
    #: classes (as `train.mask_loss`), the corpora weighted as `train.corpus_sampling` draws them (with one corpus
    #: it is "lr").
    stats_fit: Literal["lr", "corpus_lr", "sgd"] = "corpus_lr"
    stats_c: float = Field(0.03, gt=0)


class TrainConfig(_Section):
    seed: int = 0
    epochs: int = 25
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-2
    label_smoothing: float = 0.1
    patience: int = 10
    #: Training crop: random window of at most this many seconds (the cache holds whole clips).
    crop_seconds: float = CROP_SECONDS
    #: Augmentation that meets the cache (SpecAugment-style): per training clip, this many time spans of
    #: up to `time_mask_seconds` each are replaced by the clip's mean, in the encoder frames and the
    #: aligned log-mel alike.
    time_masks: int = Field(0, ge=0)
    time_mask_seconds: float = Field(0.4, gt=0)
    #: Speed perturbation (e.g. [0.9, 1.1]): each factor is one more encoder pass over the corpus, cached
    #: beside the clips (`EmbeddingCache.attach_speed_variants`); per epoch each training clip is drawn
    #: from itself and its copies. Validation, test and serving read the clips as recorded.
    speed_perturb: list[float] = []
    #: Word-length copies ([shortest, longest] seconds, e.g. [0.5, 1.2]; [] = none): one more cached encoder
    #: pass, of a stretch of each clip's speech that long (`audio.speech_excerpt`), drawn per epoch like the
    #: speed copies. Sentences alone teach the head that a single word sounds `fearful`.
    excerpt_seconds: list[float] = [0.5, 1.2]
    #: Recording-condition augmentation (e.g. [babble-10db, telephone]): keys of `degrade.CONDITIONS`, each one
    #: more cached encoder pass, drawn per epoch like the speed copies.
    augment: list[str] = []
    #: The corpora whose training clips get the copies above (e.g. [ravdess]: TESS and TurEV-DB are single words
    #: already); None = every training corpus.
    copy_corpora: list[str] | None = None
    #: With several corpora: each clip's loss is a softmax over the classes its corpus has (a corpus without
    #: `calm` never teaches "not calm"); False: over all eight, so a corpus' missing classes count as absent
    #: (the CNN branches, the adaptation, and `model.stats_fit="corpus_lr"`).
    mask_loss: bool = False
    #: Cross-validation only: heads per fold (each with its own validation actors and seed, logits
    #: averaged), measuring what an ensemble would add; the served model (`train`) is one head.
    ensemble: int = Field(1, ge=1)
    #: With several corpora in training: `natural` draws every clip once per epoch; `balanced` draws each
    #: corpus equally often (the small ones oversampled), the epoch keeping its size.
    corpus_sampling: Literal["natural", "balanced"] = "balanced"
    num_threads: int | None = None

    @field_validator("excerpt_seconds")
    @classmethod
    def _excerpt_range(cls, value: list[float]) -> list[float]:
        if value and not (len(value) == 2 and 0 < value[0] <= value[1]):
            raise ValueError(f"excerpt_seconds is [] or [shortest, longest] with 0 < shortest <= longest, got {value}")
        return value


class AdaptConfig(_Section):
    """Encoder adaptation on the cache (encoders/top_layers.py, research/top_layer_fit.py): the top `layers`
    encoder layers re-run from the cached output of the layer below them and trained through a light probe
    head on the training actors, before the head trains on the states they then give."""

    #: Top encoder layers adapted; 0 = the frozen encoder.
    layers: int = Field(0, ge=0)
    #: "lora": low-rank adapters on `targets` (rank, alpha), the layers' own weights frozen; "full": every weight.
    mode: Literal["lora", "full"] = "lora"
    rank: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)
    targets: list[str] = ["q_proj", "v_proj", "fc1", "fc2"]
    epochs: int = Field(8, ge=1)
    #: The adapted layers' learning rate (the probe head above them learns at `head_lr`).
    lr: float = Field(5e-4, gt=0)
    head_lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(16, ge=1)
    #: Epochs without a better inner-validation UA before stopping (the best epoch's layers are kept).
    patience: int = Field(3, ge=1)


class ExperimentConfig(_Section):
    name: str = "default"
    data: DataConfig = DataConfig()
    encoder: EncoderConfig = EncoderConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    adapt: AdaptConfig = AdaptConfig()


def stable_hash(value: Any, length: int = 12) -> str:
    """Hex digest of a JSON-able value, the same in every process and session (unlike `hash`)."""
    return hashlib.sha1(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


#: Settings added after results were stored, with the value that behaves exactly as before they existed: at
#: that value they are left out of the fingerprint, so the stored results stay valid.
FINGERPRINT_NEUTRAL: dict[tuple[str, str], Any] = {("train", "corpus_sampling"): "natural", ("train", "augment"): [],
                                                    ("train", "excerpt_seconds"): [], ("train", "copy_corpora"): None,
                                                    ("train", "mask_loss"): True,
                                                    ("encoder", "level_dbfs"): None, ("encoder", "min_seconds"): 0.0}


def fingerprint(cfg: ExperimentConfig) -> str:
    """What a result was measured with: a hash of the config's settings (not its name). Stored results
    (ablation rows, tuning studies) are reused only while it matches."""
    settings = cfg.model_dump(exclude={"name"})
    for (section, key), neutral in FINGERPRINT_NEUTRAL.items():
        if settings[section].get(key) == neutral:
            del settings[section][key]
    if settings["adapt"]["layers"] == 0:  # the frozen encoder: the adaptation settings do nothing
        del settings["adapt"]
    return stable_hash(settings)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text()) or {}
    if base := raw.pop("base", None):  # `base: default.yaml` → inherit, then override
        raw = _deep_merge(_read_yaml((path.parent / base).resolve()), raw)
    return raw


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | list[str] | None = None
) -> ExperimentConfig:
    """Load `experiments/<name>.yaml` (a name or a path), apply overrides — nested dicts or
    `section.key=value` strings — and validate."""
    if path is None:
        path = EXPERIMENTS_DIR / "default.yaml"
    path = Path(path)
    if not path.exists() and (EXPERIMENTS_DIR / f"{path.name}.yaml").exists():
        path = EXPERIMENTS_DIR / f"{path.name}.yaml"
    if not path.exists():
        raise FileNotFoundError(f"config {path} not found (looked in {EXPERIMENTS_DIR})")
    if isinstance(overrides, list):
        parsed: dict[str, Any] = {}
        for text in overrides:
            parsed = _deep_merge(parsed, parse_override(text))
        overrides = parsed
    raw = _deep_merge(_read_yaml(path), overrides or {})
    raw.setdefault("name", path.stem)
    return ExperimentConfig.model_validate(raw)


def parse_override(text: str) -> dict[str, Any]:
    """`train.epochs=5` → {"train": {"epochs": 5}} (value parsed as YAML)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like section.key=value")
    dotted, value = text.split("=", 1)
    result: dict[str, Any] = {}
    node = result
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = yaml.safe_load(value)
    return result
