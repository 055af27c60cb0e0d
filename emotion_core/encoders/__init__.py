"""Frozen speech encoders behind one interface. `load_encoder(name)` is the only entry point callers need."""

from __future__ import annotations

import threading

from emotion_core.encoders.base import SpeechEncoder

DEFAULT_ENCODER = "whisper-base"

_instances: dict[str, SpeechEncoder] = {}
_lock = threading.Lock()  # two threads asking for the same encoder must not both load it


def load_encoder(name: str = DEFAULT_ENCODER) -> SpeechEncoder:
    """`whisper-base` (shipped weights, converted once and cached) or any transformers audio model given as a
    local directory / already-cached hub id. One shared instance per name in this process."""
    with _lock:
        if name not in _instances:
            # Imported lazily: importing the package must stay cheap (transformers takes seconds).
            if name == DEFAULT_ENCODER:
                from emotion_core.encoders.whisper import WhisperBaseEncoder

                _instances[name] = WhisperBaseEncoder()
            else:
                from emotion_core.encoders.huggingface import HFEncoder

                _instances[name] = HFEncoder(name)
        return _instances[name]


def clear_encoder_cache() -> None:
    """Drop the shared instances (tests; freeing memory)."""
    with _lock:
        _instances.clear()


__all__ = ["DEFAULT_ENCODER", "SpeechEncoder", "clear_encoder_cache", "load_encoder"]
