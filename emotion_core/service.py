"""BentoML service: loads `emotion-cnn@champion` and serves the mobile app's endpoints on port 8000.

    bentoml serve emotion_core.service:EmotionService --port 8000

POST routes are BentoML APIs (multipart fields `file` / `audio_buffer`); the GET routes come from a
FastAPI app mounted at `/`. Bad input never reaches a 500: a malformed upload (wrong or extra field,
text instead of a file, not multipart) is answered by `UploadGuard` before BentoML parses it, and audio
that can't be decoded by `_predict`, both with a 4xx `ErrorResponse`.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import bentoml
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emotion_core.audio import AudioError, AudioTooLongError, load_audio, pcm16_to_wav
from emotion_core.limits import Limits
from emotion_core.streaming import StreamError, StreamSession
from emotion_core.timeline import build_timeline
from emotion_core.labels import EMOTIONS, MUSIC_MOODS
from emotion_core.openapi import OpenAPIDocs, also_returns
from emotion_core.predictor import NoSpeechError, Predictor
from emotion_core.schemas import (
    EmotionPrediction,
    EmotionsResponse,
    ErrorResponse,
    HealthResponse,
    MusicMoodMap,
    NoSpeech,
    RealtimePrediction,
    Timeline,
)
from emotion_core.web import mount_demo

app = FastAPI(
    title="Voice emotion detection", description="Emotion from speech, with a music mood for each emotion.",
    generate_unique_id_function=lambda route: route.name,  # operationId = the Python name (generated clients)
    # One OpenAPI document, BentoML's /docs.json (emotion_core.openapi); FastAPI's own /docs would load
    # Swagger UI from a CDN.
    openapi_url=None, docs_url=None, redoc_url=None,
)
mount_demo(app)  # GET /demo: the web demo (emotion_core/web/)


def error(status_code: int, detail: str) -> JSONResponse:
    return JSONResponse(ErrorResponse(detail=detail).model_dump(), status_code=status_code)


#: Each POST route and its one multipart file field.
UPLOAD_FIELDS = {"/predict-emotion/": "file", "/predict-realtime/": "audio_buffer", "/predict-timeline/": "file"}
#: Raw PCM16 bodies (no multipart): `audio/pcm` is little-endian, `audio/L16` big-endian (RFC 2586).
PCM_TYPES = {"audio/pcm": False, "audio/l16": True}


class UploadGuard:
    """ASGI middleware: checks the body of the upload routes before BentoML parses it.

    * Size: more than EMOTION_MAX_UPLOAD_MB → 413, from Content-Length before reading a byte, else as soon
      as the streamed body passes the limit (the body is never buffered beyond it).
    * Raw PCM16 (`Content-Type: audio/pcm; rate=16000; channels=1`) is wrapped into a WAV upload.
    * Form: BentoML json-decodes every unexpected multipart field (a binary file under the wrong name raises
      UnicodeDecodeError → 500) and treats a text value in a file field as a URL to download (→ 500, and a
      server-side fetch of whatever URL a client sends). Here the body must be multipart/form-data holding
      exactly one file in the route's field: else 422 (415 for another content type).
    """

    def __init__(self, app: ASGIApp, fields: dict[str, str] = UPLOAD_FIELDS, max_bytes: int | None = None) -> None:
        self.app, self.fields = app, fields
        self.max_bytes = Limits.from_env().max_upload_bytes if max_bytes is None else max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        field = self.fields.get(scope.get("path", "")) if scope["type"] == "http" else None
        if field is None or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        too_big = f"upload larger than the {self.max_bytes / 2**20:g} MB limit (EMOTION_MAX_UPLOAD_MB)"
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            return await error(413, too_big)(scope, receive, send)
        kind, _, params = headers.get("content-type", "").partition(";")
        kind = kind.strip().lower()
        if kind not in PCM_TYPES and kind != "multipart/form-data" and (kind or length not in ("", "0")):
            response = error(415, f"send the audio as a multipart/form-data file in field {field!r} "
                                  "(or raw PCM16 as audio/pcm; rate=16000)")
            return await response(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await error(413, too_big)(scope, receive, send)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if kind in PCM_TYPES:
            try:
                body, scope = _pcm_as_upload(body, params, PCM_TYPES[kind], field, scope)
            except (AudioError, ValueError) as exc:
                return await error(422, f"raw PCM16 body: {exc}")(scope, receive, send)
        problem = await self._check(scope, body, field)
        if problem:
            return await error(422, problem)(scope, receive, send)
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _check(scope: Scope, body: bytes, field: str) -> str | None:
        expected = f"expected one audio file in multipart field {field!r}"
        if not body:
            return f"{expected}, got an empty body"
        try:
            form = await Request(scope, _replay(body, None)).form()
        except Exception as exc:  # noqa: BLE001 - starlette's MultiPartException, a missing boundary, ...
            return f"malformed multipart body: {getattr(exc, 'detail', exc)}"
        try:
            names = list(dict.fromkeys(form.keys()))
            values = form.getlist(field)
        finally:
            await form.close()
        if names != [field]:
            got = ", ".join(repr(n) for n in names) or "no fields"
            return f"{expected}, got {got}"
        if len(values) != 1:
            return f"{expected}, got {len(values)}"
        if not isinstance(values[0], UploadFile):
            return f"{expected}, got a text value instead of a file"
        return None


def _pcm_as_upload(body: bytes, params: str, big_endian: bool, field: str, scope: Scope) -> tuple[bytes, Scope]:
    """Raw PCM16 → a multipart body holding it as a WAV file (lossless), and the scope's matching headers."""
    options = dict(p.strip().lower().partition("=")[::2] for p in params.split(";") if "=" in p)
    wav = pcm16_to_wav(body, int(options.get("rate", 16000)), int(options.get("channels", 1)), big_endian)
    boundary = uuid.uuid4().hex
    multipart = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="buffer.wav"\r\n'
                 f"Content-Type: audio/wav\r\n\r\n").encode() + wav + f"\r\n--{boundary}--\r\n".encode()
    headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
    headers += [(b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
                (b"content-length", str(len(multipart)).encode())]
    return multipart, {**scope, "headers": headers}


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


# threads=2: two predictions in flight per worker (the model code is thread-safe: pipelines/loadtest.py
# checks every answer under load). Measured with 8 clients on 2 cores: 10.6 req/s vs 8.0 with BentoML's
# default of 1 — the same gain as adaptive batching (10.8), which would also make the API list-in/list-out.
@bentoml.service(name="emotion_detector", traffic={"timeout": 120}, http={"port": 8000}, threads=2)
@bentoml.asgi_app(app, path="/")
class EmotionService:
    def __init__(self) -> None:
        # Refuses to start (LookupError naming the command to run) when no champion is registered.
        self.predictor = Predictor.from_uri()
        self.started = time.time()

    def _predict(self, path: Path, predict=None):
        """`predict(path)` (default: a whole-recording prediction), its AudioErrors as 4xx JSON."""
        try:
            return (predict or self.predictor.predict)(path)
        except NoSpeechError as exc:  # a valid answer (200), not an error: there is no emotion to report
            # (a JSONResponse: BentoML 1.4 can't build its OpenAPI spec for a Union return type)
            return JSONResponse(NoSpeech(detail=str(exc), duration=round(exc.duration, 3)).model_dump())
        except AudioTooLongError as exc:
            return error(413, f"{exc} (EMOTION_MAX_AUDIO_SECONDS)")
        except AudioError as exc:  # name the upload, not BentoML's temporary copy of it
            return error(422, str(exc).replace(str(path), "the uploaded file"))

    @bentoml.api(route="/predict-emotion/")
    @also_returns(NoSpeech)
    def predict_emotion(self, file: Path) -> EmotionPrediction:
        """Emotion of a whole recording.

        Multipart field `file`: wav, flac, ogg, mp3, m4a, webm, 3gp. Answers the emotion, its calibrated
        confidence, the music mood, all 8 probabilities, and a `warning` when the confidence is low.
        Recordings longer than 6 s are pooled over their voiced 4 s windows; without speech the answer is
        `{"status": "no_speech", ...}`.
        """
        return self._predict(file)

    @bentoml.api(route="/predict-timeline/")
    def predict_timeline(self, file: Path) -> Timeline:
        """Utterances of a long recording (up to EMOTION_MAX_AUDIO_SECONDS, 10 min by default).

        Multipart field `file`. Answers each voice-activity segment's start and end (s), emotion, confidence
        and music mood, the share of speech time per emotion, and the overall prediction.
        """
        limit = self.predictor.limits.max_audio_seconds
        return self._predict(file, lambda path: build_timeline(self.predictor, load_audio(path, max_seconds=limit)))

    @bentoml.api(route="/predict-realtime/")
    @also_returns(NoSpeech)
    def predict_realtime(self, audio_buffer: Path) -> RealtimePrediction:
        """Emotion of a short microphone buffer.

        Multipart field `audio_buffer`: a few seconds of audio in any format `/predict-emotion/` takes.
        Answers the emotion, confidence, music mood and `warning` (no probabilities).
        """
        result = self._predict(audio_buffer, self.predictor.predict_realtime)
        if not isinstance(result, EmotionPrediction):
            return result
        return RealtimePrediction(**result.model_dump(include=set(RealtimePrediction.model_fields)))

    @app.get("/", response_model=HealthResponse)
    def health(self) -> HealthResponse:
        """Health: is the service up, and which model and encoder it serves."""
        info = self.predictor.info()
        name, _, alias = info["model_uri"].removeprefix("models:/").partition("@") if info["model_uri"].startswith(
            "models:/") else ("", "", "")
        return HealthResponse(
            message=f"Emotion detection API is running (up {time.time() - self.started:.0f} s)",
            model_uri=info["model_uri"], encoder=info["encoder"],
            # MLflow 3 gives registry versions as ints; the response (and the app) use a string.
            model_version=None if info["model_version"] is None else str(info["model_version"]),
            model_name=name or None, model_alias=alias or None, temperature=info["temperature"],
            uptime_seconds=round(time.time() - self.started, 1),
        )

    @app.get("/emotions/", response_model=EmotionsResponse)
    def emotions(self) -> EmotionsResponse:
        """The 8 emotion labels, in the model's (and the app's) order."""
        return EmotionsResponse(emotions=list(EMOTIONS), count=len(EMOTIONS))

    @app.get("/music-moods/", response_model=MusicMoodMap)
    def music_moods(self) -> MusicMoodMap:
        """The music mood suggested for each emotion."""
        return MusicMoodMap(**MUSIC_MOODS)

    @app.websocket("/ws/stream")
    async def stream(self, websocket: WebSocket) -> None:
        """Rolling predictions over a live 16 kHz PCM16 stream (protocol: README, "Streaming")."""
        await websocket.accept()
        session = StreamSession(self.predictor, self.predictor.limits.max_audio_seconds)
        await websocket.send_json(session.ready())
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:  # the model runs in a thread: the event loop stays free
                    replies = await run_in_threadpool(session.push, message["bytes"])
                elif (message.get("text") or "").strip() in ('{"type": "end"}', '{"type":"end"}', "end"):
                    replies = await run_in_threadpool(session.end)
                else:
                    raise StreamError('send binary PCM16 chunks, then the text message {"type": "end"}', 1003)
                for reply in replies:
                    await websocket.send_json(reply)
                if replies and replies[-1]["type"] == "end":
                    return await websocket.close(1000)
        except StreamError as exc:
            await websocket.send_json({"type": "error", "detail": str(exc)})
            await websocket.close(exc.code)
        except WebSocketDisconnect:
            pass


EmotionService.add_asgi_middleware(UploadGuard)
EmotionService.add_asgi_middleware(OpenAPIDocs)  # GET /docs.json: emotion_core.openapi.openapi_document()
