"""Frozen speech encoders behind one interface. `load_encoder(name)` is the only entry point callers need."""

from __future__ import annotations

import logging
import os
import threading

from emotion_core.encoders import whisper
from emotion_core.encoders.base import SpeechEncoder
from emotion_core.integrity import IntegrityError

DEFAULT_ENCODER = "whisper-base"
#: `runtime` values: "onnx" (= "onnx-int8", the serving default for whisper-base), "onnx-fp32", "torch".
RUNTIMES = ("onnx", "onnx-int8", "onnx-fp32", "torch")
RUNTIME_ENV = "EMOTION_RUNTIME"

log = logging.getLogger(__name__)

_instances: dict[tuple[str, str, int | None], SpeechEncoder] = {}
_lock = threading.Lock()  # two threads asking for the same encoder must not both load it


def default_runtime() -> str:
    runtime = (os.environ.get(RUNTIME_ENV) or "onnx").strip().lower()
    if runtime not in RUNTIMES:
        raise ValueError(f"{RUNTIME_ENV}={runtime!r}: expected one of {', '.join(RUNTIMES)}")
    return runtime


def load_encoder(name: str = DEFAULT_ENCODER, runtime: str | None = None, num_layers: int | None = None) -> SpeechEncoder:
    """`whisper-base` (shipped weights, converted once and cached) or any transformers audio model given as a
    local directory / already-cached hub id. One shared instance per (name, runtime, num_layers) in this process.

    runtime: "onnx" (default for whisper-base, from $EMOTION_RUNTIME: ONNX Runtime, int8; see
    encoders/onnx/runtime.py), "onnx-fp32", or "torch" (the fp32 reference: embedding cache, training).
    If ONNX Runtime or the export is unavailable, whisper-base falls back to torch with a warning
    (`encoder.runtime` says which one runs). Other encoders always run in torch.
    num_layers: return only the first `num_layers` hidden states (whisper-base stops after layer
    num_layers - 1, saving the layers above); None = all.
    """
    runtime = (runtime or default_runtime()).strip().lower()
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if name != DEFAULT_ENCODER:
        runtime = "torch"  # only whisper-base has an ONNX export
    elif num_layers == whisper.NUM_STATES:
        num_layers = None  # all of them: the same instance as load_encoder()
    key = (name, runtime, num_layers)
    with _lock:
        if key not in _instances:
            # Imported lazily: importing the package must stay cheap (transformers takes seconds).
            if name != DEFAULT_ENCODER:
                # transformers (seconds, ~150 MB): only for hub encoders
                from emotion_core.encoders.huggingface import HFEncoder

                encoder = HFEncoder(name)
                if num_layers is not None and num_layers != encoder.num_layers:
                    raise ValueError(f"{name} returns {encoder.num_layers} hidden states; num_layers={num_layers} "
                                     "is only supported for whisper-base")
            elif runtime == "torch":
                encoder = _torch_whisper(num_layers)
            else:
                try:
                    # ImportError without onnxruntime → the torch fallback below
                    from emotion_core.encoders.onnx.runtime import OnnxWhisperEncoder

                    precision = "fp32" if runtime == "onnx-fp32" else "int8"
                    encoder = OnnxWhisperEncoder(num_layers=num_layers, precision=precision)
                except IntegrityError:
                    raise  # a file that is not what was exported is never served, nor silently replaced
                except Exception as exc:  # noqa: BLE001 - no onnxruntime, failed export: serve anyway, loudly
                    log.error("ONNX Runtime encoder FAILED to load (%s: %s): %s runs in torch fp32 instead (slower); "
                              "`GET /` reports runtime=torch. Fix it with `make export`.",
                              type(exc).__name__, exc, name)
                    encoder = _torch_whisper(num_layers)
                    encoder.fallback_reason = f"{type(exc).__name__}: {exc}"
            _instances[key] = encoder
        return _instances[key]


def _torch_whisper(num_layers: int | None) -> SpeechEncoder:
    return whisper.WhisperBaseEncoder(num_layers=num_layers)


def clear_encoder_cache() -> None:
    """Drop the shared instances (tests; freeing memory)."""
    with _lock:
        _instances.clear()


__all__ = ["DEFAULT_ENCODER", "RUNTIMES", "SpeechEncoder", "clear_encoder_cache", "default_runtime", "load_encoder"]
