"""Latency over HTTP against real `bentoml serve` processes side by side, and the serving RSS over many requests."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import httpx

from bench.common import LENGTHS, log, stats_ms
from bench.resources import rss_mb
from bench.server import Server


def http_benchmark(servers: dict[str, Server], clips: dict[int, list[Path]], reps: int,
                   rss_requests: int) -> dict[str, Any]:
    bodies = {p: p.read_bytes() for paths in clips.values() for p in paths}
    result: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        clients = {name: stack.enter_context(httpx.Client(base_url=s.url, timeout=120)) for name, s in servers.items()}

        def post(name: str, path: Path) -> dict:
            r = clients[name].post("/predict-emotion/", files={"file": (path.name, bodies[path], "audio/wav")})
            if r.status_code != 200:
                raise RuntimeError(f"{name} {path.name}: HTTP {r.status_code} {r.text[:300]}")
            return r.json()

        for name in servers:  # warm-up: each length once
            for n in LENGTHS:
                post(name, clips[n][0])
        times = {name: {n: [] for n in LENGTHS} for name in servers}
        names = list(servers)
        for r in range(reps):
            for n in LENGTHS:
                path = clips[n][r % len(clips[n])]
                for name in (names if r % 2 == 0 else names[::-1]):
                    started = time.perf_counter()
                    post(name, path)
                    times[name][n].append(time.perf_counter() - started)
        result["latency"] = {name: {f"{n}s": stats_ms(t) for n, t in per.items()} for name, per in times.items()}
        log(f"  HTTP latency done; serving RSS over {rss_requests} requests to the onnx server")

        # RSS of the optimised server over `rss_requests` mixed-length requests (1 s, 3 s, 10 s cycled).
        onnx = servers["onnx"]
        pool = [p for n in LENGTHS for p in clips[n]]
        checkpoints = sorted({0, rss_requests // 4, rss_requests // 2, 3 * rss_requests // 4, rss_requests})
        rss = {"0": rss_mb(onnx.pid)}
        started = time.perf_counter()
        for i in range(1, rss_requests + 1):
            post("onnx", pool[i % len(pool)])
            if i in checkpoints:
                rss[str(i)] = rss_mb(onnx.pid)
        result["rss"] = {"onnx": rss, "requests": rss_requests,
                         "seconds": round(time.perf_counter() - started, 1),
                         "torch_idle_after_latency_run": rss_mb(servers["torch"].pid)}
    return result
