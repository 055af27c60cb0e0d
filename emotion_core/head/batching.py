"""Cached or served clips → padded batches the head reads (crops and time masks for training), and whole-clip
logits. Shared by training, evaluation and the predictor, so a served clip is batched as an evaluated one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from emotion_core.config import ModelConfig
from emotion_core.head.clip_features import ClipFeatures
from emotion_core.head.model import HybridEmotionCNN
from emotion_core.labels import NUM_EMOTIONS


@dataclass
class Batch:
    hidden: list[torch.Tensor]  # per clip [L, T_i, D] in its dtype (float16 from the cache): the model reads them as they are
    lengths: torch.Tensor  # [B]
    mel: torch.Tensor  # [B, F, Tm], the clips' pooled log-mel (F = 80 / mel_pool), zero-padded
    mel_lengths: torch.Tensor  # [B]

    def logits(self, model: HybridEmotionCNN) -> torch.Tensor:
        return model(self.hidden, self.lengths, self.mel, self.mel_lengths)


def _crop(clip: ClipFeatures, max_mel: int | None, rng: np.random.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (training) window of at most `max_mel` mel frames, with the aligned encoder frames."""
    hidden, mel = clip.hidden, clip.mel
    if max_mel is None or mel.shape[-1] <= max_mel or rng is None:
        return hidden, mel
    start = int(rng.integers(0, mel.shape[-1] - max_mel + 1))
    ratio = hidden.shape[1] / mel.shape[-1]  # encoder frames per mel frame (1/2 for Whisper)
    h0, h1 = int(round(start * ratio)), int(round((start + max_mel) * ratio))
    return hidden[:, h0:h1], mel[:, start : start + max_mel]


def _time_mask(hidden: torch.Tensor, mel: torch.Tensor, masks: int, mask_mel: int,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`masks` random spans (≤ `mask_mel` mel frames each, the aligned encoder frames too) set to the
    clip's mean. Copies: the cached tensors are shared between epochs."""
    hidden, mel = hidden.clone(), mel.clone()
    ratio = hidden.shape[1] / mel.shape[-1]
    h_mean, m_mean = hidden.float().mean(1, keepdim=True).to(hidden.dtype), mel.float().mean(-1, keepdim=True).to(mel.dtype)
    for _ in range(masks):
        width = int(rng.integers(1, mask_mel + 1))
        if width >= mel.shape[-1]:
            continue
        start = int(rng.integers(0, mel.shape[-1] - width + 1))
        h0, h1 = int(start * ratio), max(int(start * ratio) + 1, int(round((start + width) * ratio)))
        mel[:, start : start + width] = m_mean
        hidden[:, h0:h1] = h_mean
    return hidden, mel


def collate(clips: Sequence[ClipFeatures], max_mel: int | None = None, rng: np.random.Generator | None = None,
            time_masks: int = 0, mask_mel: int = 0) -> Batch:
    """Zero-pad clips of different lengths into one batch (the model masks the padding). With `rng`
    (training): random crops of ≤ `max_mel` mel frames and `time_masks` masked spans per clip."""
    if rng is not None:  # training: a speed-perturbed copy now and then (drawn only when a clip has copies)
        clips = [c if not c.variants else (c, *c.variants)[int(rng.integers(len(c.variants) + 1))] for c in clips]
    pairs = [_crop(c, max_mel, rng) for c in clips]
    if rng is not None and time_masks and mask_mel:
        pairs = [_time_mask(h, m, time_masks, mask_mel, rng) for h, m in pairs]
    lengths = torch.tensor([h.shape[1] for h, _ in pairs])
    mel_lengths = torch.tensor([m.shape[-1] for _, m in pairs])
    mel = torch.zeros(len(pairs), pairs[0][1].shape[0], int(mel_lengths.max()))
    for i, (_, m) in enumerate(pairs):
        mel[i, :, : m.shape[-1]] = m
    # The frames stay per clip: the model mixes each clip's layers straight into its padded float32 batch, so
    # a padded float16 copy of all L layers is never made.
    return Batch([h for h, _ in pairs], lengths, mel, mel_lengths)


def prepare(model_or_cfg: HybridEmotionCNN | ModelConfig, clips: Sequence[ClipFeatures]) -> list[ClipFeatures]:
    """The head's view of cached/served features (frame and log-mel pooling): done once, not per batch."""
    cfg = model_or_cfg.cfg if isinstance(model_or_cfg, HybridEmotionCNN) else model_or_cfg
    return [c.pooled(cfg.frame_pool, cfg.mel_pool) for c in clips]


@torch.inference_mode()
def predict_logits(model: HybridEmotionCNN, clips: Sequence[ClipFeatures], batch_size: int = 64) -> np.ndarray:
    """Logits [N, 8] for whole clips, batched by similar length to keep padding small."""
    model.eval()
    clips = prepare(model, clips)
    order = np.argsort([c.mel.shape[-1] for c in clips])
    out = np.zeros((len(clips), NUM_EMOTIONS), dtype=np.float32)
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        out[idx] = collate([clips[j] for j in idx]).logits(model).numpy()
    return out
