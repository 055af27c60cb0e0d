"""Latency over HTTP against real `bentoml serve` processes side by side, and the serving RSS over many requests."""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
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


def _closed_loop(url: str, bodies: list[bytes], clients: int, seconds: float) -> tuple[list[float], float]:
    """`clients` threads, each posting the next clip as soon as its last answer came back, for `seconds`:
    (every request's latency, wall time)."""
    def client(index: int) -> list[float]:
        times = []
        with httpx.Client(base_url=url, timeout=120) as c:
            def post(i: int) -> None:
                c.post("/predict-emotion/", files={"file": ("c.wav", bodies[i % len(bodies)], "audio/wav")}).raise_for_status()

            post(index)  # warm-up, not measured
            deadline, i = time.perf_counter() + seconds, index
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                post(i)
                times.append(time.perf_counter() - started)
                i += 1
        return times

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        times = [t for per in pool.map(client, range(clients)) for t in per]
    return times, time.perf_counter() - started


def throughput_by_workers(workdir: Path, env: dict[str, str], clips: list[Path], clients: int, seconds: float,
                          workers: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """3 s clips posted by `clients` concurrent clients for `seconds` against a fresh onnx server with each
    number of workers ($EMOTION_WORKERS), one server at a time: requests/s, latency, RSS of the whole tree."""
    bodies = [p.read_bytes() for p in clips]
    out: dict[str, Any] = {"clients": clients, "seconds": seconds, "clip_seconds": 3}
    for n in workers:
        server = Server(workdir / f"workers-{n}", {**env, "EMOTION_WORKERS": str(n)}, name=f"workers-{n}")
        try:
            ready = server.wait_ready()
            times, wall = _closed_loop(server.url, bodies, clients, seconds)
            out[str(n)] = {"requests": len(times), "requests_per_s": round(len(times) / wall, 2),
                           "latency_ms": stats_ms(times), "ready_s": round(ready, 1), "rss": rss_mb(server.pid)}
            log(f"  {n} worker(s): {out[str(n)]['requests_per_s']} requests/s, p50 {out[str(n)]['latency_ms']['p50']} ms")
        finally:
            server.stop()
    return out
