"""The recording conditions (emotion_core/degrade.py) do what they say, and the same seed gives the same audio."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_core.degrade import CONDITIONS, degrade, rms
from emotion_core.features import SAMPLE_RATE


def voice(seconds: float = 2.0, f0: float = 150.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    harmonics = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 20))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 3 * t))
    return (0.1 * harmonics * envelope + np.random.default_rng(seed).normal(0, 1e-4, len(t))).astype(np.float32)


def band_energy(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(spectrum[(f >= lo) & (f < hi)].sum() / spectrum.sum())


@pytest.mark.parametrize("condition", sorted(CONDITIONS))
def test_every_condition_is_reproducible_and_keeps_the_length(condition: str) -> None:
    clean = voice()
    others = [voice(1.3, 210.0, 1), voice(0.9, 120.0, 2)]
    a, b = (degrade(clean, condition, seed=7, babble=others) for _ in range(2))
    assert a.shape == clean.shape and a.dtype == np.float32 and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert not np.allclose(a, clean)


@pytest.mark.parametrize("kind", ["white", "pink", "babble"])
@pytest.mark.parametrize("snr", [20, 10, 5])
def test_noise_is_added_at_the_snr_asked(kind: str, snr: int) -> None:
    clean = voice()
    noisy = degrade(clean, f"{kind}-{snr}db", seed=1, babble=[voice(1.1, 230.0, 3)])
    measured = 20 * np.log10(rms(clean) / rms(noisy - clean))
    assert measured == pytest.approx(snr, abs=0.1)


def test_telephone_band_codec_gain() -> None:
    clean = voice(f0=300.0)  # harmonics up to 5.7 kHz
    phone = degrade(clean, "telephone")
    assert band_energy(phone, 3600, 8000) < 0.01 < band_energy(clean, 3600, 8000)
    assert band_energy(phone, 0, 250) < 0.05
    quiet = degrade(clean, "gain-20db")
    assert 20 * np.log10(rms(quiet) / rms(clean)) == pytest.approx(-20, abs=1e-3)
    opus = degrade(clean, "opus-12kbps")  # lossy, but the same signal
    assert np.corrcoef(opus, clean)[0, 1] > 0.5
