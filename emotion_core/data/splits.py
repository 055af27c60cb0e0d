"""Subsampling and speaker-independent splits of a manifest."""

from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
import pandas as pd

from emotion_core.data.manifest import sort_manifest
from emotion_core.labels import EMOTIONS


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integer shares of `total` proportional to `weights` (ties → earlier index)."""
    exact = weights / weights.sum() * total
    shares = np.floor(exact).astype(int)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: total - shares.sum()]:
        shares[i] += 1
    return shares


def cap_samples(manifest: pd.DataFrame, max_samples: int | None, seed: int = 0) -> pd.DataFrame:
    """At most `max_samples` rows, stratified by emotion (proportional), spread over speakers.

    Deterministic for a given seed. Each emotion present keeps at least one clip when
    `max_samples` ≥ the number of emotions. Within an emotion clips are taken round-robin over
    speakers (random order within a speaker), so a small cap still covers many actors.
    """
    if max_samples is None or max_samples >= len(manifest):
        return sort_manifest(manifest)
    if max_samples < 1:
        raise ValueError(f"max_samples must be ≥ 1, got {max_samples}")
    present = [e for e in EMOTIONS if e in set(manifest["emotion"])]
    counts = np.array([(manifest["emotion"] == e).sum() for e in present], dtype=float)
    quotas = _largest_remainder(counts, max_samples)
    if max_samples >= len(present):  # no emotion vanishes: borrow from the largest quota
        for i in np.flatnonzero(quotas == 0):
            quotas[int(np.argmax(quotas))] -= 1
            quotas[i] += 1
    rng = np.random.default_rng(seed)
    ordered = sort_manifest(manifest)
    ordered = ordered.assign(_key=rng.random(len(ordered)))
    ordered["_rank"] = ordered.sort_values("_key", kind="stable").groupby(["emotion", "speaker"]).cumcount()
    picked = []
    for emotion, quota in zip(present, quotas):
        rows = ordered[ordered["emotion"] == emotion].sort_values(["_rank", "_key"], kind="stable")
        picked.append(rows.head(int(quota)))
    return sort_manifest(pd.concat(picked).drop(columns=["_key", "_rank"]))


def _sex_group(actor: object) -> str:
    return "unknown" if pd.isna(actor) else ("male" if int(actor) % 2 == 1 else "female")


def split_actors(
    manifest: pd.DataFrame,
    test_folds: Iterable[int],
    train_split: float = 0.8,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, val, test) with no speaker in two parts.

    test: rows whose fold is in `test_folds`. The other speakers with a fold are split by speaker:
    `train_split` of them (rounded, at least 1; at most all but one when train_split < 1 and there
    are ≥ 2) train, the rest validate (empty when train_split == 1.0). The split is seeded and
    balanced by sex (RAVDESS: odd actor = male). Rows without a fold (TESS, most HF data) always train.
    """
    if not 0.0 < train_split <= 1.0:
        raise ValueError(f"train_split must be in (0, 1], got {train_split}")
    test_folds = [int(f) for f in test_folds]
    fold = manifest["fold"]
    has_fold = fold.notna().to_numpy()
    in_test = has_fold & fold.isin(test_folds).fillna(False).to_numpy(dtype=bool)
    if test_folds and not in_test.any():
        present = sorted(int(f) for f in fold.dropna().unique())
        if present:
            raise ValueError(f"no clips in test folds {test_folds}; folds present in the manifest: {present}")
        warnings.warn("manifest has no fold information: the test set is empty", stacklevel=2)

    pool = manifest[has_fold & ~in_test]
    speakers = pool.drop_duplicates("speaker")[["speaker", "actor"]]
    groups: dict[str, list[str]] = {}
    for spk, actor in sorted(zip(speakers["speaker"], speakers["actor"]), key=lambda t: t[0]):
        groups.setdefault(_sex_group(actor), []).append(spk)
    n = sum(len(g) for g in groups.values())
    train_speakers: set[str] = set()
    if n:
        n_train = n if train_split >= 1.0 else max(1, round(train_split * n))
        if train_split < 1.0 and n >= 2:
            n_train = min(n_train, n - 1)
        names = sorted(groups)
        shares = _largest_remainder(np.array([len(groups[k]) for k in names], dtype=float), n_train)
        rng = np.random.default_rng(seed)
        for name, share in zip(names, shares):
            members = list(groups[name])
            rng.shuffle(members)
            train_speakers.update(members[: int(share)])

    in_pool = has_fold & ~in_test
    is_train = ~has_fold | (in_pool & manifest["speaker"].isin(train_speakers).to_numpy())
    is_val = in_pool & ~manifest["speaker"].isin(train_speakers).to_numpy()
    train, val, test = (sort_manifest(manifest[m]) for m in (is_train, is_val, in_test))
    parts = {"train": set(train["speaker"]), "val": set(val["speaker"]), "test": set(test["speaker"])}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if overlap := parts[a] & parts[b]:
            raise ValueError(f"speakers {sorted(overlap)} would be in both {a} and {b}")
    return train, val, test
