"""A real multi-utterance recording: RAVDESS clips of actor 1 (a held-out actor) joined with 1–2 s pauses,
and where its utterances truly are."""

from __future__ import annotations

import numpy as np

from emotion_core.audio import load_audio
from emotion_core.config import data_dir
from emotion_core.features import SAMPLE_RATE
from emotion_core.vad import FRAME_SECONDS, frame_levels

CLIPS = ["03-01-05-02-01-01-01", "03-01-03-02-02-01-01", "03-01-04-02-01-02-01", "03-01-06-02-02-02-01",
         "03-01-01-01-01-01-01"]  # angry, happy, sad, fearful, neutral
PAUSES = [1.0, 1.5, 2.0, 1.2]  # seconds of extra quiet between the clips (on top of each clip's own)
TOLERANCE = 0.3  # seconds: the bar for segment boundaries


def true_span(clip: np.ndarray) -> tuple[float, float]:
    """Where the speech of one clean clip is: its frames within 30 dB of its loudest (and above -60 dBFS)."""
    levels = frame_levels(clip)
    voiced = np.flatnonzero(levels >= max(-60.0, levels.max() - 30.0))
    return voiced[0] * FRAME_SECONDS, (voiced[-1] + 1) * FRAME_SECONDS


def joined_recording(clips: list[str] = CLIPS, pauses: list[float] = PAUSES) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """(16 kHz mono audio, the true (start, end) of each utterance in s). Pauses are -70 dBFS noise, not zeros."""
    rng = np.random.default_rng(0)
    parts, truth, t = [], [], 0.0
    for i, name in enumerate(clips):
        clip = load_audio(data_dir() / "ravdess" / "Actor_01" / f"{name}.flac")
        start, end = true_span(clip)
        truth.append((t + start, t + end))
        parts.append(clip)
        t += len(clip) / SAMPLE_RATE
        if i < len(pauses):
            parts.append(rng.normal(0, 10 ** (-70 / 20), int(pauses[i] * SAMPLE_RATE)).astype(np.float32))
            t += pauses[i]
    return np.concatenate(parts).astype(np.float32), truth


def boundary_errors(found: list[tuple[float, float]], truth: list[tuple[float, float]]) -> list[float]:
    """|found - true| for every start and end, utterance by utterance (same count required)."""
    assert len(found) == len(truth), f"{len(found)} segments found, {len(truth)} true: {found} vs {truth}"
    return [abs(f - t) for fs, ts in zip(found, truth) for f, t in zip(fs, ts)]
