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
from dataclasses import replace
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emotion_core.audio import load_audio, speech_excerpt, speed_perturb
from emotion_core.config import ExperimentConfig, TrainConfig, cache_dir
from emotion_core.degrade import CONDITIONS, babble_pool, degrade
from emotion_core.encoders import SpeechEncoder, load_encoder
from emotion_core.front_end import FrontEnd
from emotion_core.head.clip_features import ClipFeatures, extract_features
from emotion_core.heap import release_freed_heap

#: (shortest, longest) seconds of a word-length copy (`train.excerpt_seconds`).
Excerpt = tuple[float, float]
#: Clips loaded between hand-backs of freed heap pages (a corpus load would keep the dropped full-rate copies' pages).
RELEASE_EVERY = 64


def encoder_cache_dir(encoder: SpeechEncoder, front_end: FrontEnd) -> Path:
    """One folder per encoder weights and front end (features behind another front end are other features)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", encoder.name).strip("_")
    return cache_dir() / "embeddings" / "-".join(filter(None, [slug, encoder.fingerprint[:12], front_end.key]))


def clip_seed(clip_id: str) -> int:
    """A stable per-clip seed (the degradation of a clip is the same in every run and on every machine)."""
    return int(hashlib.sha1(clip_id.encode()).hexdigest()[:8], 16)


def clip_key(clip_id: str, path: str) -> str:
    """Stable cache key: the clip id plus a hash of its file identity (absolute path and size)."""
    p = Path(path)
    ident = f"{p.resolve()}:{p.stat().st_size}"
    return f"{clip_id}-{hashlib.sha1(ident.encode()).hexdigest()[:10]}"


def manifest_shard(manifest: pd.DataFrame, shard: str | None) -> pd.DataFrame:
    """`shard` "i/n" → every n-th clip by sorted clip id, starting at the i-th (1-based): the same split on every
    host for the same manifest, the n shards disjoint and together the whole manifest. None → all of it."""
    if shard is None:
        return manifest
    try:
        index, count = (int(x) for x in shard.split("/"))
    except ValueError:
        raise ValueError(f"shard must look like i/n (e.g. 2/4), got {shard!r}") from None
    if not 1 <= index <= count:
        raise ValueError(f"shard {shard!r}: i must be in 1..n")
    order = manifest["clip_id"].sort_values(kind="stable").index
    return manifest.loc[order[index - 1 :: count]]


def training_copies(train: TrainConfig) -> list[dict]:
    """The cached copies of each clip a recipe trains on besides the clip, as `build`/`iter` arguments: one per
    speed factor (`train.speed_perturb`), recording condition (`train.augment`) and word length
    (`train.excerpt_seconds`)."""
    if unknown := sorted(set(train.augment) - set(CONDITIONS)):
        raise ValueError(f"train.augment {unknown}: known conditions are {sorted(CONDITIONS)}")
    return ([{"speed": s} for s in train.speed_perturb] + [{"condition": c} for c in train.augment]
            + ([{"excerpt": tuple(train.excerpt_seconds)}] if train.excerpt_seconds else []))


def copy_name(speed: float = 1.0, condition: str | None = None, excerpt: Excerpt | None = None) -> str:
    """A training copy's name ('' for the clip itself), e.g. speed0.9, babble-10db, excerpt0.5-1.2s."""
    return "-".join(([] if speed == 1.0 else [f"speed{speed:g}"]) + ([] if condition is None else [condition])
                    + ([] if excerpt is None else [f"excerpt{excerpt[0]:g}-{excerpt[1]:g}s"]))


def needs_babble(train: TrainConfig) -> bool:
    """Whether a training copy mixes in other voices (`degrade.babble_pool` must be read for it)."""
    return any(CONDITIONS[c][0] == "babble" for c in train.augment)


class EmbeddingCache:
    def __init__(self, encoder: SpeechEncoder, front_end: FrontEnd, root: Path | None = None):
        # no default front end: features behind another one than the served recipe's must be asked for by name
        self.encoder, self.front_end = encoder, front_end
        self.root = root or encoder_cache_dir(encoder, front_end)
        self.root.mkdir(parents=True, exist_ok=True)

    @classmethod
    def of(cls, cfg: ExperimentConfig) -> "EmbeddingCache":
        """The cache a config trains on: the fp32 torch encoder's features behind the config's front end."""
        return cls(load_encoder(cfg.encoder.name, runtime="torch"), FrontEnd.of(cfg.encoder))

    def path_for(self, clip_id: str, path: str, speed: float = 1.0, condition: str | None = None,
                 excerpt: Excerpt | None = None) -> Path:
        """The clip's file; a speed-perturbed copy (`speed` ≠ 1), a degraded one (`condition`, a key of
        `degrade.CONDITIONS`) or a word-length excerpt ((shortest, longest) s) sits beside it, named by it."""
        name = copy_name(speed, condition, excerpt)
        return self.root / f"{clip_key(clip_id, path)}{'-' + name if name else ''}.npz"

    def build(self, manifest: pd.DataFrame, progress: bool = True, speed: float = 1.0, condition: str | None = None,
              babble: Sequence[np.ndarray] = (), excerpt: Excerpt | None = None) -> dict[str, int]:
        """Encode every manifest clip not cached yet (at `speed`: the waveform resampled first, see
        `audio.speed_perturb`; under `condition`: degraded first, seeded by the clip, `degrade.degrade` with
        `babble` as the other voices; with `excerpt`: a stretch of its speech that long, `audio.speech_excerpt`,
        seeded by the clip), then through the front end. Returns counts {"cached", "encoded"}."""
        if getattr(self.encoder, "runtime", "torch") != "torch" and self.root == encoder_cache_dir(self.encoder, self.front_end):
            # The cache is keyed by the weights' fingerprint and every head is trained on it: it must hold the
            # fp32 torch features only (an int8 runtime's would silently mix in). Scratch roots are fine.
            raise ValueError(f"the embedding cache {self.root} holds fp32 torch features; build it with "
                             f"load_encoder({self.encoder.name!r}, runtime='torch'), not {self.encoder.runtime}")
        todo = [row for row in manifest.itertuples()
                if not self.path_for(row.clip_id, row.path, speed, condition, excerpt).exists()]
        name = copy_name(speed, condition, excerpt)
        desc = f"embed ({self.encoder.name}{', ' + name if name else ''})"
        for row in tqdm(todo, desc=desc, unit="clip", disable=not progress):
            audio = speed_perturb(load_audio(row.path), speed)
            if condition is not None:
                audio = degrade(audio, condition, seed=clip_seed(row.clip_id), babble=babble)
            if excerpt is not None:
                audio = speech_excerpt(audio, *excerpt, seed=clip_seed(row.clip_id))
            feats = extract_features(self.encoder, audio, self.front_end)
            target = self.path_for(row.clip_id, row.path, speed, condition, excerpt)
            tmp = target.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(tmp, hidden=feats.hidden.numpy().astype(np.float16), mel=feats.mel.numpy().astype(np.float16))
            os.replace(tmp, target)  # atomic: readers never see half a file
        return {"cached": len(manifest) - len(todo), "encoded": len(todo)}

    def iter(self, manifest: pd.DataFrame, progress: bool = False, speed: float = 1.0,
             condition: str | None = None, excerpt: Excerpt | None = None) -> Iterator[ClipFeatures]:
        """Cached features of each manifest row, one clip at a time (float16, as the encoder gave them)."""
        missing = [r.clip_id for r in manifest.itertuples()
                   if not self.path_for(r.clip_id, r.path, speed, condition, excerpt).exists()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} clips are not in the embedding cache {self.root} (e.g. {missing[0]}"
                f"{f' as {name}' if (name := copy_name(speed, condition, excerpt)) else ''}); run `python -m pipelines.embed` with "
                "the same config first"
            )
        for i, row in enumerate(tqdm(list(manifest.itertuples()), desc="load cache", unit="clip", disable=not progress)):
            with np.load(self.path_for(row.clip_id, row.path, speed, condition, excerpt)) as z:
                yield ClipFeatures(hidden=torch.from_numpy(z["hidden"]), mel=torch.from_numpy(z["mel"]))
            if i % RELEASE_EVERY == RELEASE_EVERY - 1:
                release_freed_heap()  # callers keep a pooled copy and drop the full-rate one: give its pages back

    def attach_variants(self, manifest: pd.DataFrame, clips: list[ClipFeatures], train: TrainConfig,
                        frame_pool: int, progress: bool = False) -> list[ClipFeatures]:
        """`clips` (the manifest's rows, pooled by `frame_pool`) with their training copies attached as
        variants: speed-perturbed (`train.speed_perturb`), degraded (`train.augment`, conditions of
        `degrade.CONDITIONS`) and word-length (`train.excerpt_seconds`), each encoded once where the cache lacks
        it (one encoder pass per copy). With `train.copy_corpora`, only the clips of those corpora get them."""
        if not (copies := training_copies(train)):
            return clips
        if train.copy_corpora is None:
            copied = np.arange(len(manifest))
        else:
            if unknown := sorted(set(train.copy_corpora) - set(manifest["corpus"])):
                raise ValueError(f"train.copy_corpora {unknown}: the training clips' corpora are "
                                 f"{sorted(set(manifest['corpus']))}")
            copied = np.flatnonzero(manifest["corpus"].isin(train.copy_corpora).to_numpy())
        part = manifest.iloc[copied]
        babble = babble_pool() if needs_babble(train) else ()
        per_copy = []
        for copy in copies:
            self.build(part, progress=progress, babble=babble, **copy)
            per_copy.append([c.pooled(frame_pool) for c in self.iter(part, **copy)])
        out = list(clips)
        for j, i in enumerate(copied):
            out[i] = replace(clips[i], variants=tuple(v[j].pooled(clips[i].frame_pool, clips[i].mel_pool) for v in per_copy))
        return out

    def load(self, manifest: pd.DataFrame, progress: bool = False, frame_pool: int = 1) -> list[ClipFeatures]:
        """Cached features for each manifest row, float16, pooled by `frame_pool` as they are read: the
        whole corpus at the head's frame rate is held without ever holding it at the encoder's (loading, then
        pooling, would peak at both at once)."""
        return [clip.pooled(frame_pool) for clip in self.iter(manifest, progress)]
