"""`UploadGuard` (the ASGI middleware in front of the upload routes) driven directly, in-process, around a
recording ASGI app: 413 from Content-Length before a byte is read and from a streamed body as soon as it
passes the limit, 415 for JSON, 422 for the wrong multipart shape, raw PCM16 wrapped into a WAV upload, and
everything else passed through untouched. Against the real server: tests/integration/test_service_robustness.py."""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field

import httpx
import numpy as np
import pytest
import soundfile as sf

from emotion_core.audio import load_audio
from emotion_core.serving.upload_guard import UPLOAD_FIELDS, UploadGuard
from tests._cases import BAD_PCM

LIMIT = 64 * 1024


@dataclass
class Inner:
    """The app behind the guard: records what reaches it, answers 200."""

    calls: list[dict] = field(default_factory=list)

    async def __call__(self, scope, receive, send) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.calls.append({"path": scope["path"], "headers": dict(scope["headers"]), "body": body})
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})


@dataclass
class Answer:
    status: int
    headers: dict[bytes, bytes]
    body: bytes
    chunks_read: int

    def json(self) -> dict:
        return json.loads(self.body)


def call(guard: UploadGuard, path: str, headers: dict[str, str], chunks: list[bytes], method: str = "POST") -> Answer:
    """One HTTP request through `guard`, its body in `chunks` (more_body=True between them)."""
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()], "http_version": "1.1",
             "scheme": "http", "server": ("testserver", 80), "client": ("127.0.0.1", 1234), "root_path": ""}
    read, sent = 0, []

    async def receive():
        nonlocal read
        if read < len(chunks):
            read += 1
            return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], dict(start["headers"]), body, read)


def multipart(**files: bytes) -> tuple[dict[str, str], bytes]:
    """Headers and body of a multipart/form-data upload (httpx builds it as a client would)."""
    request = httpx.Request("POST", "http://testserver/", files={k: (f"{k}.wav", v, "audio/wav") for k, v in files.items()})
    return dict(request.headers), request.read()


def wav(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def assert_error(answer: Answer, status: int, words: str) -> str:
    assert answer.status == status, (answer.status, answer.body[:300])
    assert answer.headers[b"content-type"].startswith(b"application/json")
    body = answer.json()
    assert body["status"] == "error" and words in body["detail"], body
    return body["detail"]


@pytest.fixture
def inner() -> Inner:
    return Inner()


@pytest.fixture
def guard(inner: Inner) -> UploadGuard:
    return UploadGuard(inner, max_bytes=LIMIT)


# --------------------------------------------------------------------------------------------- size: 413


def test_content_length_over_the_limit_is_413_before_reading(guard: UploadGuard, inner: Inner) -> None:
    headers, body = multipart(file=b"\0" * (LIMIT + 1))
    answer = call(guard, "/predict-emotion/", headers, [body])
    assert_error(answer, 413, f"larger than the {LIMIT / 2**20:g} MB limit")
    assert answer.chunks_read == 0 and inner.calls == []  # not a byte read, nothing passed on


def test_streamed_body_over_the_limit_is_413_once_it_passes(guard: UploadGuard, inner: Inner) -> None:
    """No Content-Length (chunked): reading stops at the chunk that passes the limit."""
    chunks = [b"\0" * 16 * 1024] * 100  # 1.6 MB in 16 KB chunks
    answer = call(guard, "/predict-emotion/", {"content-type": "multipart/form-data; boundary=x"}, chunks)
    assert_error(answer, 413, "EMOTION_MAX_UPLOAD_MB")
    assert answer.chunks_read == LIMIT // (16 * 1024) + 1 and inner.calls == []


def test_default_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, inner: Inner) -> None:
    monkeypatch.setenv("EMOTION_MAX_UPLOAD_MB", "0.5")
    assert UploadGuard(inner).max_bytes == 512 * 1024
    monkeypatch.delenv("EMOTION_MAX_UPLOAD_MB")
    assert UploadGuard(inner).max_bytes == 25 * 1024 * 1024
    headers, body = multipart(file=b"\0" * (600 * 1024))
    monkeypatch.setenv("EMOTION_MAX_UPLOAD_MB", "0.5")
    assert_error(call(UploadGuard(inner), "/predict-emotion/", headers, [body]), 413, "0.5 MB")


# --------------------------------------------------------------------------------------------- shape: 415, 422


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", "application/x-www-form-urlencoded"])
def test_other_content_types_are_415(guard: UploadGuard, inner: Inner, ctype: str) -> None:
    answer = call(guard, "/predict-emotion/", {"content-type": ctype}, [b'{"file": "clip.wav"}'])
    assert "'file'" in assert_error(answer, 415, "multipart/form-data")
    assert inner.calls == []


@pytest.mark.parametrize("route", list(UPLOAD_FIELDS))
def test_wrong_field_is_422_and_names_the_right_one(guard: UploadGuard, inner: Inner, route: str) -> None:
    field_name = UPLOAD_FIELDS[route]
    wrong = "audio" if field_name != "audio" else "file"
    headers, body = multipart(**{wrong: wav()})
    detail = assert_error(call(guard, route, headers, [body]), 422, f"got '{wrong}'")
    assert f"multipart field {field_name!r}" in detail and inner.calls == []


@pytest.mark.parametrize(
    "make,words",
    [
        pytest.param(lambda: ({}, b""), "empty body", id="no-body"),
        pytest.param(lambda: ({"content-type": "multipart/form-data; boundary=b"}, b"--b--\r\n"), "no fields",
                     id="empty-form"),
        pytest.param(lambda: multipart(file=wav(), extra=b"\xe8\x00\xff"), "'extra'", id="extra-field"),
        pytest.param(lambda: ({"content-type": "multipart/form-data"}, b"--x\r\n"), "malformed multipart",
                     id="no-boundary"),
    ],
)
def test_bad_forms_are_422(guard: UploadGuard, inner: Inner, make, words: str) -> None:
    headers, body = make()
    assert_error(call(guard, "/predict-emotion/", headers, [body]), 422, words)
    assert inner.calls == []


def test_text_value_in_the_file_field_is_422(guard: UploadGuard, inner: Inner) -> None:
    """BentoML would fetch a text value as a URL: refused before it gets there."""
    request = httpx.Request("POST", "http://testserver/", files={"file": (None, "http://127.0.0.1:9/clip.wav")})
    answer = call(guard, "/predict-emotion/", dict(request.headers), [request.read()])
    assert_error(answer, 422, "a text value instead of a file")
    assert inner.calls == []


def test_two_files_in_the_field_are_422(guard: UploadGuard) -> None:
    request = httpx.Request("POST", "http://testserver/", files=[("file", ("a.wav", wav())), ("file", ("b.wav", wav()))])
    assert_error(call(guard, "/predict-emotion/", dict(request.headers), [request.read()]), 422, "got 2")


# --------------------------------------------------------------------------------------------- passed through


def test_a_good_upload_reaches_the_app_under_a_safe_name(guard: UploadGuard, inner: Inner) -> None:
    headers, body = multipart(file=wav())
    half = len(body) // 2
    answer = call(guard, "/predict-emotion/", headers, [body[:half], body[half:]])  # streamed in two chunks
    assert answer.status == 200 and answer.json() == {"ok": True}
    [seen] = inner.calls
    assert uploaded_wav(seen, "file") == wav()  # the same bytes, in the same field
    assert b'filename="upload.wav"' in seen["body"]


@pytest.mark.parametrize("name, safe", [
    ("a" * 300 + ".wav", "upload.wav"),  # longer than a file name may be
    ("é" * 120 + ".m4a", "upload.m4a"),
    ("bad\x00name.flac", "upload.flac"),
    ("../../etc/passwd", "upload.bin"),
    ("x.m3u8", "upload.bin"),  # not an audio extension (the decoder sniffs the bytes anyway)
])
def test_the_client_file_name_never_reaches_the_app(guard: UploadGuard, inner: Inner, name: str, safe: str) -> None:
    request = httpx.Request("POST", "http://testserver/", files={"file": (name, wav(), "audio/wav")})
    answer = call(guard, "/predict-emotion/", dict(request.headers), [request.read()])
    assert answer.status == 200
    [seen] = inner.calls
    assert f'filename="{safe}"'.encode() in seen["body"] and uploaded_wav(seen, "file") == wav()


@pytest.mark.parametrize("method,path", [("GET", "/"), ("GET", "/predict-emotion/"), ("POST", "/emotions/")])
def test_other_routes_and_methods_pass_through(guard: UploadGuard, inner: Inner, method: str, path: str) -> None:
    big = b"\0" * (LIMIT + 1)  # not an upload route: no limit, no form check
    answer = call(guard, path, {"content-type": "application/json"}, [big], method=method)
    assert answer.status == 200 and inner.calls[0]["body"] == big


def test_websocket_scopes_pass_through(inner: Inner) -> None:
    calls = []

    async def app(scope, receive, send):
        calls.append(scope["type"])

    asyncio.run(UploadGuard(app, max_bytes=LIMIT)({"type": "websocket", "path": "/predict-emotion/"}, None, None))
    assert calls == ["websocket"]


# --------------------------------------------------------------------------------------------- raw PCM16


def pcm(seconds: float = 0.5, rate: int = 16_000, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = np.round(0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    return np.repeat(tone[:, None], channels, axis=1)


def uploaded_wav(seen: dict, field_name: str) -> bytes:
    """The one file of the multipart body the guard built, as the app receives it."""
    import email.parser
    import email.policy

    raw = b"content-type: " + seen["headers"][b"content-type"] + b"\r\n\r\n" + seen["body"]
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    [part] = list(message.iter_parts())
    assert part.get_param("name", header="content-disposition") == field_name
    assert int(seen["headers"][b"content-length"]) == len(seen["body"])
    return part.get_payload(decode=True)


@pytest.mark.parametrize("route", ["/predict-realtime/", "/predict-emotion/"])
def test_raw_pcm16_is_wrapped_into_a_wav_upload(guard: UploadGuard, inner: Inner, route: str) -> None:
    samples = pcm()
    answer = call(guard, route, {"content-type": "audio/pcm; rate=16000"}, [samples.tobytes()])
    assert answer.status == 200, answer.body
    data = uploaded_wav(inner.calls[0], UPLOAD_FIELDS[route])
    decoded, rate = sf.read(io.BytesIO(data), dtype="int16")
    assert rate == 16_000 and np.array_equal(decoded, samples[:, 0])  # lossless


def test_raw_pcm16_endianness_rate_and_channels(guard: UploadGuard, inner: Inner) -> None:
    """audio/L16 is big-endian (RFC 2586), audio/pcm little-endian; rate and channels come from the parameters."""
    little, stereo = pcm(), pcm(0.25, rate=48_000, channels=2)  # 48 KB: under the 64 KB limit
    for headers, body in [({"content-type": "audio/pcm"}, little.tobytes()),
                          ({"content-type": "audio/L16; rate=16000; channels=1"}, little.astype(">i2").tobytes()),
                          ({"content-type": "audio/pcm; rate=48000; channels=2"}, stereo.tobytes())]:
        assert call(guard, "/predict-realtime/", headers, [body]).status == 200
    first, big, wide = (uploaded_wav(c, "audio_buffer") for c in inner.calls)
    assert first == big
    info = sf.info(io.BytesIO(wide))
    assert (info.samplerate, info.channels) == (48_000, 2)
    resampled = load_audio(wide)  # the same tone: 0.25 s of it, at 16 kHz after resampling
    assert len(resampled) == 4000
    np.testing.assert_allclose(resampled[100:-100], load_audio(first)[100:3900], atol=5e-3)


@pytest.mark.parametrize("body,ctype,words", BAD_PCM)
def test_raw_pcm16_errors_are_422(guard: UploadGuard, inner: Inner, body: bytes, ctype: str, words: str) -> None:
    detail = assert_error(call(guard, "/predict-realtime/", {"content-type": ctype}, [body]), 422, words)
    assert detail.startswith("raw PCM16 body") or "empty" in detail
    assert inner.calls == []
