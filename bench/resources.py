"""Resources: serving RSS, the batch CLI's throughput, training's peak RSS, embedding time, CPU accounting."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import BIN, torch_threads
from emotion_core.config import PROJECT_ROOT, EncoderConfig, data_dir, tracking_uri
from emotion_core.data import read_ravdess
from emotion_core.encoders import load_encoder
from emotion_core.front_end import FrontEnd
from emotion_core.research.cache import EmbeddingCache


def rss_mb(pid: int) -> dict[str, float]:
    """RSS of a serving tree: the worker holding the model (largest) and all processes together."""
    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    rss = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            rss.append(p.memory_info().rss)
    return {"worker_mb": round(max(rss) / 2**20, 1), "tree_mb": round(sum(rss) / 2**20, 1), "processes": len(rss)}


def cli_throughput(folder: Path, one: Path, runtime: str) -> dict[str, float]:
    env = dict(os.environ, EMOTION_RUNTIME=runtime, MLFLOW_TRACKING_URI=tracking_uri())
    files = len(list(folder.iterdir()))
    errors: dict[bool, int] = {}

    def run(target: Path) -> float:
        started = time.perf_counter()
        done = subprocess.run([str(BIN / "emotion-detect"), "--csv", str(target)], env=env, capture_output=True,
                              text=True, timeout=3600)
        rows = done.stdout.strip().splitlines()[1:]
        # Exit code 1 = some files had no speech / bad audio (reported per row); anything else is a failure.
        if done.returncode not in (0, 1) or len(rows) != (files if target.is_dir() else 1):
            raise RuntimeError(f"emotion-detect ({runtime}) failed ({done.returncode}):\n{done.stderr[-3000:]}")
        errors[target.is_dir()] = sum(1 for r in rows if r.rstrip().split(",")[-1])
        return time.perf_counter() - started

    single, total = run(one), run(folder)
    return {"clips": files, "wall_s": round(total, 1), "startup_and_one_clip_s": round(single, 1),
            "clips_per_s": round(files / total, 2),
            "clips_per_s_after_startup": round((files - 1) / max(total - single, 1e-6), 2),
            "no_speech_or_bad": errors.get(True, 0)}


def training_peak_rss(quick: bool, workdir: Path) -> dict[str, Any]:
    """`python -m pipelines.train --config default` with fold 1 held out (one CV fold) in a child process,
    into a scratch MLflow store; its own peak RSS from wait4's rusage."""
    cmd = [sys.executable, "-m", "pipelines.train", "--config", "default", "--set", "data.test_folds=[1]"]
    cmd += ["--set", "train.epochs=2"] if quick else []
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'train-mlflow.db'}",
               EMOTION_REPORTS_DIR=str(workdir / "reports"), EMOTION_RUNTIME="torch")
    started = time.perf_counter()
    with (workdir / "train.log").open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed:\n{(workdir / 'train.log').read_text()[-3000:]}")
    return {"command": " ".join(cmd[1:]), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "wall_s": round(time.perf_counter() - started, 1)}


def embedding_time(clips: int, workdir: Path) -> dict[str, Any]:
    """The RAVDESS corpus (or an even subset) through the optimised encoder into a scratch cache: decode +
    log-mel + encode + write float16, as `EmbeddingCache.build` does (the real fp32 cache is not touched)."""
    manifest = read_ravdess(data_dir() / "ravdess")
    subset = manifest.iloc[:: max(1, round(len(manifest) / clips))]
    cache = EmbeddingCache(load_encoder("whisper-base", runtime="onnx"), FrontEnd.of(EncoderConfig()),
                           root=workdir / "scratch-embeddings")
    with torch_threads(1):
        started = time.perf_counter()
        counts = cache.build(subset, progress=False)
        seconds = time.perf_counter() - started
    return {"clips": counts["encoded"], "seconds": round(seconds, 1),
            "estimated_seconds_for_all": round(seconds * len(manifest) / counts["encoded"], 1),
            "audio_hours": round(float(subset["duration_s"].sum()) / 3600, 3), "corpus_clips": len(manifest),
            "subset": counts["encoded"] < len(manifest)}


def cpu_snapshot() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process + its waited-for children)."""
    t, own = psutil.cpu_times(), os.times()
    return (t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0),
            own.user + own.system + own.children_user + own.children_system)
