"""Encoder adaptation from the cache (config section `adapt`) with the real Whisper-base weights: the re-run top
layers give the encoder's own states until trained, LoRA folds back into plain layers, and a shrunk
cross-validation adapts them per fold on training actors only and reports what it cost."""

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def whisper_encoder():
    from emotion_core.encoders import load_encoder

    return load_encoder("whisper-base", runtime="torch")


@pytest.fixture(scope="module")
def whisper_states(whisper_encoder):
    from emotion_core.audio import load_audio
    from emotion_core.data.corpora import CORPORA

    audio = load_audio(CORPORA["ravdess"].read()["path"].iloc[0])
    return whisper_encoder.encode(audio)


@pytest.mark.parametrize("mode", ["lora", "full"])
@pytest.mark.parametrize("n", [1, 2])
def test_top_layers_rerun_from_a_cached_state_give_the_encoders_own_states(whisper_encoder, whisper_states, mode, n):
    from emotion_core.encoders.top_layers import TopLayers

    top = TopLayers(whisper_encoder.model, n, mode)
    assert top.first_state == 6 - n
    with torch.no_grad():
        states = top(whisper_states[top.first_state])
    torch.testing.assert_close(states, whisper_states[top.first_state + 1:], rtol=0, atol=1e-5)
    trainable = top.trainable_parameters()
    # LoRA rank 8 on q, v (512x512) and fc1, fc2 (512x2048): 8 * (1024 + 1024 + 2560 + 2560) per layer
    assert trainable == (n * 8 * 7168 if mode == "lora" else n * 3_151_872 + 1024)  # full: + the final layer norm


def test_lora_merges_into_plain_layers(whisper_encoder, whisper_states):
    from emotion_core.encoders.top_layers import LoRALinear, TopLayers

    top = TopLayers(whisper_encoder.model, 2, "lora", rank=4, targets=("q_proj", "fc2"))
    for p in top.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    merged = top.merged()
    assert not any(isinstance(m, LoRALinear) for m in merged.modules()) and merged.trainable_parameters() == 0
    with torch.no_grad():
        adapted, plain = top(whisper_states[4]), merged(whisper_states[4])
    assert (adapted - whisper_states[5:]).abs().max() > 1e-2  # the adapters moved the states...
    torch.testing.assert_close(plain, adapted, rtol=0, atol=1e-3)  # ...and the merged layers give the same


def test_adapted_states_are_written_in_place_and_the_frozen_ones_come_back(whisper_encoder, whisper_states):
    from emotion_core.encoders.top_layers import TopLayers
    from emotion_core.head.clip_features import ClipFeatures, pool_frames
    from emotion_core.research.top_layer_fit import adapted_in_place

    top = TopLayers(whisper_encoder.model, 2, "lora", rank=4)
    for p in top.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    cached = whisper_states.half()
    clip = ClipFeatures(hidden=pool_frames(cached, 2), mel=torch.zeros(80, 10), frame_pool=2)
    frozen, storage = clip.hidden.clone(), clip.hidden.data_ptr()
    with torch.no_grad():
        expected = pool_frames(top(cached[4]).half(), 2)
    with adapted_in_place(top, [clip], [cached[4]]):
        assert clip.hidden.data_ptr() == storage  # the clip's own tensor, no second copy
        assert torch.equal(clip.hidden[:5], frozen[:5]) and torch.equal(clip.hidden[5:], expected)
        assert (clip.hidden[5:].float() - frozen[5:].float()).abs().max() > 1e-2
    assert torch.equal(clip.hidden, frozen)
    with pytest.raises(ValueError, match="training copies"):
        with adapted_in_place(top, [ClipFeatures(clip.hidden, clip.mel, 2, variants=(clip,))], [cached[4]]):
            pass
    assert torch.equal(clip.hidden, frozen)


def test_refuses_what_it_cannot_adapt(whisper_encoder):
    from emotion_core.encoders.top_layers import TopLayers

    with pytest.raises(ValueError, match="cannot adapt the top 7"):
        TopLayers(whisper_encoder.model, 7)
    with pytest.raises(ValueError, match="LoRA targets"):
        TopLayers(whisper_encoder.model, 1, targets=("conv1",))


def test_crossval_adapts_the_top_layer_per_fold(smoke_run):
    from emotion_core.config import fingerprint, load_config
    from emotion_core.research import cv

    frozen = load_config("smoke")
    # adapted layers do not meet training copies yet (top_layer_fit.adapted_in_place): the served word-length copies off
    cfg = load_config("smoke", ["adapt.layers=1", "adapt.epochs=2", "adapt.patience=2", "train.excerpt_seconds=[]"])
    assert fingerprint(frozen) != fingerprint(cfg)
    # at the frozen default the new section is not part of the fingerprint: results stored before it stay valid
    assert fingerprint(frozen) == fingerprint(load_config("smoke", ["adapt.mode=full"]))
    report = cv.run(cfg, random_split_check=False, adapted=(), progress=False)
    ad = report["adaptation"]
    assert ad["layers"] == 1 and ad["trainable_parameters"] == 8 * 7168
    assert [f["fold"] for f in ad["per_fold"]] == report["folds"] and all(1 <= f["best_epoch"] <= 2 for f in ad["per_fold"])
    assert all(f["seconds"] > 0 for f in ad["per_fold"]) and ad["peak_rss_mb"] > 100
    assert np.array(report["head"]["confusion"]).sum() == 360 and 0 <= report["head"]["ua_mean"] <= 1
    assert "top 1 layer(s) are adapted first" in (cv.reports_dir(cfg) / "cv.md").read_text()
