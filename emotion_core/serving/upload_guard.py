"""ASGI middleware in front of the upload routes: size limit, form shape, raw PCM16, each bad body a 4xx JSON
`ErrorResponse` before BentoML parses it."""

from __future__ import annotations

import uuid

from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emotion_core.audio import AudioError, pcm16_to_wav
from emotion_core.serving.limits import Limits
from emotion_core.serving.schemas import ErrorResponse


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
        problem, upload = await self._check(scope, body, field)
        if problem:
            return await error(422, problem)(scope, receive, send)
        # BentoML saves the upload under the client's file name: re-issue it under a safe one, so a long, NUL or
        # odd name can never fail a temporary file (the decoder never reads names: `audio.sniff_format`).
        filename, data = upload
        body, scope = _as_upload(data, safe_filename(filename), field, scope)
        await self.app(scope, _replay(body, receive), send)

    @staticmethod
    async def _check(scope: Scope, body: bytes, field: str) -> tuple[str | None, tuple[str | None, bytes] | None]:
        """(problem, None) for a bad form; (None, (file name, bytes)) for one file in `field`."""
        expected = f"expected one audio file in multipart field {field!r}"
        if not body:
            return f"{expected}, got an empty body", None
        try:
            form = await Request(scope, _replay(body, None)).form()
        except Exception as exc:  # noqa: BLE001 - starlette's MultiPartException, a missing boundary, ...
            return f"malformed multipart body: {getattr(exc, 'detail', exc)}", None
        try:
            names = list(dict.fromkeys(form.keys()))
            values = form.getlist(field)
            if names != [field]:
                got = ", ".join(repr(n) for n in names) or "no fields"
                return f"{expected}, got {got}", None
            if len(values) != 1:
                return f"{expected}, got {len(values)}", None
            if not isinstance(values[0], UploadFile):
                return f"{expected}, got a text value instead of a file", None
            return None, (values[0].filename, await values[0].read())
        finally:
            await form.close()


#: Extensions an upload keeps (a hint for people reading logs; the decoder sniffs the bytes).
SAFE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".mp4", ".aac", ".webm",
                             ".3gp", ".3g2", ".mka", ".amr", ".aif", ".aiff", ".caf"})


def safe_filename(name: str | None) -> str:
    """`upload` plus the client's extension when it is a known audio one: never the client's own name."""
    ext = "." + (name or "").rsplit(".", 1)[-1].lower() if "." in (name or "") else ""
    return "upload" + (ext if ext in SAFE_EXTENSIONS else ".bin")


def _pcm_as_upload(body: bytes, params: str, big_endian: bool, field: str, scope: Scope) -> tuple[bytes, Scope]:
    """Raw PCM16 → a multipart body holding it as a WAV file (lossless), and the scope's matching headers."""
    options = dict(p.strip().lower().partition("=")[::2] for p in params.split(";") if "=" in p)
    wav = pcm16_to_wav(body, int(options.get("rate", 16000)), int(options.get("channels", 1)), big_endian)
    return _as_upload(wav, "buffer.wav", field, scope)


def _as_upload(data: bytes, filename: str, field: str, scope: Scope) -> tuple[bytes, Scope]:
    """`data` as the one file of a fresh multipart body in `field`, and the scope with matching headers."""
    boundary = uuid.uuid4().hex
    multipart = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
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
