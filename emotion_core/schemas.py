"""Pydantic models for every response, derived from `labels` (no label list is repeated here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS, MUSIC_MOODS

# Literal types built from the constants, so OpenAPI/JSON Schema (and the TypeScript generated from
# them) enumerate exactly the 8 emotions and their moods.
Emotion = Literal[EMOTIONS]  # type: ignore[valid-type]
MusicMood = Literal[tuple(dict.fromkeys(MUSIC_MOODS.values()))]  # type: ignore[valid-type]

#: {"neutral": float, ...} as a model with one field per emotion, in seed order.
EmotionProbabilities = create_model(
    "EmotionProbabilities",
    __config__=ConfigDict(extra="forbid"),
    **{e: (float, Field(ge=0.0, le=1.0)) for e in EMOTIONS},
)

MusicMoodMap = create_model(
    "MusicMoodMap",
    __config__=ConfigDict(extra="forbid"),
    **{e: (MusicMood, Field(default=m)) for e, m in MUSIC_MOODS.items()},
)


class RealtimePrediction(BaseModel):
    """`POST /predict-realtime/` response (the seed's fields)."""

    emotion: Emotion
    confidence: float = Field(ge=0.0, le=1.0, description="Calibrated probability of `emotion`.")
    music_mood: MusicMood
    warning: str | None = Field(
        None, description=f"Set when confidence < {CONFIDENCE_THRESHOLD}: the prediction may be wrong."
    )


class EmotionPrediction(RealtimePrediction):
    """`POST /predict-emotion/` response (the seed's fields plus an optional warning)."""

    all_probabilities: EmotionProbabilities  # type: ignore[valid-type]
    status: Literal["success"] = "success"

    @field_validator("all_probabilities")
    @classmethod
    def _sums_to_one(cls, value: BaseModel) -> BaseModel:
        total = sum(value.model_dump().values())
        if abs(total - 1.0) > 1e-3:
            raise ValueError(f"probabilities sum to {total}, not 1")
        return value


class EmotionsResponse(BaseModel):
    """`GET /emotions/`."""

    emotions: list[Emotion]
    count: int


class HealthResponse(BaseModel):
    """`GET /`."""

    status: Literal["healthy"] = "healthy"
    message: str
    model_uri: str
    model_version: str | None = None
    encoder: str
    emotions: int = len(EMOTIONS)


class ErrorResponse(BaseModel):
    """Every 4xx body."""

    status: Literal["error"] = "error"
    detail: str
