"""One WebSocket stream's state (protocol in docs/streaming.md): 16 kHz PCM16 chunks in, JSON messages out.

Every `hop` seconds of received audio the last `window` seconds are judged, if the VAD heard at least
`MIN_VOICED` s of speech in them (no prediction on silence: a `no_speech` message instead); when an utterance
ends (`min_silence` of quiet) it is sent as a `segment`, with the same boundaries the timeline would give.
Time is stream time (samples received), not wall-clock, so results do not depend on network timing; the
wall clock only polices the client: audio may arrive at most `MAX_SPEED` × real time (after a first
`BURST_SECONDS`), and a session lasts at most `Limits.stream_wall_seconds`.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from emotion_core.audio import AudioError, load_pcm16
from emotion_core.features import SAMPLE_RATE
from emotion_core.serving.limits import Limits
from emotion_core.serving.predictor import MIN_SECONDS, Predictor
from emotion_core.serving.schemas import StreamPrediction, StreamSegment
from emotion_core.serving.timeline import segment_probabilities, timeline_segment
from emotion_core.vad import Segment, Segmenter

STREAM_WINDOW_SECONDS = 3.0
HOP_SECONDS = 0.5
MIN_VOICED = 0.2  # seconds of VAD speech a window needs before it is judged
MAX_MESSAGE_BYTES = 1 << 20  # 32 s of audio per message is plenty (also the server's frame limit)
MAX_SPEED = 2.0  # a live stream arrives in real time; twice that leaves room for network jitter
BURST_SECONDS = 5.0  # audio a client may send at once at the start (what it buffered while connecting)


class StreamError(AudioError):
    def __init__(self, detail: str, code: int) -> None:
        super().__init__(detail)
        self.code = code  # the WebSocket close code


class StreamSession:
    def __init__(self, predictor: Predictor, limits: Limits | None = None, window: float = STREAM_WINDOW_SECONDS,
                 hop: float = HOP_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.predictor, self.window, self.hop, self.clock = predictor, window, hop, clock
        self.limits = limits or predictor.limits
        self.max_seconds = self.limits.max_audio_seconds
        self.opened = clock()
        self.segmenter = Segmenter()
        self.received = 0  # samples
        self._buf, self._buf_start = np.zeros(0, np.float32), 0  # recent audio, and its first sample's index
        self._next_hop = hop

    def ready(self) -> dict[str, Any]:
        return {"type": "ready", "sample_rate": SAMPLE_RATE, "encoding": "pcm_s16le", "channels": 1,
                "window": self.window, "hop": self.hop, "max_seconds": self.max_seconds,
                "max_message_bytes": MAX_MESSAGE_BYTES, "max_speed": MAX_SPEED,
                "idle_seconds": self.limits.stream_idle_seconds, "wall_seconds": self.limits.stream_wall_seconds}

    def wall_seconds_left(self) -> float:
        """Wall-clock seconds this session may still stay open (the service closes it at 0)."""
        return self.limits.stream_wall_seconds - (self.clock() - self.opened)

    def push(self, data: bytes) -> list[dict[str, Any]]:
        """A binary message: raw PCM16 LE mono 16 kHz. Returns the messages to send, in order."""
        if len(data) > MAX_MESSAGE_BYTES:
            raise StreamError(f"message of {len(data)} bytes: at most {MAX_MESSAGE_BYTES} per message", 1009)
        if len(data) % 2:
            raise StreamError("PCM16 chunks must hold whole 2-byte samples", 1003)
        if not data:
            return []
        samples = load_pcm16(data)  # 16 kHz already: no resampling, just int16 → float32
        total = (self.received + len(samples)) / SAMPLE_RATE
        if total > self.max_seconds:
            raise StreamError(f"stream longer than {self.max_seconds:g} s: open a new one", 1008)
        if total > BURST_SECONDS + MAX_SPEED * (self.clock() - self.opened):
            raise StreamError(f"audio arrives faster than {MAX_SPEED:g}x real time: stream it live, or upload "
                              "the recording to /predict-timeline/", 1008)
        self._buf = np.concatenate([self._buf, samples])
        self.received += len(samples)
        out = [self._segment(s) for s in self.segmenter.push(samples)]
        now = self.received / SAMPLE_RATE
        if now >= self._next_hop:  # one prediction per chunk, however many hops it spans: the latest wins
            self._next_hop += self.hop * (1 + int((now - self._next_hop) // self.hop))
            out.append(self._rolling(now))
        self._trim()
        return out

    def end(self) -> list[dict[str, Any]]:
        """The client is done: close the open utterance."""
        return [self._segment(s) for s in self.segmenter.flush()] + [
            {"type": "end", "duration": round(self.received / SAMPLE_RATE, 3)}]

    def _rolling(self, now: float) -> dict[str, Any]:
        start = max(0.0, now - self.window)
        voiced = self.segmenter.voiced_seconds(start)
        if voiced < MIN_VOICED or now - start < MIN_SECONDS:
            return {"type": "no_speech", "start": round(start, 3), "end": round(now, 3)}
        audio = self._audio(start, now)
        probs = self.predictor.probabilities(audio, segments=[Segment(0.0, len(audio) / SAMPLE_RATE)])
        pred = self.predictor.prediction(probs)
        return StreamPrediction(start=round(start, 3), end=round(now, 3), **pred.model_dump(
            include=set(StreamPrediction.model_fields) - {"type", "start", "end"})).model_dump()

    def _segment(self, segment: Segment) -> dict[str, Any]:
        a = int(segment.start * SAMPLE_RATE) - self._buf_start
        local = Segment(a / SAMPLE_RATE, a / SAMPLE_RATE + segment.duration)
        probs = segment_probabilities(self.predictor, self._buf, local)
        item = timeline_segment(segment, probs)
        return StreamSegment(**item.model_dump()).model_dump()

    def _audio(self, start: float, end: float) -> np.ndarray:
        a, b = int(start * SAMPLE_RATE) - self._buf_start, int(end * SAMPLE_RATE) - self._buf_start
        return self._buf[max(0, a) : b]

    def _trim(self) -> None:
        # Keep what a future window or segment can still need: the open utterance (its edges may grow back
        # by `extend`) and the last window, plus a second of slack.
        p = self.segmenter.params
        keep = self.received / SAMPLE_RATE - self.window - p.min_silence - p.extend - 1.0
        if (open_start := self.segmenter.open_start) is not None:
            keep = min(keep, open_start - p.extend - 1.0)
        drop = int(keep * SAMPLE_RATE) - self._buf_start
        if drop > SAMPLE_RATE:  # in whole seconds, not on every chunk
            self._buf, self._buf_start = self._buf[drop:].copy(), self._buf_start + drop
