"""Hugging Face `datasets` → manifest: decode each clip once to a 16 kHz mono FLAC under a cache folder.

The rest of the pipeline reads audio from paths, so a `datasets` dataset is materialised as files.
Audio decoding never goes through `datasets` itself (its `Audio` feature needs `torchcodec`, which
this project does not install): an `Audio` column is cast to `decode=False` and its bytes/paths are
decoded by `emotion_core.audio.load_audio` (soundfile, PyAV fallback, soxr to 16 kHz mono).
Plain columns holding `{"array": [...], "sampling_rate": sr}` dicts, raw bytes or file paths work too.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import soundfile as sf

from emotion_core.audio import load_audio
from emotion_core.config import cache_dir
from emotion_core.data.manifest import finalize_manifest, normalize_emotion, sort_manifest
from emotion_core.data.ravdess import read_folds
from emotion_core.features import SAMPLE_RATE
from emotion_core.labels import EMOTIONS

CORPUS = "hf"
AUDIO_COLUMNS = ("audio", "speech", "wav", "waveform", "file", "path")
LABEL_COLUMNS = ("label", "labels", "emotion", "emotion_label", "emotions", "emo", "class", "category")
SPEAKER_COLUMNS = ("actor", "actor_id", "speaker", "speaker_id", "spk", "spk_id", "client_id")


# ------------------------------------------------------------------------------------- loading


def _load(name_or_dir: str | Path, split: str):
    import datasets  # optional: only the `hf` corpus needs datasets (seconds to import)

    path = Path(name_or_dir).expanduser()
    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        where = str(path.resolve())
    else:
        where = str(name_or_dir)
        try:
            ds = datasets.load_dataset(where, split=split)
        except Exception as err:  # offline without a cache, unknown name, …
            raise RuntimeError(
                f"could not load Hugging Face dataset {where!r} (split {split!r}): {err}. This project runs "
                "offline: pass a directory written with `save_to_disk`, or a dataset already in the HF cache."
            ) from err
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise KeyError(f"{where} has no split {split!r}; splits: {list(ds)}")
        ds = ds[split]
    if isinstance(ds, datasets.IterableDataset):
        raise TypeError(f"{where}: streaming datasets are not supported; load it without streaming")
    return ds, where


def _pick(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, required: bool = True):
    if wanted is not None:
        if wanted not in columns:
            raise KeyError(f"{what} column {wanted!r} not in the dataset; columns: {columns}")
        return wanted
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    if required:
        raise KeyError(f"no {what} column found (looked for {list(candidates)}); columns: {columns}")
    return None


# ------------------------------------------------------------------------------------- decoding


def decode_audio(value: Any, origin: str = "clip") -> np.ndarray:
    """16 kHz mono float32 samples from any of the shapes an audio cell takes (via `emotion_core.audio`)."""
    try:
        if isinstance(value, Mapping):
            if value.get("array") is not None:
                sr = value.get("sampling_rate") or value.get("sample_rate")
                if not sr:
                    raise ValueError("an audio dict with an array needs a sampling_rate")
                return load_audio(np.asarray(value["array"], dtype=np.float32), int(sr))
            if value.get("bytes") is not None:
                return load_audio(bytes(value["bytes"]))
            if value.get("path") and Path(value["path"]).is_file():
                return load_audio(value["path"])
            raise ValueError(f"audio cell has neither array, bytes nor a readable path: {list(value)}")
        if isinstance(value, (bytes, bytearray, memoryview, str, Path)):
            return load_audio(value)
        if hasattr(value, "get_all_samples"):  # a torchcodec AudioDecoder, should datasets hand one out
            samples = value.get_all_samples()
            return load_audio(samples.data.numpy(), int(samples.sample_rate))
        raise ValueError(f"unsupported audio value of type {type(value).__name__}")
    except ValueError as err:  # AudioError is a ValueError
        raise ValueError(f"{origin}: {err}") from err


def write_flac_16k(audio: np.ndarray, path: Path) -> float:
    """Write 16 kHz mono samples as PCM-16 FLAC atomically; returns the duration in seconds."""
    if audio.size == 0:
        raise ValueError(f"empty audio for {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.flac")
    sf.write(str(tmp), np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    tmp.replace(path)
    return len(audio) / SAMPLE_RATE


# ------------------------------------------------------------------------------------- labels


def _label_names(ds, column: str) -> list[str | None]:
    from datasets import ClassLabel  # optional dependency, as above

    feature = ds.features[column]
    values = list(ds[column])
    if isinstance(feature, ClassLabel):
        return [normalize_emotion(feature.int2str(int(v))) if v is not None and int(v) >= 0 else None for v in values]
    names: list[str | None] = []
    for v in values:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            if not 0 <= int(v) < len(EMOTIONS):
                raise ValueError(f"integer label {v} in column {column!r} is not an index into EMOTIONS {EMOTIONS}")
            names.append(EMOTIONS[int(v)])
        else:
            names.append(normalize_emotion(v))
    return names


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "dataset"


# ------------------------------------------------------------------------------------- public


def read_hf_dataset(
    name_or_dir: str | Path,
    split: str = "train",
    out_dir: str | Path | None = None,
    *,
    audio_column: str | None = None,
    label_column: str | None = None,
    speaker_column: str | None = None,
    unknown_labels: Literal["error", "drop"] = "error",
) -> pd.DataFrame:
    """Manifest of a `datasets` dataset; each clip is written once to `<out_dir>/<tag>/<split>/<clip_id>.flac`.

    `name_or_dir`: a directory written with `save_to_disk` (Dataset or DatasetDict) or a hub name
    (offline: only if already cached). `out_dir` defaults to `cache_dir()/hf_audio`. Columns are
    auto-detected unless named: audio (an `Audio` feature or `audio`/`speech`/…), label (ClassLabel,
    emotion names mapped through `normalize_emotion` — "fear" → "fearful", "ps" → "surprised" — or ints
    indexing EMOTIONS) and an optional speaker/actor column. An `actor` column whose values are all
    RAVDESS actors 1..24 gets the EmoBox folds (so a RAVDESS mirror can be evaluated like the shared
    copy); otherwise fold is <NA>. Existing FLAC files are reused (the cache key is the dataset's
    fingerprint, split and row index).
    """
    from datasets import Audio  # optional dependency, as above

    ds, where = _load(name_or_dir, split)
    columns = list(ds.column_names)
    audio_like = [c for c in columns if isinstance(ds.features[c], Audio)]
    if audio_column is None and audio_like:
        audio_col = audio_like[0]
    else:
        audio_col = _pick(columns, audio_column, AUDIO_COLUMNS, "audio")
    label_col = _pick(columns, label_column, LABEL_COLUMNS, "label")
    speaker_col = _pick(columns, speaker_column, SPEAKER_COLUMNS, "speaker", required=False)
    if isinstance(ds.features[audio_col], Audio):
        ds = ds.cast_column(audio_col, Audio(decode=False))  # bytes/path dicts; we decode ourselves

    emotions = _label_names(ds, label_col)
    unknown = sorted({str(v) for v, e in zip(list(ds[label_col]), emotions) if e is None})
    if unknown and unknown_labels == "error":
        raise ValueError(
            f"{where}: labels {unknown} have no counterpart in EMOTIONS {list(EMOTIONS)}; "
            "pass unknown_labels='drop' to skip those clips"
        )
    if unknown:
        warnings.warn(f"{where}: dropping clips labelled {unknown} (not in EMOTIONS)", stacklevel=2)

    name = Path(where).name if Path(where).is_dir() else where.replace("/", "--")
    fingerprint = str(getattr(ds, "_fingerprint", "") or "nofp")[:8]
    tag = f"{_slug(name)}-{fingerprint}"
    target = Path(out_dir or cache_dir() / "hf_audio").expanduser().resolve() / tag / _slug(split)

    speakers = list(ds[speaker_col]) if speaker_col else [None] * len(ds)
    actors: list[Any] = [pd.NA] * len(ds)
    folds: list[Any] = [pd.NA] * len(ds)
    if speaker_col and "actor" in speaker_col.lower():
        try:
            as_int = [int(s) for s in speakers]
        except (TypeError, ValueError):
            as_int = None
        if as_int is not None and all(1 <= a <= 24 for a in as_int):
            actors = as_int
            fold_of = read_folds(None)
            folds = [fold_of[a] for a in as_int]

    rows = []
    for i, emotion in enumerate(emotions):
        if emotion is None:
            continue
        clip_id = f"{tag}-{_slug(split)}-{i:06d}"
        path = target / f"{clip_id}.flac"
        if path.is_file():
            duration = float(sf.info(str(path)).duration)
        else:
            audio = decode_audio(ds[i][audio_col], origin=f"{where}[{split}][{i}]")
            duration = write_flac_16k(audio, path)
        spk = speakers[i]
        rows.append(
            {
                "path": str(path),
                "clip_id": clip_id,
                "speaker": f"{tag}_{spk}" if spk is not None else f"{tag}_unknown",
                "actor": actors[i],
                "emotion": emotion,
                "corpus": CORPUS,
                "duration_s": duration,
                "fold": folds[i],
                "source": where,
            }
        )
    if not rows:
        raise ValueError(f"{where} [{split}]: no clips with a usable label")
    return sort_manifest(finalize_manifest(pd.DataFrame(rows)))
