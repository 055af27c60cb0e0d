"""load_audio / crop_or_pad on real encoded files of a generated signal (written here with soundfile and PyAV),
no mocks and no corpus."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import soxr

from emotion_core.audio import AudioError, crop_or_pad, duration_seconds, load_audio, speech_excerpt, speed_perturb
from emotion_core.features import SAMPLE_RATE
from emotion_core.vad import speech_segments

DURATION_TOLERANCE_S = 0.020


@pytest.fixture(scope="module")
def source() -> np.ndarray:
    """2.5 s at 16 kHz, generated (no corpus needed): a 440 Hz tone with noise."""
    t = np.arange(int(2.5 * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(0).normal(0, 0.02, t.shape)
    return (0.5 * np.sin(2 * np.pi * 440 * t) + noise).astype(np.float32)


def at_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    return audio if rate == SAMPLE_RATE else soxr.resample(audio, SAMPLE_RATE, rate).astype(np.float32)


def write_sf(path: Path, audio: np.ndarray, rate: int, fmt: str, subtype: str) -> Path:
    sf.write(path, audio, rate, format=fmt, subtype=subtype)
    return path


def encode_pyav(path: Path, audio: np.ndarray, rate: int, container: str, codec: str) -> Path:
    """Encode mono float audio with FFmpeg (through PyAV); skips the test where the encoder is missing."""
    try:
        av.codec.Codec(codec, "w")
    except Exception:  # noqa: BLE001
        pytest.skip(f"FFmpeg encoder {codec!r} not available")
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0  # without a pts the mp4 muxer writes a wrong edit list
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    return path


def assert_decoded_like(decoded: np.ndarray, reference: np.ndarray, min_corr: float = 0.99) -> None:
    assert decoded.dtype == np.float32 and decoded.ndim == 1 and decoded.flags.c_contiguous
    assert abs(duration_seconds(decoded) - duration_seconds(reference)) <= DURATION_TOLERANCE_S
    n = min(len(decoded), len(reference))
    assert np.corrcoef(decoded[:n], reference[:n])[0, 1] > min_corr


# --- every format decodes to 16 kHz mono float32 ------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "fmt", "subtype", "rate"),
    [
        ("wav", "WAV", "PCM_16", 48_000),
        ("wav", "WAV", "FLOAT", 48_000),
        ("flac", "FLAC", "PCM_16", 44_100),
        ("ogg", "OGG", "VORBIS", 44_100),
        ("mp3", "MP3", "MPEG_LAYER_III", 44_100),
    ],
    ids=["wav-pcm16", "wav-float", "flac", "ogg-vorbis", "mp3"],
)
def test_soundfile_formats(tmp_path, source, suffix, fmt, subtype, rate):
    if fmt not in sf.available_formats() or subtype not in sf.available_subtypes(fmt):
        pytest.skip(f"this libsndfile ({sf.__libsndfile_version__}) can't write {fmt}/{subtype}")
    path = write_sf(tmp_path / f"clip.{suffix}", at_rate(source, rate), rate, fmt, subtype)
    assert_decoded_like(load_audio(path), source)


@pytest.mark.parametrize(
    ("suffix", "container", "codec", "rate"),
    [
        ("m4a", "ipod", "aac", 44_100),
        ("webm", "webm", "libopus", 48_000),
        ("3gp", "3gp", "aac", 16_000),
        ("mp3", "mp3", "libmp3lame", 44_100),
    ],
    ids=["m4a-aac", "webm-opus", "3gp-aac", "mp3-lame"],
)
def test_pyav_formats(tmp_path, source, suffix, container, codec, rate):
    path = encode_pyav(tmp_path / f"clip.{suffix}", at_rate(source, rate), rate, container, codec)
    assert_decoded_like(load_audio(path), source)
    assert np.array_equal(load_audio(path.read_bytes()), load_audio(path))


def test_16khz_pcm_is_not_resampled(tmp_path, source):
    path = write_sf(tmp_path / "clip.wav", source, SAMPLE_RATE, "WAV", "PCM_16")
    assert np.array_equal(load_audio(path), sf.read(path, dtype="float32")[0])


def test_stereo_44k_is_averaged_to_mono_16k(tmp_path, source):
    mono = at_rate(source, 44_100)
    stereo = np.stack([mono, np.zeros_like(mono)], axis=1)  # right channel silent → mono is half the left
    path = write_sf(tmp_path / "stereo.wav", stereo, 44_100, "WAV", "FLOAT")
    decoded = load_audio(path)
    expected = load_audio(write_sf(tmp_path / "mono.wav", mono, 44_100, "WAV", "FLOAT"))
    np.testing.assert_allclose(decoded, 0.5 * expected, atol=1e-6)
    assert_decoded_like(decoded, source)


def test_8khz_is_upsampled(tmp_path, source):
    path = write_sf(tmp_path / "narrowband.wav", at_rate(source, 8_000), 8_000, "WAV", "PCM_16")
    assert_decoded_like(load_audio(path), source, min_corr=0.9)  # the 4-8 kHz band is gone


def test_8bit_unsigned_wav_is_centred(tmp_path, source):
    path = write_sf(tmp_path / "u8.wav", source, SAMPLE_RATE, "WAV", "PCM_U8")
    decoded = load_audio(path)
    assert abs(float(decoded.mean())) < 0.01
    assert_decoded_like(decoded, source)


# --- source types --------------------------------------------------------------------------------------------


def test_path_bytes_and_file_object_agree(tmp_path, source):
    path = write_sf(tmp_path / "clip.flac", at_rate(source, 44_100), 44_100, "FLAC", "PCM_16")
    from_path = load_audio(path)
    raw = path.read_bytes()
    with path.open("rb") as handle:
        from_handle = load_audio(handle)
    for other in (load_audio(str(path)), load_audio(raw), load_audio(bytearray(raw)), load_audio(memoryview(raw)),
                  load_audio(io.BytesIO(raw)), from_handle):
        assert np.array_equal(other, from_path)


def test_numpy_array_at_48k(source):
    audio_48k = at_rate(source, 48_000)
    decoded = load_audio(audio_48k, sample_rate=48_000)
    assert_decoded_like(decoded, source)
    # [samples, channels], [channels, samples] and int16 PCM all give the same mono signal.
    stereo = np.stack([audio_48k, audio_48k], axis=1)
    np.testing.assert_allclose(load_audio(stereo, sample_rate=48_000), decoded, atol=1e-6)
    np.testing.assert_allclose(load_audio(stereo.T, sample_rate=48_000), decoded, atol=1e-6)
    pcm16 = np.round(np.clip(audio_48k, -1, 1) * 32767).astype(np.int16)
    np.testing.assert_allclose(load_audio(pcm16, sample_rate=48_000), decoded, atol=1e-3)


def test_numpy_array_at_16k_is_returned_as_float32(source):
    decoded = load_audio(source.astype(np.float64), sample_rate=SAMPLE_RATE)
    assert decoded.dtype == np.float32 and np.array_equal(decoded, source)


def test_numpy_array_needs_sample_rate(source):
    with pytest.raises(AudioError, match="sample_rate"):
        load_audio(source)


# --- errors --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"this is plain text, certainly not audio\n" * 20],
    ids=["empty", "text"],
)
def test_undecodable_bytes(raw):
    with pytest.raises(AudioError, match="empty audio|could not decode audio"):
        load_audio(raw)


def test_truncated_wav_header(tmp_path, source):
    path = write_sf(tmp_path / "clip.wav", source, SAMPLE_RATE, "WAV", "PCM_16")
    with pytest.raises(AudioError):
        load_audio(path.read_bytes()[:30])


def test_wav_without_samples(tmp_path):
    path = write_sf(tmp_path / "silent.wav", np.zeros(0, np.float32), SAMPLE_RATE, "WAV", "PCM_16")
    with pytest.raises(AudioError, match="empty audio"):
        load_audio(path)
    (tmp_path / "zero-bytes.wav").touch()
    with pytest.raises(AudioError, match="empty audio"):
        load_audio(tmp_path / "zero-bytes.wav")


def test_nan_in_float_wav(tmp_path, source):
    audio = source.copy()
    audio[1000] = np.nan
    path = write_sf(tmp_path / "nan.wav", audio, SAMPLE_RATE, "WAV", "FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(path)
    with pytest.raises(AudioError, match="NaN or infinite"):
        load_audio(audio, sample_rate=SAMPLE_RATE)


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="nope.wav") as info:
        load_audio(missing)
    assert isinstance(info.value, FileNotFoundError)


# --- crop_or_pad / duration ----------------------------------------------------------------------------------


def test_crop_is_centred():
    audio = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(crop_or_pad(audio, 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(crop_or_pad(audio, 10), audio)


def test_pad_is_symmetric():
    audio = np.ones(4, dtype=np.float32)
    np.testing.assert_array_equal(crop_or_pad(audio, 8), [0, 0, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(crop_or_pad(audio, 7), [0, 1, 1, 1, 1, 0, 0])  # odd extra goes right
    assert crop_or_pad(audio, 8).dtype == np.float32


def test_random_crop_is_uniform_and_reproducible():
    audio = np.arange(20, dtype=np.float32)
    starts = {int(crop_or_pad(audio, 15, random=True, rng=np.random.default_rng(seed))[0]) for seed in range(200)}
    assert starts == set(range(6))  # every offset 0..5 appears, nothing out of bounds
    first = crop_or_pad(audio, 15, random=True, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(first, crop_or_pad(audio, 15, random=True, rng=np.random.default_rng(7)))
    # Random only changes crops: short clips are padded the same way.
    np.testing.assert_array_equal(crop_or_pad(audio, 24, random=True), crop_or_pad(audio, 24))


def test_crop_returns_a_copy():
    audio = np.arange(10, dtype=np.float32)
    crop_or_pad(audio, 4)[:] = -1
    assert audio.min() == 0


def test_crop_or_pad_rejects_bad_input():
    with pytest.raises(ValueError):
        crop_or_pad(np.zeros((2, 10), np.float32), 4)
    with pytest.raises(ValueError):
        crop_or_pad(np.zeros(10, np.float32), 0)


def test_duration_seconds():
    assert duration_seconds(np.zeros(SAMPLE_RATE * 3 // 2, np.float32)) == 1.5


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_perturbation_changes_tempo_and_pitch_together(speed):
    """A 440 Hz tone played `speed` times faster: 1/speed as long, at 440·speed Hz."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    out = speed_perturb(tone, speed)
    assert out.dtype == np.float32 and abs(len(out) - SAMPLE_RATE / speed) <= 2
    peak_hz = np.argmax(np.abs(np.fft.rfft(out))) * SAMPLE_RATE / len(out)
    assert peak_hz == pytest.approx(440 * speed, abs=2)
    assert speed_perturb(tone, 1.0) is tone
    with pytest.raises(ValueError, match="outside"):
        speed_perturb(tone, 3.0)


def test_speech_excerpt_is_a_seeded_word_length_stretch_of_the_speech():
    """1 s of silence, 2 s of a voiced tone, 1 s of silence: each excerpt is 0.5-1.2 s, taken from the voiced
    part (the VAD's span), the same for the same seed; silence alone gives a stretch of the clip itself."""
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    voiced = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t)) / 2).astype(np.float32)
    silence = np.zeros(SAMPLE_RATE, np.float32)
    clip = np.concatenate([silence, voiced, silence])
    segments = speech_segments(clip)
    first, last = segments[0], segments[-1]
    lengths = set()
    for seed in range(8):
        out = speech_excerpt(clip, 0.5, 1.2, seed)
        assert 0.5 * SAMPLE_RATE - 1 <= len(out) <= 1.2 * SAMPLE_RATE + 1
        start = int(np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(clip, len(out)) == out, axis=1))[0])
        assert first.start * SAMPLE_RATE - 1 <= start and start + len(out) <= last.end * SAMPLE_RATE + 1
        assert np.array_equal(out, speech_excerpt(clip, 0.5, 1.2, seed))
        lengths.add(len(out))
    assert len(lengths) > 1  # the length is drawn, not fixed
    assert 0 < len(speech_excerpt(np.zeros(3 * SAMPLE_RATE, np.float32), 0.5, 1.2, 0)) <= 1.2 * SAMPLE_RATE + 1
    with pytest.raises(ValueError, match="shortest"):
        speech_excerpt(clip, 1.2, 0.5, 0)
