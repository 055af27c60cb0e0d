"""Who may use the service, and how much: API keys, a CORS allowlist, a per-client rate limit and a bounded
queue, as one ASGI middleware in front of everything else (before any body is read).

    EMOTION_API_KEYS        comma-separated keys; unset (and no file) = no keys, for `make serve` on localhost
    EMOTION_API_KEYS_FILE   one key per line, or `sha256:<hex digest>` of one; `#` comments
    EMOTION_CORS_ORIGINS    comma-separated origins allowed to call from a browser (and to open the WebSocket);
                            the service's own origin (the web demo) always is
    EMOTION_RATE_LIMIT      requests per client, e.g. `10/s` or `600/min` (token bucket; a key is a client,
                            else the address); unset = no limit
    EMOTION_MAX_QUEUE       model requests a worker holds at once (running + waiting) before it answers 503
                            (default 8)
    EMOTION_MAX_STREAMS     WebSocket streams a worker holds at once; one more is closed with 1013 (default 8)

A request carries `Authorization: Bearer <key>` or `X-API-Key: <key>`; a browser's WebSocket may pass
`?token=<key>`. Keys are kept as sha256 digests and compared in constant time. With keys on, `GET /` still
answers (a bare liveness answer), `/readyz`, `/livez` and the demo page stay open; everything else needs a key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Paths that answer without a key: liveness and readiness (BentoML's probes), the bare `GET /`, and the web
#: demo's static page and assets (no data: the page asks for a key and sends it with every call).
OPEN_PATHS = frozenset({"/", "/readyz", "/livez", "/healthz", "/demo"})
OPEN_PREFIXES = ("/demo/static/",)
#: HTTP routes that run the model: they count against the queue.
MODEL_PATHS = ("/predict-",)
DEFAULT_MAX_QUEUE = DEFAULT_MAX_STREAMS = 8


def digest(key: str) -> str:
    return hashlib.sha256(key.strip().encode()).hexdigest()


def parse_rate(text: str | None) -> float | None:
    """`10/s`, `600/min`, `36000/h` → requests per second (None: no limit)."""
    if not text:
        return None
    count, _, unit = text.strip().partition("/")
    per = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}
    if unit.strip().lower() not in per or float(count) <= 0:
        raise ValueError(f"EMOTION_RATE_LIMIT={text!r}: expected e.g. 10/s or 600/min")
    return float(count) / per[unit.strip().lower()]


@dataclass
class AccessPolicy:
    key_digests: frozenset[str] = frozenset()
    cors_origins: frozenset[str] = frozenset()
    rate_per_second: float | None = None
    max_queue: int = DEFAULT_MAX_QUEUE
    max_streams: int = DEFAULT_MAX_STREAMS

    @classmethod
    def from_env(cls) -> AccessPolicy:
        digests = {digest(k) for k in os.environ.get("EMOTION_API_KEYS", "").split(",") if k.strip()}
        if path := os.environ.get("EMOTION_API_KEYS_FILE"):
            for line in Path(path).read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    digests.add(line.removeprefix("sha256:").lower() if line.startswith("sha256:") else digest(line))
        origins = {o.strip().rstrip("/") for o in os.environ.get("EMOTION_CORS_ORIGINS", "").split(",") if o.strip()}
        return cls(frozenset(digests), frozenset(origins), parse_rate(os.environ.get("EMOTION_RATE_LIMIT")),
                   int(os.environ.get("EMOTION_MAX_QUEUE", DEFAULT_MAX_QUEUE)),
                   int(os.environ.get("EMOTION_MAX_STREAMS", DEFAULT_MAX_STREAMS)))

    @property
    def keys_on(self) -> bool:
        return bool(self.key_digests)

    def authorized(self, key: str | None) -> bool:
        """Constant time in the key: every stored digest is compared, whatever matches."""
        if not key:
            return False
        mine = digest(key)
        return bool(sum(hmac.compare_digest(mine, d) for d in self.key_digests))


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    """A token bucket per client: `rate` requests per second, bursts of up to max(1, rate) requests."""

    rate: float
    buckets: dict[str, _Bucket] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def burst(self) -> float:
        return max(1.0, self.rate)

    def take(self, client: str, now: float | None = None) -> float:
        """0 when the request may go; else the seconds until it could."""
        now = time.monotonic() if now is None else now
        with self.lock:
            if len(self.buckets) > 100_000:  # forget idle clients rather than grow without bound
                self.buckets = {c: b for c, b in self.buckets.items() if now - b.updated < 3600}
            bucket = self.buckets.setdefault(client, _Bucket(self.burst, now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate


def _json(status: int, detail: str, headers: dict[str, str] | None = None) -> tuple[Message, Message]:
    body = json.dumps({"status": "error", "detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return ({"type": "http.response.start", "status": status, "headers": raw},
            {"type": "http.response.body", "body": body})


class AccessGuard:
    """ASGI middleware: CORS, keys, rate limit and the bounded queue, before any body is read."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy | None = None) -> None:
        self.app, self.policy = app, policy or AccessPolicy.from_env()
        self.limiter = RateLimiter(self.policy.rate_per_second) if self.policy.rate_per_second else None
        self.busy, self.streams, self.lock = 0, 0, threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path, origin = scope.get("path", ""), headers.get("origin", "").rstrip("/")
        # The service's own pages (the web demo) are same-origin: always allowed, listed or not.
        same_origin = bool(origin) and urlsplit(origin).netloc == headers.get("host", "")
        allowed_origin = bool(origin) and (same_origin or origin in self.policy.cors_origins)
        if origin and not allowed_origin and (scope["type"] == "websocket" or scope.get("method") == "OPTIONS"):
            return await self._refuse(scope, send, 403, f"origin {origin} is not allowed (EMOTION_CORS_ORIGINS)")
        if scope["type"] == "http" and scope.get("method") == "OPTIONS" and allowed_origin:
            return await self._preflight(send, origin, headers)
        key = self._key(scope, headers)
        authorized = self.policy.authorized(key)
        scope.setdefault("state", {})["authenticated"] = authorized or not self.policy.keys_on
        # whose data a request may touch (the voice profiles of `serving.adaptation`): a key, or everyone's
        scope["state"]["client"] = f"key:{digest(key)}" if authorized else "open"
        open_path = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        if self.policy.keys_on and not authorized and not open_path:
            return await self._refuse(scope, send, 401, "a valid API key is required "
                                      "(Authorization: Bearer <key> or X-API-Key)", {"WWW-Authenticate": "Bearer"})
        if self.limiter is not None and not open_path:
            client = f"key:{digest(key)}" if authorized else f"ip:{(scope.get('client') or ('?', 0))[0]}"
            if wait := self.limiter.take(client):
                return await self._refuse(scope, send, 429, "rate limit exceeded (EMOTION_RATE_LIMIT)",
                                          {"Retry-After": str(max(1, math.ceil(wait)))})
        send = self._with_cors(send, origin) if allowed_origin and scope["type"] == "http" else send
        counter, cap = ("streams", self.policy.max_streams) if scope["type"] == "websocket" else ("busy", self.policy.max_queue)
        if scope["type"] == "http" and not path.startswith(MODEL_PATHS):
            return await self.app(scope, receive, send)
        with self.lock:
            full = getattr(self, counter) >= cap
            if not full:
                setattr(self, counter, getattr(self, counter) + 1)
        if full:
            return await self._refuse(scope, send, 503, "the server is busy: try again shortly "
                                      f"(EMOTION_MAX_{'STREAMS' if counter == 'streams' else 'QUEUE'})", {"Retry-After": "1"})
        try:
            await self.app(scope, receive, send)
        finally:
            with self.lock:
                setattr(self, counter, getattr(self, counter) - 1)

    @staticmethod
    def _key(scope: Scope, headers: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if headers.get("x-api-key"):
            return headers["x-api-key"].strip()
        if scope["type"] == "websocket":  # browsers cannot set headers on a WebSocket
            return (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [None])[0]
        return None

    @staticmethod
    async def _refuse(scope: Scope, send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        if scope["type"] == "websocket":  # refused before the handshake completes
            return await send({"type": "websocket.close", "code": 1008 if status in (401, 403, 429) else 1013,
                               "reason": detail[:120]})
        start, body = _json(status, detail, headers)
        await send(start)
        await send(body)

    @staticmethod
    async def _preflight(send: Send, origin: str, headers: dict[str, str]) -> None:
        allow = [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
                 (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                 (b"access-control-allow-headers", headers.get("access-control-request-headers", "").encode()
                  or b"authorization, x-api-key, content-type"),
                 (b"access-control-max-age", b"600"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": allow})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _with_cors(send: Send, origin: str) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
                                                  # what a speaker's answer was adapted with (serving.adaptation)
                                                  (b"access-control-expose-headers", b"X-Emotion-Adaptation")]}
            await send(message)

        return wrapped
