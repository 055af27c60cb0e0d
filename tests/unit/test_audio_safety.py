"""A hostile upload gets nothing it should not: the container comes from the bytes and an allowlist (a playlist
naming a local file is refused, a file name never picks a demuxer), decoding is budgeted in samples with the
rate and channels capped for every container, memory follows the 16 kHz output, and absurd floats are refused."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from emotion_core.audio import (
    MAX_RATE,
    SAMPLE_BUDGET_PER_SECOND,
    AudioError,
    AudioTooLongError,
    load_audio,
    sniff_format,
)
from emotion_core.features import SAMPLE_RATE


def tone(seconds: float = 1.0, rate: int = SAMPLE_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def encoded(audio: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    out = io.BytesIO()
    sf.write(out, audio, rate, format=fmt, subtype=subtype)
    return out.getvalue()


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A recording on the server that no client may have decoded."""
    path = tmp_path / "secret.wav"
    sf.write(path, tone(2.0), SAMPLE_RATE)
    return path


@pytest.mark.parametrize("text", [
    "#EXTM3U\n#EXTINF:2,\nfile:{path}\n",  # HLS playlist
    "ffconcat version 1.0\nfile '{path}'\n",  # FFmpeg concat script
    "file:{path}\n",
])
def test_a_playlist_naming_a_local_file_is_refused(tmp_path, secret, text):
    body = text.format(path=secret).encode()
    with pytest.raises(AudioError, match="not a supported format"):
        load_audio(body)
    for name in ("x.m3u8", "x.ffconcat", "x.txt"):  # the name a client chose changes nothing
        (tmp_path / name).write_bytes(body)
        with pytest.raises(AudioError, match="not a supported format"):
            load_audio(tmp_path / name)


def test_the_file_name_never_picks_the_demuxer(tmp_path):
    flac = encoded(tone(), SAMPLE_RATE, "FLAC")
    named = tmp_path / "clip.m3u8"
    named.write_bytes(flac)
    np.testing.assert_array_equal(load_audio(named), load_audio(flac))


def test_allowed_containers_are_recognised_by_their_bytes():
    assert sniff_format(encoded(tone(), SAMPLE_RATE, "WAV")[:16]) == "wav"
    assert sniff_format(encoded(tone(), SAMPLE_RATE, "FLAC")[:16]) == "flac"
    assert sniff_format(encoded(tone(), SAMPLE_RATE, "OGG", "VORBIS")[:16]) == "ogg"
    for container, codec, expected in (("mp4", "aac", "mp4"), ("webm", "libopus", "matroska"), ("adts", "aac", "aac")):
        out = io.BytesIO()
        with av.open(out, "w", format=container) as c:
            stream = c.add_stream(codec, rate=48000, layout="mono")
            frame = av.AudioFrame.from_ndarray(tone(0.5, 48000)[None], format="flt", layout="mono")
            frame.sample_rate = 48000
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                c.mux(packet)
        assert sniff_format(out.getvalue()[:16]) == expected, container
        assert len(load_audio(out.getvalue())) > 0
    for junk in (b"", b"hello world", b"\x89PNG\r\n\x1a\n", b"<html>", b"%PDF-1.7"):
        with pytest.raises(AudioError):
            sniff_format(junk)


def test_rates_above_the_cap_are_refused_in_every_container():
    for fmt in ("WAV", "FLAC"):
        with pytest.raises(AudioError, match="sample rate"):
            load_audio(encoded(tone(0.05, 384_000), 384_000, fmt))
    load_audio(encoded(tone(0.05, MAX_RATE), MAX_RATE, "WAV"))  # 192 kHz studio audio is fine


def test_channel_cap_holds_for_encoded_files():
    many = np.repeat(tone(0.2)[:, None], 16, axis=1)
    with pytest.raises(AudioError, match="channel"):
        load_audio(encoded(many, SAMPLE_RATE, "WAV"))


def test_the_sample_budget_counts_rate_and_channels():
    """One second of budget is 48 kHz stereo: 0.1 s of 8 channels at 192 kHz is over it, 0.5 s of mono is not."""
    wide = np.repeat(tone(0.1, MAX_RATE)[:, None], 8, axis=1)
    assert 0.1 * MAX_RATE * 8 > SAMPLE_BUDGET_PER_SECOND
    with pytest.raises(AudioTooLongError, match="budget"):
        load_audio(encoded(wide, MAX_RATE, "WAV"), max_seconds=1)
    assert len(load_audio(encoded(tone(0.5), SAMPLE_RATE, "WAV"), max_seconds=1)) == SAMPLE_RATE // 2


def test_absurd_float_samples_are_refused():
    loud = tone() * np.float32(1e20)
    with pytest.raises(AudioError, match="out of range"):
        load_audio(encoded(loud, SAMPLE_RATE, "WAV", "FLOAT"))
    with pytest.raises(AudioError, match="out of range"):
        load_audio(loud, sample_rate=SAMPLE_RATE)


def test_memory_follows_the_16khz_output_not_the_upload():
    """60 s of silence at 192 kHz (11.5 M samples, a tiny FLAC): the decoder never holds it at 192 kHz."""
    flac = encoded(np.zeros(60 * MAX_RATE, np.float32), MAX_RATE, "FLAC")
    tracemalloc.start()
    try:
        audio = load_audio(flac, max_seconds=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(audio) == 60 * SAMPLE_RATE
    at_source_rate = 60 * MAX_RATE * 4  # what holding the mono signal at 192 kHz would take (46 MB)
    assert peak < at_source_rate / 3, f"peak {peak / 2**20:.1f} MB"
