"""The converted Whisper-base encoder (checked against ctranslate2 itself and against transformers' own
forward) on a real RAVDESS clip, its conversion cache, and the shared encoder instance. The CTranslate2 reader
and the generic transformers encoder: tests/unit/test_encoders.py."""

from __future__ import annotations

import importlib.util
import math
import os
import threading

import numpy as np
import pytest
import torch

from emotion_core import config as project_config
from emotion_core import features
from tests._offline import go_offline

CLIP = "ravdess/Actor_01/03-01-05-02-01-01-01.flac"
HAS_CT2 = importlib.util.find_spec("ctranslate2") is not None


# ---------------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def whisper_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def whisper_encoder(whisper_cache):
    from emotion_core.encoders.whisper import WhisperBaseEncoder

    with pytest.MonkeyPatch.context() as mp:  # conversion + first load with no network at all
        go_offline(mp)
        return WhisperBaseEncoder(cache_root=whisper_cache)


@pytest.fixture(scope="module")
def clip():
    import soundfile as sf

    path = project_config.data_dir() / CLIP
    if not path.exists():
        pytest.skip(f"RAVDESS clip {path} not available")
    audio, rate = sf.read(path, dtype="float32")
    assert rate == features.SAMPLE_RATE and audio.ndim == 1
    return audio


# ---------------------------------------------------------------------------------------------------------
# Whisper-base
# ---------------------------------------------------------------------------------------------------------


def test_whisper_shape_frozen_no_grad(whisper_encoder, clip):
    hidden = whisper_encoder.encode(clip)
    frames = math.ceil((len(clip) // features.HOP_LENGTH) / 2)  # mel frames, then conv2 stride 2
    assert hidden.shape == (7, frames, 512) == (whisper_encoder.num_layers, frames, whisper_encoder.hidden_size)
    assert hidden.dtype == torch.float32 and torch.isfinite(hidden).all()
    assert not hidden.requires_grad and not whisper_encoder.model.training
    assert not any(p.requires_grad for p in whisper_encoder.model.parameters())
    # Not an inference tensor: a trainable head can consume it directly.
    head = torch.nn.Linear(512, 2)
    head(hidden[-1]).sum().backward()
    assert head.weight.grad is not None and not hidden.is_inference()
    # 3 s → 300 mel frames → 150 encoder frames: nothing padded to 30 s.
    assert whisper_encoder.encode(clip[: 3 * features.SAMPLE_RATE]).shape == (7, 150, 512)


def test_whisper_deterministic_and_log_mel_passthrough(whisper_encoder, clip):
    first = whisper_encoder.encode(clip)
    assert torch.equal(first, whisper_encoder.encode(clip))
    assert torch.equal(first, whisper_encoder.encode(clip, log_mel=features.log_mel(clip)))


def test_whisper_rejects_over_30_s(whisper_encoder):
    with pytest.raises(ValueError, match="at most 30"):
        whisper_encoder.encode(np.zeros(30 * features.SAMPLE_RATE + 1, dtype=np.float32))
    with pytest.raises(ValueError, match="log_mel"):
        whisper_encoder.encode(np.zeros(10, np.float32), log_mel=torch.zeros(80, 3002))


def test_whisper_matches_transformers_forward(whisper_encoder, clip):
    """On 30 s input (the only length HF accepts) our sliced forward is HF's output_hidden_states exactly."""
    audio = np.zeros(30 * features.SAMPLE_RATE, np.float32)
    audio[: len(clip)] = clip
    mel = features.log_mel(audio)
    ours = whisper_encoder.encode(audio, log_mel=mel)
    with torch.inference_mode():
        ref = whisper_encoder.model(mel[None], output_hidden_states=True)
    assert len(ref.hidden_states) == 7
    torch.testing.assert_close(ours, torch.stack(ref.hidden_states)[:, 0], rtol=0, atol=1e-5)


@pytest.mark.skipif(not HAS_CT2, reason="ctranslate2 not installed")
def test_whisper_matches_ctranslate2(whisper_encoder, clip, tmp_path):
    """The independent reference: ctranslate2 running the original model.bin (fp16 weights, fp32 compute)."""
    import ctranslate2

    from emotion_core.encoders.whisper import source_files

    ct2_config, parts = source_files()
    (tmp_path / "config.json").write_bytes(ct2_config.read_bytes())
    with open(tmp_path / "model.bin", "wb") as out:
        for part in parts:
            out.write(part.read_bytes())
    for extra in ("vocabulary.txt", "tokenizer.json"):
        if (ct2_config.parent / extra).exists():
            os.symlink(ct2_config.parent / extra, tmp_path / extra)
    model = ctranslate2.models.Whisper(str(tmp_path), device="cpu", compute_type="float32")

    audio = np.zeros(30 * features.SAMPLE_RATE, np.float32)
    audio[: len(clip)] = clip
    mel = features.log_mel(audio)
    reference = torch.from_numpy(np.array(model.encode(ctranslate2.StorageView.from_array(mel[None].numpy()))))
    ours = whisper_encoder.encode(audio, log_mel=mel)[-1]
    assert reference.shape == (1, 1500, 512)
    diff = (ours - reference[0]).abs().max().item()
    assert diff < 1e-2, f"max abs diff vs ctranslate2: {diff}"


def test_whisper_cache_reused_not_reconverted(whisper_encoder, whisper_cache, no_network):
    from emotion_core.encoders import whisper

    weights = whisper_encoder.model_dir / "model.safetensors"
    mtime, count = weights.stat().st_mtime_ns, whisper.conversion_count
    again = whisper.WhisperBaseEncoder(cache_root=whisper_cache)
    assert whisper.conversion_count == count and weights.stat().st_mtime_ns == mtime
    assert again.model_dir == whisper_encoder.model_dir and again.fingerprint == whisper_encoder.fingerprint
    assert whisper_encoder.model_dir.parent == whisper_cache / "encoders"
    assert [p.name for p in (whisper_cache / "encoders").iterdir()] == [whisper_encoder.model_dir.name]
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    assert torch.equal(again.encode(x), whisper_encoder.encode(x))


def test_whisper_conversion_atomic_and_concurrent(tmp_path):
    """Leftovers of an interrupted run are ignored, and racing converters all end with one valid cache."""
    from emotion_core.encoders import whisper

    parent = tmp_path / "encoders"
    parent.mkdir()
    stale = parent / f"whisper-base-{whisper.fingerprint()}.tmp-1-dead"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half written")
    os.utime(stale, (0, 0))  # old: no live process owns it

    results, errors = [], []

    def convert():
        try:
            results.append(whisper.cached_encoder_dir(tmp_path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=convert) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert [p.name for p in parent.iterdir()] == [results[0].name]  # no tmp dirs left, stale one removed
    assert whisper.WhisperBaseEncoder(cache_root=tmp_path).encode(np.zeros(1600, np.float32)).shape == (7, 5, 512)


def test_load_encoder_shared_instance(whisper_cache, monkeypatch):
    from emotion_core.encoders import clear_encoder_cache, load_encoder
    from emotion_core.encoders.whisper import WhisperBaseEncoder

    monkeypatch.setenv("EMOTION_CACHE_DIR", str(whisper_cache))
    clear_encoder_cache()
    try:
        encoder = load_encoder(runtime="torch")  # the default runtime (ONNX): tests/integration/test_onnx_encoder.py
        assert isinstance(encoder, WhisperBaseEncoder) and load_encoder("whisper-base", runtime="torch") is encoder
        assert load_encoder("whisper-base", runtime="torch", num_layers=7) is encoder
        assert (encoder.name, encoder.frame_rate, encoder.max_seconds, encoder.runtime) == ("whisper-base", 50.0, 30.0, "torch")
    finally:
        clear_encoder_cache()


