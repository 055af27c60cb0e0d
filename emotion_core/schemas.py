"""Pydantic models for every response, derived from `labels` (no label list is repeated here)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from emotion_core.labels import CONFIDENCE_THRESHOLD, EMOTIONS, MUSIC_MOODS, low_confidence_warning

# Literal types built from the constants, so OpenAPI/JSON Schema (and the TypeScript generated from
# them) enumerate exactly the 8 emotions and their moods.
Emotion = Literal[EMOTIONS]  # type: ignore[valid-type]
MusicMood = Literal[tuple(dict.fromkeys(MUSIC_MOODS.values()))]  # type: ignore[valid-type]

# Examples for the OpenAPI document (`/docs.json`), built from the constants: a confident angry clip and a
# low-confidence calm one (which carries the warning).
_SURE, _UNSURE = "angry", "calm"
EXAMPLE_PROBABILITIES = {e: (0.86 if e == _SURE else 0.02) for e in EMOTIONS}
EXAMPLE_PREDICTION = {"emotion": _SURE, "confidence": 0.86, "music_mood": MUSIC_MOODS[_SURE], "warning": None,
                      "all_probabilities": EXAMPLE_PROBABILITIES, "status": "success"}
EXAMPLE_REALTIME = {"emotion": _UNSURE, "confidence": 0.55, "music_mood": MUSIC_MOODS[_UNSURE],
                    "warning": low_confidence_warning(0.55)}


def _example(example: dict) -> ConfigDict:
    """Model config for a response: its example (OpenAPI 3.0's `example`: BentoML's schema objects take no
    `examples`), and every field required in the serialization schema (a response always carries every
    field, defaults included, so generated clients need no `?`)."""
    return ConfigDict(json_schema_extra={"example": example}, json_schema_serialization_defaults_required=True)

#: {"neutral": float, ...} as a model with one field per emotion, in seed order.
EmotionProbabilities = create_model(
    "EmotionProbabilities",
    __doc__="Probability of each emotion (calibrated; they sum to 1).",
    __config__=ConfigDict(extra="forbid"),
    **{e: (float, Field(ge=0.0, le=1.0)) for e in EMOTIONS},
)

MusicMoodMap = create_model(
    "MusicMoodMap",
    __doc__="`GET /music-moods/`: the music mood for each emotion.",
    __config__=ConfigDict(extra="forbid", **_example(dict(MUSIC_MOODS))),
    **{e: (MusicMood, Field(default=m)) for e, m in MUSIC_MOODS.items()},
)


class RealtimePrediction(BaseModel):
    """`POST /predict-realtime/` response (the seed's fields)."""

    model_config = _example(EXAMPLE_REALTIME)
    emotion: Emotion
    confidence: float = Field(ge=0.0, le=1.0, description="Calibrated probability of `emotion`.")
    music_mood: MusicMood
    warning: str | None = Field(
        None, description=f"Set when confidence < {CONFIDENCE_THRESHOLD}: the prediction may be wrong."
    )


class EmotionPrediction(RealtimePrediction):
    """`POST /predict-emotion/` response (the seed's fields plus an optional warning)."""

    model_config = _example(EXAMPLE_PREDICTION)
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

    model_config = _example({"emotions": list(EMOTIONS), "count": len(EMOTIONS)})
    emotions: list[Emotion]
    count: int


class HealthResponse(BaseModel):
    """`GET /`."""

    model_config = _example({"status": "healthy", "message": "Emotion detection API is running (up 42 s)",
                             "model_uri": "models:/emotion-cnn@champion", "model_version": "1",
                             "encoder": "whisper-base", "emotions": len(EMOTIONS)})
    status: Literal["healthy"] = "healthy"
    message: str
    model_uri: str
    model_version: str | None = None
    encoder: str
    emotions: int = len(EMOTIONS)


class ErrorResponse(BaseModel):
    """Every 4xx body."""

    model_config = _example({"status": "error", "detail": "could not decode audio from the uploaded file"})
    status: Literal["error"] = "error"
    detail: str
