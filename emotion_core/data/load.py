"""Config → manifest: pick the corpus reader, filter actors, cap the size, write the CSV."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from emotion_core.config import DataConfig, ExperimentConfig, cache_dir, data_dir
from emotion_core.data.corpora import CORPORA
from emotion_core.data.hf import read_hf_dataset
from emotion_core.data.manifest import sort_manifest, write_manifest_csv
from emotion_core.data.ravdess import read_ravdess
from emotion_core.data.splits import cap_samples


def read_corpus(cfg: DataConfig) -> pd.DataFrame:
    """The full manifest of the corpus a DataConfig names (no filtering)."""
    if cfg.corpus == "ravdess":
        return read_ravdess(cfg.path or data_dir() / "ravdess")
    if cfg.path is None:
        raise ValueError(f"data.corpus={cfg.corpus!r} needs data.path (e.g. --set data.path=/path/to/corpus)")
    if cfg.corpus == "ravdess_original":
        return read_ravdess(cfg.path)
    if cfg.corpus == "hf":
        return read_hf_dataset(cfg.path, cfg.hf_split)
    raise ValueError(f"unknown corpus {cfg.corpus!r}")


def load_manifest(cfg: DataConfig, seed: int = 0) -> pd.DataFrame:
    """Read the corpus, keep `cfg.actors`, cap at `cfg.max_samples` (stratified by emotion, seeded)."""
    df = read_corpus(cfg)
    if cfg.actors is not None:
        wanted = sorted({int(a) for a in cfg.actors})
        present = set(int(a) for a in df["actor"].dropna())
        if absent := [a for a in wanted if a not in present]:
            if len(absent) == len(wanted):
                raise ValueError(f"none of data.actors={wanted} is in the corpus; actors present: {sorted(present)}")
            warnings.warn(f"data.actors {absent} are not in the corpus", stacklevel=2)
        df = df[df["actor"].isin(wanted).fillna(False).to_numpy(dtype=bool)]
    df = cap_samples(sort_manifest(df), cfg.max_samples, seed=seed)
    if cfg.extra_train:  # no fold → `split_actors` always puts these rows in training
        df = pd.concat([df, *(CORPORA[name].read() for name in cfg.extra_train)], ignore_index=True)
    return df


def manifest_csv_path(name: str) -> Path:
    return cache_dir() / "manifests" / f"{name}.csv"


def prepare(cfg: ExperimentConfig | DataConfig, csv_path: str | Path | None = None) -> tuple[pd.DataFrame, Path]:
    """Build the manifest of an experiment and write it to `cache_dir()/manifests/<cfg.name>.csv`."""
    if isinstance(cfg, ExperimentConfig):
        data_cfg, name = cfg.data, cfg.name
    else:
        data_cfg, name = cfg, cfg.corpus
    df = load_manifest(data_cfg)
    path = write_manifest_csv(df, csv_path or manifest_csv_path(name))
    return df, path
