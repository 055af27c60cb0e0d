"""TESS (Toronto emotional speech set): 2 speakers (OAF, YAF) × 200 words × 7 emotions; no `calm`.

Shared layout: `manifest.csv` (path relative to the folder, speaker, word, emotion, duration_s).
Fallback: scan `SPEAKER_emotion/SPEAKER_word_emotion.wav|.flac` (the original download's names).
TESS has two speakers only — use it as extra training data or a cross-corpus test, never as a
speaker-independent benchmark.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import soundfile as sf

from emotion_core.data.manifest import finalize_manifest, normalize_emotion, sort_manifest

CORPUS = "tess"
_AUDIO_SUFFIXES = {".wav", ".flac"}
_SPEAKER_FIXES = {"OA": "OAF", "YA": "YAF"}  # one original file is named `OA_bite_neutral`
_LAYOUTS_HELP = (
    "expected `manifest.csv` (shared layout) or `SPEAKER_emotion/SPEAKER_word_emotion.wav|.flac` files"
)


def _scan(root: Path) -> pd.DataFrame:
    rows, skipped = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _AUDIO_SUFFIXES):
        parts = path.stem.split("_")
        emotion = normalize_emotion(parts[-1]) if len(parts) >= 3 else None
        if emotion is None:
            skipped += 1
            continue
        speaker = parts[0].upper()
        rows.append(
            {
                "path": str(path),
                "clip_id": path.stem,
                "speaker": _SPEAKER_FIXES.get(speaker, speaker),
                "word": "_".join(parts[1:-1]).lower(),
                "emotion": emotion,
                "duration_s": float(sf.info(str(path)).duration),
            }
        )
    if skipped:
        warnings.warn(f"TESS scan of {root}: skipped {skipped} files with unrecognised names", stacklevel=3)
    return pd.DataFrame(rows)


def read_tess(root: str | Path) -> pd.DataFrame:
    """Manifest of TESS clips under `root` (speaker `tess_OAF` / `tess_YAF`, actor and fold <NA>)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"TESS folder {root} does not exist; {_LAYOUTS_HELP}")
    if (root / "manifest.csv").is_file():
        df = pd.read_csv(root / "manifest.csv")
        paths = [root / p for p in df["path"]]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} clips listed in {root / 'manifest.csv'} are missing, e.g. {missing[0]}"
            )
        df["path"] = [str(p) for p in paths]
        df["clip_id"] = [p.stem for p in paths]
        df["emotion"] = [normalize_emotion(e) or e for e in df["emotion"]]
        if "duration_s" not in df.columns:
            df["duration_s"] = [sf.info(str(p)).duration for p in paths]
    else:
        df = _scan(root)
    if df.empty:
        raise FileNotFoundError(f"no TESS clips found under {root}; {_LAYOUTS_HELP}")
    df["speaker"] = [f"{CORPUS}_{s}" for s in df["speaker"]]
    df["actor"] = pd.NA
    df["fold"] = pd.NA
    df["corpus"] = CORPUS
    return sort_manifest(finalize_manifest(df))
