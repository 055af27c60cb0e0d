"""Whisper-compatible log-mel spectrogram, computed once per clip and shared by the encoder and the
2D branch of the head. The mel filterbank and STFT window are built once (module level), never per call.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE = 16_000
N_FFT = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms → 100 mel frames per second
N_MELS = 80
MEL_FRAME_RATE = SAMPLE_RATE / HOP_LENGTH


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float32: librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels) — the
    Slaney-normalised triangles Whisper uses — in numpy (librosa pulls in numba: ~80 MB of serving RSS).
    tests/unit/test_features.py checks it against librosa."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    # float32 triangles, then normalised in place, in librosa's order: bit-identical to its filterbank.
    weights = np.maximum(0.0, np.minimum(-ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None])).astype(np.float32)
    weights *= (2.0 / (mel_freqs[2 : n_mels + 2] - mel_freqs[:n_mels]))[:, None]  # Slaney area normalisation
    return weights


@lru_cache(maxsize=1)
def _mel_filters() -> torch.Tensor:
    return torch.from_numpy(mel_filterbank())


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
