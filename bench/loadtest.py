"""Bounded loopback load test of the served API: N concurrent clients for S seconds, then the figures.

    python -m bench.loadtest                      # starts `bentoml serve` itself (champion of the store)
    python -m bench.loadtest --url http://127.0.0.1:8000 --pid <server pid>
    make loadtest

Each client loops over a mix of real requests — RAVDESS clips on /predict-emotion/, 2 s buffers on
/predict-realtime/ (multipart and raw PCM16), a short recording on /predict-timeline/, and bad uploads that
must get their 4xx — until the deadline (or --max-requests). An error is any other status, a failed request,
or a 200 whose answer differs from the first answer to the same request. Prints p50/p95 latency, throughput,
errors, and the server's RSS (all its processes) when idle, after a warm-up round, and after the load. Exit
status 1 when there were errors or the RSS grew more than --max-rss-growth over the warm value. Only
loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import soundfile as sf

from bench.resources import rss_mb
from bench.server import Server
from emotion_core.audio import load_audio
from emotion_core.config import data_dir
from emotion_core.features import SAMPLE_RATE

CLIPS = ["Actor_01/03-01-05-02-01-01-01", "Actor_11/03-01-03-02-02-01-11", "Actor_20/03-01-04-02-01-02-20",
         "Actor_21/03-01-01-01-01-01-21"]  # held-out actors: angry, happy, sad, neutral


@dataclass
class Case:
    name: str
    route: str
    expect: int
    files: dict | None = None
    content: bytes | None = None
    headers: dict = field(default_factory=dict)


def _wav(audio: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def cases() -> list[Case]:
    root = data_dir() / "ravdess"
    out = []
    for clip in CLIPS:
        path = root / f"{clip}.flac"
        out.append(Case(f"emotion:{path.name}", "/predict-emotion/", 200, files={"file": (path.name, path.read_bytes())}))
    audio = load_audio(root / f"{CLIPS[0]}.flac")
    buffer = audio[len(audio) // 2 - SAMPLE_RATE : len(audio) // 2 + SAMPLE_RATE]
    out.append(Case("realtime:wav", "/predict-realtime/", 200, files={"audio_buffer": ("b.wav", _wav(buffer))}))
    out.append(Case("realtime:pcm", "/predict-realtime/", 200, content=(buffer * 32767).astype("<i2").tobytes(),
                    headers={"content-type": "audio/pcm; rate=16000"}))
    quiet = np.zeros(SAMPLE_RATE, np.float32)
    out.append(Case("timeline", "/predict-timeline/", 200, files={"file": ("t.wav", _wav(np.concatenate([audio, quiet, audio])))}))
    out.append(Case("bad:text", "/predict-emotion/", 422, files={"file": ("x.wav", b"not audio" * 100)}))
    out.append(Case("bad:field", "/predict-emotion/", 422, files={"wrong": ("x.wav", b"RIFF")}))
    return out


def server_rss(pid: int) -> int:
    """Resident memory of the server and all its worker processes, in bytes."""
    return int(rss_mb(pid)["tree_mb"] * 2**20)


def send(client: httpx.Client, case: Case) -> httpx.Response:
    return client.post(case.route, files=case.files, content=case.content, headers=case.headers)


def _same(a, b, tol: float = 1e-4) -> bool:
    """Equal JSON, numbers within `tol`."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= tol
    return a == b


def run_load(url: str, clients: int, seconds: float, max_requests: int) -> dict:
    mix, lock = cases(), threading.Lock()
    latencies, errors, counts, answers = [], [], {"sent": 0}, {}
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(base_url=url, timeout=300) as client:
            i = index
            while time.monotonic() < deadline:
                with lock:
                    if counts["sent"] >= max_requests:
                        return
                    counts["sent"] += 1
                case = mix[i % len(mix)]
                i += 1
                start = time.perf_counter()
                try:
                    r = send(client, case)
                    ok, what = r.status_code == case.expect, f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    r, ok, what = None, False, repr(exc)
                with lock:
                    latencies.append(time.perf_counter() - start)
                    if ok and r.status_code == 200:  # concurrency must not change an answer
                        first = answers.setdefault(case.name, r.json())
                        ok, what = _same(first, r.json()), f"answer changed: {r.text[:200]}"
                    if not ok:
                        errors.append(f"{case.name}: {what}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    lat = np.array(latencies)
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(lat), "errors": len(errors),
            "error_examples": errors[:5], "throughput_rps": round(len(lat) / elapsed, 2),
            "p50_s": round(float(np.percentile(lat, 50)), 3), "p95_s": round(float(np.percentile(lat, 95)), 3),
            "max_s": round(float(lat.max()), 3)}


def loadtest(url: str | None = None, pid: int | None = None, clients: int = 8, seconds: float = 60,
             max_requests: int = 5000, workdir: Path | None = None) -> dict:
    server = None
    if url is None:
        server = Server(workdir or Path(tempfile.mkdtemp(prefix="loadtest-")), name="loadtest-server")
        url, pid = server.url, server.pid
    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise SystemExit(f"refusing to load-test {host}: loopback addresses only")
    try:
        if server is not None:
            server.wait_ready()
        idle = server_rss(pid)
        warm = run_load(url, clients, seconds=600, max_requests=2 * len(cases()))  # a round: lazy allocations
        warm_rss = server_rss(pid)
        result = run_load(url, clients, seconds, max_requests)
        after = server_rss(pid)
        result.update(rss_idle_mb=round(idle / 2**20, 1), rss_warm_mb=round(warm_rss / 2**20, 1),
                      rss_after_mb=round(after / 2**20, 1), rss_growth=round(after / warm_rss - 1, 4),
                      warmup_errors=warm["errors"])
        result["health_after"] = httpx.get(f"{url}/readyz", timeout=10).status_code
        return result
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server (loopback only); default: start one")
    p.add_argument("--pid", type=int, help="that server's process id, for its RSS")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--max-requests", type=int, default=5000)
    p.add_argument("--max-rss-growth", type=float, default=0.10)
    args = p.parse_args()
    if args.url and not args.pid:
        p.error("--url needs --pid (to measure the server's RSS)")
    result = loadtest(args.url, args.pid, args.clients, args.seconds, args.max_requests)
    print(json.dumps(result, indent=2))
    ok = result["errors"] == 0 and result["warmup_errors"] == 0 and result["rss_growth"] <= args.max_rss_growth
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
