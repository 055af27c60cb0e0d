"""Keys, CORS and the rate limit against a REAL `bentoml serve` started with them on (EMOTION_API_KEYS,
EMOTION_CORS_ORIGINS, EMOTION_RATE_LIMIT): nothing is served without a key, `GET /` stays a bare liveness
answer, the WebSocket takes the key as a token, a burst past the limit gets 429 with Retry-After, and the web
demo asks for the key and uses it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import soundfile as sf
from httpx_ws import WebSocketUpgradeError, connect_ws

from bench.server import serving
from tests.integration._node import TS_DIR, chromium, node, package, run_json

KEY = "integration-test-key"
ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def guarded(smoke_run, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {**os.environ, "EMOTION_API_KEYS": f"other-key,{KEY}", "EMOTION_CORS_ORIGINS": ORIGIN,
           "EMOTION_RATE_LIMIT": "20/s"}
    with serving(tmp_path_factory.mktemp("guarded-serve"), env) as (base_url, _):
        yield base_url


def test_nothing_is_served_without_a_key(guarded: str, angry_clip: Path) -> None:
    with httpx.Client(base_url=guarded, timeout=60) as client:
        for method, path in (("GET", "/emotions/"), ("GET", "/music-moods/"), ("GET", "/docs.json")):
            r = client.request(method, path)
            assert r.status_code == 401 and r.json()["status"] == "error", (path, r.text[:200])
        r = client.post("/predict-emotion/", files={"file": ("a.flac", angry_clip.read_bytes())})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        bare = client.get("/").json()
        assert bare["status"] == "healthy" and "model_uri" not in bare
        for headers in ({"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
            r = client.post("/predict-emotion/", files={"file": ("a.flac", angry_clip.read_bytes())}, headers=headers)
            assert r.status_code == 200 and r.json()["status"] == "success"
        full = client.get("/", headers={"X-API-Key": KEY}).json()
        assert full["model_uri"] and full["runtime"]


def test_websocket_needs_the_token(guarded: str) -> None:
    url = guarded.replace("http://", "ws://") + "/ws/stream"
    with httpx.Client(timeout=30) as client:
        with pytest.raises(WebSocketUpgradeError):
            with connect_ws(url, client):
                pass
        with connect_ws(f"{url}?token={KEY}", client) as ws:
            assert ws.receive_json()["type"] == "ready"
        with pytest.raises(WebSocketUpgradeError):
            with connect_ws(f"{url}?token={KEY}", client, headers={"Origin": "https://evil.example"}):
                pass


def test_cors_preflight_and_a_burst_past_the_rate_limit(guarded: str) -> None:
    with httpx.Client(base_url=guarded, timeout=30) as client:
        pre = client.options("/predict-emotion/", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == ORIGIN
        assert client.options("/predict-emotion/", headers={"Origin": "https://evil.example"}).status_code == 403
        answers = [client.get("/emotions/", headers={"X-API-Key": KEY}) for _ in range(40)]
        statuses = {r.status_code for r in answers}
        assert statuses <= {200, 429} and 429 in statuses, statuses
        limited = next(r for r in answers if r.status_code == 429)
        assert int(limited.headers["retry-after"]) >= 1 and limited.json()["status"] == "error"


def test_web_demo_asks_for_the_key_and_uses_it(guarded: str, angry_clip: Path, tmp_path: Path) -> None:
    """The demo page is open; with keys on it shows its key field, and with the key typed in, an upload and
    the live WebSocket stream both work (real Chromium, as tests/integration/test_web_demo.py)."""
    node(), chromium()
    package("playwright-core")
    with httpx.Client(base_url=guarded, timeout=60) as client:
        for _ in range(5):  # the rate-limit test before may have emptied this key's bucket: wait as told
            r = client.post("/predict-emotion/", files={"file": (angry_clip.name, angry_clip.read_bytes())},
                            headers={"X-API-Key": KEY})
            if r.status_code != 429:
                break
            time.sleep(int(r.headers["retry-after"]))
        assert r.status_code == 200, r.text
        answer = r.json()
    mic = tmp_path / "microphone.wav"
    audio, rate = sf.read(angry_clip, dtype="float32")
    sf.write(mic, audio, rate, subtype="PCM_16")
    plan = {"baseUrl": guarded, "chromium": str(chromium()), "uploads": [{"path": str(angry_clip)}],
            "microphoneWav": str(mic), "streamWav": str(mic), "apiKey": KEY, "recordMs": 2000}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    time.sleep(1.5)  # a full bucket again for the page's own calls
    out = run_json(TS_DIR / "tests" / "web_demo.mjs", str(tmp_path / "plan.json"), timeout=300)
    assert out["key"] == {"formShown": True, "status": "Key accepted."}, out["key"]
    assert out["uploads"][0]["emotion"] == answer["emotion"] and out["uploads"][0]["state"] == "done", out["uploads"]
    assert out["microphone"]["emotion"], out["microphone"]
    assert out["stream"]["predictions"] >= 2 and out["stream"]["state"] == "ended", out["stream"]
    assert out["blocked"] == [] and out["consoleErrors"] == [], out
