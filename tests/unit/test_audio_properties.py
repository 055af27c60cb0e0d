"""Property-based tests of the decoder (hypothesis): whatever bytes or samples arrive, `load_audio` and
`load_pcm16` return 16 kHz mono float32 or raise AudioError — never another exception."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from emotion_core.audio import MAX_RATE, MIN_RATE, AudioError, load_audio, load_pcm16
from emotion_core.features import SAMPLE_RATE

# ~10 s for the whole file on 2 cores: enough cases to find a crash, few enough for the default run.
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

rates = st.sampled_from([8_000, 11_025, 16_000, 22_050, 44_100, 48_000, 96_000, 192_000]) | st.integers(1, 1_000_000)


def assert_mono_16k(audio: np.ndarray, seconds: float | None = None) -> None:
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.c_contiguous and len(audio) > 0
    assert np.isfinite(audio).all()
    if seconds is not None:
        assert abs(len(audio) / SAMPLE_RATE - seconds) <= 0.01 + 1 / SAMPLE_RATE


def decodes_or_audio_error(call, *args, **kwargs) -> np.ndarray | None:
    try:
        audio = call(*args, **kwargs)
    except AudioError:
        return None
    assert_mono_16k(audio)
    return audio


@FAST
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    decodes_or_audio_error(load_audio, data)


@FAST
@given(st.binary(min_size=1, max_size=2048), st.sampled_from(["RIFF", "fLaC", "OggS", "ID3\x03", "\xff\xfb", "ftypM4A "]))
def test_random_bytes_behind_a_real_magic_number(tail: bytes, magic: str) -> None:
    decodes_or_audio_error(load_audio, magic.encode("latin-1") + tail)


@FAST
@given(st.integers(1, 4000), st.integers(0, 200))
def test_truncated_wav(frames: int, cut: int) -> None:
    buf = io.BytesIO()
    sf.write(buf, np.random.default_rng(frames).uniform(-1, 1, frames).astype(np.float32), 16_000, format="WAV")
    data = buf.getvalue()
    decodes_or_audio_error(load_audio, data[: max(1, len(data) - cut)])


@FAST
@given(
    arrays(np.float32, st.tuples(st.integers(1, 3000), st.integers(1, 8)),
           elements=st.floats(-4, 4, width=32) | st.sampled_from([np.nan, np.inf, -np.inf])),
    rates,
)
def test_random_float_pcm(samples: np.ndarray, rate: int) -> None:
    audio = decodes_or_audio_error(load_audio, samples, sample_rate=rate)
    if audio is not None:
        assert np.isfinite(samples).all() and MIN_RATE <= rate <= MAX_RATE
        frames = samples.shape[0] if samples.shape[0] >= samples.shape[1] else samples.shape[1]
        assert_mono_16k(audio, frames / rate)


@FAST
@given(arrays(np.int16, st.integers(1, 6000)), rates, st.integers(1, 8), st.booleans())
def test_random_int16_pcm(samples: np.ndarray, rate: int, channels: int, big_endian: bool) -> None:
    data = samples.astype(">i2" if big_endian else "<i2").tobytes()
    audio = decodes_or_audio_error(load_pcm16, data, rate, channels, big_endian)
    if audio is not None:
        assert len(samples) % channels == 0 and MIN_RATE <= rate <= MAX_RATE
        assert_mono_16k(audio, len(samples) / channels / rate)


@FAST
@given(st.integers(1, 8), st.sampled_from([8_000, 16_000, 44_100, 48_000, 192_000]), st.sampled_from(["PCM_16", "FLOAT"]))
def test_wav_any_rate_and_channels(channels: int, rate: int, subtype: str) -> None:
    """A real WAV of any rate/channel count: 16 kHz mono of the right length, channels averaged."""
    seconds = 0.25
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.repeat(tone[:, None], channels, axis=1), rate, format="WAV", subtype=subtype)
    audio = load_audio(buf.getvalue())
    assert_mono_16k(audio, seconds)
    assert 0.45 < np.abs(audio).max() < 0.55  # identical channels average to the same tone


def test_pcm16_matches_wav() -> None:
    """The raw PCM path decodes exactly like the same samples in a WAV file."""
    samples = (np.random.default_rng(0).uniform(-0.5, 0.5, (8000, 2)) * 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, samples, 44_100, format="WAV", subtype="PCM_16")
    np.testing.assert_allclose(load_pcm16(samples.tobytes(), 44_100, channels=2), load_audio(buf.getvalue()), atol=1e-6)
    np.testing.assert_array_equal(load_pcm16(samples.astype(">i2").tobytes(), 44_100, 2, big_endian=True),
                                  load_pcm16(samples.tobytes(), 44_100, 2))


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00"])
def test_pcm16_bad_lengths(data: bytes) -> None:
    with pytest.raises(AudioError):
        load_pcm16(data)
