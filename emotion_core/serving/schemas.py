"""Pydantic models for every response, derived from `labels` (no label list is repeated here)."""

from __future__ import annotations

from typing import Annotated, Literal, Union

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


#: Two utterances of a long recording (timeline / stream examples), and the timeline built from them.
EXAMPLE_SEGMENTS = [
    {"start": 0.42, "end": 2.1, "emotion": _SURE, "confidence": 0.86, "music_mood": MUSIC_MOODS[_SURE],
     "warning": None},
    {"start": 2.9, "end": 4.6, "emotion": _UNSURE, "confidence": 0.55, "music_mood": MUSIC_MOODS[_UNSURE],
     "warning": low_confidence_warning(0.55)},
]
_SPEECH = round(sum(s["end"] - s["start"] for s in EXAMPLE_SEGMENTS), 3)
EXAMPLE_TIMELINE = {
    "status": "success", "duration": 5.0, "speech_seconds": _SPEECH, "segments": EXAMPLE_SEGMENTS,
    "distribution": {e: round(sum(s["end"] - s["start"] for s in EXAMPLE_SEGMENTS if s["emotion"] == e) / _SPEECH, 4)
                     for e in EMOTIONS},
    "overall": EXAMPLE_PREDICTION,
}

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
                             "encoder": "whisper-base", "emotions": len(EMOTIONS), "model_name": "emotion-cnn",
                             "model_alias": "champion", "temperature": 1.0, "uptime_seconds": 42.0,
                             "runtime": "onnx-int8", "int8_variant": "u8s8r", "cpu": "AMD EPYC",
                             "model_verified": True})
    status: Literal["healthy"] = "healthy"
    message: str
    model_uri: str
    model_version: str | None = None
    encoder: str
    emotions: int = len(EMOTIONS)
    model_name: str | None = Field(None, description="Registered model name (`emotion-cnn`), if loaded from the registry.")
    model_alias: str | None = Field(None, description="Registry alias served (`champion`), if any.")
    temperature: float = Field(1.0, description="Calibration: logits are divided by this before the softmax.")
    uptime_seconds: float = 0.0
    runtime: str | None = Field(None, description="What computes the encoder: `onnx-int8`, `onnx-fp32` or `torch`.")
    int8_variant: str | None = Field(None, description="The int8 weight layout chosen for this CPU (`u8u8`, `u8s8`, "
                                                       "`u8s8r`), when the runtime is `onnx-int8`.")
    cpu: str | None = Field(None, description="The CPU model this server runs on.")
    model_verified: bool | None = Field(None, description="Whether the model's files matched the sha256 recorded "
                                        "when it was written (false: a model from before checksums were recorded).")


class ErrorResponse(BaseModel):
    """Every 4xx body."""

    model_config = _example({"status": "error", "detail": "could not decode audio from the uploaded file"})
    status: Literal["error"] = "error"
    detail: str


class NoSpeech(BaseModel):
    """The answer for decodable audio in which the voice-activity detector hears no speech: no emotion."""

    model_config = _example({"status": "no_speech", "detail": "no speech found in the recording", "duration": 4.2})
    status: Literal["no_speech"] = "no_speech"
    detail: str
    duration: float = Field(ge=0.0, description="Seconds of audio received.")


class TimelineSegment(BaseModel):
    """One utterance found by voice-activity detection, and its emotion."""

    model_config = _example(EXAMPLE_SEGMENTS[0])
    start: float = Field(ge=0.0, description="Seconds from the start of the recording.")
    end: float = Field(ge=0.0)
    emotion: Emotion
    confidence: float = Field(ge=0.0, le=1.0)
    music_mood: MusicMood
    warning: str | None = None


class Timeline(BaseModel):
    """`POST /predict-timeline/`: the utterances of a long recording, each with its emotion, and the whole."""

    model_config = _example(EXAMPLE_TIMELINE)
    status: Literal["success", "no_speech"]
    duration: float = Field(ge=0.0, description="Seconds of audio.")
    speech_seconds: float = Field(ge=0.0, description="Seconds inside the segments.")
    segments: list[TimelineSegment]
    distribution: EmotionProbabilities = Field(  # type: ignore[valid-type]
        description="Share of the speech time whose segment has each emotion (all 0 without speech).")
    overall: EmotionPrediction | None = Field(
        None, description="Segment probabilities averaged by duration; null without speech.")


class StreamPrediction(RealtimePrediction):
    """WebSocket `/ws/stream`: the emotion of the last `window` seconds, sent every `hop` seconds of speech."""

    model_config = _example({"type": "prediction", "start": 1.5, "end": 4.5,
                             **{k: v for k, v in EXAMPLE_PREDICTION.items() if k != "status"}})
    type: Literal["prediction"] = "prediction"
    start: float
    end: float
    all_probabilities: EmotionProbabilities  # type: ignore[valid-type]


class StreamSegment(TimelineSegment):
    """WebSocket `/ws/stream`: an utterance that has just ended (same fields as a timeline segment)."""

    model_config = _example({"type": "segment", **EXAMPLE_SEGMENTS[1]})
    type: Literal["segment"] = "segment"


class StreamReady(BaseModel):
    """WebSocket `/ws/stream`: the first message — the audio to send (raw PCM16 chunks) and the stream's limits."""

    model_config = _example({"type": "ready", "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1,
                             "window": 3.0, "hop": 0.5, "max_seconds": 600.0, "max_message_bytes": 1048576})
    type: Literal["ready"] = "ready"
    sample_rate: int = Field(description="Samples per second the binary messages must carry.")
    encoding: Literal["pcm_s16le"]
    channels: int
    window: float = Field(description="Seconds of audio each prediction judges.")
    hop: float = Field(description="Seconds of received audio between predictions.")
    max_seconds: float = Field(description="Longest stream; open a new one after it.")
    max_message_bytes: int


class StreamNoSpeech(BaseModel):
    """WebSocket `/ws/stream`: the last window holds too little speech to judge (no emotion)."""

    model_config = _example({"type": "no_speech", "start": 0.0, "end": 1.5})
    type: Literal["no_speech"] = "no_speech"
    start: float
    end: float


class StreamEnd(BaseModel):
    """WebSocket `/ws/stream`: the answer to the client's `{"type": "end"}`, after the last segment."""

    model_config = _example({"type": "end", "duration": 12.5})
    type: Literal["end"] = "end"
    duration: float = Field(description="Seconds of audio received.")


class StreamErrorMessage(BaseModel):
    """WebSocket `/ws/stream`: why the server is closing the stream."""

    model_config = _example({"type": "error", "detail": "PCM16 chunks must hold whole 2-byte samples"})
    type: Literal["error"] = "error"
    detail: str


#: Every message the server sends on `/ws/stream` (`emotion_core.serving.openapi` documents a WebSocket route
#: `<name>` with the union `<Name>Message` of this module).
StreamMessage = Annotated[
    Union[StreamReady, StreamPrediction, StreamNoSpeech, StreamSegment, StreamEnd, StreamErrorMessage],
    Field(discriminator="type"),
]
