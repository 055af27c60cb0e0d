"""Recording conditions the app meets and RAVDESS never shows, as seeded, reproducible degradations of 16 kHz
mono audio: additive noise at a chosen SNR (white, pink, babble made of other speech), the telephone band,
a low-bitrate Opus round trip through FFmpeg (PyAV), synthetic room reverb, and a quieter level.

    degraded = degrade(audio, "babble-10db", seed=3, babble=[other_clip, ...])

The same conditions serve the robustness evaluation and training-time augmentation, so what is measured is
what can be trained against.
"""

from __future__ import annotations

import io
from typing import Sequence

import av
import numpy as np
import soxr
from scipy import signal

from emotion_core.audio import load_audio
from emotion_core.features import SAMPLE_RATE

#: name → (kind, parameter): noise SNR in dB, telephone, codec bitrate, reverb RT60 in s, gain in dB.
CONDITIONS: dict[str, tuple[str, float]] = {
    **{f"{kind}-{snr}db": (kind, float(snr)) for kind in ("white", "pink", "babble") for snr in (20, 10, 5)},
    "telephone": ("telephone", 0.0),
    "opus-12kbps": ("opus", 12_000.0),
    "reverb-0.6s": ("reverb", 0.6),
    "gain-20db": ("gain", -20.0),
}
BABBLE_TALKERS = 4  # other voices summed into one babble
BABBLE_CORPORA = ("tess", "turev")  # whose speech babble is made of: other voices than RAVDESS's
BABBLE_CLIPS = 64


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def babble_noise(n: int, rng: np.random.Generator, speech: Sequence[np.ndarray]) -> np.ndarray:
    """`BABBLE_TALKERS` random stretches of other recordings, each looped to length `n`, at equal level, summed."""
    if len(speech) < 1:
        raise ValueError("babble needs other recordings (babble=[...])")
    out = np.zeros(n)
    for i in rng.choice(len(speech), BABBLE_TALKERS, replace=len(speech) < BABBLE_TALKERS):
        clip = np.asarray(speech[i], np.float64)
        looped = np.resize(np.roll(clip, int(rng.integers(len(clip)))), n)
        out += looped / max(rms(looped), 1e-9)
    return out


def babble_pool(seed: int = 0) -> list[np.ndarray]:
    """Speech to make babble from: BABBLE_CLIPS clips drawn (seeded) from BABBLE_CORPORA."""
    from emotion_core.data.corpora import CORPORA  # the corpora's readers, only when babble is asked for

    paths = np.concatenate([CORPORA[c].read()["path"].to_numpy() for c in BABBLE_CORPORA])
    return [load_audio(p) for p in np.random.default_rng(seed).choice(paths, BABBLE_CLIPS, replace=False)]


def add_noise(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`audio` + `noise` scaled so that rms(audio) / rms(noise) is `snr_db`."""
    scale = rms(audio) / max(rms(noise), 1e-12) / 10 ** (snr_db / 20)
    return (audio + scale * noise).astype(np.float32)


def telephone(audio: np.ndarray) -> np.ndarray:
    """Narrowband telephony: 300-3400 Hz band-pass, through 8 kHz and back."""
    sos = signal.butter(6, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    narrow = soxr.resample(signal.sosfilt(sos, audio), SAMPLE_RATE, 8000)
    return soxr.resample(narrow, 8000, SAMPLE_RATE)[: len(audio)].astype(np.float32)


def opus_round_trip(audio: np.ndarray, bitrate: int) -> np.ndarray:
    """Encode as Ogg/Opus at `bitrate` bit/s with FFmpeg's libopus (PyAV), decode with the service's decoder."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        stream.bit_rate = bitrate
        up = soxr.resample(audio, SAMPLE_RATE, 48000).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(up[None], format="flt", layout="mono")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    decoded = load_audio(buffer.getvalue())
    out = np.zeros_like(audio)
    out[: min(len(audio), len(decoded))] = decoded[: len(audio)]
    return out


def reverb(audio: np.ndarray, rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: direct sound plus exponentially decaying noise (-60 dB after `rt60` s), level kept."""
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    rir = rng.standard_normal(n) * 10 ** (-3 * t / rt60) * 0.3
    rir[0] = 1.0
    wet = signal.fftconvolve(audio, rir)[: len(audio)]
    return (wet * rms(audio) / max(rms(wet), 1e-12)).astype(np.float32)


def degrade(audio: np.ndarray, condition: str, seed: int = 0, babble: Sequence[np.ndarray] = ()) -> np.ndarray:
    """`audio` (16 kHz mono float32) under `condition` (a key of CONDITIONS); the same seed, the same result."""
    kind, value = CONDITIONS[condition]
    rng = np.random.default_rng(seed)
    audio = np.asarray(audio, np.float32)
    if kind == "white":
        out = add_noise(audio, rng.standard_normal(len(audio)), value)
    elif kind == "pink":
        out = add_noise(audio, pink_noise(len(audio), rng), value)
    elif kind == "babble":
        out = add_noise(audio, babble_noise(len(audio), rng, babble), value)
    elif kind == "telephone":
        out = telephone(audio)
    elif kind == "opus":
        out = opus_round_trip(audio, int(value))
    elif kind == "reverb":
        out = reverb(audio, value, rng)
    else:
        out = audio * np.float32(10 ** (value / 20))
    return np.clip(out, -1.0, 1.0).astype(np.float32)
