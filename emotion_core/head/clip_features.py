"""What the head reads for one clip: the encoder's hidden states and the log-mel, and the one feature path
shared by the embedding cache (training) and the predictor (serving)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from emotion_core.encoders.base import SpeechEncoder
from emotion_core.features import log_mel
from emotion_core.front_end import FrontEnd


def pool_frames(hidden: torch.Tensor, factor: int) -> torch.Tensor:
    """[L, T, D] → [L, ceil(T / factor), D]: every `factor` frames averaged (a last, partial group averages the
    frames it has), in the input's dtype."""
    h = torch.nn.functional.avg_pool1d(hidden.float().transpose(1, 2), factor, factor, ceil_mode=True)
    return h.transpose(1, 2).to(hidden.dtype).contiguous()


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
            changes.update(hidden=pool_frames(self.hidden, factor), frame_pool=factor)
        if mel_factor != self.mel_pool:
            if self.mel_pool != 1:
                raise ValueError(f"log-mel already pooled by {self.mel_pool}, asked for {mel_factor}")
            mel = torch.nn.functional.avg_pool2d(self.mel.float()[None], mel_factor, mel_factor, ceil_mode=True)[0]
            changes.update(mel=mel, mel_pool=mel_factor)
        return replace(self, **changes, variants=tuple(v.pooled(factor, mel_factor) for v in self.variants))


def extract_features(encoder: SpeechEncoder, audio: np.ndarray, front_end: FrontEnd) -> ClipFeatures:
    """The one feature path shared by the cache (training) and the predictor (serving): the front end, then
    the log-mel and the encoder."""
    audio = front_end(audio)
    mel = log_mel(audio)
    return ClipFeatures(hidden=encoder.encode(audio, log_mel=mel), mel=mel)
