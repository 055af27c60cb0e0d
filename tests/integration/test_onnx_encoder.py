"""The serving encoder on ONNX Runtime against the fp32 torch reference, on real RAVDESS audio: fp32 export
(numerically the same), int8 (hidden states close, the full predictor's top-1 the same), dynamic lengths,
early stop after k layers, the torch fallback, and the embedding cache staying fp32-torch-derived. (The mel
filterbank against librosa's: tests/unit/test_features.py.)"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from emotion_core import features
from emotion_core.audio import load_audio
from emotion_core.config import data_dir
from emotion_core.encoders import clear_encoder_cache, load_encoder

pytest.importorskip("onnxruntime")

RAVDESS = data_dir() / "ravdess"


@pytest.fixture(scope="module")
def torch_encoder():
    return load_encoder("whisper-base", runtime="torch")


@pytest.fixture(scope="module")
def onnx_fp32():
    from emotion_core.encoders.onnx.runtime import OnnxWhisperEncoder

    return OnnxWhisperEncoder(precision="fp32", warmup=False)


@pytest.fixture(scope="module")
def onnx_int8():
    return load_encoder("whisper-base", runtime="onnx")


@pytest.fixture(scope="module")
def clips(ravdess_manifest) -> dict[str, np.ndarray]:
    """1 s and 3 s from the middle of real clips, and 10 s of one actor's clips joined; odd sample counts."""
    rows = ravdess_manifest[ravdess_manifest["actor"] == 2].sort_values("path")
    audio = [load_audio(RAVDESS / p) for p in rows["path"].iloc[:4]]
    joined = np.concatenate(audio)
    mid = len(audio[1]) // 2
    return {
        "1s": audio[1][mid - 8000 : mid + 8001],
        "3s": audio[2][len(audio[2]) // 2 - 24000 : len(audio[2]) // 2 + 24003],
        "10s": joined[: 10 * 16000 + 77],
    }


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per layer, the mean over frames of the cosine similarity of the 512-d vectors: [L]."""
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).mean(dim=-1)


@pytest.mark.parametrize("length", ["1s", "3s", "10s"])
def test_fp32_onnx_matches_torch(torch_encoder, onnx_fp32, clips, length):
    audio = clips[length]
    mel = features.log_mel(audio)
    ref, got = torch_encoder.encode(audio, mel), onnx_fp32.encode(audio, mel)
    frames = (mel.shape[1] + 1) // 2
    assert ref.shape == got.shape == (7, frames, 512)
    assert got.dtype == torch.float32
    # Whisper's residual stream reaches |x| ~ 10^3 in layers 4-5; fp32 reassociation stays far below 1e-2.
    assert (got - ref).abs().max().item() < 2e-2
    assert _cosine(got, ref).min().item() > 0.99999


@pytest.mark.parametrize("length", ["1s", "3s", "10s"])
def test_int8_hidden_states_close(torch_encoder, onnx_int8, clips, length):
    audio = clips[length]
    ref, got = torch_encoder.encode(audio), onnx_int8.encode(audio)
    assert got.shape == ref.shape and torch.isfinite(got).all()
    cos = _cosine(got, ref)
    assert cos[0].item() > 0.99999  # the embeddings (convolutions) are not quantised
    assert cos.min().item() > 0.98, cos


def test_int8_identity_and_settings(onnx_int8, torch_encoder):
    from emotion_core.encoders.onnx import export, runtime

    assert onnx_int8.runtime == "onnx-int8" and torch_encoder.runtime == "torch"
    # The weights' identity, so heads trained on the fp32 torch features load unchanged.
    assert onnx_int8.fingerprint == torch_encoder.fingerprint
    assert (onnx_int8.name, onnx_int8.num_layers, onnx_int8.hidden_size, onnx_int8.frame_rate, onnx_int8.max_seconds) == (
        torch_encoder.name, 7, 512, 50.0, 30.0)
    assert onnx_int8.model_path.name == "whisper-base-L7-int8.onnx"
    assert onnx_int8.model_path.stat().st_size < 35e6  # int8: ~29 MB against 83 MB fp32
    meta = onnx_int8.session.get_modelmeta().custom_metadata_map
    assert meta["emotion.encoder_fingerprint"] == torch_encoder.fingerprint and meta["emotion.precision"] == "int8"
    options = onnx_int8.session.get_session_options()
    assert options.intra_op_num_threads == runtime.default_threads() and options.inter_op_num_threads == 1
    # Cached: a second encoder loads the same file, exporting nothing.
    count = export.export_count
    again = runtime.OnnxWhisperEncoder(warmup=False)
    assert again.model_path == onnx_int8.model_path and export.export_count == count


NEAR_TIE = 0.02  # top-1 minus top-2 of the fp32 answer


def test_int8_predictor_agreement(smoke_run, ravdess_manifest):
    """The full predictor (VAD, windows, head) on 36 real clips over all actors: int8 moves no probability far
    and changes no decided answer. The shrunk model (3 epochs) answers many clips by a hair, and a 0.3-point tie
    may fall either way under any re-rounding, so ties are not counted as disagreements (the release check on
    the full model counts every flip: `make export`, ≥ 99 % of 1440)."""
    from emotion_core.serving.release import compare, predictor_for

    reference, candidate = predictor_for("torch"), predictor_for("onnx")
    paths = [RAVDESS / p for p in ravdess_manifest.sort_values("path")["path"].iloc[::40]]
    result = compare(reference, candidate, paths)
    assert result["clips"] + result["rejected_by_both"] == 36 and result["clips"] >= 30  # VAD: no speech → both 4xx
    assert result["max_prob_diff"] < 0.05 and result["mean_max_prob_diff"] < 0.02, result
    assert all(margin < NEAR_TIE for margin in result["disagreement_margins"]), result
    assert result["top1_agreement"] >= 0.9, result


def test_early_stop_after_k_layers(onnx_int8, torch_encoder, clips):
    audio = clips["3s"]
    full_torch, full_int8 = torch_encoder.encode(audio), onnx_int8.encode(audio)
    torch4 = load_encoder("whisper-base", runtime="torch", num_layers=4)
    int8_4 = load_encoder("whisper-base", runtime="onnx", num_layers=4)
    assert int8_4.model_path.name == "whisper-base-L4-int8.onnx" and int8_4.num_layers == 4
    assert torch.equal(torch4.encode(audio), full_torch[:4])
    early = int8_4.encode(audio)
    assert early.shape == (4, 150, 512)
    torch.testing.assert_close(early, full_int8[:4], rtol=0, atol=1e-3)  # same quantised layers 0..2
    assert load_encoder("whisper-base", runtime="onnx", num_layers=7) is onnx_int8
    with pytest.raises(ValueError, match="num_layers"):
        load_encoder("whisper-base", runtime="torch", num_layers=8)


def test_runtime_selection_and_fallback(monkeypatch, torch_encoder):
    from emotion_core.encoders.whisper import WhisperBaseEncoder

    try:
        clear_encoder_cache()
        monkeypatch.setenv("EMOTION_RUNTIME", "torch")
        assert isinstance(load_encoder(), WhisperBaseEncoder)
        monkeypatch.setenv("EMOTION_RUNTIME", "tensorrt")
        with pytest.raises(ValueError, match="EMOTION_RUNTIME"):
            load_encoder()
        monkeypatch.delenv("EMOTION_RUNTIME")
        clear_encoder_cache()
        monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)  # as if not installed
        fallback = load_encoder()  # default: onnx → falls back to torch, and says why
        assert isinstance(fallback, WhisperBaseEncoder) and fallback.runtime == "torch"
        assert "onnxruntime" in fallback.fallback_reason
        x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
        assert torch.equal(fallback.encode(x), torch_encoder.encode(x))
    finally:
        clear_encoder_cache()


def test_onnx_dir_file_must_match(tmp_path, onnx_int8, monkeypatch):
    """EMOTION_ONNX_DIR files are used only if their stored identity matches (here: a 4-state file renamed)."""
    from emotion_core.encoders.onnx.export import model_filename
    from emotion_core.encoders.onnx.runtime import OnnxWhisperEncoder

    shipped = tmp_path / model_filename(7, "int8")
    shutil.copy(onnx_int8.model_path, shipped)
    assert OnnxWhisperEncoder(onnx_dir=tmp_path, warmup=False).model_path == shipped
    four = load_encoder("whisper-base", runtime="onnx", num_layers=4).model_path
    shutil.copy(four, shipped)
    with pytest.raises(RuntimeError, match="states"):
        OnnxWhisperEncoder(onnx_dir=tmp_path, warmup=False)


def test_embedding_cache_stays_fp32_torch(onnx_int8, torch_encoder, ravdess_manifest, tmp_path):
    from emotion_core.config import EncoderConfig
    from emotion_core.data import read_ravdess
    from emotion_core.front_end import FrontEnd
    from emotion_core.research.cache import EmbeddingCache

    manifest, served = read_ravdess(RAVDESS).iloc[:1], FrontEnd.of(EncoderConfig())
    with pytest.raises(ValueError, match="fp32 torch features"):
        EmbeddingCache(onnx_int8, served).build(manifest, progress=False)
    scratch = EmbeddingCache(onnx_int8, served, root=tmp_path / "scratch")  # an explicit scratch root is fine
    assert scratch.build(manifest, progress=False) == {"cached": 0, "encoded": 1}
    # reading: same weights, same cache
    assert EmbeddingCache(torch_encoder, served).root == EmbeddingCache(onnx_int8, served).root


def test_serving_path_stays_light(onnx_int8):
    """Predicting with the ONNX encoder imports neither transformers, numba/librosa nor sklearn (each costs
    the serving process 70-150 MB of RSS)."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from emotion_core.encoders import load_encoder\n"
        "from emotion_core.config import EncoderConfig\n"
        "from emotion_core.front_end import FrontEnd\n"
        "from emotion_core.head.clip_features import extract_features\n"
        "from emotion_core.head.batching import collate\n"
        "from emotion_core.head.model import HybridEmotionCNN\n"
        "feats = extract_features(load_encoder(), np.zeros(16000, np.float32) + 1e-3, FrontEnd.of(EncoderConfig()))\n"
        "collate([feats]).logits(HybridEmotionCNN(7, 512).eval())\n"
        "print(sorted(m for m in ('transformers', 'numba', 'librosa', 'sklearn') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_int8_variant_is_chosen_for_this_cpu_and_rechosen_on_another(onnx_int8, tmp_path):
    """Every int8 variant is built and timed on this CPU; the served file is the fastest whose error stays within
    MAX_ERROR_RATIO of the reference variant's (a speed tie going to the one closest to fp32), its sidecar names the machine, and a sidecar from another CPU
    makes the next load choose again (without exporting anything). The re-choice runs on a linked copy of the
    cache, so the machine's own served file is left as `make export` validated it."""
    import json
    import os

    from emotion_core.encoders.onnx import export, runtime

    served = onnx_int8.model_path
    choice = json.loads(served.with_suffix(".json").read_text())
    assert choice["machine"] == export.machine_identity()
    assert set(choice["candidates"]) == set(export.INT8_VARIANTS)
    limit = runtime.MAX_ERROR_RATIO * choice["candidates"][export.REFERENCE_VARIANT]["relative_error"]
    eligible = {v: c for v, c in choice["candidates"].items() if c["relative_error"] <= limit}
    served_c = eligible[choice["variant"]]  # KeyError: a variant too far from fp32 was served
    fastest = min(c["ms_p50"] for c in eligible.values())
    assert served_c["ms_p50"] <= fastest * (1 + runtime.SPEED_TIE)  # nothing eligible is clearly faster
    assert all(c["relative_error"] >= served_c["relative_error"] for c in eligible.values()
               if c["ms_p50"] <= fastest * (1 + runtime.SPEED_TIE))  # a tie goes to the closest to fp32
    assert onnx_int8.variant == choice["variant"] and onnx_int8.describe()["int8_variant"] == choice["variant"]
    assert all(served.with_name(export.model_filename(7, "int8", v)).is_file() for v in export.INT8_VARIANTS)

    before = served.stat().st_mtime_ns
    assert runtime.exported_model(7, "int8") == served and served.stat().st_mtime_ns == before  # same CPU: reused

    copy = export.onnx_cache_dir(tmp_path)
    copy.mkdir(parents=True)
    for path in served.parent.iterdir():
        if path.name.startswith(export.model_filename(7, "fp32")[:-5]) or "-int8" in path.name:
            if path.suffix == ".json":
                (copy / path.name).write_text(path.read_text())
            else:
                os.link(path, copy / path.name)  # the models themselves are never rewritten in place
    other = {**choice, "machine": {**choice["machine"], "cpu": "another CPU"}}
    (copy / served.with_suffix(".json").name).write_text(json.dumps(other))
    exports = export.export_count
    rechosen = runtime.exported_model(7, "int8", cache_root=tmp_path)
    assert rechosen == copy / served.name and export.export_count == exports
    assert json.loads(rechosen.with_suffix(".json").read_text())["machine"] == export.machine_identity()
    assert json.loads(served.with_suffix(".json").read_text()) == choice  # the real cache is untouched
