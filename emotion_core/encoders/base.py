"""The one interface every frozen speech encoder implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch


class SpeechEncoder(ABC):
    """A frozen, eval-mode speech encoder: 16 kHz mono audio → all hidden states.

    `encode` returns a float32 tensor [num_layers, frames, hidden_size], where layer 0 is the embedding
    output and the last is the final layer (for Whisper: after the final layer norm, as transformers
    returns it). It never pads short audio to a fixed length, and it never builds autograd graphs.
    """

    #: Short name, e.g. "whisper-base" or "facebook/wav2vec2-base"; stored with trained heads.
    name: str
    #: Number of hidden states `encode` returns (embeddings + transformer layers).
    num_layers: int
    hidden_size: int
    #: Encoder frames per second of audio (50 for Whisper and, approximately, wav2vec2).
    frame_rate: float
    #: Identity of the weights (hash of file contents/config): part of every embedding-cache key.
    fingerprint: str
    #: Longest audio (seconds) one `encode` call accepts; callers window longer audio.
    max_seconds: float
    #: What computes `encode`: "torch" (the fp32 reference the embedding cache and every trained head
    #: use) or an optimised runtime such as "onnx-int8". `fingerprint` names the weights, not the runtime.
    runtime: str = "torch"

    def describe(self) -> dict:
        """What runs, for health answers and reports (optimised runtimes add their build details)."""
        return {"runtime": self.runtime, "int8_variant": None}

    @abstractmethod
    def encode(self, audio: np.ndarray, log_mel: torch.Tensor | None = None) -> torch.Tensor:
        """audio: float32 [samples] at 16 kHz. `log_mel` ([80, frames], from `features.log_mel`) may be
        passed to skip recomputing it for encoders that consume it (Whisper); others ignore it."""
