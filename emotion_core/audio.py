"""Decode any audio input to 16 kHz mono float32, and the fixed-length crop/pad policy used in training.

Nothing here knows about models: every consumer (training, predictor, service) gets the same samples from
the same bytes. The container is recognised from its first bytes (`sniff_format`), never from a file name,
and must be on an allowlist: a playlist or concat script naming other files is refused before any decoder
sees it. soundfile (libsndfile) is tried first: it is fast and exact for wav/flac/ogg/mp3. PyAV (FFmpeg) is
the fallback for containers libsndfile can't read (m4a/aac, webm/opus, 3gp, ...), opened with that explicit
demuxer on the bytes themselves (no protocol, no probing by name).

Decoding is budgeted in samples (rate x channels x duration), from the header before decoding and again
while decoding, and mixed down to mono and resampled to 16 kHz block by block: peak memory follows the
16 kHz mono output, not the upload's rate or channel count.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import BinaryIO, Union

import av
import numpy as np
import soundfile as sf
import soxr

from emotion_core.features import SAMPLE_RATE
from emotion_core.vad import speech_segments

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray]

_MAX_CHANNELS = 8
#: Rates outside this range are not audio a phone or a studio records.
MIN_RATE, MAX_RATE = 1_000, 192_000
#: Decoded samples (all channels) allowed per second of `max_seconds`: 48 kHz stereo. A file at a higher
#: rate or with more channels gets proportionally less time; it bounds the CPU a request can cost.
SAMPLE_BUDGET_PER_SECOND = 48_000 * 2
#: Larger float samples are not audio (their squares overflow the log-mel's float32).
MAX_ABS_SAMPLE = 1_000.0
_UNSUPPORTED = "could not decode audio: not a supported format (wav, flac, ogg, mp3, m4a, webm, ...)"
#: Containers libsndfile reads (the rest go to FFmpeg).
_SOUNDFILE_FORMATS = {"wav", "flac", "ogg", "aiff", "caf", "mp3"}


class AudioError(ValueError):
    """The input is not usable audio (empty, undecodable, non-finite, ...)."""


class AudioTooLongError(AudioError):
    """Longer than the caller's `max_seconds`: raised while decoding, before the rest is read."""


class AudioFileNotFoundError(AudioError, FileNotFoundError):
    """A path that doesn't exist: catchable as AudioError and as FileNotFoundError."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(f"audio file not found: {path}")
        # OSError's own fields, so str() reads "[Errno 2] audio file not found: '<path>'".
        self.errno, self.strerror, self.filename = errno.ENOENT, "audio file not found", str(path)


def sniff_format(head: bytes) -> str:
    """The container of encoded audio from its first bytes, as FFmpeg's demuxer name; AudioError for anything
    not on the allowlist (text, playlists, concat scripts, images, ...)."""
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head[4:8] == b"ftyp":  # m4a, mp4, 3gp, mov
        return "mp4"
    formats = {b"fLaC": "flac", b"OggS": "ogg", b"\x1aE\xdf\xa3": "matroska", b"caff": "caf"}  # matroska: webm, mka
    if head[:4] in formats:
        return formats[head[:4]]
    if head[:6] == b"#!AMR\n":
        return "amr"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:  # ADTS: 12-bit sync, layer 00
        return "aac"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06:  # MPEG audio frame sync
        return "mp3"
    raise AudioError(_UNSUPPORTED)


def load_audio(source: AudioSource, sample_rate: int | None = None, max_seconds: float | None = None) -> np.ndarray:
    """Decode `source` to 16 kHz mono float32 samples in [-1, 1] (1-D, C-contiguous).

    `source` is a path, encoded bytes (bytes/bytearray/memoryview), a binary file object, or a numpy array
    of samples; for an array `sample_rate` is required and its shape is [samples], [samples, channels] or
    [channels, samples] (the channel axis is the smaller one, at most 8). Channels are averaged; integer
    PCM is scaled to [-1, 1]; audio is resampled with soxr only when its rate isn't already 16 kHz.

    Raises AudioError (a ValueError) for empty, undecodable, non-finite or absurdly loud audio and for a
    container not on the allowlist, AudioTooLongError when it lasts more than `max_seconds` or decodes to
    more than `max_seconds * SAMPLE_BUDGET_PER_SECOND` samples (checked from the header and while decoding:
    a small, highly compressed file never expands past it), and AudioFileNotFoundError (also a
    FileNotFoundError) for a missing path.
    """
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise AudioError("sample_rate is required when passing a numpy array")
        _check_rate(sample_rate)
        channels_first = _as_channels_first(source)
        _check_length(channels_first.shape[1], sample_rate, max_seconds, len(channels_first))
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, rejected by _check_samples
            mono = _to_float(channels_first).mean(axis=0, dtype=np.float32)
        out = _Resampler(sample_rate)
        out.push(mono)
        return out.finish()
    if sample_rate is not None:
        raise AudioError("sample_rate is only for numpy arrays: encoded audio carries its own rate")
    return _decode(source, max_seconds)


def speed_perturb(audio: np.ndarray, speed: float) -> np.ndarray:
    """Kaldi-style speed perturbation: the clip played `speed` times faster (tempo and pitch together;
    0.9 → 11 % longer and lower). A training augmentation of the embedding cache (`train.speed_perturb`)."""
    if speed == 1.0:
        return audio
    if not 0.5 <= speed <= 2.0:
        raise ValueError(f"speed factor {speed} is outside [0.5, 2]")
    return np.ascontiguousarray(soxr.resample(audio, SAMPLE_RATE * speed, SAMPLE_RATE, quality="HQ"), dtype=np.float32)


def speech_excerpt(audio: np.ndarray, shortest: float, longest: float, seed: int) -> np.ndarray:
    """A word-length stretch of the clip's speech: `shortest`-`longest` s (drawn), starting anywhere in the span
    from its first voiced segment's start to its last one's end (`vad.speech_segments`; the whole clip when it
    has none), seeded. A training copy of the embedding cache (`train.excerpt_seconds`): a head that has
    heard only sentences answers `fearful` to a single word."""
    if not 0 < shortest <= longest:
        raise ValueError(f"excerpt length must satisfy 0 < shortest <= longest, got {shortest}, {longest}")
    rng = np.random.default_rng(seed)
    segments = speech_segments(audio)
    first, last = (segments[0].start, segments[-1].end) if segments else (0.0, len(audio) / SAMPLE_RATE)
    length = rng.uniform(shortest, longest)
    start = rng.uniform(first, max(first, last - length))
    return audio[int(start * SAMPLE_RATE): int((start + length) * SAMPLE_RATE)]


def load_pcm16(
    data: bytes, sample_rate: int = SAMPLE_RATE, channels: int = 1, big_endian: bool = False,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Raw signed 16-bit PCM (interleaved channels, no header) → 16 kHz mono float32, like `load_audio`.

    The realtime convention: `Content-Type: audio/pcm; rate=16000; channels=1` is little-endian (what phones
    record), `audio/L16; rate=...` is big-endian as RFC 2586 defines it."""
    frames = _pcm16_frames(data, channels, big_endian)
    mono = _to_float(frames.T).mean(axis=0, dtype=np.float32)
    return load_audio(mono, sample_rate=sample_rate, max_seconds=max_seconds)


def pcm16_to_wav(data: bytes, sample_rate: int = SAMPLE_RATE, channels: int = 1, big_endian: bool = False) -> bytes:
    """Raw PCM16 → the same samples in a WAV container (lossless), so it can travel as an upload."""
    frames = _pcm16_frames(data, channels, big_endian)
    _check_rate(sample_rate)
    out = io.BytesIO()
    sf.write(out, frames, sample_rate, format="WAV", subtype="PCM_16")
    return out.getvalue()


def _pcm16_frames(data: bytes, channels: int, big_endian: bool) -> np.ndarray:
    """[frames, channels] int16 (native byte order) from interleaved raw PCM16."""
    if not isinstance(channels, int) or not 1 <= channels <= _MAX_CHANNELS:
        raise AudioError(f"channels must be 1..{_MAX_CHANNELS}, got {channels!r}")
    if not data:
        raise AudioError("empty audio: no bytes")
    if len(data) % (2 * channels):
        raise AudioError(f"raw PCM16 must be whole frames of {2 * channels} bytes, got {len(data)} bytes")
    return np.frombuffer(data, dtype=">i2" if big_endian else "<i2").reshape(-1, channels).astype(np.int16)


def crop_or_pad(
    audio: np.ndarray, num_samples: int, *, random: bool = False, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Fit mono `audio` to exactly `num_samples` samples — the training crop/pad policy.

    Longer clips are cropped: centred by default (deterministic for evaluation), or at a uniformly random
    offset when `random=True` (augmentation; draws from `rng`, a fresh generator if None). Shorter clips are
    zero-padded symmetrically (the extra sample, if odd, goes on the right), keeping the speech centred like
    the centred crop does. Always returns a new array of the input's dtype.
    """
    if audio.ndim != 1:
        raise ValueError(f"expected mono audio [samples], got shape {audio.shape}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    excess = len(audio) - num_samples
    if excess >= 0:
        start = int((rng or np.random.default_rng()).integers(0, excess + 1)) if random else excess // 2
        return audio[start : start + num_samples].copy()
    left = -excess // 2
    return np.pad(audio, (left, -excess - left))


def duration_seconds(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Length of mono `audio` in seconds (16 kHz unless told otherwise)."""
    return audio.shape[-1] / sample_rate


def _decode(source: AudioSource, max_seconds: float | None) -> np.ndarray:
    """Encoded source → 16 kHz mono: the container sniffed from the bytes, then libsndfile or FFmpeg."""
    data = _read_source(source)
    fmt = sniff_format(data[:16])
    if fmt in _SOUNDFILE_FORMATS:
        try:
            return _decode_soundfile(io.BytesIO(data), max_seconds)
        except AudioError:
            raise
        except Exception:  # noqa: BLE001 - any libsndfile failure just means "try FFmpeg"
            pass
    return _decode_pyav(io.BytesIO(data), fmt, max_seconds)


class _Resampler:
    """Mono blocks at `rate` in, 16 kHz mono out, block by block (soxr's streaming resampler): memory follows
    the output, never the input's rate."""

    def __init__(self, rate: int) -> None:
        _check_rate(rate)
        self.rate, self.chunks = rate, []
        self.stream = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32",
                                                                            quality="HQ")

    def push(self, mono: np.ndarray) -> None:
        _check_samples(mono)
        self.chunks.append(mono if self.stream is None else self.stream.resample_chunk(mono))

    def finish(self) -> np.ndarray:
        if self.stream is not None:
            self.chunks.append(self.stream.resample_chunk(np.zeros(0, np.float32), last=True))
        if not any(len(c) for c in self.chunks):
            raise AudioError("empty audio: zero samples" if self.stream is None
                             else "empty audio: too few samples to resample to 16 kHz")
        return np.ascontiguousarray(np.concatenate(self.chunks), dtype=np.float32)


def _decode_soundfile(data: io.BytesIO, max_seconds: float | None) -> np.ndarray:
    # Block by block, mixed down to mono and resampled as it goes: memory is bounded by the 16 kHz output.
    with sf.SoundFile(data) as f:
        rate, channels, total = f.samplerate, f.channels, 0
        _check_rate(rate)
        _check_channels(channels)
        if f.frames > 0:  # the header's length: refuse before decoding anything
            _check_length(f.frames, rate, max_seconds, channels)
        out = _Resampler(rate)
        for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
            total += len(block)
            _check_length(total, rate, max_seconds, channels)
            out.push(block.T.mean(axis=0, dtype=np.float32))
    return out.finish()


def _read_source(source: AudioSource) -> bytes:
    """The encoded bytes (a path is checked, then read: no decoder ever sees a file name)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioFileNotFoundError(path)
        if not path.is_file():
            raise AudioError(f"not a file: {path}")
        if path.stat().st_size == 0:
            raise AudioError(f"empty audio: {path} is an empty file")
        return path.read_bytes()
    if isinstance(source, (bytes, bytearray, memoryview)):
        raw = bytes(source)
    elif hasattr(source, "read"):
        raw = source.read()  # read it all: a failed soundfile attempt must not leave it half-consumed
        if not isinstance(raw, (bytes, bytearray)):
            raise AudioError("file object must be opened in binary mode")
        raw = bytes(raw)
    else:
        raise TypeError(f"unsupported audio source type: {type(source).__name__}")
    if not raw:
        raise AudioError("empty audio: no bytes")
    return raw


def _decode_pyav(data: io.BytesIO, fmt: str, max_seconds: float | None) -> np.ndarray:
    try:
        # The sniffed demuxer on the bytes themselves: no file name, no protocol, no nested opens.
        with av.open(data, mode="r", format=fmt) as container:
            if not container.streams.audio:
                raise AudioError("could not decode audio: the file has no audio stream")
            stream = container.streams.audio[0]
            channels, rate = stream.codec_context.channels, stream.codec_context.sample_rate
            _check_channels(channels)
            known = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
            if known and rate:  # the header's length: refuse before decoding anything
                _check_rate(rate)
                _check_length(int(known * rate), rate, max_seconds, channels)
            out, rate, total, produced, last = None, None, 0, 0, None
            for frame in container.decode(stream):
                if rate is not None and frame.sample_rate != rate:
                    raise AudioError("could not decode audio: sample rate changes mid-stream")
                if out is None:
                    rate, out = frame.sample_rate, _Resampler(frame.sample_rate)
                _check_channels(len(frame.layout.channels))
                total += frame.samples
                _check_length(total, rate, max_seconds, len(frame.layout.channels))
                if last is not None:  # one frame behind: the last one may carry encoder padding (below)
                    out.push(last)
                last = _frame_to_mono(frame)  # mono per frame, so a mid-stream layout change is harmless
                produced += len(last)
    except AudioError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # ValueError: PyAV's own format checks
        raise AudioError(f"{_UNSUPPORTED}: {getattr(exc, 'strerror', None) or exc}") from exc
    if out is None:
        raise AudioError("empty audio: no audio frames could be decoded")
    if known:
        # AAC in mp4/m4a: the container knows the true length, but FFmpeg still returns the encoder's padding in
        # the last frame. Trim only that (less than one frame), never trust a rough estimate.
        surplus = produced - round(known * rate)
        if 0 < surplus < len(last):
            last = last[:-surplus]
    out.push(last)
    return out.finish()


def _check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"unsupported sample rate {rate} Hz (expected {MIN_RATE}..{MAX_RATE})")


def _check_channels(channels: int) -> None:
    if not 1 <= channels <= _MAX_CHANNELS:
        raise AudioError(f"unsupported channel count {channels} (expected 1..{_MAX_CHANNELS})")


def _check_length(frames: int, rate: int, max_seconds: float | None, channels: int = 1) -> None:
    """`frames` per channel at `rate` within `max_seconds`, and `frames * channels` within the sample budget."""
    if max_seconds is None:
        return
    if frames > max_seconds * rate:
        raise AudioTooLongError(f"audio too long: more than {max_seconds:g} s (the limit is {max_seconds:g} s)")
    if frames * channels > max_seconds * SAMPLE_BUDGET_PER_SECOND:
        raise AudioTooLongError(f"audio too large: {channels} channels at {rate} Hz exceed the decoding budget of "
                                f"{max_seconds:g} s of 48 kHz stereo")


def _check_samples(mono: np.ndarray) -> None:
    if not np.isfinite(mono).all():
        raise AudioError("audio contains NaN or infinite samples")
    if mono.size and float(np.abs(mono).max()) > MAX_ABS_SAMPLE:
        raise AudioError(f"sample values out of range (|x| > {MAX_ABS_SAMPLE:g}): not audio")


def _frame_to_mono(frame: av.AudioFrame) -> np.ndarray:
    array = frame.to_ndarray()
    if not frame.format.is_planar:  # packed: [1, samples * channels], interleaved
        array = array.reshape(-1, len(frame.layout.channels)).T
    return _to_float(array).mean(axis=0, dtype=np.float32)


def _as_channels_first(array: np.ndarray) -> np.ndarray:
    if array.size == 0:
        raise AudioError("empty audio: zero samples")
    if array.ndim == 1:
        return array[None, :]
    if array.ndim != 2:
        raise AudioError(f"expected audio of shape [samples] or [samples, channels], got {array.shape}")
    channels_first = array if array.shape[0] <= array.shape[1] else array.T
    if len(channels_first) > _MAX_CHANNELS:
        raise AudioError(f"ambiguous audio shape {array.shape}: neither dimension is a channel count <= 8")
    return channels_first


def _to_float(array: np.ndarray) -> np.ndarray:
    """PCM of any dtype → float32 in [-1, 1] (floats are kept as they are)."""
    if array.dtype.kind == "f":
        return array.astype(np.float32, copy=False)
    if array.dtype.kind == "i":
        return (array / float(2 ** (8 * array.itemsize - 1))).astype(np.float32)
    if array.dtype.kind == "u":  # unsigned PCM (8-bit WAV, FFmpeg "u8") is centred on half its range
        half = float(2 ** (8 * array.itemsize - 1))
        return ((array - half) / half).astype(np.float32)
    raise AudioError(f"unsupported sample dtype {array.dtype}")
