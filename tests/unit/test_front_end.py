"""The front end (what the encoder hears): quiet and loud takes of one utterance reach the same speech level,
the pauses stay silent, short clips are centred in silence, and the cache keeps features behind another front
end apart. Synthetic voiced audio (no corpus)."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_core.config import EncoderConfig, ExperimentConfig, TrainConfig, fingerprint, stable_hash
from emotion_core.features import SAMPLE_RATE
from emotion_core.front_end import PEAK_CEILING, FrontEnd, speech_level_dbfs
from tests.unit.test_vad_windows import hiss, joined, voiced


def utterance() -> np.ndarray:
    audio, _ = joined([("hiss", 0.5), ("voice", 1.2), ("hiss", 0.6), ("voice", 0.8), ("hiss", 0.5)])
    return audio


@pytest.mark.parametrize("gain_db", [-30.0, -12.0, 0.0, 6.0])
def test_every_take_reaches_the_target_level(gain_db: float):
    take = utterance() * np.float32(10 ** (gain_db / 20))
    out = FrontEnd(level_dbfs=-26.0)(take)
    assert len(out) == len(take)
    assert speech_level_dbfs(out) == pytest.approx(-26.0, abs=0.5)
    # one gain for the whole clip: the pauses are scaled with the speech, never lifted on their own
    ratio = out[take != 0] / take[take != 0]
    assert np.allclose(ratio, ratio[0], rtol=1e-4)


def test_the_gain_never_clips():
    take = utterance()
    take[1000] = 0.9  # one loud click: raising the speech to -6 dBFS would take it past full scale
    out = FrontEnd(level_dbfs=-6.0)(take)
    assert np.abs(out).max() <= PEAK_CEILING + 1e-6


def test_silence_and_hiss_are_left_as_they_are():
    for quiet in (np.zeros(SAMPLE_RATE, np.float32), hiss(1.0)):
        assert speech_level_dbfs(quiet) is None
        assert np.array_equal(FrontEnd(level_dbfs=-26.0)(quiet), quiet)


def test_short_clips_are_centred_in_silence():
    word = voiced(0.9)
    out = FrontEnd(min_seconds=4.0)(word)
    assert len(out) == 4 * SAMPLE_RATE
    start = (len(out) - len(word)) // 2
    assert np.array_equal(out[start : start + len(word)], word)
    assert not out[:start].any() and not out[start + len(word) :].any()
    long = voiced(4.5)
    assert np.array_equal(FrontEnd(min_seconds=4.0)(long), long)  # long enough: untouched


def test_identity_when_off_and_in_old_fingerprints():
    off = EncoderConfig(level_dbfs=None, min_seconds=0)
    assert FrontEnd.of(off) == FrontEnd() and FrontEnd().key == ""
    clip = utterance()
    assert np.array_equal(FrontEnd()(clip), clip)
    assert FrontEnd.of(EncoderConfig()).key == "level-26-min4s"  # the served recipe hears through it
    # results stored before the front end existed stay valid: with it off the fingerprint is the old one
    cfg = ExperimentConfig(encoder=off, train=TrainConfig(excerpt_seconds=[], corpus_sampling="natural", mask_loss=True))
    settings = cfg.model_dump(exclude={"name"})
    del settings["encoder"]["level_dbfs"], settings["encoder"]["min_seconds"], settings["adapt"]
    for key in ("corpus_sampling", "augment", "excerpt_seconds", "copy_corpora", "mask_loss"):
        del settings["train"][key]
    assert fingerprint(cfg) == stable_hash(settings)
    assert fingerprint(cfg) != fingerprint(ExperimentConfig())
