"""RAVDESS speech: the shared 16 kHz layout (`manifest.csv` + `folds.csv`) or the original download.

Original file names: `MM-VV-EE-II-SS-RR-AA.ext` — modality MM (01 AV, 02 video, 03 audio-only), vocal
channel VV (01 speech, 02 song), emotion EE (`RAVDESS_EMOTION_CODES`), intensity II (01 normal,
02 strong), statement SS, repetition RR, actor AA (odd = male, even = female).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from typing import Final, Mapping

import pandas as pd
import soundfile as sf

from emotion_core.data.manifest import finalize_manifest, sort_manifest
from emotion_core.labels import RAVDESS_EMOTION_CODES

CORPUS = "ravdess"

#: The six speaker-independent folds of the EmoBox benchmark (emo-box/EmoBox @ 08280f27,
#: `data/ravdess/fold_*`): fold → its 4 test actors. Used when a corpus folder has no `folds.csv`.
EMOBOX_FOLDS: Final[Mapping[int, tuple[int, ...]]] = MappingProxyType(
    {
        1: (1, 11, 20, 21),
        2: (4, 10, 12, 14),
        3: (8, 9, 19, 23),
        4: (3, 5, 7, 24),
        5: (2, 15, 16, 18),
        6: (6, 13, 17, 22),
    }
)

INTENSITIES: Final[Mapping[str, str]] = MappingProxyType({"01": "normal", "02": "strong"})
STATEMENTS: Final[Mapping[str, str]] = MappingProxyType(
    {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
)
AUDIO_SUFFIXES: Final[frozenset[str]] = frozenset({".wav", ".flac"})
_NAME_RE = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")

_LAYOUTS_HELP = (
    "expected either the shared layout (`manifest.csv` with paths relative to the folder, plus "
    "`folds.csv`) or the original RAVDESS download (`Actor_XX/03-01-EE-II-SS-RR-AA.wav` or `.flac`)"
)


def actor_sex(actor: int) -> str:
    """RAVDESS convention: odd actor numbers are male, even are female."""
    return "male" if int(actor) % 2 == 1 else "female"


def speaker_id(actor: int) -> str:
    return f"{CORPUS}_{int(actor):02d}"


def parse_ravdess_name(name: str) -> dict[str, object] | None:
    """Fields of a RAVDESS file name (stem or file name); None if it is not one.

    Returns modality, vocal_channel (codes as str), emotion, intensity, statement (text),
    repetition, actor (ints). Raises ValueError for a RAVDESS-shaped name with an invalid code.
    """
    match = _NAME_RE.match(Path(name).stem)
    if match is None:
        return None
    modality, channel, emo, inten, stmt, rep, actor = match.groups()
    try:
        return {
            "modality": modality,
            "vocal_channel": channel,
            "emotion": RAVDESS_EMOTION_CODES[emo],
            "intensity": INTENSITIES[inten],
            "statement": STATEMENTS[stmt],
            "repetition": int(rep),
            "actor": int(actor),
        }
    except KeyError as err:
        raise ValueError(f"RAVDESS file name {name!r} has an invalid code {err.args[0]!r}") from None


def read_folds(root: str | Path | None = None) -> dict[int, int]:
    """actor → fold, from `root/folds.csv` (columns fold, actor) if it exists, else EMOBOX_FOLDS."""
    path = Path(root) / "folds.csv" if root is not None else None
    if path is not None and path.is_file():
        table = pd.read_csv(path)
        if not {"fold", "actor"} <= set(table.columns):
            raise ValueError(f"{path} must have columns fold, actor; found {list(table.columns)}")
        counts = table["actor"].value_counts()
        if (counts > 1).any():
            raise ValueError(f"{path}: actors in several folds: {sorted(counts[counts > 1].index)}")
        return {int(a): int(f) for f, a in zip(table["fold"], table["actor"])}
    return {actor: fold for fold, actors in EMOBOX_FOLDS.items() for actor in actors}


def _from_shared_manifest(root: Path) -> pd.DataFrame:
    table = pd.read_csv(root / "manifest.csv")
    needed = {"path", "actor", "emotion"}
    if not needed <= set(table.columns):
        raise ValueError(f"{root / 'manifest.csv'} lacks columns {sorted(needed - set(table.columns))}")
    paths = [root / p for p in table["path"]]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} clips listed in {root / 'manifest.csv'} are missing, e.g. {missing[0]}"
        )
    out = table.copy()
    out["path"] = [str(p) for p in paths]
    out["clip_id"] = [p.stem for p in paths]
    out["actor"] = out["actor"].astype(int)
    if "duration_s" not in out.columns:
        out["duration_s"] = [sf.info(str(p)).duration for p in paths]
    if "sex" not in out.columns:
        out["sex"] = out["actor"].map(actor_sex)
    return out


def _scan_original(root: Path) -> pd.DataFrame:
    rows: list[dict[str, object]] = []
    skipped: Counter[str] = Counter()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            fields = parse_ravdess_name(path.name)
        except ValueError as err:
            skipped[f"invalid code ({err})"] += 1
            continue
        if fields is None:
            continue  # not a RAVDESS clip (README, manifest, …)
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            skipped[f"not audio ({path.suffix})"] += 1
            continue
        if fields["modality"] != "03":
            skipped[f"modality {fields['modality']} (video)"] += 1
            continue
        if fields["vocal_channel"] != "01":
            skipped["song (vocal channel 02)"] += 1
            continue
        folder = re.fullmatch(r"Actor_(\d+)", path.parent.name)
        if folder and int(folder.group(1)) != fields["actor"]:
            warnings.warn(f"{path}: actor {fields['actor']} in the name but folder {path.parent.name}", stacklevel=3)
        info = sf.info(str(path))
        rows.append(
            {
                "path": str(path),
                "clip_id": path.stem,
                "actor": fields["actor"],
                "sex": actor_sex(fields["actor"]),
                "emotion": fields["emotion"],
                "intensity": fields["intensity"],
                "statement": fields["statement"],
                "repetition": fields["repetition"],
                "duration_s": float(info.duration),
            }
        )
    if skipped:
        detail = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
        warnings.warn(f"RAVDESS scan of {root}: skipped {sum(skipped.values())} files: {detail}", stacklevel=3)
    return pd.DataFrame(rows)


def read_ravdess(root: str | Path) -> pd.DataFrame:
    """Manifest of RAVDESS speech clips under `root` (shared layout or original download)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"RAVDESS folder {root} does not exist; {_LAYOUTS_HELP}")
    if (root / "manifest.csv").is_file():
        df = _from_shared_manifest(root)
    else:
        df = _scan_original(root)
    if df.empty:
        raise FileNotFoundError(f"no RAVDESS speech clips found under {root}; {_LAYOUTS_HELP}")
    folds = read_folds(root)
    unknown = sorted(set(df["actor"]) - set(folds))
    if unknown:
        raise ValueError(f"actors {unknown} under {root} have no fold (folds.csv or EMOBOX_FOLDS)")
    df["speaker"] = df["actor"].map(speaker_id)
    df["fold"] = df["actor"].map(folds)
    df["corpus"] = CORPUS
    return sort_manifest(finalize_manifest(df))
