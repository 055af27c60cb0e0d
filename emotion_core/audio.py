"""Decode any audio input to 16 kHz mono float32, and the fixed-length crop/pad policy used in training.

Nothing here knows about models: every consumer (training, predictor, service) gets the same samples from
the same bytes. soundfile (libsndfile) is tried first: it is fast and exact for wav/flac/ogg/mp3. PyAV
(FFmpeg) is the fallback for containers libsndfile can't read (m4a/aac, webm/opus, 3gp, ...).
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

AudioSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray]

_MAX_CHANNELS = 8
#: Rates outside this range are not audio a phone records (and extreme ratios make soxr allocate huge arrays).
MIN_RATE, MAX_RATE = 1_000, 768_000
_UNSUPPORTED = "could not decode audio: not a supported format (wav, flac, ogg, mp3, m4a, webm, ...)"


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


def load_audio(source: AudioSource, sample_rate: int | None = None, max_seconds: float | None = None) -> np.ndarray:
    """Decode `source` to 16 kHz mono float32 samples in [-1, 1] (1-D, C-contiguous).

    `source` is a path, encoded bytes (bytes/bytearray/memoryview), a binary file object, or a numpy array
    of samples; for an array `sample_rate` is required and its shape is [samples], [samples, channels] or
    [channels, samples] (the channel axis is the smaller one, at most 8). Channels are averaged; integer
    PCM is scaled to [-1, 1]; audio is resampled with soxr only when its rate isn't already 16 kHz.

    Raises AudioError (a ValueError) for empty, undecodable or non-finite audio, AudioTooLongError when
    it lasts more than `max_seconds` (checked while decoding: a small, highly compressed file never expands
    to more than that), and AudioFileNotFoundError (also a FileNotFoundError) for a missing path.
    """
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise AudioError("sample_rate is required when passing a numpy array")
        _check_rate(sample_rate)
        channels_first = _as_channels_first(source)
        _check_length(channels_first.shape[1], sample_rate, max_seconds)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: NaN, rejected by _finish
            mono, rate = _to_float(channels_first).mean(axis=0, dtype=np.float32), sample_rate
    else:
        if sample_rate is not None:
            raise AudioError("sample_rate is only for numpy arrays: encoded audio carries its own rate")
        mono, rate = _decode(source, max_seconds)
    return _finish(mono, rate)


def speed_perturb(audio: np.ndarray, speed: float) -> np.ndarray:
    """Kaldi-style speed perturbation: the clip played `speed` times faster (tempo and pitch together;
    0.9 → 11 % longer and lower). A training augmentation of the embedding cache (`train.speed_perturb`)."""
    if speed == 1.0:
        return audio
    if not 0.5 <= speed <= 2.0:
        raise ValueError(f"speed factor {speed} is outside [0.5, 2]")
    return np.ascontiguousarray(soxr.resample(audio, SAMPLE_RATE * speed, SAMPLE_RATE, quality="HQ"), dtype=np.float32)


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


def _decode(source: AudioSource, max_seconds: float | None) -> tuple[np.ndarray, int]:
    """Encoded source → (mono samples, sample rate)."""
    data = _read_source(source)
    try:
        return _decode_soundfile(_reopen(data), max_seconds)
    except AudioTooLongError:
        raise
    except Exception:  # noqa: BLE001 - any libsndfile failure just means "try FFmpeg"
        pass
    return _decode_pyav(_reopen(data), max_seconds)


def _decode_soundfile(data: str | io.BytesIO, max_seconds: float | None) -> tuple[np.ndarray, int]:
    # Block by block, mixed down to mono as it goes: memory is bounded by the mono length, not channels.
    with sf.SoundFile(data) as f:
        rate, chunks, total = f.samplerate, [], 0
        _check_rate(rate)
        for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
            chunks.append(block.T.mean(axis=0, dtype=np.float32))
            total += len(block)
            _check_length(total, rate, max_seconds)
    return (np.concatenate(chunks) if chunks else np.zeros(0, np.float32)), rate


def _read_source(source: AudioSource) -> str | bytes:
    """A path (checked) or the encoded bytes, so each decoder can start from the beginning."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioFileNotFoundError(path)
        if not path.is_file():
            raise AudioError(f"not a file: {path}")
        if path.stat().st_size == 0:
            raise AudioError(f"empty audio: {path} is an empty file")
        return str(path)
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


def _reopen(data: str | bytes) -> str | io.BytesIO:
    return data if isinstance(data, str) else io.BytesIO(data)


def _decode_pyav(data: str | io.BytesIO, max_seconds: float | None) -> tuple[np.ndarray, int]:
    try:
        with av.open(data, mode="r") as container:
            if not container.streams.audio:
                raise AudioError("could not decode audio: the file has no audio stream")
            stream = container.streams.audio[0]
            rate, chunks, total = None, [], 0
            for frame in container.decode(stream):
                if rate is not None and frame.sample_rate != rate:
                    raise AudioError("could not decode audio: sample rate changes mid-stream")
                rate = frame.sample_rate
                _check_rate(rate)
                chunks.append(_frame_to_mono(frame))
                total += len(chunks[-1])
                _check_length(total, rate, max_seconds)
            # read while the container is open: after close, PyAV's stream fields are freed memory
            known = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else None
    except AudioError:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:  # ValueError: PyAV's own format probing
        raise AudioError(f"{_UNSUPPORTED}: {getattr(exc, 'strerror', None) or exc}") from exc
    if rate is None:
        raise AudioError("empty audio: no audio frames could be decoded")
    mono = np.concatenate(chunks)  # already mono per frame, so a mid-stream layout change is harmless
    if known:
        # AAC in mp4/m4a: the container knows the true length, but FFmpeg still returns the encoder's
        # padding in the last frame. Trim only that (less than one frame), never trust a rough estimate.
        surplus = len(mono) - round(known * rate)
        if 0 < surplus < len(chunks[-1]):
            mono = mono[:-surplus]
    return mono, rate


def _check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(f"unsupported sample rate {rate} Hz (expected {MIN_RATE}..{MAX_RATE})")


def _check_length(samples: int, rate: int, max_seconds: float | None) -> None:
    if max_seconds is not None and samples > max_seconds * rate:
        raise AudioTooLongError(f"audio too long: more than {max_seconds:g} s (the limit is {max_seconds:g} s)")


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


def _finish(mono: np.ndarray, rate: int) -> np.ndarray:
    if mono.size == 0:
        raise AudioError("empty audio: zero samples")
    if not np.isfinite(mono).all():
        raise AudioError("audio contains NaN or infinite samples")
    _check_rate(rate)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ")
        if mono.size == 0:  # a few samples at a high rate resample to nothing
            raise AudioError("empty audio: too few samples to resample to 16 kHz")
    return np.ascontiguousarray(mono, dtype=np.float32)
