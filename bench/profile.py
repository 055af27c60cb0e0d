"""Where a served prediction's time goes on this CPU: the predictor's stages one by one, and the ONNX Runtime
session options the serving encoder could run with (each measured, so a default is kept only where it helps)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnxruntime as ort
import soundfile as sf
import torch

from bench.common import stats_ms
from emotion_core import features
from emotion_core.audio import load_audio
from emotion_core.encoders.onnx import runtime
from emotion_core.encoders.onnx.export import INPUT_NAME, OUTPUT_NAME, TOTAL_STATES
from emotion_core.head.batching import collate, prepare
from emotion_core.head.clip_features import ClipFeatures
from emotion_core.serving.windows import plan_windows
from emotion_core.vad import speech_segments


def _rounds(calls: dict[str, Callable[[], Any]], reps: int, warmup: int = 2) -> dict[str, dict]:
    """Each call `reps` times, interleaved round by round (rotating the order), after `warmup` rounds."""
    names, times = list(calls), {name: [] for name in calls}
    for r in range(reps + warmup):
        for name in names[r % len(names):] + names[: r % len(names)]:
            started = time.perf_counter()
            calls[name]()
            if r >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: stats_ms(t) for name, t in times.items()}


def predictor_stages(predictor, clip: Path, reps: int) -> dict[str, dict]:
    """`predict` of a 3 s clip (as an uploaded wav: bytes in) and each stage it runs, timed apart."""
    audio = load_audio(clip)
    buffer = io.BytesIO()
    sf.write(buffer, audio, features.SAMPLE_RATE, format="WAV", subtype="PCM_16")
    upload = buffer.getvalue()
    segments = speech_segments(audio)
    mel = features.log_mel(audio)
    hidden = predictor.encoder.encode(audio, log_mel=mel)
    window = ClipFeatures(hidden=hidden.half(), mel=mel.half())

    def head() -> None:
        with torch.inference_mode():
            collate(prepare(predictor.model, [window])).logits(predictor.model)

    stages = {"decode (16-bit wav)": lambda: load_audio(upload),
              "voice activity (VAD)": lambda: speech_segments(audio),
              "window plan": lambda: plan_windows(len(audio), segments, max_windows=predictor.limits.max_windows),
              "log-mel": lambda: features.log_mel(audio),
              "encoder": lambda: predictor.encoder.encode(audio, log_mel=mel),
              "float16 rounding": lambda: ClipFeatures(hidden=hidden.half(), mel=mel.half()),
              "head (pooling + CNN + MLP)": head,
              "predict(), all of it": lambda: predictor.predict(upload)}
    return _rounds(stages, reps)


def session_variants() -> dict[str, Any]:
    """The serving session options and the alternatives worth measuring, as {name: SessionOptions}."""
    def options(threads: int | None = None, spinning: bool = False, arena: bool = False,
                level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        o = runtime.session_options(threads, spinning)
        o.enable_cpu_mem_arena, o.graph_optimization_level = arena, level
        return o

    threads = runtime.default_threads()
    variants = {f"served: {threads} threads, no spinning, no arena, all graph optimisations": options()}
    if threads > 1:
        variants["1 thread"] = options(threads=1)
    variants |= {"spinning threads": options(spinning=True),
                 "memory arena": options(arena=True),
                 "extended graph optimisations (no layout transforms)":
                     options(level=ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED),
                 "basic graph optimisations": options(level=ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)}
    return variants


def session_options_sweep(reps: int, seconds: float = 3.0) -> dict[str, dict[str, dict]]:
    """The served int8 file and the fp32 graph, each under every `session_variants` option set: encoder-only
    p50 on the voice-like probe signal (the one `tune_int8` times), interleaved."""
    mel = np.ascontiguousarray(runtime.probe_log_mel(seconds).numpy(), dtype=np.float32)[None]
    out = {}
    for precision in ("int8", "fp32"):
        path = runtime.exported_model(TOTAL_STATES, precision)
        sessions = {name: ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
                    for name, o in session_variants().items()}
        out[precision] = _rounds({name: (lambda s=s: s.run([OUTPUT_NAME], {INPUT_NAME: mel}))
                                  for name, s in sessions.items()}, reps)
        del sessions
    return out
