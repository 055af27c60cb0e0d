"""Serving limits, read from the environment once per process (documented in docs/api.md, "Limits and errors").

  EMOTION_MAX_UPLOAD_MB       largest request body, in MB (default 25) → 413
  EMOTION_MAX_AUDIO_SECONDS   longest decoded audio, and longest WebSocket session, in s (default 600) → 413
  EMOTION_MAX_WINDOWS         most 4 s windows pooled for one prediction (default 48): bounds CPU per request
"""

from __future__ import annotations

import os
from dataclasses import dataclass


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


@dataclass(frozen=True)
class Limits:
    max_upload_bytes: int = 25 * 1024 * 1024
    max_audio_seconds: float = 600.0
    max_windows: int = 48

    @classmethod
    def from_env(cls) -> "Limits":
        return cls(
            max_upload_bytes=int(_env_float("EMOTION_MAX_UPLOAD_MB", 25) * 1024 * 1024),
            max_audio_seconds=_env_float("EMOTION_MAX_AUDIO_SECONDS", 600),
            max_windows=max(1, int(_env_float("EMOTION_MAX_WINDOWS", 48))),
        )
