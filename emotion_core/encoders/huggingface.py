"""Any transformers speech encoder (wav2vec2, HuBERT, WavLM, …, or a Whisper checkpoint), loaded offline.

The name is a local model directory or a hub id already in the Hugging Face cache: nothing is downloaded
(`local_files_only`), so a missing model fails fast with a clear message instead of hanging on the network.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

from emotion_core import features
from emotion_core.encoders.base import SpeechEncoder

_FINGERPRINT_SUFFIXES = {".json", ".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5", ".txt", ".model"}
_SAMPLE_BYTES = 1 << 20  # big files are identified by size + first/last MiB: cheap, and enough to tell apart


def resolve_model_dir(name: str) -> Path:
    """A local directory, or the cached snapshot of a hub id (never downloads)."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if name.startswith((".", "/", "~")):  # clearly meant as a path, not a hub id
        raise FileNotFoundError(f"encoder {name!r}: no such model directory")
    from huggingface_hub import snapshot_download  # only to resolve a hub id that is not a local folder

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except (OSError, ValueError) as exc:  # LocalEntryNotFoundError is an OSError; bad ids raise ValueError
        raise FileNotFoundError(
            f"encoder {name!r} is not in the local Hugging Face cache and this project never downloads at "
            f"run time ({type(exc).__name__}). Set the encoder name to a local model directory (one saved "
            f"with save_pretrained), or fetch it once beforehand with `hf download {name}`."
        ) from None


def dir_fingerprint(model_dir: Path) -> str:
    """Hash of names, sizes and contents (sampled for big files) of the config/weight files."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model_dir.rglob("*") if p.is_file() and p.suffix in _FINGERPRINT_SUFFIXES):
        if any(part.startswith(".") for part in path.relative_to(model_dir).parts):
            continue  # e.g. .cache/ written by hf download --local-dir
        size = path.stat().st_size
        digest.update(f"{path.relative_to(model_dir).as_posix()} {size}\n".encode())
        with open(path, "rb") as fh:
            if size <= 2 * _SAMPLE_BYTES:
                digest.update(fh.read())
            else:
                digest.update(fh.read(_SAMPLE_BYTES))
                fh.seek(-_SAMPLE_BYTES, 2)
                digest.update(fh.read())
    return digest.hexdigest()[:16]


class HFEncoder(SpeechEncoder):
    """Frozen transformers audio model → all hidden states [num_layers, frames, hidden_size] (float32)."""

    def __init__(self, name: str, max_seconds: float = 30.0):
        self.name = name
        self.model_dir = resolve_model_dir(name)
        self.fingerprint = dir_fingerprint(self.model_dir)
        self.max_seconds = max_seconds
        config = AutoConfig.from_pretrained(self.model_dir, local_files_only=True)
        self._whisper = config.model_type == "whisper"
        # dtype explicit: transformers 5 would otherwise keep the checkpoint's (possibly half) dtype.
        model = AutoModel.from_pretrained(self.model_dir, local_files_only=True, dtype=torch.float32)
        if self._whisper:
            # Whisper: use its encoder on our own log-mel, without padding to 30 s (see whisper.py).
            if config.num_mel_bins != features.N_MELS:
                bins = config.num_mel_bins
                raise ValueError(f"{name}: {bins} mel bins; only {features.N_MELS}-mel Whisper checkpoints work here")
            model = model.get_encoder()
            self.max_seconds = min(max_seconds, 2 * config.max_source_positions / features.MEL_FRAME_RATE)
            self.feature_extractor = None
        else:
            try:
                self.feature_extractor = AutoFeatureExtractor.from_pretrained(self.model_dir, local_files_only=True)
            except (OSError, ValueError):  # no preprocessor_config.json: feed the raw waveform
                self.feature_extractor = None
            rate = getattr(self.feature_extractor, "sampling_rate", features.SAMPLE_RATE)
            if rate != features.SAMPLE_RATE:
                raise ValueError(f"{name} expects {rate} Hz audio; this project works at {features.SAMPLE_RATE} Hz")
        self.model = model.eval().requires_grad_(False)

        # Probe once with 1 s of silence: the real layer count and width, whatever the architecture.
        probe = self.encode(np.zeros(features.SAMPLE_RATE, dtype=np.float32))
        self.num_layers, self.hidden_size = probe.shape[0], probe.shape[2]
        strides = getattr(config, "conv_stride", None)  # wav2vec2 family: exact rate from the conv stack
        self.frame_rate = features.SAMPLE_RATE / math.prod(strides) if strides else float(probe.shape[1])

    def encode(self, audio: np.ndarray, log_mel: torch.Tensor | None = None) -> torch.Tensor:
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio [samples], got shape {audio.shape}")
        if len(audio) > self.max_seconds * features.SAMPLE_RATE:
            raise ValueError(
                f"audio is {len(audio) / features.SAMPLE_RATE:.1f} s; {self.name} takes at most "
                f"{self.max_seconds:g} s per call (split longer audio into windows)"
            )
        with torch.inference_mode():
            if self._whisper:
                # torch Whisper code only for Whisper hub models
                from emotion_core.encoders.whisper import whisper_hidden_states

                mel = features.log_mel(audio) if log_mel is None else log_mel
                hidden = whisper_hidden_states(self.model, mel[None].float())[:, 0]
            else:
                if self.feature_extractor is not None:
                    rate = features.SAMPLE_RATE
                    inputs = self.feature_extractor(audio, sampling_rate=rate, return_tensors="pt")
                else:
                    inputs = {"input_values": torch.from_numpy(audio)[None]}
                hidden = torch.stack(self.model(**inputs, output_hidden_states=True).hidden_states)[:, 0].float()
        return hidden.clone()  # a normal tensor, usable by a trainable head (see WhisperBaseEncoder.encode)
