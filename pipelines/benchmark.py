"""Inference speed, memory and agreement, measured in ONE run on the same clips (`make bench`):

  (a) baseline, "the Hugging Face way": transformers' WhisperFeatureExtractor (pads every clip to 30 s)
      + the fp32 WhisperEncoder's own forward over all 1500 positions (our converted weights) + our head;
  (b) our torch fp32 path: `Predictor` with EMOTION_RUNTIME=torch (the clip's own length);
  (c) the optimised path: `Predictor` with the default runtime, ONNX Runtime int8 (encoders/onnx_whisper.py);
  (c') the same ONNX graph in fp32, in-process only, to separate export gains from quantisation.

    python -m pipelines.benchmark            # full: ~15-25 min on 2 cores; writes reports/benchmark.{json,md}
    python -m pipelines.benchmark --quick    # smaller samples everywhere (~5 min)

Sections: in-process latency of 1 s / 3 s / 10 s clips (p50/p95; the variants are interleaved round by
round so a busy machine slows them alike), the same over HTTP against two real `bentoml serve` processes
(torch and onnx) run side by side, serving RSS over 1000 requests, `emotion-detect` throughput on a folder,
top-1 agreement and max probability difference of (c) vs (b) on all 1440 RAVDESS clips, encoder-only time
per number of layers, embedding time of the corpus with the optimised encoder (scratch cache), and peak
RSS of training one fold. Each process keeps its serving thread settings: torch at one thread per core for
(a)/(b); ORT at `default_threads()` with torch at one thread for (c) (what loading the ONNX encoder sets).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import soundfile as sf
import torch

from emotion_core.config import PROJECT_ROOT, REPORTS_DIR, data_dir, tracking_uri
from pipelines.export import compare, predictor_for, ravdess_paths

BIN = Path(sys.executable).parent
LENGTHS = (1, 3, 10)
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# ------------------------------------------------------------------------------------------------ helpers


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def stats_ms(seconds: list[float]) -> dict[str, float]:
    a = np.asarray(seconds) * 1000
    return {"n": int(len(a)), "p50": round(float(np.median(a)), 1), "p95": round(float(np.percentile(a, 95)), 1),
            "min": round(float(a.min()), 1), "mean": round(float(a.mean()), 1)}


def machine() -> dict[str, Any]:
    import onnxruntime
    import transformers

    cpu, flags = platform.processor() or "unknown", set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return {"cpu": cpu, "cores": CORES, "isa": isa, "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__, "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def make_clips(folder: Path, per_length: int) -> dict[int, list[Path]]:
    """1 s / 3 s excerpts centred on the speech of RAVDESS clips (the predictor's VAD must find speech in
    them) and 10 s of one actor's clips joined; 16 kHz 16-bit wav, `per_length` actors each."""
    from emotion_core.audio import load_audio
    from emotion_core.data import read_ravdess
    from emotion_core.vad import speech_segments

    def excerpt(audio: np.ndarray, seconds: int) -> np.ndarray:
        longest = max(speech_segments(audio), key=lambda seg: seg.duration)
        centre = int((longest.start + longest.end) / 2 * 16000)
        start = min(max(0, centre - seconds * 8000), len(audio) - seconds * 16000)
        return audio[start : start + seconds * 16000]

    manifest = read_ravdess(data_dir() / "ravdess").sort_values("path")
    out: dict[int, list[Path]] = {n: [] for n in LENGTHS}
    for i, actor in enumerate(sorted(manifest["actor"].unique())[:per_length]):
        rows = manifest[(manifest["actor"] == actor) & (manifest["emotion"] != "neutral")]
        audio = []
        for path in rows["path"].iloc[i * 4 :]:  # the first 4 clips the VAD hears speech in
            if speech_segments(x := load_audio(path)):
                audio.append(x)
            if len(audio) == 4:
                break
        pieces = {1: excerpt(audio[0], 1), 3: excerpt(audio[1], 3), 10: np.concatenate(audio)[: 10 * 16000]}
        for n, x in pieces.items():
            assert len(x) == n * 16000 and speech_segments(x), (actor, n, len(x))
            path = folder / f"clip{n}s-{actor:02d}.wav"
            sf.write(path, x, 16000, subtype="PCM_16")
            out[n].append(path)
    return out


# ------------------------------------------------------------------------------------------------ (a) the HF way


class HFWay:
    """What a user following the transformers docs runs: pad to 30 s, full forward, then our head."""

    def __init__(self, predictor) -> None:
        from transformers import WhisperFeatureExtractor

        self.extractor = WhisperFeatureExtractor(feature_size=80, sampling_rate=16000)
        self.encoder = predictor.encoder.model  # the converted fp32 transformers WhisperEncoder
        self.head, self.temperature = predictor.model, predictor.meta.temperature

    def predict(self, path: Path) -> np.ndarray:
        from emotion_core.audio import load_audio

        audio = load_audio(path)
        mel = self.extractor(audio, sampling_rate=16000, return_tensors="pt").input_features  # [1, 80, 3000]
        with torch.inference_mode():
            hidden = torch.stack(self.encoder(mel, output_hidden_states=True).hidden_states, dim=1)  # [1, 7, 1500, 512]
            logits = self.head(hidden, torch.tensor([hidden.shape[2]]), mel, torch.tensor([mel.shape[2]]))[0]
        return torch.softmax(logits / self.temperature, -1).numpy()


# ------------------------------------------------------------------------------------------------ in-process latency


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
    from emotion_core import features
    from emotion_core.audio import load_audio
    from emotion_core.encoders import load_encoder

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


# ------------------------------------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real `bentoml serve` subprocess in its own process group, with its own BENTOML_HOME."""

    def __init__(self, runtime: str, workdir: Path) -> None:
        self.runtime, self.port = runtime, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"server-{runtime}.log"
        env = dict(os.environ, EMOTION_RUNTIME=runtime, BENTOML_HOME=str(workdir / f"bentoml-{runtime}"),
                   BENTOML_DO_NOT_TRACK="True", MLFLOW_TRACKING_URI=tracking_uri())
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "bentoml"), "serve", "emotion_core.service:EmotionService", "--host", "127.0.0.1",
                 "--port", str(self.port)], cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)

    def rss_mb(self) -> dict[str, float]:
        """RSS of the serving tree: the worker holding the model (largest) and all processes together."""
        import psutil

        root = psutil.Process(self.proc.pid)
        procs = [root, *root.children(recursive=True)]
        rss = []
        for p in procs:
            with contextlib.suppress(psutil.Error):
                rss.append(p.memory_info().rss)
        return {"worker_mb": round(max(rss) / 2**20, 1), "tree_mb": round(sum(rss) / 2**20, 1), "processes": len(rss)}

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after 30 s; workers that sit in a group of
        their own are found as children first and ended by pid."""
        import psutil

        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            children = []
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            for child in children:
                with contextlib.suppress(psutil.Error):
                    child.send_signal(sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                self.proc.poll()
                if self.proc.returncode is not None and not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE
                                                                for c in children):
                    break
                time.sleep(0.2)
            else:
                continue
            break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


def wait_all_ready(servers: dict[str, Server], timeout: float = 300) -> dict[str, float]:
    """Seconds from launch to /readyz for each server (started together, so polled together)."""
    import httpx

    started, ready = time.monotonic(), {}
    while len(ready) < len(servers):
        for name, server in servers.items():
            if name in ready:
                continue
            if server.proc.poll() is not None:
                raise RuntimeError(f"bentoml serve ({name}) exited:\n{server.log_path.read_text()[-4000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                    ready[name] = round(time.monotonic() - started, 1)
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not ready after {timeout} s: {sorted(set(servers) - set(ready))}")
        time.sleep(0.25)
    return ready


def http_benchmark(servers: dict[str, Server], clips: dict[int, list[Path]], reps: int,
                   rss_requests: int) -> dict[str, Any]:
    import httpx

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
        rss = {"0": onnx.rss_mb()}
        started = time.perf_counter()
        for i in range(1, rss_requests + 1):
            post("onnx", pool[i % len(pool)])
            if i in checkpoints:
                rss[str(i)] = onnx.rss_mb()
        result["rss"] = {"onnx": rss, "requests": rss_requests,
                         "seconds": round(time.perf_counter() - started, 1),
                         "torch_idle_after_latency_run": servers["torch"].rss_mb()}
    return result


# ------------------------------------------------------------------------------------------------ CLI, training, embedding


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
    from emotion_core.data import read_ravdess
    from emotion_core.embeddings import EmbeddingCache
    from emotion_core.encoders import load_encoder

    manifest = read_ravdess(data_dir() / "ravdess")
    subset = manifest.iloc[:: max(1, round(len(manifest) / clips))]
    cache = EmbeddingCache(load_encoder("whisper-base", runtime="onnx"), root=workdir / "scratch-embeddings")
    with torch_threads(1):
        started = time.perf_counter()
        counts = cache.build(subset, progress=False)
        seconds = time.perf_counter() - started
    return {"clips": counts["encoded"], "seconds": round(seconds, 1),
            "estimated_seconds_for_all": round(seconds * len(manifest) / counts["encoded"], 1),
            "audio_hours": round(float(subset["duration_s"].sum()) / 3600, 3), "corpus_clips": len(manifest),
            "subset": counts["encoded"] < len(manifest)}


# ------------------------------------------------------------------------------------------------ report


def layer_probe_rows() -> list[dict] | None:
    path = REPORTS_DIR / "layer_probe.json"
    return json.loads(path.read_text())["rows"] if path.exists() else None


def bars(r: dict) -> list[tuple[str, bool, str]]:
    inp, http = r["in_process"], r.get("http", {}).get("latency", {})
    c3, a3 = inp["c_onnx_int8"]["3s"]["p50"], inp["a_hf_way"]["3s"]["p50"]
    out = [("3 s clip in-process p50 ≤ 60 ms (aim 40)", c3 <= 60, f"{c3:.0f} ms"),
           ("≥ 20× faster than (a), same run", a3 / c3 >= 20, f"{a3 / c3:.0f}×")]
    if http:
        h3 = http["onnx"]["3s"]["p50"]
        out.append(("3 s clip over HTTP p50 ≤ 90 ms", h3 <= 90, f"{h3:.0f} ms"))
    ag = r["agreement"]
    out.append(("top-1 agreement (c) vs (b) ≥ 99 % on RAVDESS", ag["top1_agreement"] >= 0.99,
                f"{ag['top1_agreement']:.2%} of {ag['clips']} clips"))
    if "rss" in r.get("http", {}):
        rss = r["http"]["rss"]["onnx"]
        end, half = rss[str(r["http"]["rss"]["requests"])], rss[str(r["http"]["rss"]["requests"] // 2)]
        out.append((f"serving RSS ≤ 600 MB after {r['http']['rss']['requests']} requests", end["worker_mb"] <= 600,
                    f"{end['worker_mb']:.0f} MB (worker), {end['tree_mb']:.0f} MB (whole tree)"))
        growth = end["worker_mb"] - half["worker_mb"]
        out.append(("RSS flat between the halfway mark and the end (≤ 5 % growth)", growth <= 0.05 * half["worker_mb"],
                    f"{growth:+.0f} MB"))
    if "embedding" in r:
        est = r["embedding"]["estimated_seconds_for_all"]
        out.append(("embedding the 1440 RAVDESS clips ≤ 4 min", est <= 240, f"{est:.0f} s"
                    + (" (extrapolated from a subset)" if r["embedding"]["subset"] else "")))
    if "training" in r:
        peak = r["training"]["peak_rss_mb"]
        out.append(("training one fold: peak RSS ≤ 3 GB", peak <= 3072, f"{peak:.0f} MB"))
    return out


def cpu_snapshot() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process + its waited-for children)."""
    import psutil

    t, own = psutil.cpu_times(), os.times()
    return (t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0),
            own.user + own.system + own.children_user + own.children_system)


def shared(r: dict) -> bool:
    """Was other work competing for the CPU? From the measured CPU share of other processes (the load average
    can't tell: the benchmark itself keeps both cores busy, and the 1-min average lags the previous job)."""
    return r.get("other_cpu_share", 0.0) > 0.15


def markdown(r: dict) -> str:
    m = r["machine"]
    inp = r["in_process"]
    lines = [f"Machine: **{m['cpu']}**, {m['cores']} cores ({', '.join(m['isa'])}), {m['memory_gib']} GiB; Python {m['python']}, "
             f"torch {m['torch']}, onnxruntime {m['onnxruntime']}, transformers {m['transformers']}. "
             f"Load average {m['load_average_start']} at the start, {r['load_average_end']} at the end"
             + (f"; other processes used {r['other_cpu_share']:.0%} of the CPU during the run" if "other_cpu_share" in r else "")
             + (" — **the machine was shared with other work**, so absolute times are noisy; the ratios come from "
                "variants measured interleaved in the same rounds." if shared(r) else ".")
             + f" Model `{r['model_uri']}`. Mode: {'quick' if r['quick'] else 'full'}; {r['seconds']:.0f} s in all"
             + (f" (resumed after a crash: {', '.join(r['resumed']['sections'])} from the first process; load average "
                f"{r['resumed']['machine_at_resume']['load_average_start']} at the resume)." if r.get("resumed") else "."), "",
             "**In-process latency** of `predict(path)` (decode → log-mel → encoder → head), ms, p50 / p95:", "",
             "| clip | (a) HF way: pad to 30 s, fp32 | (b) torch fp32, own length | (c) ONNX int8 | (c') ONNX fp32 | (a)/(c) | (b)/(c) |",
             "|---|---|---|---|---|---|---|"]
    for n in LENGTHS:
        k = f"{n}s"
        a, b, c, c2 = (inp[v][k] for v in ("a_hf_way", "b_torch_fp32", "c_onnx_int8", "c_onnx_fp32"))
        lines.append(f"| {n} s | {a['p50']:.0f} / {a['p95']:.0f} | {b['p50']:.0f} / {b['p95']:.0f} | **{c['p50']:.0f}** / {c['p95']:.0f} "
                     f"| {c2['p50']:.0f} / {c2['p95']:.0f} | {a['p50'] / c['p50']:.0f}× | {b['p50'] / c['p50']:.1f}× |")
    loads = r.get("load_average_after", {})
    lines.append(f"\n(a) ran {inp['a_hf_way']['3s']['n']}×, the others {inp['c_onnx_int8']['3s']['n']}× per length. "
                 "10 s clips go through the predictor's voiced windows (several encoder passes). On a busy machine "
                 "torch's OpenMP threads (a, b) slow down far more than ONNX Runtime's (c), so these ratios grow with "
                 "the load" + (f" (1-min load when the section ended: {loads['in_process']}; HTTP section: "
                               f"{loads.get('http', '?')})" if "in_process" in loads else "")
                 + "; the HTTP table compares (b) and (c) again.")
    if "http" in r:
        h = r["http"]["latency"]
        lines += ["", "**Over HTTP** (`POST /predict-emotion/`, real `bentoml serve`, both servers up, requests alternated), ms, p50 / p95:", "",
                  "| clip | (b) torch server | (c) onnx server |", "|---|---|---|"]
        for n in LENGTHS:
            b, c = h["torch"][f"{n}s"], h["onnx"][f"{n}s"]
            lines.append(f"| {n} s | {b['p50']:.0f} / {b['p95']:.0f} | **{c['p50']:.0f}** / {c['p95']:.0f} |")
        rss = r["http"]["rss"]
        lines += ["", f"**Serving RSS** of the onnx server over {rss['requests']} mixed 1/3/10 s requests ({rss['seconds']:.0f} s), MB:", "",
                  "| requests | " + " | ".join(rss["onnx"]) + " |", "|---" * (len(rss["onnx"]) + 1) + "|",
                  "| worker (model) | " + " | ".join(f"{v['worker_mb']:.0f}" for v in rss["onnx"].values()) + " |",
                  "| whole `bentoml serve` tree | " + " | ".join(f"{v['tree_mb']:.0f}" for v in rss["onnx"].values()) + " |",
                  f"\nThe torch server, idle after its latency run: worker {rss['torch_idle_after_latency_run']['worker_mb']:.0f} MB. "
                  f"Startup to ready: torch {r['http']['ready_s']['torch']:.0f} s, onnx {r['http']['ready_s']['onnx']:.0f} s."]
    if "cli" in r:
        cl = r["cli"]
        lines += ["", f"**Batch CLI** (`emotion-detect --csv` on a folder of {cl['onnx']['clips']} RAVDESS clips, "
                  f"{cl['onnx'].get('no_speech_or_bad', 0)} of them answered 'no speech'; wall time includes startup):", "",
                  "| runtime | wall | clips/s | clips/s after startup | startup + 1 clip |", "|---|---|---|---|---|"]
        for name in ("torch", "onnx"):
            x = cl[name]
            lines.append(f"| {name} | {x['wall_s']:.0f} s | {x['clips_per_s']:.1f} | {x['clips_per_s_after_startup']:.1f} | {x['startup_and_one_clip_s']:.1f} s |")
    ag = r["agreement"]
    lines += ["", f"**Agreement** of (c) with (b) on {ag['clips']} RAVDESS clips (full predictor): top-1 **{ag['top1_agreement']:.2%}** "
              f"({ag['disagreements']} differ), max probability difference {ag['max_prob_diff']:.3f} "
              f"(p99 {ag['p99_max_prob_diff']:.3f}, mean {ag['mean_max_prob_diff']:.3f}). "
              f"Throughput in that loop: (b) {ag['reference_ms_per_clip']:.0f} ms/clip, (c) {ag['candidate_ms_per_clip']:.0f} ms/clip."]
    enc = r["encoder_only"]
    lines += ["", "**Encoder alone**, 3 s clip, ms p50 (int8 stopping after layer k runs k of the 6 transformer layers):", "",
              "| encoder | p50 | p95 |", "|---|---|---|"] + [f"| {k} | {v['p50']:.1f} | {v['p95']:.1f} |" for k, v in enc.items()]
    if rows := r.get("layer_probe"):
        lines += ["", "Linear probe (mean+std pooled, standardised logistic regression C=0.01, 6 EmoBox folds; "
                  "`python -m pipelines.layer_probe`): " + ", ".join(f"layers {x['layers']}: {x['ua_mean']:.1%} ± {x['ua_std']:.1%}" for x in rows) + "."]
    if "embedding" in r:
        e = r["embedding"]
        lines += ["", f"**Embedding** {e['clips']} RAVDESS clips with (c) into a scratch cache: {e['seconds']:.0f} s"
                  + (f" → ~{e['estimated_seconds_for_all']:.0f} s for all {e['corpus_clips']} (extrapolated)" if e["subset"] else "")
                  + ". The real cache stays fp32 torch (`make embed`)."]
    if "training" in r:
        t = r["training"]
        lines += [f"**Training** one fold (`{t['command']}`, child process): peak RSS {t['peak_rss_mb']:.0f} MB, {t['wall_s']:.0f} s."]
    lines += ["", "| bar | result | measured |", "|---|---|---|"] + [f"| {b} | {'PASS' if ok else 'FAIL'} | {v} |" for b, ok, v in r["bars"]]
    return "\n".join(lines) + "\n"


def readme_text(r: dict) -> str:
    inp = r["in_process"]
    c3, a3, b3 = (inp[v]["3s"]["p50"] for v in ("c_onnx_int8", "a_hf_way", "b_torch_fp32"))
    http = r.get("http", {}).get("latency", {})
    ag = r["agreement"]
    busy = shared(r)
    text = (f"A 3 s clip takes **{c3:.0f} ms** in-process (p50) with the default ONNX Runtime int8 encoder, against "
            f"{a3:.0f} ms the Hugging Face way (padded to 30 s, fp32) and {b3:.0f} ms for our torch fp32 path, "
            f"interleaved in the same run (**{a3 / c3:.0f}×** and {b3 / c3:.0f}×"
            + ("; the machine was busy, which slows torch's threads far more than ONNX Runtime's" if busy else "") + ")")
    if http:
        text += (f"; over HTTP {http['onnx']['3s']['p50']:.0f} ms against {http['torch']['3s']['p50']:.0f} ms for a "
                 "torch server")
    text += (f". Top-1 agreement with the fp32 path: {ag['top1_agreement']:.2%} of {ag['clips']} RAVDESS clips "
             f"(`{r['model_uri']}`). Machine: {r['machine']['cpu']}, {r['machine']['cores']} cores. Every figure "
             "(1/3/10 s, p95, RSS, CLI, layers, training): [`reports/benchmark.md`](reports/benchmark.md), written by `make bench`.")
    return text


# ------------------------------------------------------------------------------------------------ main


def pin_model() -> str:
    """models:/name@alias → models:/name/<version> in $EMOTION_MODEL_URI for this run and its subprocesses, so
    every section measures the same model even if the alias moves meanwhile."""
    import mlflow

    from emotion_core.config import model_uri
    from pipelines.export import _model_version

    uri = model_uri()
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())
    version = _model_version(uri) if "@" in uri else None
    pinned = f"models:/{version.name}/{version.version}" if version else uri
    os.environ["EMOTION_MODEL_URI"] = pinned
    return pinned


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller samples everywhere (a few minutes)")
    p.add_argument("--skip-http", action="store_true")
    p.add_argument("--skip-cli", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-embed", action="store_true")
    p.add_argument("--agreement-clips", type=int, default=None, help="default: 1440 (quick: 120)")
    p.add_argument("--out", type=Path, default=REPORTS_DIR)
    p.add_argument("--no-readme", action="store_true", help="don't rewrite the README's generated benchmark section")
    p.add_argument("--render", action="store_true", help="only rewrite benchmark.md and the README from benchmark.json")
    p.add_argument("--resume", action="store_true",
                   help="keep the sections reports/benchmark.partial.json already holds (same model) and run the rest")
    args = p.parse_args(argv)
    # SIGTERM → SystemExit, so the `finally` blocks still stop the servers and remove the scratch folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.render:
        saved = json.loads((args.out / "benchmark.json").read_text())
        saved["bars"] = bars(saved)
        return write_reports(saved, args.out, readme=not args.no_readme)
    q = args.quick
    n = {"a": 3 if q else 10, "bc": 10 if q else 40, "http": 8 if q else 30, "rss": 200 if q else 1000,
         "cli": 30 if q else 200, "agree": args.agreement_clips or (120 if q else 1440), "embed": 120 if q else 1440,
         "enc": 10 if q else 30}
    started, cpu_start = time.perf_counter(), cpu_snapshot()
    result: dict[str, Any] = {"quick": q, "machine": machine(), "samples": n, "model_uri": pin_model()}
    partial = args.out / "benchmark.partial.json"
    if args.resume and partial.exists():
        saved = json.loads(partial.read_text())
        if saved.get("model_uri") == result["model_uri"] and saved.get("quick") == q:
            resumed = [k for k in ("in_process", "encoder_only", "agreement", "http", "cli", "embedding") if k in saved]
            result = {**saved, "resumed": {"sections": resumed, "machine_at_resume": result["machine"]}}
            log(f"resuming: keeping {resumed} from {partial}")
    log(f"machine: {result['machine']}")
    workdir = Path(tempfile.mkdtemp(prefix="emotion-bench-"))
    args.out.mkdir(parents=True, exist_ok=True)

    def checkpoint() -> None:  # what is measured so far survives a crash (benchmark.partial.json)
        done = [k for k in ("in_process", "agreement", "http", "cli", "embedding") if k in result]
        loads = result.setdefault("load_average_after", {})
        for key in done:  # the 1-minute load when each section ended: how busy the machine was for it
            loads.setdefault(key, round(os.getloadavg()[0], 2))
        (args.out / "benchmark.partial.json").write_text(json.dumps(result, indent=2, default=str))

    try:
        clips = make_clips(workdir, per_length=3 if q else 5)

        if "agreement" not in result:
            log("loading predictors (torch fp32, onnx int8, onnx fp32) and the HF-way baseline")
            b = predictor_for("torch")
            c = predictor_for("onnx")
            c2 = predictor_for("onnx-fp32")
            a = HFWay(b)
            log(f"in-process latency: (a) {n['a']}×, (b)/(c)/(c') {n['bc']}× per length")
            result["in_process"] = interleaved(
                {"a_hf_way": (a.predict, CORES), "b_torch_fp32": (b.predict, CORES),
                 "c_onnx_int8": (c.predict, 1), "c_onnx_fp32": (c2.predict, 1)},
                clips, {"a_hf_way": n["a"], "b_torch_fp32": n["bc"], "c_onnx_int8": n["bc"], "c_onnx_fp32": n["bc"]})
            log(f"  {json.dumps({k: v['3s']['p50'] for k, v in result['in_process'].items()})} (3 s p50, ms)")
            checkpoint()
            log("encoder alone, 3 s")
            result["encoder_only"] = encoder_only(clips, n["enc"])

            log(f"agreement (c) vs (b) on {n['agree']} RAVDESS clips")
            every = max(1, round(1440 / n["agree"]))
            with torch_threads(CORES):  # (b)'s setting; (c) runs in ORT, its torch part is tiny either way
                result["agreement"] = compare(b, c, ravdess_paths(every))
            log(f"  {result['agreement']}")
            checkpoint()
            del a, b, c, c2

        if not args.skip_http and "http" not in result:
            log("HTTP: starting torch and onnx servers")
            servers = {"torch": Server("torch", workdir), "onnx": Server("onnx", workdir)}
            try:
                ready = wait_all_ready(servers)
                result["http"] = http_benchmark(servers, clips, n["http"], n["rss"])
                result["http"]["ready_s"] = ready
            finally:
                for s in servers.values():
                    s.stop()
            log(f"  {json.dumps({k: v['3s']['p50'] for k, v in result['http']['latency'].items()})} (3 s p50, ms); "
                f"RSS {result['http']['rss']['onnx']}")
            checkpoint()

        if not args.skip_cli and "cli" not in result:
            log(f"batch CLI on {n['cli']} clips")
            folder = workdir / "cli-clips"
            folder.mkdir()
            for path in ravdess_paths(max(1, 1440 // n["cli"]))[: n["cli"]]:
                os.symlink(path, folder / Path(path).name)
            one = next(folder.iterdir())
            result["cli"] = {rt: cli_throughput(folder, one, rt) for rt in ("torch", "onnx")}
            log(f"  {result['cli']}")
            checkpoint()

        if not args.skip_embed and "embedding" not in result:
            log(f"embedding {n['embed']} clips with the optimised encoder (scratch cache)")
            result["embedding"] = embedding_time(n["embed"], workdir)
            log(f"  {result['embedding']}")
            checkpoint()
        if not args.skip_train:
            log("training one fold of the default config in a child process")
            result["training"] = training_peak_rss(q, workdir)
            log(f"  {result['training']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result["layer_probe"] = layer_probe_rows()
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["seconds"] = round(time.perf_counter() - started, 1)
    (busy0, own0), (busy1, own1) = cpu_start, cpu_snapshot()
    if not result.get("resumed"):
        other = max(0.0, (busy1 - busy0) - (own1 - own0)) / (result["seconds"] * result["machine"]["cores"])
        result["other_cpu_share"] = round(other, 3)
    result["bars"] = bars(result)
    return write_reports(result, args.out, readme=not args.no_readme)


def write_reports(result: dict[str, Any], out: Path, readme: bool = True) -> int:
    """benchmark.json, benchmark.md and the README's generated section; exit status 0 when every bar passes."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "benchmark.partial.json").unlink(missing_ok=True)
    md = markdown(result)
    (out / "benchmark.md").write_text("# Inference benchmark\n\n" + md)
    if readme:
        from emotion_core.reporting import update_generated_section

        update_generated_section("benchmark", readme_text(result))
    print(md)
    return 0 if all(ok for _, ok, _ in result["bars"]) else 1


if __name__ == "__main__":
    sys.exit(main())
