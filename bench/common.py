"""What every benchmark section shares: the clips it measures, timing statistics, thread settings, the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnxruntime
import soundfile as sf
import torch
import transformers

from emotion_core.audio import load_audio
from emotion_core.config import data_dir
from emotion_core.data import read_ravdess
from emotion_core.encoders.onnx.export import machine_identity
from emotion_core.encoders.onnx.runtime import usable_cores
from emotion_core.vad import speech_segments

BIN = Path(sys.executable).parent
LENGTHS = (1, 3, 10)
CORES = usable_cores()


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
    """The CPU (model, int8-relevant ISA flags), cores, memory and versions a run measured on."""
    identity = machine_identity()
    return {"cpu": identity["cpu"], "cores": CORES, "isa": identity["isa"],
            "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "transformers": transformers.__version__, "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def make_clips(folder: Path, per_length: int) -> dict[int, list[Path]]:
    """1 s / 3 s excerpts centred on the speech of RAVDESS clips (the predictor's VAD must find speech in
    them) and 10 s of one actor's clips joined; 16 kHz 16-bit wav, `per_length` actors each."""

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
        for path in rows["path"].iloc[i * 4 :]:  # the first 4 clips whose 1 s and 3 s excerpts the VAD hears
            x = load_audio(path)
            if speech_segments(x) and all(speech_segments(excerpt(x, n)) for n in (1, 3)):
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
