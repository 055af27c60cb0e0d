"""The access guard as ASGI, in front of a real in-process app: keys (header, file, sha256 digests, WebSocket
token), the open liveness paths, CORS preflight and origin checks, the per-client token bucket and the queue."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest

from emotion_core.serving.security import AccessGuard, AccessPolicy, RateLimiter, parse_rate


class App:
    """The app behind the guard: answers 200 and records the scopes it saw; `hold` keeps a request running."""

    def __init__(self) -> None:
        self.seen: list[dict] = []
        self.hold: asyncio.Event | None = None

    async def __call__(self, scope, receive, send):
        self.seen.append(scope)
        if self.hold is not None and scope["path"].startswith("/predict-"):
            await self.hold.wait()
        if scope["type"] == "websocket":
            await send({"type": "websocket.accept"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"ok": true}'})


async def _call(guard, path="/predict-emotion/", headers=None, method="POST", kind="http", query=b"", client="1.2.3.4"):
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": kind, "path": path, "method": method, "query_string": query, "client": (client, 5000),
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    await guard(scope, receive, send)
    return sent


def call(guard, *args, **kwargs):
    sent = asyncio.run(_call(guard, *args, **kwargs))
    if sent and sent[0]["type"] == "websocket.close":
        return sent[0]["code"], {}, None
    if sent and sent[0]["type"] == "websocket.accept":
        return "accepted", {}, None
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body) if body else None


KEY = "s3cret-key"


@pytest.fixture
def app():
    return App()


def test_no_keys_means_open(app):
    assert call(AccessGuard(app, AccessPolicy()))[0] == 200


def test_keys_on_refuse_before_the_app_is_reached(app):
    guard = AccessGuard(app, AccessPolicy(key_digests=frozenset({hashlib.sha256(KEY.encode()).hexdigest()})))
    status, headers, body = call(guard)
    assert status == 401 and body["status"] == "error" and "API key" in body["detail"] and app.seen == []
    assert headers["www-authenticate"] == "Bearer"
    assert call(guard, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert call(guard, headers={"Authorization": f"Bearer {KEY}"})[0] == 200
    assert call(guard, headers={"X-API-Key": KEY})[0] == 200
    for open_path in ("/", "/readyz", "/livez"):  # liveness answers without a key (GET / then answers bare)
        assert call(guard, path=open_path, method="GET")[0] == 200
    assert app.seen[-1]["state"]["authenticated"] is False


def test_keys_from_env_and_file_with_digests(tmp_path, monkeypatch):
    keys = tmp_path / "keys"
    keys.write_text(f"# team keys\nplain-key\nsha256:{hashlib.sha256(b'hashed-key').hexdigest()}\n")
    monkeypatch.setenv("EMOTION_API_KEYS", "env-a, env-b")
    monkeypatch.setenv("EMOTION_API_KEYS_FILE", str(keys))
    policy = AccessPolicy.from_env()
    assert all(policy.authorized(k) for k in ("env-a", "env-b", "plain-key", "hashed-key"))
    assert not policy.authorized("sha256:" + hashlib.sha256(b"hashed-key").hexdigest()) and not policy.authorized("")


def test_websocket_takes_the_key_as_a_token_and_checks_the_origin(app):
    policy = AccessPolicy(key_digests=frozenset({hashlib.sha256(KEY.encode()).hexdigest()}),
                          cors_origins=frozenset({"https://app.example"}))
    guard = AccessGuard(app, policy)
    assert call(guard, path="/ws/stream", kind="websocket")[0] == 1008
    assert call(guard, path="/ws/stream", kind="websocket", query=f"token={KEY}".encode())[0] == "accepted"
    assert call(guard, path="/ws/stream", kind="websocket", query=f"token={KEY}".encode(),
                headers={"Origin": "https://evil.example"})[0] == 1008
    # the service's own page (the web demo) is same-origin: allowed without being listed
    assert call(guard, path="/ws/stream", kind="websocket", query=f"token={KEY}".encode(),
                headers={"Origin": "http://127.0.0.1:8000", "Host": "127.0.0.1:8000"})[0] == "accepted"


def test_cors_preflight_and_headers(app):
    guard = AccessGuard(app, AccessPolicy(cors_origins=frozenset({"https://app.example"})))
    status, headers, _ = call(guard, method="OPTIONS", headers={"Origin": "https://app.example",
                                                               "Access-Control-Request-Headers": "authorization"})
    assert status == 204 and headers["access-control-allow-origin"] == "https://app.example"
    assert call(guard, method="OPTIONS", headers={"Origin": "https://evil.example"})[0] == 403
    status, headers, _ = call(guard, headers={"Origin": "https://app.example"})
    assert status == 200 and headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in call(guard, headers={"Origin": "https://evil.example"})[1]


def test_rate_limit_is_a_token_bucket_per_client(app):
    assert parse_rate("10/s") == 10 and parse_rate("600/min") == 10 and parse_rate(None) is None
    with pytest.raises(ValueError):
        parse_rate("ten")
    limiter = RateLimiter(2.0)
    assert [limiter.take("a", now=0.0) for _ in range(2)] == [0.0, 0.0]
    assert limiter.take("a", now=0.0) == pytest.approx(0.5) and limiter.take("b", now=0.0) == 0.0
    assert limiter.take("a", now=0.5) == 0.0  # refilled
    guard = AccessGuard(app, AccessPolicy(rate_per_second=1.0))
    assert call(guard)[0] == 200
    status, headers, body = call(guard)
    assert status == 429 and int(headers["retry-after"]) >= 1 and "rate limit" in body["detail"]
    assert call(guard, client="5.6.7.8")[0] == 200  # another client has its own bucket
    assert call(guard, path="/readyz", method="GET")[0] == 200  # probes are never limited


def test_a_full_queue_answers_503_at_once_and_health_never_waits(app):
    guard = AccessGuard(app, AccessPolicy(max_queue=2))

    async def scenario():
        app.hold = asyncio.Event()
        running = [asyncio.create_task(_call(guard)) for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = await asyncio.wait_for(_call(guard), 1)  # the third model request: refused, not queued
        health = await asyncio.wait_for(_call(guard, path="/", method="GET"), 1)  # never behind the model
        app.hold.set()
        await asyncio.gather(*running)
        return refused, health

    refused, health = asyncio.run(scenario())
    assert refused[0]["status"] == 503 and dict(refused[0]["headers"])[b"retry-after"] == b"1"
    assert json.loads(refused[1]["body"])["status"] == "error"
    assert health[0]["status"] == 200 and guard.busy == 0


def test_streams_have_their_own_cap(app):
    guard = AccessGuard(app, AccessPolicy(max_streams=0))
    assert call(guard, path="/ws/stream", kind="websocket")[0] == 1013
