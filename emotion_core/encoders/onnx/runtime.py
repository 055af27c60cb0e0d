"""Whisper-base's encoder on ONNX Runtime: the serving path (`load_encoder("whisper-base")` by default).

It loads the file `export.py` built (or, with `EMOTION_ONNX_DIR` / `onnx_dir=`, a folder of files exported
elsewhere, e.g. the ones `pipelines/export.py` logged with the registered model; a file is used only if the
weights fingerprint stored inside it matches). Every start after the first export only loads it: no torch
weights, no transformers import.

* **Session.** One `InferenceSession` per encoder, created once: intra-op threads = usable cores (≤ 4,
  `EMOTION_ONNX_THREADS` overrides), one inter-op thread, sequential execution, all graph optimisations,
  no spin-waiting between ops (`EMOTION_ONNX_SPIN=1` turns it on), no memory arena, and a warm-up run at
  construction so the first request pays no first-run allocation. A `Predictor` serving with it sets torch
  to one intra-op thread (`use_serving_torch_threads`, `EMOTION_TORCH_THREADS`, 0 = leave): torch then only
  computes the log-mel and the head, and its thread pool would otherwise contend with ORT's.

The fingerprint is the *weights'* fingerprint (the same as the torch encoder's), so heads trained on the
fp32 torch features load unchanged; `runtime` ("onnx-int8" / "onnx-fp32") says what computes them. The
embedding cache stays fp32-torch-derived: `EmbeddingCache.build` refuses another runtime.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
from pathlib import Path

import numpy as np
import torch

from emotion_core import features
from emotion_core.encoders import whisper
from emotion_core.encoders.base import SpeechEncoder
from emotion_core.encoders.onnx.export import (
    INPUT_NAME,
    MAX_MEL_FRAMES,
    META_FINGERPRINT,
    OUTPUT_NAME,
    TOTAL_STATES,
    exported_model,
    model_filename,
)

log = logging.getLogger(__name__)


def use_serving_torch_threads() -> None:
    """For a process that serves with this encoder (the `Predictor`): beside it torch only computes the
    log-mel and the head, and with its default pool (one thread per core) its OpenMP threads contend with
    ORT's, which on a busy machine costs more than the whole head. $EMOTION_TORCH_THREADS
    overrides (default 1; 0 leaves torch as it is). Not done by the encoder itself: a process that also
    trains (crossval's int8 check) keeps its own setting."""
    torch_threads = int(os.environ.get("EMOTION_TORCH_THREADS", "1"))
    if torch_threads > 0 and torch.get_num_threads() != torch_threads:
        log.info("torch intra-op threads %d → %d (the encoder runs in ONNX Runtime)", torch.get_num_threads(), torch_threads)
        torch.set_num_threads(torch_threads)


def default_threads() -> int:
    if env := os.environ.get("EMOTION_ONNX_THREADS"):
        return max(1, int(env))
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores))


def session_options(threads: int | None = None, spinning: bool | None = None):
    import onnxruntime as ort  # optional: ImportError → load_encoder falls back to torch

    if spinning is None:
        spinning = os.environ.get("EMOTION_ONNX_SPIN", "0") == "1"

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or default_threads()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning worker threads shave a little latency on an idle machine but fight every other process for
    # the cores (slower on a shared box). Off by default; EMOTION_ONNX_SPIN=1 turns it on.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3  # errors only
    # No arena: it would keep the largest activations ever seen (a 30 s clip's) for the process's life;
    # plain malloc/free measured as fast, and lighter.
    options.enable_cpu_mem_arena = False
    return options


def _release_freed_heap() -> None:
    """Hand freed heap pages back to the OS (glibc's malloc_trim; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class OnnxWhisperEncoder(SpeechEncoder):
    """Whisper-base on ONNX Runtime (int8 by default): same interface, shapes and fingerprint as
    `WhisperBaseEncoder`; `runtime` is "onnx-int8" or "onnx-fp32" and `session` the InferenceSession."""

    name = whisper.NAME
    hidden_size = whisper.HIDDEN_SIZE
    frame_rate = 50.0
    max_seconds = 30.0

    def __init__(self, num_layers: int | None = None, precision: str = "int8", cache_root: Path | None = None,
                 onnx_dir: str | Path | None = None, threads: int | None = None, warmup: bool = True):
        import onnxruntime as ort  # ImportError → load_encoder falls back to torch

        self.num_layers = num_layers or TOTAL_STATES
        self.precision = precision
        self.runtime = f"onnx-{precision}"
        self.fingerprint = whisper.fingerprint()
        onnx_dir = onnx_dir or os.environ.get("EMOTION_ONNX_DIR") or None
        shipped = Path(onnx_dir) / model_filename(self.num_layers, precision) if onnx_dir else None
        self.model_path = shipped if shipped and shipped.is_file() else exported_model(self.num_layers, precision, cache_root)
        self.threads = threads or default_threads()
        self.session = ort.InferenceSession(str(self.model_path), session_options(self.threads),
                                            providers=["CPUExecutionProvider"])
        stored = self.session.get_modelmeta().custom_metadata_map
        if stored.get(META_FINGERPRINT) != self.fingerprint or stored.get("emotion.num_layers") != str(self.num_layers):
            raise RuntimeError(f"{self.model_path} was exported from weights {stored.get(META_FINGERPRINT)} with "
                               f"{stored.get('emotion.num_layers')} states; expected {self.fingerprint} with {self.num_layers}")
        self._max_mel_frames = MAX_MEL_FRAMES
        if warmup:  # first-run allocations and kernel selection happen here, not in the first request
            self.encode(np.zeros(3 * features.SAMPLE_RATE, np.float32) + 1e-3)
        _release_freed_heap()  # the parsed model protobuf, the warm-up's buffers

    def encode(self, audio: np.ndarray, log_mel: torch.Tensor | None = None) -> torch.Tensor:
        log_mel = whisper.checked_log_mel(audio, log_mel, self.name, self.max_seconds, self._max_mel_frames)
        mel = np.ascontiguousarray(log_mel.detach().numpy(), dtype=np.float32)[None]
        if mel.shape[2] < 2:  # the graph's smallest time axis; one mel frame is padded like a 2-frame clip
            mel = np.pad(mel, ((0, 0), (0, 0), (0, 2 - mel.shape[2])))
        hidden = self.session.run([OUTPUT_NAME], {INPUT_NAME: mel})[0]
        return torch.from_numpy(hidden)
