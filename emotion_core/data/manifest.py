"""The manifest: one row per audio clip, the table every pipeline stage reads.

Columns (in this order, extra corpus-specific columns such as `sex` or `intensity` follow):

=============  ==========  ==================================================================
path           str         absolute path of the audio file
clip_id        str         unique, stable id (the file stem for RAVDESS/TESS); cache key
speaker        str         corpus-prefixed speaker id (`ravdess_01`, `tess_OAF`, `hf-…_7`)
actor          Int64       RAVDESS actor 1..24; <NA> for other corpora
emotion        str         one of `emotion_core.labels.EMOTIONS`
label          int64       index of `emotion` in EMOTIONS
corpus         str         `ravdess`, `tess`, `hf`
duration_s     float64     seconds (NaN when unknown)
fold           Int64       EmoBox fold 1..6 for RAVDESS; <NA> otherwise
=============  ==========  ==================================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pandas as pd
import soundfile as sf

from emotion_core.labels import EMOTION_TO_INDEX, EMOTIONS

MANIFEST_COLUMNS: tuple[str, ...] = (
    "path",
    "clip_id",
    "speaker",
    "actor",
    "emotion",
    "label",
    "corpus",
    "duration_s",
    "fold",
)

#: Spellings other corpora use for our emotions (keys lower-case, `_`/`-`/space-insensitive). Values
#: are checked against EMOTIONS at import time, so a typo here fails loudly.
EMOTION_ALIASES: dict[str, str] = {
    "fear": "fearful",
    "afraid": "fearful",
    "scared": "fearful",
    "ps": "surprised",
    "surprise": "surprised",
    "pleasantsurprise": "surprised",
    "pleasantsurprised": "surprised",
    "disgusted": "disgust",
    "anger": "angry",
    "mad": "angry",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "neu": "neutral",
    "ang": "angry",
    "hap": "happy",
    "dis": "disgust",
    "fea": "fearful",
    "sur": "surprised",
    "calmness": "calm",
}
assert set(EMOTION_ALIASES.values()) <= set(EMOTIONS), "alias targets must be EMOTIONS"


def normalize_emotion(name: object) -> str | None:
    """Map a corpus' emotion spelling to one of EMOTIONS; None when it has no counterpart."""
    key = str(name).strip().lower()
    if key in EMOTION_TO_INDEX:
        return key
    squashed = key.replace("_", "").replace("-", "").replace(" ", "")
    if squashed in EMOTION_TO_INDEX:
        return squashed
    return EMOTION_ALIASES.get(squashed)


def finalize_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Validate a manifest, set dtypes, put the core columns first; returns a new frame."""
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns and c != "label"]
    if missing:
        raise ValueError(f"manifest lacks columns {missing}; required: {list(MANIFEST_COLUMNS)}")
    out = df.copy()
    bad = sorted(set(out["emotion"]) - set(EMOTIONS))
    if bad:
        raise ValueError(f"manifest has unknown emotions {bad}; expected one of {list(EMOTIONS)}")
    out["label"] = out["emotion"].map(EMOTION_TO_INDEX).astype("int64")
    for col in ("path", "clip_id", "speaker", "emotion", "corpus"):
        out[col] = out[col].astype(str)
    for col in ("actor", "fold"):
        out[col] = pd.to_numeric(out[col], errors="raise").astype("Int64")
    out["duration_s"] = pd.to_numeric(out["duration_s"], errors="coerce").astype("float64")
    dupes = out["clip_id"][out["clip_id"].duplicated()]
    if len(dupes):
        raise ValueError(f"manifest clip_id values must be unique; duplicated: {sorted(set(dupes))[:5]}")
    extra = [c for c in out.columns if c not in MANIFEST_COLUMNS]
    return out[list(MANIFEST_COLUMNS) + extra].reset_index(drop=True)


def read_corpus_folder(root: str | Path, corpus: str, title: str, scan, layouts: str) -> pd.DataFrame:
    """A corpus folder as a raw manifest: its `manifest.csv` when there is one, else `scan(root)` (the original
    download's names; rows with prefixed speakers, no actor, no fold); a clear error when neither finds clips."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{title} folder {root} does not exist; {layouts}")
    df = read_listed_corpus(root, corpus)
    if df is None:
        df = scan(root)
    if df.empty:
        raise FileNotFoundError(f"no {title} clips found under {root}; {layouts}")
    return df


def read_listed_corpus(root: Path, corpus: str) -> pd.DataFrame | None:
    """A corpus folder's own `manifest.csv` (path relative to `root`, speaker, emotion[, duration_s]) as a
    manifest: speakers prefixed with the corpus name, no actor, no fold. None when there is no such file."""
    listing = root / "manifest.csv"
    if not listing.is_file():
        return None
    df = pd.read_csv(listing, dtype={"speaker": str})
    paths = [root / p for p in df["path"]]
    if missing := [p for p in paths if not p.is_file()]:
        raise FileNotFoundError(f"{len(missing)} clips listed in {listing} are missing, e.g. {missing[0]}")
    df["path"] = [str(p) for p in paths]
    df["clip_id"] = [p.stem for p in paths]
    df["emotion"] = [normalize_emotion(e) or e for e in df["emotion"]]
    if "duration_s" not in df.columns:
        df["duration_s"] = [sf.info(str(p)).duration for p in paths]
    df["speaker"] = [f"{corpus}_{s}" for s in df["speaker"]]
    df["actor"] = pd.NA
    df["fold"] = pd.NA
    df["corpus"] = corpus
    return df


def sort_manifest(df: pd.DataFrame) -> pd.DataFrame:
    """Deterministic order: corpus, speaker, clip_id (stable sort)."""
    return df.sort_values(["corpus", "speaker", "clip_id"], kind="stable").reset_index(drop=True)


def write_manifest_csv(df: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)  # atomic: readers never see a half-written manifest
    return path


def read_manifest_csv(path: str | Path) -> pd.DataFrame:
    """Read a manifest CSV written by `write_manifest_csv`, restoring dtypes (nullable actor/fold)."""
    df = pd.read_csv(path, dtype={"path": str, "clip_id": str, "speaker": str, "emotion": str, "corpus": str})
    return finalize_manifest(df)


def _count_table(df: pd.DataFrame, by: str, order: Iterable) -> pd.DataFrame:
    grouped = df.groupby(by, dropna=False)
    table = pd.DataFrame({"clips": grouped.size(), "hours": grouped["duration_s"].sum() / 3600.0})
    return table.reindex([k for k in order if k in table.index] + [k for k in table.index if k not in set(order)])


def summarize(df: pd.DataFrame) -> str:
    """Plain-text summary: clips per emotion, per fold, totals."""
    lines = [
        f"clips: {len(df)}   speakers: {df['speaker'].nunique()}   "
        f"corpora: {', '.join(sorted(df['corpus'].unique()))}   "
        f"total duration: {df['duration_s'].sum() / 3600.0:.3f} h ({df['duration_s'].sum():.1f} s)",
        "",
        "per emotion:",
        _count_table(df, "emotion", EMOTIONS).to_string(float_format=lambda x: f"{x:.3f}"),
    ]
    if df["fold"].notna().any():
        folds = df.assign(fold=df["fold"].astype("float64"))
        per_fold = folds.groupby("fold", dropna=False).agg(
            clips=("clip_id", "size"), actors=("speaker", "nunique"), hours=("duration_s", "sum")
        )
        per_fold["hours"] /= 3600.0
        per_fold.index = [("NA" if pd.isna(i) else str(int(i))) for i in per_fold.index]
        per_fold.index.name = "fold"
        lines += ["", "per fold:", per_fold.to_string(float_format=lambda x: f"{x:.3f}")]
    return "\n".join(lines)
