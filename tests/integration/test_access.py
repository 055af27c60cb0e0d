"""Keys, CORS and the rate limit against a REAL `bentoml serve` started with them on (EMOTION_API_KEYS,
EMOTION_CORS_ORIGINS, EMOTION_RATE_LIMIT): nothing is served without a key, `GET /` stays a bare liveness
answer, the WebSocket takes the key as a token, and a burst past the limit gets 429 with Retry-After."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from httpx_ws import WebSocketUpgradeError, connect_ws

from bench.server import serving

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
