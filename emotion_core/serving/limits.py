"""Serving limits, read from the environment once per process (documented in docs/api.md, "Limits and errors").

  EMOTION_MAX_UPLOAD_MB       largest request body, in MB (default 25) → 413
  EMOTION_MAX_AUDIO_SECONDS   longest decoded audio, and longest WebSocket session, in s (default 600) → 413
  EMOTION_MAX_WINDOWS         most 4 s windows pooled for one prediction (default 48): bounds CPU per request
  EMOTION_MAX_SEGMENTS        most utterances one timeline judges (default 200); past it the closest ones merge
  EMOTION_STREAM_IDLE_SECONDS a WebSocket stream that sends nothing this long is closed (default 20)
  EMOTION_STREAM_WALL_SECONDS longest WebSocket session in wall-clock time (default: the audio limit + 60 s)
  EMOTION_WORKERS             serving worker processes, each with its own model (default 1); see `serving_workers`
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from emotion_core.encoders.onnx.runtime import usable_cores


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"{name}={raw!r} must be positive")
    return value


#: Predictions computed at once per worker: BentoML's threads for the HTTP routes, and the gate every model
#: call passes (`Predictor`), so WebSocket streams share the same two slots instead of crowding in beside them.
MODEL_THREADS = 2


def serving_workers() -> int:
    """$EMOTION_WORKERS: BentoML worker processes. Each loads its own model (its RSS again) and takes
    MODEL_THREADS requests at a time; the encoder's threads are then shared out (`worker_onnx_threads`)."""
    return max(1, int(_env_float("EMOTION_WORKERS", 1)))


def worker_onnx_threads(workers: int) -> None:
    """With several workers, each encoder session gets its share of the cores (unless $EMOTION_ONNX_THREADS
    says otherwise): N workers × all cores would oversubscribe the CPU."""
    if workers > 1 and not os.environ.get("EMOTION_ONNX_THREADS"):
        os.environ["EMOTION_ONNX_THREADS"] = str(max(1, usable_cores() // workers))


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 600.0
    max_windows: int = 48
    max_segments: int = 200
    stream_idle_seconds: float = 20.0
    stream_wall_seconds: float = 660.0

    @classmethod
    def from_env(cls) -> "Limits":
        audio = _env_float("EMOTION_MAX_AUDIO_SECONDS", 600)
        return cls(
            max_upload_bytes=int(_env_float("EMOTION_MAX_UPLOAD_MB", 25) * 1024 * 1024),
            max_audio_seconds=audio,
            max_windows=max(1, int(_env_float("EMOTION_MAX_WINDOWS", 48))),
            max_segments=max(1, int(_env_float("EMOTION_MAX_SEGMENTS", 200))),
            stream_idle_seconds=_env_float("EMOTION_STREAM_IDLE_SECONDS", 20),
            # a real-time stream of the longest audio, with a minute to spare
            stream_wall_seconds=_env_float("EMOTION_STREAM_WALL_SECONDS", audio + 60),
        )
