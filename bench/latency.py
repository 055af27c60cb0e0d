"""In-process latency: the variants interleaved round by round (a busy machine slows them alike), and the
encoder alone per runtime and layer count."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from bench.common import CORES, LENGTHS, log, stats_ms, torch_threads
from emotion_core import features
from emotion_core.audio import load_audio
from emotion_core.encoders import load_encoder


def interleaved(variants: dict[str, tuple[Callable[[Path], Any], int]], clips: dict[int, list[Path]],
                reps: dict[str, int], warmup: int = 2) -> dict[str, dict[str, dict]]:
    """variants: name → (call, torch threads). Round r runs every variant (rotating the order) on each length,
    a variant only while r < its reps. Returns name → "1s"/"3s"/"10s" → stats."""
    times: dict[str, dict[int, list[float]]] = {v: {n: [] for n in LENGTHS} for v in variants}
    names = list(variants)
    for n in LENGTHS:  # warm-up: first calls per length (allocations, caches) are not measured
        for name, (call, threads) in variants.items():
            with torch_threads(threads):
                for _ in range(warmup if reps[name] > 3 else 1):
                    call(clips[n][0])
    for r in range(max(reps.values())):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in LENGTHS:
            path = clips[n][r % len(clips[n])]
            for name in order:
                if r >= reps[name]:
                    continue
                call, threads = variants[name]
                with torch_threads(threads):
                    started = time.perf_counter()
                    call(path)
                    times[name][n].append(time.perf_counter() - started)
        if r % 10 == 9:
            log(f"  in-process round {r + 1}/{max(reps.values())}")
    return {v: {f"{n}s": stats_ms(t) for n, t in per.items() if t} for v, per in times.items()}


def encoder_only(clips: dict[int, list[Path]], reps: int) -> dict[str, dict]:
    """3 s clip, encoder alone: torch fp32, ONNX fp32, ONNX int8 with 7, 6, 5, 4 hidden states."""
    audio = load_audio(clips[3][0])
    mel = features.log_mel(audio)
    encoders = {"torch fp32 (7 states)": (load_encoder("whisper-base", runtime="torch"), CORES),
                "onnx fp32 (7 states)": (load_encoder("whisper-base", runtime="onnx-fp32"), 1)}
    for k in (6, 5, 4, 3):
        encoders[f"onnx int8, layers 0..{k}"] = (load_encoder("whisper-base", runtime="onnx", num_layers=k + 1), 1)
    times = {name: [] for name in encoders}
    for r in range(reps + 2):
        for name, (enc, threads) in encoders.items():
            with torch_threads(threads):
                started = time.perf_counter()
                enc.encode(audio, mel)
                if r >= 2:
                    times[name].append(time.perf_counter() - started)
    return {name: stats_ms(t) for name, t in times.items()}
