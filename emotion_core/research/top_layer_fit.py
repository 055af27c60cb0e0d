"""Stage one of encoder adaptation (config section `adapt`): train Whisper's top layers (`TopLayers`) from the
training actors' cached lower state, through a light probe head (per-layer mean ‖ std → linear), with early
stopping on the inner validation actors. Stage two is the hybrid head, trained unchanged (`training.fit`) on
the states the adapted layers give (`adapted_in_place`). Test actors are never seen by either stage.
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from emotion_core.config import AdaptConfig, TrainConfig
from emotion_core.encoders import load_encoder
from emotion_core.encoders.top_layers import TopLayers
from emotion_core.head.clip_features import ClipFeatures, pool_frames
from emotion_core.head.model import layer_statistics
from emotion_core.heap import release_freed_heap
from emotion_core.labels import NUM_EMOTIONS
from emotion_core.research import metrics
from emotion_core.research.training import class_loss, set_seed


@dataclass
class AdaptResult:
    top: TopLayers
    best_epoch: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def source_state(clip: ClipFeatures, adapt: AdaptConfig) -> torch.Tensor:
    """The cached state the adapted layers read, at the encoder's frame rate ([T, D], float16 as cached):
    the output of the layer below them. `clip` is as the cache gives it (not pooled)."""
    if clip.frame_pool != 1:
        raise ValueError("the adapted layers read the encoder's own frame rate: pass the clip before pooling")
    layers = clip.hidden.shape[0] - 1
    if not 1 <= adapt.layers <= layers:
        raise ValueError(f"adapt.layers={adapt.layers}: the encoder has {layers} transformer layers")
    return clip.hidden[layers - adapt.layers].clone()


def _frozen_stats(clip: ClipFeatures, first: int) -> torch.Tensor:
    """The lower, frozen states' statistics (layers 1..first) the probe head reads beside the adapted ones."""
    return layer_statistics(clip.hidden[1 : first + 1].float())


def _rows(rows: Iterable[torch.Tensor], n: int) -> torch.Tensor:
    """Per-clip vectors written into one [n, ...] buffer as they come, not stacked from a list: small kept
    tensors kept between each clip's large transient ones fragment the heap, and RSS grows with every clip."""
    rows = iter(rows)
    first = next(rows)
    out = torch.empty((n, *first.shape), dtype=first.dtype)
    out[0] = first
    for i, row in enumerate(rows, 1):
        out[i] = row
    return out


def fit_top_layers(encoder_name: str, sources: Sequence[torch.Tensor], clips: Sequence[ClipFeatures],
                   labels: np.ndarray, adapt: AdaptConfig, train: TrainConfig,
                   val_sources: Sequence[torch.Tensor] = (), val_clips: Sequence[ClipFeatures] = (),
                   val_labels: np.ndarray | None = None, label_masks: np.ndarray | None = None) -> AdaptResult:
    """Train the top `adapt.layers` layers of `encoder_name` (torch weights) on `sources` (each clip's
    `source_state`) and `clips` (the same clips, any frame pooling: their lower states feed the probe head).
    Keeps the epoch with the best validation UA (all epochs without validation clips)."""
    started = time.perf_counter()
    set_seed(train.seed)
    rng = np.random.default_rng(train.seed)
    encoder = load_encoder(encoder_name, runtime="torch")
    if not hasattr(encoder, "model") or not hasattr(encoder.model, "layers"):
        raise ValueError(f"adapt.layers: only Whisper encoders can be adapted, not {encoder_name}")
    top = TopLayers(encoder.model, adapt.layers, adapt.mode, adapt.rank, adapt.alpha, adapt.targets)
    first = top.first_state
    frozen = _rows((_frozen_stats(c, first) for c in clips), len(clips))
    val_frozen = _rows((_frozen_stats(c, first) for c in val_clips), len(val_clips)) if len(val_clips) else None

    def features(source: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
        return torch.cat([lower, layer_statistics(top(source))])

    with torch.no_grad():  # standardise the probe head's input by the unadapted features of the training clips
        init = _rows((features(s, f) for s, f in zip(sources, frozen)), len(sources))
    mean, std = init.mean(0), init.std(0) + 1e-3
    release_freed_heap()  # each pass over the clips frees as much as it keeps; the holes would stay in RSS
    head = nn.Sequential(nn.Dropout(0.3), nn.Linear(init.shape[1], NUM_EMOTIONS))
    labels = np.asarray(labels)
    loss_fn = class_loss(labels, train, label_masks)
    optimizer = torch.optim.AdamW([{"params": head.parameters(), "lr": adapt.head_lr},
                                   {"params": [p for p in top.parameters() if p.requires_grad], "lr": adapt.lr}],
                                  weight_decay=train.weight_decay)

    def val_ua() -> float:
        top.eval(), head.eval()
        with torch.no_grad():
            pred = torch.stack([head((features(s, f) - mean) / std) for s, f in zip(val_sources, val_frozen)]).argmax(-1)
        return metrics.summary(np.asarray(val_labels), pred.numpy())["ua"]

    best = (-1.0, 0, copy.deepcopy(top.state_dict()))
    history: list[dict[str, float]] = []
    for epoch in range(1, adapt.epochs + 1):
        top.train(), head.train()
        loss_sum = 0.0
        order = rng.permutation(len(sources))
        for start in range(0, len(order), adapt.batch_size):
            idx = order[start : start + adapt.batch_size]
            logits = head(torch.stack([(features(sources[i], frozen[i]) - mean) / std for i in idx]))
            loss = loss_fn(logits, idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(idx)
        row = {"adapt_train_loss": loss_sum / len(order)}
        if len(val_clips):
            row["adapt_val_ua"] = val_ua()
            if row["adapt_val_ua"] > best[0]:
                best = (row["adapt_val_ua"], epoch, copy.deepcopy(top.state_dict()))
        history.append(row)
        release_freed_heap()
        if len(val_clips) and epoch - best[1] >= adapt.patience:
            break
    if len(val_clips):
        top.load_state_dict(best[2])
    return AdaptResult(top.eval(), best[1] if len(val_clips) else len(history), time.perf_counter() - started, history)


@contextlib.contextmanager
def adapted_in_place(top: TopLayers, clips: Sequence[ClipFeatures], sources: Sequence[torch.Tensor]) -> Iterator[None]:
    """Within the block, `clips`' top states are the adapted layers' output on `sources`, pooled as each clip is
    and kept float16 as cached, written into the clips' own tensors; the frozen states come back on exit.
    Only the replaced states are held twice (not a second copy of the corpus), which bounds a fold's memory.
    Per-clip memos keyed by the clip objects are stale inside the block. Training copies are not adapted."""
    if any(clip.variants for clip in clips):
        raise ValueError("adapt.layers does not combine with training copies (train.speed_perturb / augment / excerpt_seconds) yet")
    top.eval()
    first = top.first_state + 1
    frozen: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for clip, source in zip(clips, sources):
                frozen.append(clip.hidden[first:].clone())
                # cast, then pool: the order the cached states went through (`ClipFeatures.pooled` on float16)
                clip.hidden[first:] = pool_frames(top(source).to(clip.hidden.dtype), clip.frame_pool)
        release_freed_heap()
        yield
    finally:
        for clip, states in zip(clips, frozen):
            clip.hidden[first:] = states
