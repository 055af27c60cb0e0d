"""On-disk cache of the frozen encoder's outputs, so training and tuning never re-run the encoder.

One uncompressed `.npz` per clip (hidden states [L, T, D] and log-mel [80, Tm], float16) under
`<cache>/embeddings/<encoder>-<fingerprint>/`. Per-clip files make the cache incremental and
resumable (an interrupted run keeps what it finished; files are written atomically), and shared
between configs: the smoke test's clips are a subset of the full run's.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from emotion_core.audio import load_audio, speed_perturb
from emotion_core.config import cache_dir
from emotion_core.encoders import SpeechEncoder
from emotion_core.features import log_mel

if TYPE_CHECKING:  # pandas costs the serving process ~30 MB; only the cache's callers need it
    import pandas as pd


@dataclass(frozen=True)
class ClipFeatures:
    """What the head consumes for one clip."""

    hidden: torch.Tensor  # [L, T, D]
    mel: torch.Tensor  # [80, Tm]
    #: Encoder frames averaged per hidden frame (1 = as the encoder gives them); see `pooled`.
    frame_pool: int = 1
    #: Log-mel cells averaged per value, in frequency and in time (1 = 80 bins at 100 Hz); see `pooled`.
    mel_pool: int = 1
    #: Training-only alternatives of the same clip (speed-perturbed copies, `train.speed_perturb`): the
    #: training collate draws one of (clip, *variants) per clip and epoch; evaluation reads the clip itself.
    variants: tuple["ClipFeatures", ...] = ()

    def pooled(self, factor: int, mel_factor: int | None = None) -> "ClipFeatures":
        """The head's view: every `factor` encoder frames averaged (float16 kept) and, with `mel_factor`, the
        log-mel averaged over mel_factor × mel_factor cells (frequency × time, float32; a last, partial cell
        averages the frames it has). Emotion is suprasegmental: 40 ms frames lose nothing measurable and
        halve the head's work and RAM. Done once per clip, not per training batch. Idempotent for the same
        factors (the same object comes back, so per-clip memos keyed by identity keep working)."""
        mel_factor = self.mel_pool if mel_factor is None else mel_factor
        if (factor, mel_factor) == (self.frame_pool, self.mel_pool):
            return self
        changes: dict = {}
        if factor != self.frame_pool:
            if self.frame_pool != 1:
                raise ValueError(f"features already pooled by {self.frame_pool}, asked for {factor}")
            h = self.hidden.float().transpose(1, 2)  # [L, D, T]
            h = torch.nn.functional.avg_pool1d(h, factor, factor, ceil_mode=True).transpose(1, 2)
            changes.update(hidden=h.to(self.hidden.dtype).contiguous(), frame_pool=factor)
        if mel_factor != self.mel_pool:
            if self.mel_pool != 1:
                raise ValueError(f"log-mel already pooled by {self.mel_pool}, asked for {mel_factor}")
            mel = torch.nn.functional.avg_pool2d(self.mel.float()[None], mel_factor, mel_factor, ceil_mode=True)[0]
            changes.update(mel=mel, mel_pool=mel_factor)
        return replace(self, **changes, variants=tuple(v.pooled(factor, mel_factor) for v in self.variants))


def extract_features(encoder: SpeechEncoder, audio: np.ndarray) -> ClipFeatures:
    """The one feature path shared by the cache (training) and the predictor (serving)."""
    mel = log_mel(audio)
    return ClipFeatures(hidden=encoder.encode(audio, log_mel=mel), mel=mel)


def encoder_cache_dir(encoder: SpeechEncoder) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name).strip("_")
    return cache_dir() / "embeddings" / f"{slug}-{encoder.fingerprint[:12]}"


def clip_key(clip_id: str, path: str) -> str:
    """Stable cache key: the clip id plus a hash of its file identity (absolute path and size)."""
    p = Path(path)
    ident = f"{p.resolve()}:{p.stat().st_size}"
    return f"{clip_id}-{hashlib.sha1(ident.encode()).hexdigest()[:10]}"


class EmbeddingCache:
    def __init__(self, encoder: SpeechEncoder, root: Path | None = None):
        self.encoder = encoder
        self.root = root or encoder_cache_dir(encoder)
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, clip_id: str, path: str, speed: float = 1.0) -> Path:
        """The clip's file; a speed-perturbed copy (`speed` ≠ 1) sits beside it with the factor in its name."""
        return self.root / f"{clip_key(clip_id, path)}{'' if speed == 1.0 else f'-speed{speed:g}'}.npz"

    def build(self, manifest: pd.DataFrame, progress: bool = True, speed: float = 1.0) -> dict[str, int]:
        """Encode every manifest clip not cached yet (at `speed`: the waveform resampled first, see
        `audio.speed_perturb`). Returns counts {"cached", "encoded"}."""
        if getattr(self.encoder, "runtime", "torch") != "torch" and self.root == encoder_cache_dir(self.encoder):
            # The cache is keyed by the weights' fingerprint and every head is trained on it: it must hold the
            # fp32 torch features only (an int8 runtime's would silently mix in). Scratch roots are fine.
            raise ValueError(f"the embedding cache {self.root} holds fp32 torch features; build it with "
                             f"load_encoder({self.encoder.name!r}, runtime='torch'), not {self.encoder.runtime}")
        todo = [row for row in manifest.itertuples() if not self.path_for(row.clip_id, row.path, speed).exists()]
        desc = f"embed ({self.encoder.name}{'' if speed == 1.0 else f', speed {speed:g}'})"
        for row in tqdm(todo, desc=desc, unit="clip", disable=not progress):
            feats = extract_features(self.encoder, speed_perturb(load_audio(row.path), speed))
            target = self.path_for(row.clip_id, row.path, speed)
            tmp = target.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, hidden=feats.hidden.numpy().astype(np.float16), mel=feats.mel.numpy().astype(np.float16))
            os.replace(tmp, target)  # atomic: readers never see half a file
        return {"cached": len(manifest) - len(todo), "encoded": len(todo)}

    def iter(self, manifest: pd.DataFrame, progress: bool = False, speed: float = 1.0) -> Iterator[ClipFeatures]:
        """Cached features of each manifest row, one clip at a time (float16, as the encoder gave them)."""
        missing = [r.clip_id for r in manifest.itertuples() if not self.path_for(r.clip_id, r.path, speed).exists()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} clips are not in the embedding cache {self.root} (e.g. {missing[0]}"
                f"{'' if speed == 1.0 else f' at speed {speed:g}'}); run `python -m pipelines.embed` with the same config first"
            )
        for row in tqdm(list(manifest.itertuples()), desc="load cache", unit="clip", disable=not progress):
            with np.load(self.path_for(row.clip_id, row.path, speed)) as z:
                yield ClipFeatures(hidden=torch.from_numpy(z["hidden"]), mel=torch.from_numpy(z["mel"]))

    def attach_speed_variants(self, manifest: pd.DataFrame, clips: list[ClipFeatures], speeds: "Sequence[float]",
                              frame_pool: int, progress: bool = False) -> list[ClipFeatures]:
        """`clips` (the manifest's rows, pooled by `frame_pool`) with their speed-perturbed copies attached
        as training variants, encoded first where the cache lacks them (one encoder pass per speed)."""
        if not speeds:
            return clips
        per_speed = []
        for speed in speeds:
            self.build(manifest, progress=progress, speed=speed)
            per_speed.append([c.pooled(frame_pool) for c in self.iter(manifest, speed=speed)])
        return [replace(clip, variants=tuple(copies[i].pooled(clip.frame_pool, clip.mel_pool) for copies in per_speed))
                for i, clip in enumerate(clips)]

    def load(self, manifest: pd.DataFrame, progress: bool = False, frame_pool: int = 1) -> list[ClipFeatures]:
        """Cached features for each manifest row, float16, pooled by `frame_pool` as they are read: the
        whole corpus at the head's frame rate is held without ever holding it at the encoder's (RAVDESS:
        0.95 GB at 25 Hz, where loading then pooling peaked at 1.9 + 0.95 GB)."""
        return [clip.pooled(frame_pool) for clip in self.iter(manifest, progress)]
