"""The Whisper log-mel front end on generated audio: the numpy filterbank is librosa's, the log-mel is
transformers' WhisperFeatureExtractor on 30 s input and the clip's own length otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emotion_core import features


def tone(seconds: float, hz: float = 220.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * features.SAMPLE_RATE)) / features.SAMPLE_RATE
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    return (0.3 * np.sin(2 * np.pi * hz * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t)) + noise).astype(np.float32)


def test_mel_filterbank_is_librosas():
    """features builds Whisper's filterbank in numpy (librosa imports numba: ~80 MB of serving RSS)."""
    import librosa

    for sr, n_fft, n_mels in ((16000, 400, 80), (16000, 400, 128), (22050, 2048, 64)):
        assert np.array_equal(features.mel_filterbank(sr, n_fft, n_mels), librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels))


def test_log_mel_matches_whisper_feature_extractor():
    """On 30 s (the only length the extractor gives unpadded) the log-mel is Whisper's own."""
    from transformers import WhisperFeatureExtractor

    audio = np.zeros(30 * features.SAMPLE_RATE, np.float32)
    audio[: 3 * features.SAMPLE_RATE] = tone(3.0)
    reference = WhisperFeatureExtractor(feature_size=features.N_MELS)(
        audio, sampling_rate=features.SAMPLE_RATE, return_tensors="np").input_features[0]
    ours = features.log_mel(audio)
    assert ours.shape == (80, 3000) and ours.dtype == torch.float32
    np.testing.assert_allclose(ours.numpy(), reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("samples", [1, 150, 201, 16_000, 16_159, 48_123])
def test_log_mel_is_the_clips_own_length(samples: int):
    """[80, samples // 160], nothing padded to 30 s; even a single sample gives a finite frame."""
    mel = features.log_mel(tone(1.0 + samples / features.SAMPLE_RATE)[:samples])
    assert mel.shape == (features.N_MELS, max(1, samples // features.HOP_LENGTH)), mel.shape
    assert mel.dtype == torch.float32 and torch.isfinite(mel).all()
    assert float(mel.max() - mel.min()) <= 2.0 + 1e-6  # clamped to 8 dB·10 below the peak, then /4


def test_log_mel_peaks_at_the_tones_band_and_rejects_stereo():
    for hz in (300.0, 1000.0, 4000.0):
        mel = features.log_mel(tone(1.0, hz))
        centres = features.mel_filterbank().argmax(axis=1) * features.SAMPLE_RATE / features.N_FFT
        assert abs(centres[int(mel.mean(dim=1).argmax())] - hz) <= 0.1 * hz + 40, hz
    np.testing.assert_array_equal(features.log_mel(torch.from_numpy(tone(0.5))), features.log_mel(tone(0.5)))
    with pytest.raises(ValueError, match="mono"):
        features.log_mel(np.zeros((2, 1600), np.float32))
