"""Adapting to a voice: the running profile's statistics, and the bounded, client-scoped store of them."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from emotion_core.head.speaker import ADAPT_MIN_CLIPS, RunningProfile, SpeakerProfile
from emotion_core.serving.adaptation import SpeakerIdError, VoiceProfiles, describe


def test_running_profile_is_exact_over_its_window_then_forgets():
    rng = np.random.default_rng(0)
    stats = rng.normal(3.0, 2.0, size=(30, 16))
    voice = RunningProfile(window=20)
    for i, row in enumerate(stats, 1):
        voice.add(row)
        if i < ADAPT_MIN_CLIPS:
            assert voice.profile() is None  # the head answers until then
        if i == 20:
            exact = SpeakerProfile.from_statistics(stats[:20])
            np.testing.assert_allclose(voice.profile().mean, exact.mean, rtol=1e-5)
            np.testing.assert_allclose(voice.profile().std, exact.std, rtol=1e-4)
    # a new microphone: after a window of clips at another level the profile has followed them
    for row in rng.normal(-5.0, 2.0, size=(60, 16)):
        voice.add(row)
    assert voice.n_clips == 90 and np.all(np.abs(voice.profile().mean + 5.0) < 1.5)


def test_running_profile_refuses_another_encoders_statistics():
    voice = RunningProfile()
    voice.add(np.zeros(8))
    with pytest.raises(ValueError, match="another encoder"):
        voice.add(np.zeros(9))


def test_concurrent_updates_count_every_clip():
    voice = RunningProfile(window=10_000)
    threads = [threading.Thread(target=lambda: [voice.add(np.ones(32)) for _ in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert voice.n_clips == 800
    np.testing.assert_allclose(voice.profile().mean, 1.0)


def test_store_is_scoped_by_client_and_bounded():
    store = VoiceProfiles(max_speakers=3)
    alice = store.voice("key:a", "user-1")
    assert store.voice("key:a", "user-1") is alice
    assert store.voice("key:b", "user-1") is not alice  # another API key never sees this speaker
    store.voice("key:a", "user-2")
    assert store.voice("key:a", "user-1") is alice  # used again: key:b's is now the least recent
    store.voice("key:a", "user-3")  # the 4th speaker: the least recently used is forgotten
    assert len(store) == 3 and ("key:b", "user-1") not in store._profiles
    assert store.voice("key:a", "user-1") is alice
    assert store.voice("key:a", None) is None


@pytest.mark.parametrize("bad", ["", "a" * 65, "../etc/passwd", "me and you", "x\n"])
def test_speaker_ids_are_plain_tokens(bad):
    with pytest.raises(SpeakerIdError):
        VoiceProfiles().voice("open", bad)


def test_off_and_from_env(monkeypatch):
    monkeypatch.setenv("EMOTION_ADAPTATION", "off")
    assert VoiceProfiles.from_env().voice("open", "user-1") is None
    monkeypatch.setenv("EMOTION_ADAPTATION", "sometimes")
    with pytest.raises(ValueError, match="on or off"):
        VoiceProfiles.from_env()
    monkeypatch.setenv("EMOTION_ADAPTATION", "on")
    monkeypatch.setenv("EMOTION_ADAPT_MAX_SPEAKERS", "0")
    with pytest.raises(ValueError, match="positive"):
        VoiceProfiles.from_env()
    monkeypatch.setenv("EMOTION_ADAPT_MAX_SPEAKERS", "7")
    assert VoiceProfiles.from_env().max_speakers == 7


def test_header_says_what_answered():
    assert describe(None, 0) == "off"
    assert describe(RunningProfile(), 3) == "learning; clips=3"
    assert describe(RunningProfile(), ADAPT_MIN_CLIPS) == f"adapted; clips={ADAPT_MIN_CLIPS}"
