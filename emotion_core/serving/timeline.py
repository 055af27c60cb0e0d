"""A long recording → its utterances (voice activity), each with an emotion, and the whole's distribution."""

from __future__ import annotations

import numpy as np

from emotion_core.audio import AudioError
from emotion_core.features import SAMPLE_RATE
from emotion_core.labels import EMOTIONS, low_confidence_warning, music_mood
from emotion_core.serving.predictor import MIN_SECONDS, Predictor
from emotion_core.serving.schemas import Timeline, TimelineSegment
from emotion_core.serving.windows import centred_start
from emotion_core.vad import Segment, speech_segments


def segment_probabilities(predictor: Predictor, audio: np.ndarray, segment: Segment) -> np.ndarray:
    """Probabilities for one utterance of `audio`. Utterances shorter than the 0.3 s minimum are judged on
    0.3 s around their centre; long ones are pooled over windows like any recording."""
    a, b = int(segment.start * SAMPLE_RATE), int(segment.end * SAMPLE_RATE)
    shortest = int(MIN_SECONDS * SAMPLE_RATE)
    if b - a < shortest:
        a = centred_start(a, b, shortest, len(audio))
        b = min(len(audio), a + shortest)
    chunk = audio[a:b]
    # the whole chunk is the utterance: no second VAD pass
    return predictor.probabilities(chunk, segments=[Segment(0.0, len(chunk) / SAMPLE_RATE)])


def timeline_segment(segment: Segment, probs: np.ndarray) -> TimelineSegment:
    best = int(np.argmax(probs))
    return TimelineSegment(start=segment.start, end=segment.end, emotion=EMOTIONS[best],
                           confidence=float(probs[best]), music_mood=music_mood(EMOTIONS[best]),
                           warning=low_confidence_warning(float(probs[best])))


def speech_shares(judged: list[tuple[str, float]]) -> dict[str, float]:
    """(emotion, seconds) per segment → each emotion's share of the speech time. One division per emotion,
    clamped to [0, 1]: hundreds of summed fractions could round past 1 and break the answer's own schema."""
    seconds = dict.fromkeys(EMOTIONS, 0.0)
    for emotion, duration in judged:
        seconds[emotion] += duration
    speech = sum(seconds.values())
    return {e: min(1.0, max(0.0, t / speech)) if speech else 0.0 for e, t in seconds.items()}


def merge_closest(segments: list[Segment], budget: int) -> list[Segment]:
    """At most `budget` segments: past it, the utterances separated by the shortest pauses are joined (the
    pause becomes part of the joined utterance), so the cost of a timeline is bounded by the budget."""
    if len(segments) <= budget:
        return segments
    gaps = sorted(range(len(segments) - 1), key=lambda i: (segments[i + 1].start - segments[i].end, i))
    joined = set(gaps[: len(segments) - budget])  # join segment i with i + 1
    merged = [segments[0]]
    for i, segment in enumerate(segments[1:]):
        merged[-1:] = [Segment(merged[-1].start, segment.end)] if i in joined else [merged[-1], segment]
    return merged


def build_timeline(predictor: Predictor, audio: np.ndarray) -> Timeline:
    """Segments (start/end in s, emotion, confidence, music mood), the share of speech time per emotion,
    and an overall prediction (segment probabilities averaged by duration). At most
    `limits.max_segments` segments (`merge_closest`)."""
    duration = len(audio) / SAMPLE_RATE
    if duration < MIN_SECONDS:
        raise AudioError(f"audio too short: {duration:.2f} s < {MIN_SECONDS} s")
    segments = merge_closest([s for s in speech_segments(audio) if s.duration > 0], predictor.limits.max_segments)
    probs = [segment_probabilities(predictor, audio, s) for s in segments]
    items = [timeline_segment(s, p) for s, p in zip(segments, probs)]
    speech = sum(s.duration for s in segments)
    share = speech_shares([(item.emotion, s.duration) for s, item in zip(segments, items)])
    overall = None
    if segments:
        overall = predictor.prediction(np.average(probs, axis=0, weights=[s.duration for s in segments]))
    return Timeline(status="success" if segments else "no_speech", duration=round(duration, 3),
                    speech_seconds=round(speech, 3), segments=items, distribution=share, overall=overall)
