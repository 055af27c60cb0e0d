"""Voice activity: where the speech is, as segments in seconds. WebRTC's VAD (webrtcvad-wheels: a C
library, offline, ~10 µs per 30 ms frame) plus an energy gate, smoothed into segments.

One `Segmenter` serves both flows: the timeline pushes a whole recording and flushes; the WebSocket
pushes chunks as they arrive and gets each utterance as soon as it has ended — the same boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import webrtcvad

from emotion_core.features import SAMPLE_RATE

FRAME_SECONDS = 0.03  # webrtcvad takes 10/20/30 ms frames; 30 ms is its most reliable
FRAME = int(FRAME_SECONDS * SAMPLE_RATE)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds from the start of the audio
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class VADParams:
    aggressiveness: int = 2  # webrtcvad 0..3; 2 ignores steady noise up to ~-40 dBFS
    min_dbfs: float = -60.0  # frames quieter than this are silence whatever webrtcvad says
    min_speech: float = 0.16  # shorter bursts (clicks, breaths) are not utterances; a clipped word can be 0.18 s
    min_silence: float = 0.5  # shorter pauses stay inside one utterance (between words)
    # Edges are refined by level: webrtcvad fires on breaths before the words, and only on the louder parts
    # of quiet speech. Each edge moves to where the level crosses the utterance's peak - `edge_db` (and the
    # noise floor + `floor_db`): inwards over quieter frames, outwards over louder ones (at most `extend` s).
    edge_db: float = 30.0
    floor_db: float = 10.0
    extend: float = 1.0
    pad: float = 0.05  # a little context on both sides
    # Level normalisation before the decision, so a soft-spoken user is heard: when the recording so far has
    # the dynamics of speech (its loud frames `dynamic_db` above its quiet ones), the frames are raised so
    # the loud ones reach `target_dbfs` (at most `max_gain_db`, and never lifting the quiet ones above
    # `floor_ceiling_dbfs`, so hiss stays under the gate). Steady hiss and silence are never raised.
    target_dbfs: float = -26.0
    dynamic_db: float = 20.0
    max_gain_db: float = 40.0
    floor_ceiling_dbfs: float = -70.0


def frame_levels(audio: np.ndarray) -> np.ndarray:
    """RMS level (dBFS) of each whole 30 ms frame of 16 kHz mono audio (a trailing partial frame is ignored)."""
    n = len(audio) // FRAME
    frames = np.asarray(audio[: n * FRAME], dtype=np.float32).reshape(n, FRAME)
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def level_gain(levels: np.ndarray, params: VADParams = VADParams()) -> float:
    """dB to raise a recording by before the speech decision (`VADParams.target_dbfs`): 0 unless its frame
    levels spread like speech and pauses do."""
    if len(levels) < 10:
        return 0.0
    loud, quiet = np.percentile(levels, [95, 10])
    if loud - quiet < params.dynamic_db:
        return 0.0
    gain = min(params.target_dbfs - loud, params.floor_ceiling_dbfs - quiet, params.max_gain_db)
    return float(max(0.0, gain))


def frame_flags(audio: np.ndarray, params: VADParams = VADParams(), vad: webrtcvad.Vad | None = None,
                levels: np.ndarray | None = None, gain_db: float | None = None) -> np.ndarray:
    """Speech flag per whole 30 ms frame: webrtcvad's decision on the level-normalised frames (`level_gain`
    of these frames unless given), gated by the normalised level."""
    levels = frame_levels(audio) if levels is None else levels
    gain_db = level_gain(levels, params) if gain_db is None else gain_db
    scaled = np.asarray(audio[: len(levels) * FRAME], np.float32) * np.float32(10 ** (gain_db / 20))
    pcm = (np.clip(scaled, -1.0, 1.0) * 32767).astype("<i2").reshape(len(levels), FRAME)
    vad = vad or webrtcvad.Vad(params.aggressiveness)
    return np.array([bool(level + gain_db >= params.min_dbfs) and vad.is_speech(pcm[i].tobytes(), SAMPLE_RATE)
                     for i, level in enumerate(levels)], bool)


class Segmenter:
    """Streaming segmentation: `push` audio, get the utterances that have ended; `flush` at the end."""

    def __init__(self, params: VADParams = VADParams()) -> None:
        self.params, self.vad = params, webrtcvad.Vad(params.aggressiveness)
        self._rest = np.zeros(0, np.float32)
        self._levels: list[float] = []  # dBFS of every frame so far (10 min = 20k frames)
        self._flags: list[bool] = []  # and its speech flag
        self._start: int | None = None  # open utterance: index of its first speech frame
        self._last = 0  # one past its last speech frame
        self._prev_end = 0  # frame where the previous utterance ended (edges never grow into it)

    @property
    def frames(self) -> int:
        return len(self._levels)

    @property
    def time(self) -> float:
        return self.frames * FRAME_SECONDS

    def push(self, audio: np.ndarray) -> list[Segment]:
        buf = np.concatenate([self._rest, np.asarray(audio, np.float32)])
        n = len(buf) // FRAME
        levels = frame_levels(buf[: n * FRAME])
        # the gain follows the last minute heard (a whole recording pushed at once: all of it)
        gain = level_gain(np.concatenate([self._levels[-2000:], levels]), self.params)
        flags = frame_flags(buf[: n * FRAME], self.params, self.vad, levels, gain)
        self._rest = buf[n * FRAME :]
        silence = round(self.params.min_silence / FRAME_SECONDS)
        done = []
        for level, flag in zip(levels, flags):
            i = self.frames
            self._levels.append(float(level))
            self._flags.append(bool(flag))
            if flag:
                if self._start is None:
                    self._start = i
                self._last = i + 1
            elif self._start is not None and self.frames - self._last >= silence:
                done += self._close()
        return done

    def flush(self) -> list[Segment]:
        """Close the open utterance (end of the recording or stream)."""
        return self._close() if self._start is not None else []

    @property
    def open_start(self) -> float | None:
        """Start (s) of the utterance in progress, if any."""
        return None if self._start is None else self._start * FRAME_SECONDS

    def voiced_seconds(self, since: float) -> float:
        """Seconds of frames flagged as speech from `since` (s) to now."""
        return FRAME_SECONDS * sum(self._flags[max(0, int(since / FRAME_SECONDS)) :])

    def _close(self) -> list[Segment]:
        start, end, self._start = self._start, self._last, None
        if (end - start) * FRAME_SECONDS < self.params.min_speech:
            return []
        p = self.params
        levels = np.asarray(self._levels[-2000:])  # the last minute sets the noise floor
        threshold = max(p.min_dbfs - p.max_gain_db, max(self._levels[start:end]) - p.edge_db,
                        float(np.percentile(levels, 10)) + p.floor_db)
        reach = round(p.extend / FRAME_SECONDS)
        lo, hi = max(self._prev_end, start - reach), min(self.frames, end + reach)
        while start < end - 1 and self._levels[start] < threshold:  # breaths and clicks before the words
            start += 1
        while end > start + 1 and self._levels[end - 1] < threshold:
            end -= 1
        while start > lo and self._levels[start - 1] >= threshold:
            start -= 1
        while end < hi and self._levels[end] >= threshold:
            end += 1
        self._prev_end = end
        pad = p.pad
        return [Segment(round(max(0.0, start * FRAME_SECONDS - pad), 3),
                        round(min(self.time, end * FRAME_SECONDS + pad), 3))]


def speech_segments(audio: np.ndarray, params: VADParams = VADParams()) -> list[Segment]:
    """The utterances of a whole 16 kHz mono recording."""
    segmenter = Segmenter(params)
    return segmenter.push(audio) + segmenter.flush()


def speech_seconds(segments: list[Segment], start: float, end: float) -> float:
    """How much of [start, end) the segments cover."""
    return sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in segments)
