"""Any audio a phone sends, against the REAL server (the session `server` fixture): a corpus of bad inputs
(each a 4xx JSON or a correct answer, never a 5xx), raw PCM16, silence, limits, the timeline and the
WebSocket stream on a real multi-utterance recording."""

from __future__ import annotations

import io
import math
import os
import struct
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from httpx_ws import WebSocketDisconnect, connect_ws

from emotion_core.audio import load_audio
from emotion_core.features import SAMPLE_RATE
from emotion_core.labels import EMOTIONS
from emotion_core.serving.predictor import Predictor
from tests._cases import BAD_PCM
from tests.integration._recordings import TOLERANCE, boundary_errors

MB = 1 << 20


@pytest.fixture(scope="module")
def speech(angry_clip: Path) -> np.ndarray:
    return load_audio(angry_clip)


def wav(audio: np.ndarray, rate: int = SAMPLE_RATE, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def upload(client: httpx.Client, data: bytes, route: str = "/predict-emotion/", field: str = "file") -> httpx.Response:
    return client.post(route, files={field: ("clip.wav", data, "audio/wav")})


def error_json(r: httpx.Response, status: int) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "error" and body["detail"], body
    return body["detail"]


# --------------------------------------------------------------------------------------------- the bad-input corpus


def _nonfinite_wav(value: float) -> bytes:
    audio = np.full(SAMPLE_RATE, 0.1, np.float32)
    audio[100] = value
    return wav(audio, subtype="FLOAT")


BAD_AUDIO = {  # name → (bytes, status, words in the detail)
    "empty-file": (b"", 422, "empty"),
    "text-bytes": (b"hello, this is not audio\n" * 40, 422, "could not decode"),
    "truncated-wav-header": (wav(np.zeros(1600, np.float32))[:30], 422, "could not decode"),
    "one-sample": (wav(np.zeros(1, np.float32)), 422, "too short"),
    "nan-float-wav": (_nonfinite_wav(float("nan")), 422, "NaN"),
    "inf-float-wav": (_nonfinite_wav(float("inf")), 422, "NaN or infinite"),
    "riff-garbage": (b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + os.urandom(200), 422, "could not decode"),
}


@pytest.mark.parametrize("name", list(BAD_AUDIO))
@pytest.mark.parametrize("route,field", [("/predict-emotion/", "file"), ("/predict-realtime/", "audio_buffer"),
                                         ("/predict-timeline/", "file")])
def test_bad_audio_is_a_4xx_json(client: httpx.Client, name: str, route: str, field: str) -> None:
    data, status, words = BAD_AUDIO[name]
    assert words in error_json(upload(client, data, route, field), status)


def test_8_channels_192khz_is_answered_like_mono_16k(client: httpx.Client, predictor: Predictor, speech) -> None:
    """8 identical channels at 192 kHz decode to the 16 kHz mono clip (up to the resampling round trip's
    filters): the server answers exactly as the predictor on that decode, and the clip's own answer."""
    import soxr

    hi = soxr.resample(speech, SAMPLE_RATE, 192_000).astype(np.float32)
    data = wav(np.repeat(hi[:, None], 8, axis=1), 192_000)
    decoded = load_audio(data)
    assert len(decoded) == len(speech)
    snr = 10 * np.log10(np.sum(speech**2) / np.sum((decoded - speech) ** 2))
    assert snr > 40, snr  # the up-and-down resampling costs ~46 dB; a lost channel or a wrong rate costs all of it
    r = upload(client, data)
    assert r.status_code == 200, r.text
    served = predictor.predict(decoded, sample_rate=SAMPLE_RATE)
    assert r.json()["emotion"] == served.emotion and math.isclose(r.json()["confidence"], served.confidence, abs_tol=1e-4)
    # the encoder's deep layers move visibly with noise this small, so the clip's confidence is not compared
    assert r.json()["emotion"] == predictor.predict(speech, sample_rate=SAMPLE_RATE).emotion


def test_ten_minute_file_is_answered(client: httpx.Client, predictor: Predictor, speech) -> None:
    """10 minutes (19 MB of 16 kHz PCM16): the speech in the middle is found and judged; the rest is skipped."""
    audio = np.zeros(600 * SAMPLE_RATE, np.float32)
    at = 300 * SAMPLE_RATE
    audio[at : at + len(speech)] = speech
    r = upload(client, wav(audio))
    assert r.status_code == 200, r.text
    # Only the 4 s windows that overlap the speech are judged (not the 10 minutes of silence) ...
    from emotion_core.serving.windows import plan_windows
    from emotion_core.vad import speech_segments

    windows = plan_windows(len(audio), speech_segments(audio))
    assert windows and all(a < at + len(speech) and b > at for a, b in windows), windows
    # ... and the served answer is the predictor's on the whole upload (no truncation, nothing lost on the way).
    local = predictor.predict(audio, sample_rate=SAMPLE_RATE)
    assert r.json()["emotion"] == local.emotion and math.isclose(r.json()["confidence"], local.confidence, abs_tol=0.02)


def test_longer_than_ten_minutes_is_413(client: httpx.Client) -> None:
    detail = error_json(upload(client, wav(np.zeros(605 * SAMPLE_RATE, np.float32))), 413)
    assert "too long" in detail and "600" in detail


def test_100mb_upload_is_413_from_content_length(client: httpx.Client) -> None:
    detail = error_json(upload(client, os.urandom(MB) * 100), 413)
    assert "25 MB" in detail


def test_100mb_streamed_upload_is_413(client: httpx.Client) -> None:
    """No Content-Length (chunked): rejected once the body passes the limit, not buffered to the end."""
    block = os.urandom(MB)
    r = client.post("/predict-emotion/", content=(block for _ in range(100)),
                    headers={"content-type": "multipart/form-data; boundary=x"})
    error_json(r, 413)


@pytest.mark.parametrize(
    "kwargs,status,words",
    [
        pytest.param({"files": {"audio": ("a.wav", b"RIFF")}}, 422, "got 'audio'", id="wrong-field"),
        pytest.param({"data": {"other": "x"}, "files": {"x": ("", b"")}}, 422, "multipart field", id="wrong-fields"),
        pytest.param({}, 422, "empty body", id="missing-field-no-body"),
        pytest.param({"content": b"--b--\r\n", "headers": {"content-type": "multipart/form-data; boundary=b"}}, 422,
                     "no fields", id="missing-field-empty-form"),
        pytest.param({"json": {"file": "clip.wav"}}, 415, "multipart/form-data", id="json-body"),
    ],
)
def test_form_problems(client: httpx.Client, kwargs: dict, status: int, words: str) -> None:
    assert words in error_json(client.post("/predict-emotion/", **kwargs), status)


# --------------------------------------------------------------------------------------------- silence, raw PCM


def test_soft_spoken_and_one_word_clips_are_heard(client: httpx.Client) -> None:
    """The 30 quietest RAVDESS clips (by their loud frames' level; e.g. actor 5 at -50 dBFS) and the 20 shortest
    TurEV-DB words get an emotion, never `no_speech` (the VAD normalises the level first, emotion_core/vad.py)."""
    from emotion_core.audio import load_audio
    from emotion_core.data.corpora import CORPORA
    from emotion_core.vad import frame_levels

    ravdess = CORPORA["ravdess"].read()
    loudness = [float(np.percentile(frame_levels(load_audio(p)), 95)) for p in ravdess["path"]]
    quiet = ravdess.assign(loudness=loudness).nsmallest(30, "loudness")
    short = CORPORA["turev"].read().nsmallest(20, "duration_s")
    answers = {}
    for path in [*quiet["path"], *short["path"]]:
        with open(path, "rb") as f:
            answers[Path(path).name] = client.post("/predict-emotion/", files={"file": ("clip.flac", f)}).json()
    heard = {name: a.get("status") for name, a in answers.items()}
    print(f"\nquietest RAVDESS clips: {min(loudness):.1f} to {quiet['loudness'].max():.1f} dBFS (loud frames); "
          f"shortest TurEV words {short['duration_s'].min():.2f}-{short['duration_s'].max():.2f} s")
    assert set(heard.values()) == {"success"}, {n: s for n, s in heard.items() if s != "success"}


@pytest.mark.parametrize("route,field", [("/predict-emotion/", "file"), ("/predict-realtime/", "audio_buffer")])
def test_silence_is_no_speech(client: httpx.Client, route: str, field: str) -> None:
    r = upload(client, wav(np.random.default_rng(0).normal(0, 1e-3, 3 * SAMPLE_RATE).astype(np.float32)), route, field)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "no_speech", "detail": "no speech detected in 3.0 s of audio", "duration": 3.0}


def test_raw_pcm16_realtime(client: httpx.Client, speech) -> None:
    """audio/pcm (little-endian) and audio/L16 (big-endian, RFC 2586) answer exactly like the same WAV."""
    buffer = speech[len(speech) // 2 - SAMPLE_RATE : len(speech) // 2 + SAMPLE_RATE]  # 2 s
    as_wav = upload(client, wav(np.frombuffer(pcm16(buffer), "<i2")), "/predict-realtime/", "audio_buffer")
    assert as_wav.status_code == 200, as_wav.text
    le = client.post("/predict-realtime/", content=pcm16(buffer), headers={"content-type": "audio/pcm; rate=16000"})
    be = client.post("/predict-realtime/", content=np.frombuffer(pcm16(buffer), "<i2").astype(">i2").tobytes(),
                     headers={"content-type": "audio/L16; rate=16000; channels=1"})
    assert le.json() == as_wav.json() == be.json()
    stereo_48k = np.repeat(np.frombuffer(pcm16(buffer), "<i2")[:, None], 2, axis=1)  # rate/channels parameters
    r = client.post("/predict-realtime/", content=stereo_48k.tobytes(),
                    headers={"content-type": "audio/pcm; rate=48000; channels=2"})
    assert r.status_code == 200 and r.json()["emotion"] in EMOTIONS


@pytest.mark.parametrize("seconds", [0.5, 1.0, 3.0, 10.0])
def test_realtime_buffers(client: httpx.Client, predictor: Predictor, recording, seconds: float) -> None:
    """0.5–3 s buffers are judged whole; a longer one by its most recent 4 s (one pass, flat latency)."""
    audio, truth = recording
    end = int(truth[0][1] * SAMPLE_RATE)  # buffers ending with the first utterance
    buffer = audio[max(0, end - int(seconds * SAMPLE_RATE)) : end]
    r = client.post("/predict-realtime/", content=pcm16(buffer), headers={"content-type": "audio/pcm"})
    assert r.status_code == 200, r.text
    quantised = np.frombuffer(pcm16(buffer), "<i2") / np.float32(32768)
    local = predictor.predict(quantised[-4 * SAMPLE_RATE :], sample_rate=SAMPLE_RATE)
    assert r.json()["emotion"] == local.emotion and math.isclose(r.json()["confidence"], local.confidence, abs_tol=1e-4)


@pytest.mark.parametrize("body,ctype,words", BAD_PCM)
def test_raw_pcm16_errors(client: httpx.Client, body: bytes, ctype: str, words: str) -> None:
    assert words in error_json(client.post("/predict-realtime/", content=body, headers={"content-type": ctype}), 422)


# --------------------------------------------------------------------------------------------- health, timeline, stream


def test_health_reports_model_and_calibration(client: httpx.Client, predictor: Predictor) -> None:
    body = client.get("/").json()
    assert body["model_name"] == "emotion-cnn" and body["model_alias"] == "champion"
    assert body["temperature"] == predictor.meta.temperature and body["uptime_seconds"] >= 0


def test_timeline(client: httpx.Client, predictor: Predictor, recording) -> None:
    audio, truth = recording
    r = upload(client, wav(audio), "/predict-timeline/")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "success" and math.isclose(body["duration"], len(audio) / SAMPLE_RATE, abs_tol=1e-3)
    errors = boundary_errors([(s["start"], s["end"]) for s in body["segments"]], truth)
    print(f"served timeline: {len(body['segments'])} segments, boundary error max {max(errors):.3f} s")
    assert max(errors) <= TOLERANCE
    assert all(s["emotion"] in EMOTIONS for s in body["segments"])
    assert math.isclose(sum(body["distribution"].values()), 1.0, abs_tol=1e-6)
    assert body["overall"]["status"] == "success"


def stream(server: str, chunks: list[bytes], end: bool = True, pace: float = 0.0) -> tuple[list[dict], int | None]:
    """Send `chunks` on /ws/stream (then `{"type": "end"}`), waiting `pace` × each chunk's duration after it;
    every message until the server closes, and its code."""
    messages, code = [], None
    with httpx.Client(timeout=120) as http, connect_ws(server.replace("http", "ws", 1) + "/ws/stream", http) as ws:
        messages.append(ws.receive_json())
        for chunk in chunks:
            ws.send_bytes(chunk)
            time.sleep(pace * len(chunk) / 2 / SAMPLE_RATE)
        if end:
            ws.send_json({"type": "end"})
        try:
            while True:
                messages.append(ws.receive_json(timeout=120))
        except WebSocketDisconnect as exc:
            code = exc.code
    return messages, code


def test_websocket_stream(server: str, recording) -> None:
    audio, truth = recording
    pcm = pcm16(audio)
    step = SAMPLE_RATE // 4 * 2  # 0.25 s chunks, as a phone would send them
    # at 1.8x real time: the server closes a stream that runs faster than 2x (tests/integration/test_hostile_client.py)
    messages, code = stream(server, [pcm[i : i + step] for i in range(0, len(pcm), step)], pace=1 / 1.8)
    assert code == 1000
    assert messages[0]["type"] == "ready" and messages[0]["sample_rate"] == 16000 and messages[0]["hop"] == 0.5
    assert messages[-1] == {"type": "end", "duration": round(len(audio) / SAMPLE_RATE, 3)}
    rolling = [m for m in messages if m["type"] in ("prediction", "no_speech")]
    assert len(rolling) == int(len(audio) / SAMPLE_RATE / 0.5)
    for m in rolling:  # no prediction for a window without speech
        assert m["type"] == "no_speech" or any(m["start"] < e and s < m["end"] for s, e in truth), m
    predictions = [m for m in rolling if m["type"] == "prediction"]
    assert len(predictions) >= 10 and all(m["emotion"] in EMOTIONS and m["end"] - m["start"] <= 3.0 for m in predictions)
    errors = boundary_errors([(m["start"], m["end"]) for m in messages if m["type"] == "segment"], truth)
    print(f"stream: {len(predictions)} predictions, {len(rolling) - len(predictions)} no_speech, "
          f"segment boundary error max {max(errors):.3f} s")
    assert max(errors) <= TOLERANCE


@pytest.mark.parametrize("chunks,code,words", [
    ([b"\x00" * 3], 1003, "whole 2-byte samples"),
])
def test_websocket_errors(server: str, chunks: list[bytes], code: int, words: str) -> None:
    messages, closed = stream(server, chunks, end=False)
    assert closed == code and messages[-1]["type"] == "error" and words in messages[-1]["detail"], messages


def test_websocket_text_garbage(server: str) -> None:
    with httpx.Client(timeout=60) as http, connect_ws(server.replace("http", "ws", 1) + "/ws/stream", http) as ws:
        ws.receive_json()
        ws.send_text("hello")
        assert ws.receive_json()["type"] == "error"
        with pytest.raises(WebSocketDisconnect) as exc:
            ws.receive_json(timeout=30)
        assert exc.value.code == 1003


def test_still_healthy(client: httpx.Client, speech) -> None:
    assert client.get("/readyz").status_code == 200
    assert upload(client, wav(speech)).status_code == 200


# --------------------------------------------------------------------------------------------- a hostile client


def test_a_playlist_naming_a_server_file_gets_no_answer_from_it(client: httpx.Client, tmp_path: Path,
                                                               speech: np.ndarray) -> None:
    """The m3u8/ffconcat trick: a text upload that points FFmpeg at a recording on the server is refused (422)
    and the recording is never decoded — whatever the upload is named."""
    secret = tmp_path / "secret-recording.wav"
    secret.write_bytes(wav(speech))
    for name, text in (("x.m3u8", f"#EXTM3U\n#EXTINF:3,\nfile:{secret}\n"),
                       ("x.ffconcat", f"ffconcat version 1.0\nfile '{secret}'\n")):
        r = client.post("/predict-emotion/", files={"file": (name, text.encode(), "application/vnd.apple.mpegurl")})
        assert "not a supported format" in error_json(r, 422)


@pytest.mark.parametrize("name", ["a" * 300 + ".wav", "é" * 120 + ".wav", "bad\x00name.wav", "../../x.wav"])
def test_odd_file_names_get_an_answer(client: httpx.Client, speech: np.ndarray, name: str) -> None:
    r = client.post("/predict-emotion/", files={"file": (name, wav(speech), "audio/wav")})
    assert r.status_code == 200 and r.json()["emotion"] in EMOTIONS, r.text[:300]


def test_huge_finite_float_samples_are_a_422(client: httpx.Client, speech: np.ndarray) -> None:
    r = upload(client, wav(speech * np.float32(1e20), subtype="FLOAT"))
    assert "out of range" in error_json(r, 422)
