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

from emotion_core.data.manifest import finalize_manifest, normalize_emotion, read_corpus_folder, sort_manifest

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
                "speaker": f"{CORPUS}_{_SPEAKER_FIXES.get(speaker, speaker)}",
                "word": "_".join(parts[1:-1]).lower(),
                "emotion": emotion,
                "duration_s": float(sf.info(str(path)).duration),
                "actor": pd.NA,
                "fold": pd.NA,
                "corpus": CORPUS,
            }
        )
    if skipped:
        warnings.warn(f"TESS scan of {root}: skipped {skipped} files with unrecognised names", stacklevel=3)
    return pd.DataFrame(rows)


def read_tess(root: str | Path) -> pd.DataFrame:
    """Manifest of TESS clips under `root` (speaker `tess_OAF` / `tess_YAF`, actor and fold <NA>)."""
    df = read_corpus_folder(root, CORPUS, "TESS", _scan, _LAYOUTS_HELP)
    return sort_manifest(finalize_manifest(df))
