"""What the encoder hears: a clip's level and length made alike before its features are taken, in the one
feature path (`head.clip_features.extract_features`), so training and serving hear the same thing.

* `level_dbfs`: the clip's active speech level (RMS over its voiced segments, `vad.speech_segments`) is set
  to this, the peak kept below full scale. Corpora and phones record speech at levels tens of dB apart, and
  a head trained on one studio learns its level as a cue for arousal.
* `min_seconds`: a shorter clip is centred in digital silence to this length. A single word is not a
  sentence with pauses around it: the encoder's pooled states shift with the share of silence in the clip.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from emotion_core.audio import crop_or_pad
from emotion_core.config import EncoderConfig
from emotion_core.features import SAMPLE_RATE
from emotion_core.vad import speech_segments

#: The gain never takes a sample above this (no clipping, whatever the target).
PEAK_CEILING = 0.99


def speech_level_dbfs(audio: np.ndarray) -> float | None:
    """RMS level (dBFS) over the voiced segments of a 16 kHz clip; None when it has none."""
    segments = speech_segments(audio)
    voiced = np.concatenate([audio[int(s.start * SAMPLE_RATE): int(s.end * SAMPLE_RATE)] for s in segments]) if segments else audio[:0]
    if not len(voiced):
        return None
    return float(10 * np.log10(np.mean(np.square(voiced, dtype=np.float64)) + 1e-20))


@dataclass(frozen=True)
class FrontEnd:
    level_dbfs: float | None = None  # None: as recorded
    min_seconds: float = 0.0  # 0: as long as it is

    @classmethod
    def of(cls, encoder: EncoderConfig) -> "FrontEnd":
        return cls(level_dbfs=encoder.level_dbfs, min_seconds=encoder.min_seconds)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        audio = np.asarray(audio, np.float32)
        if self.level_dbfs is not None and (level := speech_level_dbfs(audio)) is not None:
            peak = float(np.abs(audio).max())
            gain = min(10 ** ((self.level_dbfs - level) / 20), PEAK_CEILING / peak if peak > 0 else 1.0)
            audio = audio * np.float32(gain)
        if len(audio) < (length := round(self.min_seconds * SAMPLE_RATE)):
            audio = crop_or_pad(audio, length)  # zero-padded symmetrically, the clip centred
        return audio

    @property
    def key(self) -> str:
        """A name for what it does ('' when it does nothing): cached features are kept apart by it."""
        parts = ([] if self.level_dbfs is None else [f"level{self.level_dbfs:g}"]) + (
            [f"min{self.min_seconds:g}s"] if self.min_seconds > 0 else [])
        return "-".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)
