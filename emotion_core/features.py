"""Whisper-compatible log-mel spectrogram, computed once per clip and shared by the encoder and the
2D branch of the head. The mel filterbank and STFT window are built once (module level), never per call.
"""

from __future__ import annotations

from functools import lru_cache

import librosa
import numpy as np
import torch

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms → 100 mel frames per second
N_MELS = 80
MEL_FRAME_RATE = SAMPLE_RATE / HOP_LENGTH


@lru_cache(maxsize=1)
def _mel_filters() -> torch.Tensor:
    # Whisper uses librosa's Slaney-normalised filterbank with these exact settings.
    return torch.from_numpy(librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)).float()


@lru_cache(maxsize=1)
def _window() -> torch.Tensor:
    return torch.hann_window(N_FFT)


def log_mel(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    """16 kHz mono float audio [samples] → Whisper log-mel [80, samples // 160] (float32).

    Same maths as Whisper's `log_mel_spectrogram` (log10, clamp to max - 8 dB·10, (x + 4) / 4), but on the
    clip's own length: nothing is padded to 30 s.
    """
    wav = torch.as_tensor(audio, dtype=torch.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected mono audio [samples], got shape {tuple(wav.shape)}")
    if wav.numel() < N_FFT // 2 + 1:  # reflect padding needs at least this many samples
        wav = torch.nn.functional.pad(wav, (0, N_FFT // 2 + 1 - wav.numel()))
    stft = torch.stft(wav, N_FFT, HOP_LENGTH, window=_window(), return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = _mel_filters() @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
    return (log_spec + 4.0) / 4.0
