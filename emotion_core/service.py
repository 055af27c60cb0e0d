"""BentoML service: loads `emotion-cnn@champion` and serves the mobile app's endpoints on port 8000.

    bentoml serve emotion_core.service:EmotionService --port 8000

POST routes are BentoML APIs (multipart fields `file` / `audio_buffer`); the GET routes come from a
FastAPI app mounted at `/`. Bad audio never reaches a 500: it is answered with a 4xx `ErrorResponse`.
"""

from __future__ import annotations

import time
from pathlib import Path

import bentoml
from fastapi import FastAPI
from starlette.responses import JSONResponse

from emotion_core.audio import AudioError
from emotion_core.labels import EMOTIONS, MUSIC_MOODS
from emotion_core.predictor import Predictor
from emotion_core.schemas import (
    EmotionPrediction,
    EmotionsResponse,
    ErrorResponse,
    HealthResponse,
    MusicMoodMap,
    RealtimePrediction,
)

app = FastAPI(title="Voice emotion detection", description="Emotion from speech, with a music mood for each emotion.")


def error(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse(ErrorResponse(detail=detail).model_dump(), status_code=status_code)


@bentoml.service(name="emotion_detector", traffic={"timeout": 120}, http={"port": 8000})
@bentoml.asgi_app(app, path="/")
class EmotionService:
    def __init__(self) -> None:
        # Refuses to start (LookupError naming the command to run) when no champion is registered.
        self.predictor = Predictor.from_uri()
        self.started = time.time()

    def _predict(self, path: Path) -> EmotionPrediction | JSONResponse:
        try:
            return self.predictor.predict(path)
        except AudioError as exc:
            return error(422, str(exc))

    @bentoml.api(route="/predict-emotion/")
    def predict_emotion(self, file: Path) -> EmotionPrediction:
        """Emotion of a whole recording (multipart field `file`: wav, flac, ogg, mp3, …)."""
        return self._predict(file)

    @bentoml.api(route="/predict-realtime/")
    def predict_realtime(self, audio_buffer: Path) -> RealtimePrediction:
        """Emotion of a short microphone buffer (multipart field `audio_buffer`)."""
        result = self._predict(audio_buffer)
        if isinstance(result, JSONResponse):
            return result
        return RealtimePrediction(**result.model_dump(include=set(RealtimePrediction.model_fields)))

    @app.get("/", response_model=HealthResponse)
    def health(self) -> HealthResponse:
        info = self.predictor.info()
        return HealthResponse(
            message=f"Emotion detection API is running (up {time.time() - self.started:.0f} s)",
            model_uri=info["model_uri"], model_version=info["model_version"], encoder=info["encoder"],
        )

    @app.get("/emotions/", response_model=EmotionsResponse)
    def emotions(self) -> EmotionsResponse:
        return EmotionsResponse(emotions=list(EMOTIONS), count=len(EMOTIONS))

    @app.get("/music-moods/", response_model=MusicMoodMap)
    def music_moods(self) -> MusicMoodMap:
        return MusicMoodMap(**MUSIC_MOODS)
