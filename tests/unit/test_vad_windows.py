"""VAD and window planning on synthetic audio (no corpus): silence and hiss are not speech, voiced bursts are
found where they are, streaming in chunks gives the whole recording's boundaries, windows cover the speech.
The same on a real multi-utterance RAVDESS recording: tests/integration/test_vad_timeline.py."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_core.features import SAMPLE_RATE
from emotion_core.serving.windows import plan_windows
from emotion_core.vad import (
    FRAME_SECONDS,
    Segment,
    Segmenter,
    frame_flags,
    frame_levels,
    speech_seconds,
    speech_segments,
)

TOLERANCE = 0.3  # seconds: the bar the real-recording tests hold segment boundaries to


def hiss(seconds: float, dbfs: float = -70.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 10 ** (dbfs / 20), int(seconds * SAMPLE_RATE)).astype(np.float32)


def voiced(seconds: float, f0: float = 140.0) -> np.ndarray:
    """A vowel-like burst: 29 harmonics of a gliding f0, 4 'syllables' a second, 50 ms fades, peak 0.3."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))) / SAMPLE_RATE
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.3 + 0.35 * (1 - np.cos(2 * np.pi * 4 * t)))
    x *= np.minimum(1, np.minimum(t, t[-1] - t) / 0.05)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def joined(parts: list[tuple[str, float]]) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """("voice"|"hiss", seconds) pieces joined; the audio and the true (start, end) of each voiced piece."""
    audio, truth, t = [], [], 0.0
    for i, (kind, seconds) in enumerate(parts):
        audio.append(voiced(seconds, 120 + 15 * i) if kind == "voice" else hiss(seconds, seed=i))
        if kind == "voice":
            truth.append((t, t + seconds))
        t += len(audio[-1]) / SAMPLE_RATE
    return np.concatenate(audio), truth


@pytest.fixture(scope="module")
def recording() -> tuple[np.ndarray, list[tuple[float, float]]]:
    return joined([("hiss", 0.8), ("voice", 1.5), ("hiss", 1.0), ("voice", 2.0), ("hiss", 1.5), ("voice", 1.0),
                   ("hiss", 2.0), ("voice", 2.5), ("hiss", 0.8)])


def test_vad_silence_and_noise() -> None:
    rng = np.random.default_rng(0)
    assert speech_segments(np.zeros(5 * SAMPLE_RATE, np.float32)) == []
    for dbfs in (-60, -40):  # steady hiss is not speech
        assert speech_segments(rng.normal(0, 10 ** (dbfs / 20), 5 * SAMPLE_RATE).astype(np.float32)) == []


def test_vad_finds_synthetic_utterances(recording) -> None:
    audio, truth = recording
    found = [(s.start, s.end) for s in speech_segments(audio)]
    assert len(found) == len(truth), (found, truth)
    assert max(abs(f - t) for fs, ts in zip(found, truth) for f, t in zip(fs, ts)) <= TOLERANCE, (found, truth)
    assert all(a.end <= b.start for a, b in zip(speech_segments(audio), speech_segments(audio)[1:]))


def test_vad_streaming_gives_the_whole_recordings_boundaries(recording) -> None:
    """The WebSocket's Segmenter, fed 0.25 s chunks (and odd ones), ends at the timeline's boundaries."""
    audio, _ = recording
    whole = speech_segments(audio)
    for chunk in (SAMPLE_RATE // 4, 1234):
        segmenter = Segmenter()
        found = [s for i in range(0, len(audio), chunk) for s in segmenter.push(audio[i : i + chunk])]
        assert found + segmenter.flush() == whole
        assert segmenter.frames == len(audio) // int(FRAME_SECONDS * SAMPLE_RATE)


def test_vad_ignores_clicks_and_bridges_short_pauses() -> None:
    assert speech_segments(np.concatenate([hiss(1.0), voiced(0.12), hiss(1.5)])) == []  # < min_speech (0.16 s)
    bridged = speech_segments(np.concatenate([hiss(1.0), voiced(1.0), hiss(0.3, seed=1), voiced(1.0, 180), hiss(1.0)]))
    assert len(bridged) == 1 and bridged[0].start < 1.1 and bridged[0].end > 3.2  # a 0.3 s pause: one utterance
    assert frame_flags(voiced(1.0)).all() and not frame_flags(hiss(1.0)).any()


def test_plan_windows() -> None:
    sr = SAMPLE_RATE
    assert plan_windows(5 * sr, []) == [(0, 5 * sr)]  # up to 6 s: the whole clip, as evaluated
    speech = [Segment(10.0, 13.0)]
    windows = plan_windows(30 * sr, speech)
    assert all(b - a == 4 * sr for a, b in windows)
    assert [a / sr for a, _ in windows] == [9.5]  # voice shorter than a window: one window centred on it
    long = plan_windows(30 * sr, [Segment(5.0, 9.0), Segment(17.0, 22.0)])
    assert [a / sr for a, _ in long] == [5.0, 7.0, 15.0, 17.0, 18.0]  # from the voice's start; the pause skipped
    assert long[-1][1] == 22 * sr  # the voice's tail gets its own window
    assert len(plan_windows(600 * sr, [Segment(0, 600)], max_windows=10)) == 10
    tail = plan_windows(int(9.5 * sr), [Segment(0, 9.5)])
    assert tail[-1][1] == int(9.5 * sr)  # the tail gets its own window


def test_silence_before_the_voice_does_not_move_its_windows() -> None:
    sr = SAMPLE_RATE
    speech = [Segment(0.9, 7.2), Segment(9.0, 15.5)]
    plain = plan_windows(16 * sr, speech)
    for pad in (0.5, 3.0, 20.0):  # a phone's pickup delay, a pause, a long wait
        moved = [Segment(s.start + pad, s.end + pad) for s in speech]
        shifted = [(a - int(pad * sr), b - int(pad * sr)) for a, b in plan_windows(int((16 + pad) * sr), moved)]
        assert shifted == plain, pad


def test_plan_windows_on_synthetic_speech_in_silence() -> None:
    """3 s of voice in the middle of 43 s: only windows holding >= 1 s of it; no VAD information: every window."""
    audio = np.concatenate([hiss(20.0), voiced(3.0), hiss(20.0, seed=1)])
    segments = speech_segments(audio)
    windows = plan_windows(len(audio), segments)
    assert windows and all(speech_seconds(segments, a / SAMPLE_RATE, b / SAMPLE_RATE) >= 1.0 for a, b in windows)
    assert all(a < 23 * SAMPLE_RATE and b > 20 * SAMPLE_RATE for a, b in windows)
    every = plan_windows(len(audio), [])
    assert len(every) == len(range(0, len(audio) - 4 * SAMPLE_RATE + 1, 2 * SAMPLE_RATE)) + 1  # + the tail's
    assert every[-1][1] == len(audio)



def test_a_timeline_of_hundreds_of_segments_keeps_its_schema():
    """651 bursts of 0.3 s: summing 651 fractions rounds past 1 (what broke the schema); the shares do not."""
    from emotion_core.serving.schemas import Timeline
    from emotion_core.serving.timeline import speech_shares

    judged = [("angry", 0.3)] * 651
    assert sum(d / (0.3 * 651) for _, d in judged) > 1.0  # the old way
    share = speech_shares(judged)
    assert share["angry"] == 1.0 and sum(share.values()) == 1.0
    Timeline(status="success", duration=600.0, speech_seconds=195.0, segments=[], distribution=share, overall=None)
    mixed = speech_shares([("sad", 0.3), ("happy", 0.6)] * 325)
    assert abs(sum(mixed.values()) - 1.0) < 1e-12 and all(0.0 <= v <= 1.0 for v in mixed.values())


def test_merge_closest_keeps_a_timeline_within_its_budget():
    """650 bursts → at most the budget: the shortest pauses are joined first, order and span are kept."""
    from emotion_core.serving.timeline import merge_closest

    rng = np.random.default_rng(0)
    starts = np.cumsum(0.3 + rng.uniform(0.2, 1.0, 650))
    segments = [Segment(float(s), float(s) + 0.3) for s in starts]
    merged = merge_closest(segments, 200)
    assert len(merged) == 200
    assert merged[0].start == segments[0].start and merged[-1].end == segments[-1].end
    assert all(a.end < b.start for a, b in zip(merged, merged[1:]))  # disjoint, in order
    pauses = sorted(b.start - a.end for a, b in zip(segments, segments[1:]))
    kept = sorted(b.start - a.end for a, b in zip(merged, merged[1:]))
    assert np.allclose(kept, pauses[-199:])  # the 199 longest pauses are the ones left
    assert merge_closest(segments[:5], 200) == segments[:5]
    assert merge_closest(segments[:5], 1) == [Segment(segments[0].start, segments[4].end)]


def test_a_stream_may_not_outrun_real_time_nor_outstay_its_wall_clock():
    """After a 5 s burst, audio may arrive at most 2x real time (else close 1008); the session's wall-clock
    allowance counts down. Silence only: no prediction (and no model) is needed."""
    from emotion_core.serving.limits import Limits
    from emotion_core.serving.streaming import BURST_SECONDS, MAX_SPEED, StreamError, StreamSession

    now = [100.0]
    session = StreamSession(None, Limits(stream_wall_seconds=30.0), clock=lambda: now[0])  # type: ignore[arg-type]
    second = np.zeros(SAMPLE_RATE, "<i2").tobytes()
    for _ in range(int(BURST_SECONDS)):
        session.push(second)  # the burst: 5 s at once
    now[0] += 2.0
    for _ in range(int(2.0 * MAX_SPEED)):
        session.push(second)  # 2 s later, 4 s more: exactly 2x
    with pytest.raises(StreamError, match="faster than 2x real time") as exc:
        session.push(second)
    assert exc.value.code == 1008
    assert session.wall_seconds_left() == pytest.approx(28.0)
    assert session.ready()["max_speed"] == MAX_SPEED and session.ready()["idle_seconds"] == 20.0


def test_a_soft_spoken_voice_is_heard_and_hiss_is_not_raised():
    """Level normalisation before the decision: speech 40 dB below the usual level, over near-digital silence,
    is found where it is; steady hiss is never raised past the gate, nor hiss with a loud click in it."""
    from emotion_core.vad import level_gain

    quiet = np.concatenate([hiss(1.0, -100), voiced(1.5) * np.float32(10 ** (-40 / 20)), hiss(1.0, -100)])
    [segment] = speech_segments(quiet)
    assert abs(segment.start - 1.0) <= TOLERANCE and abs(segment.end - 2.5) <= TOLERANCE
    assert level_gain(frame_levels(hiss(3.0, -60))) == 0.0  # no speech dynamics: no gain
    clicked = np.concatenate([hiss(1.0), voiced(0.12), hiss(1.5)])
    assert level_gain(frame_levels(clicked)) <= 1.0  # the floor stays under the -70 dBFS ceiling
    assert speech_segments(hiss(3.0, -60)) == [] and speech_segments(clicked) == []
