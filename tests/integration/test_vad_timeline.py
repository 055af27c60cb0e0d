"""VAD, window pooling, timeline and the streaming session, in-process, on a real multi-utterance recording
(RAVDESS clips of a held-out actor joined with 1–2 s pauses; tests/integration/_recordings.py). VAD and window
planning on synthetic audio: tests/unit/test_vad_windows.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from emotion_core.features import SAMPLE_RATE
from emotion_core.serving.predictor import NoSpeechError, Predictor
from emotion_core.serving.streaming import StreamSession
from emotion_core.serving.timeline import build_timeline, segment_probabilities
from emotion_core.vad import Segment, speech_segments
from tests.integration._recordings import TOLERANCE, boundary_errors


def test_vad_boundaries(recording) -> None:
    audio, truth = recording
    errors = boundary_errors([(s.start, s.end) for s in speech_segments(audio)], truth)
    print(f"VAD boundary error: max {max(errors):.3f} s, mean {np.mean(errors):.3f} s over {len(errors)} boundaries")
    assert max(errors) <= TOLERANCE


def test_long_recording_pools_voiced_windows(predictor: Predictor, recording) -> None:
    audio, _ = recording
    probs = predictor.probabilities(audio)
    assert probs.shape == (8,) and np.isclose(probs.sum(), 1.0)
    padded = np.concatenate([np.zeros(20 * SAMPLE_RATE, np.float32), audio])  # 20 s of silence in front
    np.testing.assert_allclose(predictor.probabilities(padded), probs, atol=0.05)  # silence is skipped
    with pytest.raises(NoSpeechError):
        predictor.probabilities(np.zeros(30 * SAMPLE_RATE, np.float32))


def test_timeline(predictor: Predictor, recording) -> None:
    audio, truth = recording
    timeline = build_timeline(predictor, audio)
    assert timeline.status == "success"
    errors = boundary_errors([(s.start, s.end) for s in timeline.segments], truth)
    print(f"timeline boundary error: max {max(errors):.3f} s over {len(errors)} boundaries")
    assert max(errors) <= TOLERANCE
    for seg in timeline.segments:  # each segment's emotion is the model's answer for that stretch
        probs = segment_probabilities(predictor, audio, Segment(seg.start, seg.end))
        assert np.isclose(seg.confidence, probs.max(), atol=1e-5)
    assert np.isclose(sum(timeline.distribution.model_dump().values()), 1.0)
    assert timeline.overall is not None and timeline.speech_seconds > 5
    silent = build_timeline(predictor, np.zeros(3 * SAMPLE_RATE, np.float32))
    assert silent.status == "no_speech" and silent.segments == [] and silent.overall is None


def test_stream_session(predictor: Predictor, recording) -> None:
    """0.25 s chunks in: rolling predictions only over speech, and the timeline's segments as they end."""
    audio, truth = recording
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    session = StreamSession(predictor, clock=itertools.count(0.0, 10.0).__next__)  # 10 s per chunk: never too fast
    chunk = SAMPLE_RATE // 4 * 2  # bytes
    messages = [m for i in range(0, len(pcm), chunk) for m in session.push(pcm[i : i + chunk])] + session.end()
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "end" and abs(messages[-1]["duration"] - len(audio) / SAMPLE_RATE) < 1e-3
    rolling = [m for m in messages if m["type"] in ("prediction", "no_speech")]
    assert len(rolling) == int(len(audio) / SAMPLE_RATE / 0.5)  # one per 0.5 s hop
    for m in rolling:  # VAD-gated: predictions only for windows that overlap an utterance
        overlaps = any(m["start"] < end and start < m["end"] for start, end in truth)
        assert m["type"] == "no_speech" or overlaps, m
    assert sum(m["type"] == "prediction" for m in rolling) >= 10
    assert sum(m["type"] == "no_speech" for m in rolling) >= 3
    segments = [(m["start"], m["end"]) for m in messages if m["type"] == "segment"]
    errors = boundary_errors(segments, truth)
    print(f"stream boundary error: max {max(errors):.3f} s; {kinds.count('prediction')} predictions")
    assert max(errors) <= TOLERANCE
    offline = speech_segments(np.frombuffer(pcm, "<i2") / np.float32(32768))  # the same (quantised) samples
    assert segments == [(s.start, s.end) for s in offline]  # the timeline's boundaries, found as they end
