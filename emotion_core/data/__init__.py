"""Corpora → manifests (one row per clip) → speaker-independent splits.

    from emotion_core.data import load_manifest, split_actors
    df = load_manifest(cfg.data)
    train, val, test = split_actors(df, cfg.data.test_folds, cfg.data.train_split, seed=cfg.train.seed)
"""

from emotion_core.data.hf import read_hf_dataset
from emotion_core.data.load import load_manifest, manifest_csv_path, prepare, read_corpus
from emotion_core.data.manifest import (
    MANIFEST_COLUMNS,
    normalize_emotion,
    read_manifest_csv,
    summarize,
    write_manifest_csv,
)
from emotion_core.data.ravdess import EMOBOX_FOLDS, parse_ravdess_name, read_folds, read_ravdess
from emotion_core.data.splits import cap_samples, split_actors
from emotion_core.data.tess import read_tess

__all__ = [
    "EMOBOX_FOLDS",
    "MANIFEST_COLUMNS",
    "cap_samples",
    "load_manifest",
    "manifest_csv_path",
    "normalize_emotion",
    "parse_ravdess_name",
    "prepare",
    "read_corpus",
    "read_folds",
    "read_hf_dataset",
    "read_manifest_csv",
    "read_ravdess",
    "read_tess",
    "split_actors",
    "summarize",
    "write_manifest_csv",
]
