"""TurEV-DB (Turkish Emotion-Voice Database): isolated Turkish words by 6 speakers in 4 emotions
(angry, calm, happy, sad). Word-length clips (median ~1 s), a second language and six more voices.

Shared layout: `manifest.csv` (path relative to the folder, speaker, word, emotion, duration_s).
Fallback: scan `SPEAKER/SPEAKER_code_word.wav|.flac`, the original repository's names, where the code is
kz (angry), sk (calm), mt (happy) or hl (sad).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import soundfile as sf

from emotion_core.data.manifest import finalize_manifest, read_corpus_folder, sort_manifest

CORPUS = "turev"
CODES = {"kz": "angry", "sk": "calm", "mt": "happy", "hl": "sad"}
_LAYOUTS_HELP = "expected `manifest.csv` (shared layout) or `SPEAKER/SPEAKER_code_word.wav|.flac` files"


def _scan(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in {".wav", ".flac"}):
        speaker, code, *word = path.stem.split("_")
        if code.lower() in CODES and word:
            rows.append({"path": str(path), "clip_id": path.stem, "speaker": f"{CORPUS}_{speaker}",
                         "word": "_".join(word).lower(), "emotion": CODES[code.lower()],
                         "duration_s": float(sf.info(str(path)).duration), "actor": pd.NA, "fold": pd.NA,
                         "corpus": CORPUS})
    return pd.DataFrame(rows)


def read_turev(root: str | Path) -> pd.DataFrame:
    """Manifest of TurEV-DB clips under `root` (speaker `turev_<id>`, actor and fold <NA>)."""
    df = read_corpus_folder(root, CORPUS, "TurEV-DB", _scan, _LAYOUTS_HELP)
    df["clip_id"] = [f"{CORPUS}-{c}" for c in df["clip_id"]]  # stems like 1157_kz_acik are not unique enough
    return sort_manifest(finalize_manifest(df))
