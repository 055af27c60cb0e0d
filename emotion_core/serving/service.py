"""BentoML service: loads `emotion-cnn@champion` and serves the mobile app's endpoints on port 8000.

    bentoml serve emotion_core.serving.service:EmotionService --port 8000

POST routes are BentoML APIs (multipart fields `file` / `audio_buffer`); the GET routes come from a
FastAPI app mounted at `/`. Bad input never reaches a 500: a malformed upload (wrong or extra field,
text instead of a file, not multipart) is answered by `UploadGuard` before BentoML parses it, and audio
that can't be decoded by `_predict`, both with a 4xx `ErrorResponse`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import bentoml
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from emotion_core.audio import AudioError, AudioTooLongError, load_audio
from emotion_core.encoders.onnx.export import machine_identity
from emotion_core.labels import EMOTIONS, MUSIC_MOODS
from emotion_core.serving.adaptation import (
    ADAPTATION_HEADER,
    SPEAKER_HEADER,
    SPEAKER_PARAMETER,
    SpeakerIdError,
    VoiceProfiles,
    describe,
)
from emotion_core.serving.limits import MODEL_THREADS, serving_workers, worker_onnx_threads
from emotion_core.serving.openapi import OpenAPIDocs, also_returns, reads_headers
from emotion_core.serving.predictor import NoSpeechError, Predictor
from emotion_core.serving.schemas import (
    EmotionPrediction,
    EmotionsResponse,
    HealthResponse,
    MusicMoodMap,
    NoSpeech,
    RealtimePrediction,
    Timeline,
)
from emotion_core.serving.security import AccessGuard
from emotion_core.serving.streaming import MAX_MESSAGE_BYTES, StreamError, StreamSession
from emotion_core.serving.timeline import build_timeline
from emotion_core.serving.upload_guard import UploadGuard, error
from emotion_core.serving.web import mount_demo

app = FastAPI(
    title="Voice emotion detection", description="Emotion from speech, with a music mood for each emotion.",
    generate_unique_id_function=lambda route: route.name,  # operationId = the Python name (generated clients)
    # One OpenAPI document, BentoML's /docs.json (emotion_core.serving.openapi); FastAPI's own /docs would load
    # Swagger UI from a CDN.
    openapi_url=None, docs_url=None, redoc_url=None,
)
mount_demo(app)  # GET /demo: the web demo (emotion_core/serving/web/)


def _limit_websocket_frames(max_bytes: int = MAX_MESSAGE_BYTES) -> None:
    """uvicorn buffers a WebSocket message up to its `ws_max_size` (16 MiB) before the app sees a byte, and
    BentoML has no setting for it: lower the default of the worker's uvicorn config (built after this module
    is imported) so an oversized frame is refused by the server (close 1009) while it is still arriving."""
    import uvicorn.config  # the serving worker's web server; imported here only to change its default

    init = uvicorn.config.Config.__init__
    if getattr(init, "limits_frames", False):
        return

    @functools.wraps(init)
    def limited(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        kwargs.setdefault("ws_max_size", max_bytes)
        init(self, *args, **kwargs)

    limited.limits_frames = True  # type: ignore[attr-defined]
    uvicorn.config.Config.__init__ = limited


_limit_websocket_frames()


# threads=2: two predictions in flight per worker (the model code is thread-safe: bench/loadtest.py checks
# every answer under load). It gains what adaptive batching gains (docs/performance.md) without making the
# API list-in/list-out.
# workers: $EMOTION_WORKERS processes (default 1), each with its own model.
@bentoml.service(name="emotion_detector", traffic={"timeout": 120}, http={"port": 8000}, threads=MODEL_THREADS,
                 workers=serving_workers())
@bentoml.asgi_app(app, path="/")
class EmotionService:
    def __init__(self) -> None:
        worker_onnx_threads(serving_workers())
        # Refuses to start (LookupError naming the command to run) when no champion is registered.
        self.predictor = Predictor.from_uri()
        self.voices = VoiceProfiles.from_env()  # adaptation to a named speaker (X-Speaker-Id)
        self.started = time.time()

    def _predict(self, path: Path, predict=None, ctx: bentoml.Context | None = None):
        """`predict(path)` (default: a whole-recording prediction), its AudioErrors as 4xx JSON. With `ctx`
        (the request), a `predict(path, voice=...)` adapts to the speaker its X-Speaker-Id names."""
        result = self._answer(path, predict or self.predictor.predict, ctx)
        if ctx is not None and isinstance(result, JSONResponse):
            ctx.response.status_code = result.status_code  # BentoML answers with ctx's status, not the response's
        return result

    def _answer(self, path: Path, predict, ctx: bentoml.Context | None):
        try:
            if ctx is not None:
                predict = self._adapting(predict, ctx)
            return predict(path)
        except SpeakerIdError as exc:
            return error(422, str(exc))
        except NoSpeechError as exc:  # a valid answer (200), not an error: there is no emotion to report
            # (a JSONResponse: BentoML 1.4 can't build its OpenAPI spec for a Union return type)
            return JSONResponse(NoSpeech(detail=str(exc), duration=round(exc.duration, 3)).model_dump())
        except AudioTooLongError as exc:
            return error(413, f"{exc} (EMOTION_MAX_AUDIO_SECONDS)")
        except AudioError as exc:  # name the upload, not BentoML's temporary copy of it
            return error(422, str(exc).replace(str(path), "the uploaded file"))

    def _adapting(self, predict, ctx: bentoml.Context):
        """`predict` with the named speaker's running profile, saying in a response header what it used."""
        state = ctx.request.scope.get("state", {})
        voice = self.voices.voice(state.get("client", "open"), ctx.request.headers.get(SPEAKER_HEADER))
        before = voice.n_clips if voice is not None else 0
        if voice is not None and self.predictor.speaker_probe is None:
            voice = None  # a model without a speaker probe: the head answers, and the header says so
        ctx.response.headers[ADAPTATION_HEADER] = describe(voice, before)
        return functools.partial(predict, voice=voice) if voice is not None else predict

    @bentoml.api(route="/predict-emotion/")
    @also_returns(NoSpeech)
    @reads_headers(SPEAKER_PARAMETER)
    def predict_emotion(self, file: Path, ctx: bentoml.Context) -> EmotionPrediction:
        """Emotion of a whole recording.

        Multipart field `file`: wav, flac, ogg, mp3, m4a, webm, 3gp. Answers the emotion, its calibrated
        confidence, the music mood, all 8 probabilities, and a `warning` when the confidence is low.
        Recordings longer than 6 s are pooled over their voiced 4 s windows; without speech the answer is
        `{"status": "no_speech", ...}`. Header `X-Speaker-Id` (optional): the app's id for the speaker; the
        service then learns that voice from its recordings and answers with it after 10 (docs/api.md).
        """
        return self._predict(file, ctx=ctx)

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
    @reads_headers(SPEAKER_PARAMETER)
    def predict_realtime(self, audio_buffer: Path, ctx: bentoml.Context) -> RealtimePrediction:
        """Emotion of a short microphone buffer.

        Multipart field `audio_buffer`: a few seconds of audio in any format `/predict-emotion/` takes.
        Answers the emotion, confidence, music mood and `warning` (no probabilities). `X-Speaker-Id` as for
        `/predict-emotion/`.
        """
        result = self._predict(audio_buffer, self.predictor.predict_realtime, ctx=ctx)
        if not isinstance(result, EmotionPrediction):
            return result
        return RealtimePrediction(**result.model_dump(include=set(RealtimePrediction.model_fields)))

    @app.get("/", response_model=HealthResponse)
    def health(self, request: Request) -> HealthResponse:
        """Health: is the service up, and which model and encoder it serves (the model details need a key when
        keys are on; without one the answer is a bare liveness answer)."""
        if not request.scope.get("state", {}).get("authenticated", True):
            return JSONResponse({"status": "healthy", "message": "Emotion detection API is running"})
        info = self.predictor.info()
        name, _, alias = info["model_uri"].removeprefix("models:/").partition("@") if info["model_uri"].startswith(
            "models:/") else ("", "", "")
        return HealthResponse(
            message=f"Emotion detection API is running (up {time.time() - self.started:.0f} s)",
            model_uri=info["model_uri"], encoder=info["encoder"],
            # MLflow 3 gives registry versions as ints; the response (and the app) use a string.
            model_version=None if info["model_version"] is None else str(info["model_version"]),
            model_name=name or None, model_alias=alias or None, temperature=info["temperature"],
            uptime_seconds=round(time.time() - self.started, 1), runtime=info["runtime"],
            int8_variant=info["int8_variant"], cpu=machine_identity()["cpu"], model_verified=info["model_verified"],
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
        """Rolling predictions over a live 16 kHz PCM16 stream (protocol: docs/streaming.md)."""
        await websocket.accept()
        session = StreamSession(self.predictor)
        await websocket.send_json(session.ready())
        idle = self.predictor.limits.stream_idle_seconds
        try:
            while True:
                wait = min(idle, session.wall_seconds_left())
                try:
                    message = await asyncio.wait_for(websocket.receive(), timeout=max(0.0, wait))
                except TimeoutError:
                    raise StreamError(f"nothing received for {idle:g} s: closed" if wait == idle else
                                      f"stream open longer than {session.limits.stream_wall_seconds:g} s: "
                                      "open a new one", 1008) from None
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

EmotionService.add_asgi_middleware(AccessGuard)  # first: keys, rate and queue before any body is read
EmotionService.add_asgi_middleware(UploadGuard)
EmotionService.add_asgi_middleware(OpenAPIDocs, service=EmotionService)  # GET /docs.json: openapi_document(EmotionService)
