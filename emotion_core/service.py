"""BentoML service: loads `emotion-cnn@champion` and serves the mobile app's endpoints on port 8000.

    bentoml serve emotion_core.service:EmotionService --port 8000

POST routes are BentoML APIs (multipart fields `file` / `audio_buffer`); the GET routes come from a
FastAPI app mounted at `/`. Bad input never reaches a 500: a malformed upload (wrong or extra field,
text instead of a file, not multipart) is answered by `UploadGuard` before BentoML parses it, and audio
that can't be decoded by `_predict`, both with a 4xx `ErrorResponse`.
"""

from __future__ import annotations

import time
from pathlib import Path

import bentoml
from fastapi import FastAPI
from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emotion_core.audio import AudioError
from emotion_core.labels import EMOTIONS, MUSIC_MOODS
from emotion_core.openapi import OpenAPIDocs
from emotion_core.predictor import Predictor
from emotion_core.schemas import (
    EmotionPrediction,
    EmotionsResponse,
    ErrorResponse,
    HealthResponse,
    MusicMoodMap,
    RealtimePrediction,
)
from emotion_core.web import mount_demo

app = FastAPI(
    title="Voice emotion detection", description="Emotion from speech, with a music mood for each emotion.",
    generate_unique_id_function=lambda route: route.name,  # operationId = the Python name (generated clients)
)
mount_demo(app)  # GET /demo: the web demo (emotion_core/web/)


def error(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse(ErrorResponse(detail=detail).model_dump(), status_code=status_code)


#: Each POST route and its one multipart file field.
UPLOAD_FIELDS = {"/predict-emotion/": "file", "/predict-realtime/": "audio_buffer"}


class UploadGuard:
    """ASGI middleware: checks the multipart body of the upload routes before BentoML parses it.

    BentoML json-decodes every unexpected multipart field (a binary file under the wrong name raises
    UnicodeDecodeError → 500) and treats a text value in a file field as a URL to download (→ 500, and a
    server-side fetch of whatever URL a client sends). Here the body must be multipart/form-data holding
    exactly one file in the route's field; anything else gets a 4xx `ErrorResponse`.
    """

    def __init__(self, app: ASGIApp, fields: dict[str, str] = UPLOAD_FIELDS) -> None:
        self.app, self.fields = app, fields

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        field = self.fields.get(scope.get("path", "")) if scope["type"] == "http" else None
        if field is None or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        if not Headers(scope=scope).get("content-type", "").lower().startswith("multipart/form-data"):
            response = error(415, f"send the audio as a multipart/form-data file in field {field!r}")
            return await response(scope, receive, send)
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = await self._check(scope, body, field)
        if problem:
            return await error(400, problem)(scope, receive, send)
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _check(scope: Scope, body: bytes, field: str) -> str | None:
        try:
            form = await Request(scope, _replay(body, None)).form()
        except Exception as exc:  # noqa: BLE001 - starlette's MultiPartException, a missing boundary, ...
            return f"malformed multipart body: {getattr(exc, 'detail', exc)}"
        try:
            names = list(dict.fromkeys(form.keys()))
            values = form.getlist(field)
        finally:
            await form.close()
        expected = f"expected one audio file in multipart field {field!r}"
        if names != [field]:
            got = ", ".join(repr(n) for n in names) or "no fields"
            return f"{expected}, got {got}"
        if len(values) != 1:
            return f"{expected}, got {len(values)}"
        if not isinstance(values[0], UploadFile):
            return f"{expected}, got a text value instead of a file"
        return None


def _replay(body: bytes, receive: Receive | None) -> Receive:
    """A `receive` that hands out the buffered body once, then defers to the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        if receive is None:
            return {"type": "http.disconnect"}
        return await receive()

    return replay


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
        except AudioError as exc:  # name the upload, not BentoML's temporary copy of it
            return error(422, str(exc).replace(str(path), "the uploaded file"))

    @bentoml.api(route="/predict-emotion/")
    def predict_emotion(self, file: Path) -> EmotionPrediction:
        """Emotion of a whole recording.

        Multipart field `file`: wav, flac, ogg, mp3, m4a, webm, 3gp. Answers the emotion, its calibrated
        confidence, the music mood, all 8 probabilities, and a `warning` when the confidence is low.
        """
        return self._predict(file)

    @bentoml.api(route="/predict-realtime/")
    def predict_realtime(self, audio_buffer: Path) -> RealtimePrediction:
        """Emotion of a short microphone buffer.

        Multipart field `audio_buffer`: a few seconds of audio in any format `/predict-emotion/` takes.
        Answers the emotion, confidence, music mood and `warning` (no probabilities).
        """
        result = self._predict(audio_buffer)
        if isinstance(result, JSONResponse):
            return result
        return RealtimePrediction(**result.model_dump(include=set(RealtimePrediction.model_fields)))

    @app.get("/", response_model=HealthResponse)
    def health(self) -> HealthResponse:
        """Health: is the service up, and which model and encoder it serves."""
        info = self.predictor.info()
        return HealthResponse(
            message=f"Emotion detection API is running (up {time.time() - self.started:.0f} s)",
            model_uri=info["model_uri"], encoder=info["encoder"],
            # MLflow 3 gives registry versions as ints; the response (and the app) use a string.
            model_version=None if info["model_version"] is None else str(info["model_version"]),
        )

    @app.get("/emotions/", response_model=EmotionsResponse)
    def emotions(self) -> EmotionsResponse:
        """The 8 emotion labels, in the model's (and the app's) order."""
        return EmotionsResponse(emotions=list(EMOTIONS), count=len(EMOTIONS))

    @app.get("/music-moods/", response_model=MusicMoodMap)
    def music_moods(self) -> MusicMoodMap:
        """The music mood suggested for each emotion."""
        return MusicMoodMap(**MUSIC_MOODS)


EmotionService.add_asgi_middleware(UploadGuard)
EmotionService.add_asgi_middleware(OpenAPIDocs)  # GET /docs.json: emotion_core.openapi.openapi_document()
